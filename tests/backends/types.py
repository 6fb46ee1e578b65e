"""Types shared by the backend fixture modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ``core_options(**extra)`` returns the ``@cached`` keyword arguments for one core.
CoreOptions = Callable[..., dict[str, Any]]
