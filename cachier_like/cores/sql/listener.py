"""The LISTEN side of PostgreSQL wake-ups: one connection per process and database.

A :class:`Listener` is a daemon thread holding a dedicated psycopg (v3) connection in
autocommit. It ``LISTEN``\\s on a channel as the channel's first waiter registers (and
keeps listening: waiters come back), and hands each notification to the waiters of the
key it names. When the connection drops it reconnects with back-off; waiters are woken
as a channel's LISTEN takes hold or is lost, to re-read their rows (and, while it is
lost, to poll). Its :class:`Reader` runs async waiters' reads on one thread of its own.
:mod:`.notify` builds listeners and runs the waiters' loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from ...alerts import RateLimitedLog

__all__ = ["Listener", "Reader", "Waiter"]

logger = logging.getLogger(__name__)
_log = RateLimitedLog(logger)
T = TypeVar("T")

_RECONNECT_MIN_S = 0.05
_RECONNECT_MAX_S = 5.0
#: An idle listener checks its connection this often (a dead one is replaced).
_IDLE_CHECK_S = 30.0


class Waiter:
    """One registered waiter: its channel, its key, and how to wake it."""

    __slots__ = ("channel", "key", "wake")

    def __init__(self, channel: str, key: str, wake: Callable[[], None]) -> None:
        self.channel, self.key, self.wake = channel, key, wake


class Reader:
    """One thread that runs async waiters' reads; the waiters of a key share a queued read.

    Example:
        >>> import asyncio
        >>> asyncio.run(Reader().run("k", lambda: 42))
        42
    """

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._queue: deque[Hashable] = deque()
        self._pending: dict[Hashable, tuple[Callable[[], Any], list[asyncio.Future[Any]]]] = {}
        self._thread: threading.Thread | None = None

    async def run(self, token: Hashable, read: Callable[[], T]) -> T:
        """``read()`` on the reader thread (or the result of an identical queued one)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._cv:
            queued = self._pending.get(token)
            if queued is None:
                self._pending[token] = (read, [future])
                self._queue.append(token)
                self._cv.notify()
            else:
                queued[1].append(future)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="cachier_like-pg-reads", daemon=True
                )
                self._thread.start()
        return await future

    def _serve(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                read, futures = self._pending.pop(self._queue.popleft())
            try:
                outcome: tuple[Any, BaseException | None] = (read(), None)
            except Exception as exc:
                outcome = (None, exc)
            for future in futures:
                with contextlib.suppress(RuntimeError):  # the waiter's loop is closed
                    future.get_loop().call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[Any], outcome: tuple[Any, BaseException | None]) -> None:
    if not future.done():
        if outcome[1] is None:
            future.set_result(outcome[0])
        else:
            future.set_exception(outcome[1])


class Listener:
    """One process's LISTEN connection to one database, and the waiters it wakes.

    ``connect()`` opens a psycopg connection; it is called on the listener's thread
    (started by the first :meth:`add`), again after each drop.

    Example:
        >>> listener = Listener("demo", connect=lambda: None)  # connects on first use
        >>> listener.is_live("cachier_like_0123"), listener.backend_pid
        (False, None)
    """

    def __init__(self, name: str, connect: Callable[[], Any]) -> None:
        self.name = name
        self._connect = connect
        self._lock = threading.Lock()
        self._waiters: dict[str, dict[str, set[Waiter]]] = {}
        self._wanted: set[str] = set()  # channels to LISTEN on (kept: waiters come back)
        self._listening: set[str] = set()  # those LISTENed on the current connection
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: Runs async waiters' reads of their rows.
        self.reader = Reader()
        #: The server process of the current connection (None while disconnected).
        self.backend_pid: int | None = None

    def is_live(self, channel: str) -> bool:
        """Whether a store on ``channel`` now reaches this process's waiters."""
        return channel in self._listening

    def waiting(self, channel: str, key: str) -> int:
        """How many waiters wait for ``key`` on ``channel`` (for tests and diagnostics)."""
        with self._lock:
            return len(self._waiters.get(channel, {}).get(key, ()))

    # -- registration ------------------------------------------------------------------

    def add(self, channel: str, key: str, wake: Callable[[], None]) -> Waiter:
        """Call ``wake()`` (from the listener's thread) on each notification of ``key``
        on ``channel``, and as the channel's LISTEN takes hold or is lost."""
        waiter = Waiter(channel, key, wake)
        with self._lock:
            self._waiters.setdefault(channel, {}).setdefault(key, set()).add(waiter)
            new = channel not in self._wanted
            self._wanted.add(channel)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="cachier_like-pg-listen", daemon=True
                )
                self._thread.start()
        if new:
            self._poke()
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Stop waking ``waiter``."""
        with self._lock:
            keys = self._waiters.get(waiter.channel, {})
            waiters = keys.get(waiter.key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del keys[waiter.key]

    def close_pipe(self) -> None:
        """In a forked child, which never uses this listener: close its wake-up pipe."""
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already poked
            os.write(self._wake_w, b"\0")

    def _wake(self, channel: str, key: str | None = None) -> None:
        with self._lock:
            keys = self._waiters.get(channel, {})
            groups = keys.values() if key is None else [keys.get(key, set())]
            waiters = [waiter for group in groups for waiter in group]
        for waiter in waiters:
            waiter.wake()

    def _wake_channels(self, channels: Iterable[str]) -> None:
        for channel in channels:
            self._wake(channel)

    # -- the listener's thread ---------------------------------------------------------

    def _run(self) -> None:
        delay = _RECONNECT_MIN_S
        while True:
            started = time.monotonic()
            try:
                connection = self._connect()
            except Exception as exc:
                if self._stopped():
                    return
                _log.warn(
                    ("connect", self.name), "%s: LISTEN failed (%r); waiters poll", self.name, exc
                )
            else:
                try:
                    self._serve(connection)
                except Exception as exc:
                    if not self._idle():
                        _log.warn(
                            ("lost", self.name),
                            "%s: LISTEN lost (%r); reconnecting",
                            self.name,
                            exc,
                        )
                finally:
                    self._disconnected(connection)
                if self._stopped():
                    return
            if time.monotonic() - started > 10 * _RECONNECT_MAX_S:
                delay = _RECONNECT_MIN_S  # it served a while: this is a new outage
            time.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

    def _idle(self) -> bool:
        """Whether no waiter is registered (the caller holds the lock, or reads a hint)."""
        return not any(self._waiters.values())

    def _stopped(self) -> bool:
        """End the thread when nobody waits: a database that is gone for good (a test's
        server, a decommissioned one) is then not retried, nor warned about, forever.
        The next :meth:`add` starts a thread again (under the same lock: no waiter is
        left without one)."""
        with self._lock:
            if not self._idle():
                return False
            self._thread = None
            return True

    def _serve(self, connection: Any) -> None:
        self.backend_pid = connection.info.backend_pid
        with selectors.DefaultSelector() as selector:
            selector.register(connection.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                with self._lock:
                    todo = self._wanted - self._listening
                for channel in todo:
                    connection.execute(f"LISTEN {channel}")  # an identifier: channel_name()
                if todo:
                    with self._lock:
                        self._listening |= todo
                    self._wake_channels(todo)  # they re-read: no store can go unheard now
                for notify in connection.notifies(timeout=0):
                    self._wake(notify.channel, notify.payload)
                ready = selector.select(_IDLE_CHECK_S)
                if any(key.fd == self._wake_r for key, _ in ready):
                    self._drain()
                if not ready:
                    connection.execute("SELECT 1")  # a dead connection shows, and is replaced

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _disconnected(self, connection: Any) -> None:
        self.backend_pid = None
        with self._lock:
            dropped, self._listening = self._listening, set()
        self._wake_channels(dropped)  # back to polling until the next connection
        try:
            connection.close()
        except Exception:
            logger.debug("closing a lost LISTEN connection failed", exc_info=True)
