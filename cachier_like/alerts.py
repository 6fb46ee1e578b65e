"""Rate-limited reporting of storage failures, so a dead backend logs once, not per call."""

from __future__ import annotations

import logging
import threading
import time

from .errors import BackendError

logger = logging.getLogger("cachier_like")

REPORT_INTERVAL_S = 30.0


class FailureReporter:
    """Logs a storage failure at most once per ``interval_s`` for each (operation, error type).

    Example:
        >>> reporter = FailureReporter("demo.f")
        >>> reporter.report("store", OSError("disk full"), raise_on_error=False)
    """

    def __init__(self, name: str, interval_s: float = REPORT_INTERVAL_S) -> None:
        self.name = name
        self.interval_s = interval_s
        self._last: dict[tuple[str, type[BaseException]], float] = {}
        self._suppressed: dict[tuple[str, type[BaseException]], int] = {}
        self._lock = threading.Lock()

    def report(self, operation: str, error: BaseException, raise_on_error: bool) -> None:
        """Log (or, with ``raise_on_error``, raise) that ``operation`` failed."""
        if raise_on_error:
            raise BackendError(f"{self.name}: cache {operation} failed: {error!r}") from error
        slot = (operation, type(error))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(slot)
            if last is not None and now - last < self.interval_s:
                self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
                return
            self._last[slot] = now
            suppressed = self._suppressed.pop(slot, 0)
        more = f" ({suppressed} similar failures not logged)" if suppressed else ""
        logger.warning(
            "%s: cache %s failed, the call goes on without the cache: %r%s",
            self.name,
            operation,
            error,
            more,
        )
