"""``python -m cachier_like``: the ``cachier-like`` command."""

import sys

from .cli import main

sys.exit(main())
