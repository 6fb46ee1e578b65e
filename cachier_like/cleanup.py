"""``cleanup_stale``: purge a function's stale entries in the background, now and then."""

from __future__ import annotations

import logging
import threading
import time

from .alerts import FailureReporter
from .options import Options

logger = logging.getLogger(__name__)


class CleanupScheduler:
    """Starts at most one purge per ``cleanup_interval`` for one function.

    Example:
        >>> scheduler = CleanupScheduler(FailureReporter("demo.f"))
        >>> scheduler.next_at
        0.0
    """

    def __init__(self, reporter: FailureReporter) -> None:
        self._reporter = reporter
        self._lock = threading.Lock()
        #: When the next purge may start (``time.time()``).
        self.next_at = 0.0

    def maybe_purge(self, opts: Options) -> None:
        """Purge stale entries in a thread if ``cleanup_interval`` has passed since the last."""
        now = time.time()
        stale_after = opts.stale_after
        if stale_after is None or now < self.next_at:
            return
        with self._lock:
            if now < self.next_at:
                return
            self.next_at = now + opts.cleanup_interval
        name = self._reporter.name

        def purge() -> None:
            try:
                removed = opts.core.purge_stale(stale_after, time.time())
                logger.debug("%s: purged %d stale entries", name, removed)
            except Exception as exc:
                self._reporter.report("cleanup", exc, raise_on_error=False)

        threading.Thread(target=purge, name="cachier_like-cleanup", daemon=True).start()
