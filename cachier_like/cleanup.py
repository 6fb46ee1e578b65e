"""``cleanup_stale``: purge a function's stale entries in the background, now and then.

Each purge also removes the entries of the function's other versions (``version=``,
``track_code``) on its store: they can never be read again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .alerts import FailureReporter
from .cores import Core
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

    def maybe_purge(self, opts: Options, retired: Callable[[Core], list[Core]]) -> None:
        """Purge stale entries, and the entries of other versions (``retired(core)``: their
        cores), in a thread if ``cleanup_interval`` has passed since the last purge."""
        now = time.time()
        stale_after = opts.stale_after
        if now < self.next_at:
            return
        with self._lock:
            if now < self.next_at:
                return
            self.next_at = now + opts.cleanup_interval
        name = self._reporter.name

        def purge() -> None:
            try:
                if stale_after is not None:
                    removed = opts.core.purge_stale(stale_after, time.time())
                    logger.debug("%s: purged %d stale entries", name, removed)
                for other in retired(opts.core):
                    removed = other.clear()
                    logger.debug("%s: removed %d entries of %s", name, removed, other.namespace)
            except Exception as exc:
                self._reporter.report("cleanup", exc, raise_on_error=False)

        threading.Thread(target=purge, name="cachier_like-cleanup", daemon=True).start()
