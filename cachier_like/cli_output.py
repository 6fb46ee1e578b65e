"""How the CLI prints: readable tables by default, JSON on request."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_UNIT_SECONDS = {
    **dict.fromkeys(("", "s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 604800),
}
DURATION_FORMS = (
    "seconds (90), or a number and a unit: 30s, 15m, 12h, 3d, 2w, '90 minutes', "
    "'1.5 hours', '3 days', '2 weeks'"
)


def parse_duration(text: str) -> float:
    """Parse an age such as ``90``, ``12h``, ``3d``, ``"90 minutes"`` or ``"1.5 hours"``.

    A bare number is seconds; ``m`` is minutes (there is no month: use days).

    Example:
        >>> parse_duration("3d"), parse_duration("1.5 hours"), parse_duration("90")
        (259200.0, 5400.0, 90.0)
    """
    match = _DURATION.fullmatch(text.strip().lower())
    unit = _UNIT_SECONDS.get(match.group(2)) if match else None
    if match is None or unit is None:
        raise ValueError(f"not a duration: {text!r}; use {DURATION_FORMS}")
    return float(match.group(1)) * unit


def format_age(timestamp: float | None, now: float | None = None) -> str:
    """A timestamp as a compact age such as ``42s``, ``5m``, ``3h`` or ``2d``.

    Example:
        >>> format_age(0.0, now=7200.0)
        '2h'
    """
    if timestamp is None:
        return "-"
    seconds = max((time.time() if now is None else now) - timestamp, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def format_size(size: int | None) -> str:
    """Bytes as ``812B``, ``4.2KB``, ``1.3MB``.

    Example:
        >>> format_size(4300)
        '4.2KB'
    """
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print left-aligned columns with a header rule."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sys.stdout.write(line.rstrip() + "\n")
    sys.stdout.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        cells = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        sys.stdout.write(cells.rstrip() + "\n")


def print_json(data: Mapping[str, Any] | Sequence[Any]) -> None:
    """Print ``data`` as indented JSON."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
