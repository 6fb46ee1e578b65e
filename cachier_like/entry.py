"""The immutable record a core stores for one cached call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True, slots=True)
class Entry:
    """One cached result.

    ``timestamp`` is the wall-clock time (seconds since the epoch, UTC) at which the
    value was calculated; it is what staleness is measured against. ``tags`` are the
    call's tags, each with the version the store held for it before the value was
    computed (see :mod:`cachier_like.tagging`): an entry whose versions are behind the
    store's is stale.

    Example:
        >>> e = Entry(value=42, timestamp=0.0)
        >>> e.time.isoformat()
        '1970-01-01T00:00:00+00:00'
    """

    value: Any
    timestamp: float
    tags: tuple[tuple[str, int], ...] = ()

    @property
    def time(self) -> datetime:
        """The calculation time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp, tz=timezone.utc)
