"""A circuit breaker for the server cores: a store that stopped answering is skipped.

When an operation on a store times out or cannot connect, the core's :class:`Breaker`
opens: every call then fails at once (and so computes without the cache) instead of
waiting for the same timeout. No caller is let through to test the store; one
background thread per breaker probes it instead (``probe()``, e.g. a ``PING``), at
most one probe at a time, and closes the breaker as soon as a probe answers. So a hung
store costs a process the calls that were in flight when it stopped answering (one
operation timeout each), not a timeout every few seconds, and caching resumes within
:data:`PROBE_MAX_S` (plus one round trip) of the store answering again.

A store that answers the probe but keeps failing real operations (a flapping link)
trips the breaker again soon after it closed: each such trip holds it open twice as
long as the one before (from :data:`HOLD_MIN_S` up to :data:`HOLD_MAX_S`), so a
flapping store costs a bounded share of the calls' time too.

The hot path tests one attribute, :attr:`Breaker.down`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

from .. import forks
from ..errors import BackendError
from .base import Backoff

logger = logging.getLogger(__name__)

#: First probe after a trip; a failing probe waits twice as long before the next, up to
#: PROBE_MAX_S (which bounds how late caching resumes after the store is back).
PROBE_MIN_S = 0.25
PROBE_MAX_S = 1.0
#: Least time the breaker stays open after a trip: doubled by each trip that follows
#: the previous close within QUIET_S, up to HOLD_MAX_S.
HOLD_MIN_S = 0.25
HOLD_MAX_S = 8.0
QUIET_S = 10.0


class Breaker:
    """Mixed into what runs a core's operations (a Redis link, an SQL runner, ...).

    Subclasses call :meth:`_init_breaker` and implement :meth:`probe`; their operations
    raise :meth:`refusal` while :attr:`down` is true, and call :meth:`trip` when the store
    fails to answer.

    Example:
        >>> class Store(Breaker):
        ...     def __init__(self) -> None:
        ...         self._init_breaker("demo store")
        ...     def probe(self) -> None:
        ...         pass  # the store answers
        >>> store = Store()
        >>> store.trip(TimeoutError("no reply within 0.5 s"))
        >>> store.down
        True
        >>> print(store.refusal())
        demo store not called: it failed TimeoutError: no reply within 0.5 s (probing it)
    """

    down: bool

    def _init_breaker(self, name: str) -> None:
        self.down = False  # the one attribute the hot path tests
        self._breaker_name = name
        self._reason = ""
        self._breaker_lock = threading.Lock()
        self._prober: threading.Thread | None = None
        self._trips = 0  # trips in a row, each within QUIET_S of the previous close
        self._closed_at = -QUIET_S
        forks.reset_in_child(self._reset_breaker)

    def probe(self) -> None:
        """Run one cheap operation on the store, bypassing the breaker; raise if it fails."""
        raise NotImplementedError

    def refusal(self) -> BackendError:
        """The error a call gets while the breaker is open."""
        name, reason = self._breaker_name, self._reason
        return BackendError(f"{name} not called: it failed {reason} (probing it)")

    def trip(self, error: BaseException) -> None:
        """Open the breaker after ``error`` (a timeout, a refused connection)."""
        with self._breaker_lock:
            self._reason = f"{type(error).__name__}: {error}"
            if self.down:
                return
            self.down = True
            now = time.monotonic()
            self._trips = self._trips + 1 if now - self._closed_at < QUIET_S else 1
            hold = min(HOLD_MIN_S * 2 ** (self._trips - 1), HOLD_MAX_S)
            self._prober = threading.Thread(
                target=_probe_until_up,
                args=(weakref.ref(self), now + hold),
                name="cachier_like-probe",
                daemon=True,
            )
            self._prober.start()
        logger.debug("%s: breaker open after %s", self._breaker_name, self._reason)

    def _close(self) -> None:
        with self._breaker_lock:
            self.down = False
            self._prober = None
            self._closed_at = time.monotonic()
        logger.debug("%s: answering again; breaker closed", self._breaker_name)

    def _reset_breaker(self) -> None:
        # In a forked child: no prober thread, and the child tries the store itself.
        self.down = False
        self._breaker_lock = threading.Lock()
        self._prober = None


def _probe_until_up(ref: weakref.ref[Breaker], hold_until: float) -> None:
    """The prober thread: probe with back-off until the store answers (or is dropped)."""
    pauses = Backoff(None, PROBE_MIN_S, PROBE_MAX_S)
    next_at = max(hold_until, time.monotonic() + (pauses.next_delay() or PROBE_MIN_S))
    while True:
        time.sleep(max(0.0, next_at - time.monotonic()))
        breaker = ref()
        if breaker is None or breaker._prober is not threading.current_thread():
            return  # the store's runner is gone, or a fork reset it
        try:
            breaker.probe()
        except Exception as exc:
            breaker._reason = f"{type(exc).__name__}: {exc}"
            next_at = time.monotonic() + (pauses.next_delay() or PROBE_MAX_S)
            del breaker
            continue
        breaker._close()
        return
