"""Rate-limited warnings, so a dead backend or a damaged entry logs once, not per call."""

from __future__ import annotations

import logging
import threading
import time

from .errors import BackendError

logger = logging.getLogger(__name__)

REPORT_INTERVAL_S = 30.0


class RateLimitedLog:
    """Logs a warning at most once per ``interval_s`` for each *slot* (a kind of event).

    The next warning of a slot says how many were held back meanwhile.

    Example:
        >>> log = RateLimitedLog(logging.getLogger("demo"))
        >>> log.warn("disk", "cannot write %s", "/tmp/x")
        True
        >>> log.warn("disk", "cannot write %s", "/tmp/y")  # within the interval
        False
    """

    def __init__(self, target: logging.Logger, interval_s: float = REPORT_INTERVAL_S) -> None:
        self.target = target
        self.interval_s = interval_s
        self._last: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}
        self._lock = threading.Lock()

    def warn(self, slot: object, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``slot`` logged within the interval; True if logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(slot)
            if last is not None and now - last < self.interval_s:
                self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
                return False
            self._last[slot] = now
            suppressed = self._suppressed.pop(slot, 0)
        more = f" ({suppressed} similar warnings not logged)" if suppressed else ""
        self.target.warning(message + "%s", *args, more)
        return True


class FailureReporter:
    """Logs a storage failure at most once per ``interval_s`` for each (operation, error type).

    Example:
        >>> reporter = FailureReporter("demo.f")
        >>> reporter.report("store", OSError("disk full"), raise_on_error=False)
    """

    def __init__(self, name: str, interval_s: float = REPORT_INTERVAL_S) -> None:
        self.name = name
        self._log = RateLimitedLog(logger, interval_s)

    def report(self, operation: str, error: BaseException, raise_on_error: bool) -> None:
        """Log (or, with ``raise_on_error``, raise) that ``operation`` failed."""
        if raise_on_error:
            raise BackendError(f"{self.name}: cache {operation} failed: {error!r}") from error
        self._log.warn(
            (operation, type(error)),
            "%s: cache %s failed, the call goes on without the cache: %r",
            self.name,
            operation,
            error,
        )
