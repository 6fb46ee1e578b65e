"""PostgreSQL LISTEN/NOTIFY wake-ups for the SQL core's waiters.

The statements that end a claim (the holder's store, a release, ``clear_claims``) also
send ``pg_notify(channel, key)`` (:mod:`.statements`), in the same statement, so the
wake-up costs no round trip. The channel is one per (table, namespace); the payload is
the key's storage name, so a waiter wakes only for its own key.

Per process and database there is one :class:`Listener`: a daemon thread holding a
dedicated psycopg (v3) connection in autocommit, which ``LISTEN``\\s on a channel as its
first waiter registers and hands each notification to the waiters of its key (a
``threading.Event`` for a sync waiter; ``loop.call_soon_threadsafe`` on an
``asyncio.Event`` for an async one). An async waiter's reads run on one reader thread
per listener, shared by the waiters of a key, never in ``asyncio.to_thread``.

A waiter registers, then reads the row: a store between its last read and the
``LISTEN`` is seen by that read, one after it by the notification. It still re-reads
at least every :data:`RECHECK_S` (a lost notification costs that much, never a hang)
and as the claim's lease runs out (a killed calculator is noticed as its lease lapses).
While the listener's connection is down (it reconnects with back-off) waiters poll as
on other databases. No psycopg (asyncpg alone), or another database: polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import selectors
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

import sqlalchemy as sa

from ... import forks
from ...alerts import RateLimitedLog
from ...entry import Entry
from ...hashing import stable_hash
from ..base import Backoff

__all__ = ["RECHECK_S", "Listener", "Watch", "channel_name", "listener_for"]

logger = logging.getLogger(__name__)
_log = RateLimitedLog(logger)
T = TypeVar("T")

#: A notified waiter still re-reads its row this often (a lost notification's cost).
RECHECK_S = 1.0
#: Polling, while the channel is not listened to: the SQL core's back-off.
POLL_MIN_S = 0.002
POLL_MAX_S = 0.1
_LEASE_MARGIN_S = 0.002
_RECONNECT_MIN_S = 0.05
_RECONNECT_MAX_S = 5.0
#: An idle listener checks its connection this often (a dead one is replaced).
_IDLE_CHECK_S = 30.0
_CHANNEL_PREFIX = "cachier_like_"

#: What a waiter reads of its row: (claimed, entry, seconds of lease left or None).
Watch = tuple[bool, Entry | None, float | None]


def channel_name(table: sa.Table, namespace: str) -> str:
    """The NOTIFY channel of one namespace in one table: an identifier, 45 bytes.

    Example:
        >>> channel_name(sa.Table("entries", sa.MetaData()), "pkg.f")[:13]
        'cachier_like_'
    """
    return _CHANNEL_PREFIX + stable_hash(f"{table.fullname}:{namespace}")


class _Waiter:
    __slots__ = ("channel", "key", "wake")

    def __init__(self, channel: str, key: str, wake: Callable[[], None]) -> None:
        self.channel, self.key, self.wake = channel, key, wake


class _Reads:
    """One thread that runs async waiters' reads; waiters of a key share a queued read."""

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


def _next_sleep(backoff: Backoff, live: bool, lease_left: float | None) -> float | None:
    """How long a waiter sleeps before its next read; None once its deadline passed."""
    if live:
        delay: float | None = RECHECK_S
        if backoff.deadline is not None:
            remaining = backoff.deadline - time.monotonic()
            delay = None if remaining <= 0 else min(RECHECK_S, remaining)
    else:
        delay = backoff.next_delay()
    if delay is not None and lease_left is not None:
        delay = min(delay, max(lease_left, 0.0) + _LEASE_MARGIN_S)
    return delay


class Listener:
    """One process's LISTEN connection to one database, and the waiters it wakes.

    ``connect()`` opens a psycopg connection; it is called on the listener's thread,
    again after each drop.
    """

    def __init__(self, name: str, connect: Callable[[], Any]) -> None:
        self.name = name
        self._connect = connect
        self._lock = threading.Lock()
        self._waiters: dict[str, dict[str, set[_Waiter]]] = {}
        self._wanted: set[str] = set()  # channels to LISTEN on (kept: waiters come back)
        self._listening: set[str] = set()  # those LISTENed on the current connection
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._reads = _Reads()
        #: The server process of the current connection (None while disconnected).
        self.backend_pid: int | None = None

    def is_live(self, channel: str) -> bool:
        """Whether a store on ``channel`` now reaches this process's waiters."""
        return channel in self._listening

    def waiting(self, channel: str, key: str) -> int:
        """How many waiters wait for ``key`` on ``channel`` (for tests and diagnostics)."""
        with self._lock:
            return len(self._waiters.get(channel, {}).get(key, ()))

    def wait(
        self, channel: str, key: str, watch: Callable[[str], Watch], timeout_s: float | None
    ) -> Entry | None:
        """Block until ``watch(key)`` says the claim ended, or ``timeout_s`` passed.

        Example (on PostgreSQL; ``core._watch`` reads the row)::

            listener.wait(core_channel, "k", core._watch, 30.0)
        """
        backoff = Backoff(timeout_s, POLL_MIN_S, POLL_MAX_S)
        event = threading.Event()
        waiter = self._add(channel, key, event.set)
        try:
            while True:
                event.clear()  # before reading: a notification from now on is kept
                live = self.is_live(channel)
                claimed, entry, lease_left = watch(key)
                delay = _next_sleep(backoff, live, lease_left) if claimed else None
                if delay is None:
                    return entry
                event.wait(delay)
        finally:
            self._remove(waiter)

    async def wait_async(
        self, channel: str, key: str, watch: Callable[[str], Watch], timeout_s: float | None
    ) -> Entry | None:
        """:meth:`wait` on an event loop: reads on the reader thread, no thread while asleep."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(timeout_s, POLL_MIN_S, POLL_MAX_S)
        event = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(event.set)

        waiter = self._add(channel, key, wake)
        try:
            while True:
                event.clear()
                live = self.is_live(channel)
                claimed, entry, lease_left = await self._reads.run((watch, key), lambda: watch(key))
                delay = _next_sleep(backoff, live, lease_left) if claimed else None
                if delay is None:
                    return entry
                timer = loop.call_later(delay, event.set)  # the sleep, cut short by a wake
                try:
                    await event.wait()
                finally:
                    timer.cancel()
        finally:
            self._remove(waiter)

    # -- registration ------------------------------------------------------------------

    def _add(self, channel: str, key: str, wake: Callable[[], None]) -> _Waiter:
        waiter = _Waiter(channel, key, wake)
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

    def _remove(self, waiter: _Waiter) -> None:
        with self._lock:
            keys = self._waiters.get(waiter.channel, {})
            waiters = keys.get(waiter.key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del keys[waiter.key]

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
                _log.warn(
                    ("connect", self.name), "%s: LISTEN failed (%r); waiters poll", self.name, exc
                )
            else:
                try:
                    self._serve(connection)
                except Exception as exc:
                    _log.warn(
                        ("lost", self.name), "%s: LISTEN lost (%r); reconnecting", self.name, exc
                    )
                finally:
                    self._disconnected(connection)
            if time.monotonic() - started > 10 * _RECONNECT_MAX_S:
                delay = _RECONNECT_MIN_S  # it served a while: this is a new outage
            time.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)

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


_lock = threading.Lock()
#: database (URL without driver) -> this process's listener
_LISTENERS: dict[str, Listener] = {}
#: engine (its sync side) -> its database's listener, or None (no notifications there)
_BY_ENGINE: weakref.WeakKeyDictionary[sa.Engine, Listener | None] = weakref.WeakKeyDictionary()


def listener_for(engine: sa.Engine) -> Listener | None:
    """The listener of ``engine``'s database (the sync side of an AsyncEngine), or None:
    not PostgreSQL, or psycopg (v3) is not installed."""
    try:
        return _BY_ENGINE[engine]
    except KeyError:
        pass
    connect = _opener(engine)
    listener = None
    if connect is not None:
        url = engine.url.set(drivername="postgresql")
        with _lock:
            key = url.render_as_string(hide_password=False)
            listener = _LISTENERS.get(key)
            if listener is None:
                shown = url.render_as_string(hide_password=True)
                listener = _LISTENERS[key] = Listener(shown, connect)
    _BY_ENGINE[engine] = listener
    return listener


def _opener(engine: sa.Engine) -> Callable[[], Any] | None:
    """How the listener connects: from the pool of a psycopg engine (its connect
    arguments and events apply), else with the URL's parameters."""
    dialect = engine.dialect
    if dialect.name != "postgresql" or importlib.util.find_spec("psycopg") is None:
        return None
    psycopg = importlib.import_module("psycopg")  # only where it is installed
    if dialect.driver == "psycopg":

        def detached() -> Any:
            fairy = engine.raw_connection()
            connection = fairy.dbapi_connection
            fairy.detach()  # ours now; its pool slot is freed
            assert connection is not None
            connection.autocommit = True
            return connection

        return detached
    url = engine.url
    params: dict[str, Any] = {"connect_timeout": 2}
    if dialect.driver != "asyncpg":  # asyncpg's query parameters are not libpq's
        params.update(url.query)
    params.update(url.translate_connect_args(username="user", database="dbname"))
    return lambda: psycopg.connect(autocommit=True, **params)


def _after_fork_in_child() -> None:
    # The parent's listeners (threads gone, connections the parent's) are dropped;
    # psycopg does not close a connection another process opened.
    global _lock, _LISTENERS
    _lock = threading.Lock()
    for listener in _LISTENERS.values():
        os.close(listener._wake_r)
        os.close(listener._wake_w)
    _LISTENERS = {}
    _BY_ENGINE.clear()


forks.reset_in_child(_after_fork_in_child)
