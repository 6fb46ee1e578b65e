"""A store's clock, as seen from this process: the offset that makes timestamps agree.

Entries are stamped by the process that computed them and judged by the process that
reads them. With clocks apart by minutes (a VM's drifting clock, a container without
NTP), an entry would be served minutes too long or be stale on arrival. A server core
therefore stores timestamps in the *store's* time: ``stored = local + offset`` on every
write, ``local = stored - offset`` on every read, where ``offset`` is measured against
the server's own clock (Redis ``TIME``, ...). The policy keeps comparing local times,
and every process's decisions agree with the server's clock.

An offset under :data:`TOLERANCE_S` is taken as zero: it is within what one
measurement can tell (half a round trip) plus what freshness can notice, and clocks
that agree (NTP) then leave every timestamp exactly as the policy wrote it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

__all__ = ["StoreClock"]

#: How often the offset is measured again (clocks drift slowly).
REFRESH_S = 300.0
#: After a failed measurement, the next attempt waits this long (the offset stays).
RETRY_S = 5.0
#: Offsets smaller than this are taken as zero.
TOLERANCE_S = 0.5


class StoreClock:
    """``offset``: the store's time minus this process's, re-measured every few minutes.

    Example:
        >>> clock = StoreClock()
        >>> clock.offset_from(lambda: time.time() + 300.0) > 299.0
        True
        >>> StoreClock().offset_from(lambda: time.time() + 0.01)  # within the tolerance
        0.0
    """

    __slots__ = ("_due", "offset")

    def __init__(self) -> None:
        self.offset = 0.0
        self._due = 0.0  # time.monotonic() of the next measurement

    def _note(self, before: float, store_now: float, after: float) -> None:
        offset = store_now - (before + after) / 2
        self.offset = offset if abs(offset) >= TOLERANCE_S else 0.0
        self._due = time.monotonic() + REFRESH_S

    def _failed(self, error: Exception) -> None:
        logger.debug("cannot read the store's clock (offset kept): %r", error)
        self._due = time.monotonic() + RETRY_S

    def offset_from(self, read: Callable[[], float]) -> float:
        """The offset, measured with ``read()`` (the store's time) when it is due."""
        if time.monotonic() >= self._due:
            before = time.time()
            try:
                store_now = read()
            except Exception as exc:  # failures never break the call: keep the offset
                self._failed(exc)
            else:
                self._note(before, store_now, time.time())
        return self.offset

    async def aoffset_from(self, read: Callable[[], Awaitable[float]]) -> float:
        """:meth:`offset_from` with an awaited ``read()``."""
        if time.monotonic() >= self._due:
            before = time.time()
            try:
                store_now = await read()
            except Exception as exc:
                self._failed(exc)
            else:
                self._note(before, store_now, time.time())
        return self.offset
