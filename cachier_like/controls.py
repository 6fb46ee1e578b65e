"""cachier's per-call keywords (``cachier__skip_cache=True``, ``max_age=...``) as controls."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .parsers import signed_seconds

#: cachier's per-call keywords, honoured unless the function declares the name itself.
CONTROL_KEYWORDS = frozenset(
    {
        "cachier__skip_cache",
        "cachier__overwrite_cache",
        "cachier__verbose",
        "cachier__allow_none",
        "max_age",
    }
)


@dataclass(frozen=True, slots=True)
class CallControls:
    """Per-call overrides taken from cachier-style keywords."""

    skip: bool = False
    overwrite: bool = False
    verbose: bool = False
    allow_none: bool | None = None
    #: Seconds; ``-inf`` for a negative ``max_age``, which makes every entry stale.
    max_age: float | None = None


NO_CONTROLS = CallControls()


def take_controls(kwargs: dict[str, Any], honoured: frozenset[str]) -> CallControls:
    """Remove the ``honoured`` control keywords from ``kwargs``; return what they ask for.

    Example:
        >>> kwargs = {"x": 1, "cachier__skip_cache": True}
        >>> take_controls(kwargs, CONTROL_KEYWORDS).skip, kwargs
        (True, {'x': 1})
        >>> take_controls({"max_age": -5}, CONTROL_KEYWORDS).max_age  # always stale
        -inf
    """
    found = {name: kwargs.pop(name) for name in honoured if name in kwargs}
    if not found:
        return NO_CONTROLS
    max_age = signed_seconds(found.get("max_age"), "max_age")
    if max_age is not None and max_age < 0:
        # Stale whatever the entry's timestamp, even one ahead of this clock.
        max_age = -math.inf
    return CallControls(
        skip=bool(found.get("cachier__skip_cache", False)),
        overwrite=bool(found.get("cachier__overwrite_cache", False)),
        verbose=bool(found.get("cachier__verbose", False)),
        allow_none=found.get("cachier__allow_none"),
        max_age=max_age,
    )
