"""Keeping calculation claims alive on cores whose claims are leases (server cores).

A claim on Redis, SQL or MongoDB expires after ``lease`` seconds (10 by default) unless
renewed, so a calculator that dies stops blocking others within one lease. A live
calculator must therefore renew its claims while it computes: one daemon thread per
process renews every held lease at a third of its length, and retries a renewal that
failed (the store briefly unreachable) after a tenth of it, so a claim survives an
outage of up to about two thirds of a lease. A core with a native async client is
renewed on the calculator's event loop instead (a timer, then a task calling its
``arenew``), never by the thread.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING

from . import forks

if TYPE_CHECKING:
    from .cores.base import Core

logger = logging.getLogger(__name__)

_RENEW_FRACTION = 1 / 3
_RETRY_FRACTION = 1 / 10
#: A store that stays down fails every retry: one warning per function this often.
_WARN_EVERY_S = 30.0


class LeaseKeeper:
    """Renews held leases in the background until they are dropped.

    Example:
        >>> from cachier_like.cores.memory import MemoryCore
        >>> keeper = LeaseKeeper()
        >>> token = keeper.hold(MemoryCore("demo"), "key", 30.0)
        >>> keeper.held()
        1
        >>> keeper.drop(token); keeper.held()
        0
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        # token -> (core, key, lease seconds, next renewal due, monotonic)
        self._leases: dict[int, tuple[Core, Hashable, float, float]] = {}
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None
        # When the renewal thread next wakes by itself (inf: only when notified).
        self._wake_at = math.inf
        self._warned: dict[str, float] = {}  # namespace -> when a failed renewal was logged
        # token -> (core, key, lease seconds, the timer of its next renewal): the claims
        # of native async cores, renewed on their event loop (a timer, then a task)
        self._native: dict[int, tuple[Core, Hashable, float, asyncio.TimerHandle]] = {}
        self._renewing: set[asyncio.Task[None]] = set()

    def hold(self, core: Core, key: Hashable, lease_s: float) -> int:
        """Start renewing ``key``'s claim on ``core``; return a token for :meth:`drop`.

        A core with a native async client is renewed by a task on the running event
        loop (its client belongs to that loop); any other by the renewal thread.
        """
        if core.native_async:
            # A timer, not a task: a miss holds its lease for one round trip or two,
            # and a task started and cancelled for it costs two more loop turns.
            with self._cond:
                token = next(self._tokens)
                self._schedule(token, core, key, lease_s, lease_s * _RENEW_FRACTION)
            return token
        due = time.monotonic() + lease_s * _RENEW_FRACTION
        with self._cond:
            token = next(self._tokens)
            self._leases[token] = (core, key, lease_s, due)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="cachier_like-leases", daemon=True
                )
                self._thread.start()
            elif due < self._wake_at:
                # Wake the thread only when this lease falls due before it wakes anyway:
                # a thread switch per held lease costs a server core's miss ~0.1 ms.
                self._cond.notify()
        return token

    def drop(self, token: int) -> None:
        """Stop renewing (the caller releases the claim itself)."""
        with self._cond:
            self._leases.pop(token, None)
            native = self._native.pop(token, None)
        if native is not None:
            native[3].cancel()

    def held(self) -> int:
        """How many leases are being renewed."""
        with self._cond:
            return len(self._leases) + len(self._native)

    def _schedule(
        self, token: int, core: Core, key: Hashable, lease_s: float, delay_s: float
    ) -> None:
        """Renew a native core's lease in ``delay_s``, on the running loop."""
        timer = asyncio.get_running_loop().call_later(delay_s, self._renew_soon, token)
        self._native[token] = (core, key, lease_s, timer)

    def _renew_soon(self, token: int) -> None:
        task = asyncio.get_running_loop().create_task(self._renew_on_loop(token))
        self._renewing.add(task)  # the loop holds its tasks weakly
        task.add_done_callback(self._renewing.discard)

    async def _renew_on_loop(self, token: int) -> None:
        held = self._native.get(token)
        if held is None:
            return  # dropped meanwhile
        core, key, lease_s, _ = held
        try:
            kept = await core.arenew(key, lease_s)
        except Exception as exc:
            self._warn(core.namespace, exc)
            kept, delay_s = True, lease_s * _RETRY_FRACTION
        else:
            delay_s = lease_s * _RENEW_FRACTION
        with self._cond:
            if token not in self._native:
                return  # dropped while renewing
            if not kept:
                del self._native[token]
                self._expired(core.namespace)
                return
            self._schedule(token, core, key, lease_s, delay_s)

    def _due(self) -> list[tuple[int, Core, Hashable, float]]:
        """Wait until some lease is due (or none is held); return the due ones."""
        with self._cond:
            while True:
                if not self._leases:
                    self._wake_at = math.inf
                    self._cond.wait()
                    continue
                now = time.monotonic()
                soonest = min(due for _, _, _, due in self._leases.values())
                if soonest > now:
                    self._wake_at = soonest
                    self._cond.wait(soonest - now)
                    continue
                self._wake_at = -math.inf  # renewing: every lease is looked at afterwards
                due_now = []
                for token, (core, key, lease_s, due) in self._leases.items():
                    if due <= now:
                        due_now.append((token, core, key, lease_s))
                        self._leases[token] = (core, key, lease_s, now + lease_s * _RENEW_FRACTION)
                return due_now

    def _run(self) -> None:
        while True:
            for token, core, key, lease_s in self._due():
                try:
                    kept = core.renew(key, lease_s)
                except Exception as exc:
                    self._warn(core.namespace, exc)
                    self._retry_soon(token, lease_s)
                    continue
                if not kept:
                    self._expired(core.namespace)
                    self.drop(token)

    def _expired(self, namespace: str) -> None:
        logger.warning(
            "%s: a claim expired before it was renewed; another caller may "
            "compute the same value (raise `lease`)",
            namespace,
        )

    def _warn(self, namespace: str, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned.get(namespace, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._warned[namespace] = now
            logger.warning("%s: could not renew a claim (retrying): %r", namespace, error)

    def _retry_soon(self, token: int, lease_s: float) -> None:
        with self._cond:
            held = self._leases.get(token)
            if held is not None:
                self._leases[token] = (*held[:3], time.monotonic() + lease_s * _RETRY_FRACTION)

    def _after_fork(self) -> None:
        # The child has no renewal thread and holds none of the parent's claims.
        self._cond = threading.Condition(threading.Lock())
        self._leases = {}
        self._native = {}
        self._renewing = set()
        self._thread = None
        self._wake_at = math.inf
        self._warned = {}


KEEPER = LeaseKeeper()
forks.reset_in_child(KEEPER._after_fork)
