"""``cachier__verbose=True``: one short line on stdout for each decision of that call.

This is the library's one print outside the CLI (tests/test_quality.py holds it to
that): the caller asked for the output on this very call, as cachier's callers do, so
it must show whatever the logging configuration. Each line is also logged at INFO,
with the key, for programs that collect logs.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

logger = logging.getLogger(__name__)


def tell(name: str, what: str, key: Hashable = None) -> None:
    """Print ``name: what`` for a verbose call; log it at INFO, with the key if known.

    Example:
        >>> tell("pkg.area", "cache hit", key="k1")
        pkg.area: cache hit
    """
    print(f"{name}: {what}")
    if key is None:
        logger.info("%s: %s", name, what)
    else:
        logger.info("%s: %s (key %s)", name, what, key)
