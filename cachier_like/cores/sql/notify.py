"""PostgreSQL LISTEN/NOTIFY wake-ups for the SQL core's waiters.

The statements that end a claim (the holder's store, a release, ``clear_claims``) also
send ``pg_notify(channel, key)`` (:mod:`.statements`), in the same statement, so the
wake-up costs no round trip. The channel is one per (table, namespace); the payload is
the key's storage name, so a waiter wakes only for its own key.

Per process and database there is one :class:`~.listener.Listener`: a daemon thread
holding a dedicated psycopg (v3) connection, which ``LISTEN``\\s on a channel as its
first waiter registers and wakes the waiters of the key each notification names (a
``threading.Event`` for a sync waiter, set from its thread; an ``asyncio.Event`` for an
async one, set through ``loop.call_soon_threadsafe``). An async waiter's reads run on
the listener's one reader thread, shared by the waiters of a key, never in
``asyncio.to_thread``.

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
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ... import forks
from ...entry import Entry
from ...hashing import stable_hash
from ..base import Backoff
from .listener import Listener

__all__ = ["RECHECK_S", "Listener", "Watch", "channel_name", "listener_for", "wait", "wait_async"]

#: A notified waiter still re-reads its row this often (a lost notification's cost).
RECHECK_S = 1.0
#: Polling, while the channel is not listened to: the SQL core's back-off.
POLL_MIN_S = 0.002
POLL_MAX_S = 0.1
_LEASE_MARGIN_S = 0.002
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


def wait(
    listener: Listener,
    channel: str,
    key: str,
    watch: Callable[[str], Watch],
    timeout_s: float | None,
) -> Entry | None:
    """Block until ``watch(key)`` says the claim ended, or ``timeout_s`` passed.

    ``watch(key)`` reads the row. Example (on PostgreSQL)::

        wait(listener_for(engine), core._channel, "k", core._watch, 30.0)
    """
    backoff = Backoff(timeout_s, POLL_MIN_S, POLL_MAX_S)
    event = threading.Event()
    waiter = listener.add(channel, key, event.set)
    try:
        while True:
            event.clear()  # before reading: a notification from now on is kept
            live = listener.is_live(channel)
            claimed, entry, lease_left = watch(key)
            delay = _next_sleep(backoff, live, lease_left) if claimed else None
            if delay is None:
                return entry
            event.wait(delay)
    finally:
        listener.remove(waiter)


async def wait_async(
    listener: Listener,
    channel: str,
    key: str,
    watch: Callable[[str], Watch],
    timeout_s: float | None,
) -> Entry | None:
    """:func:`wait` on an event loop: reads on the listener's reader thread, none while asleep."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(timeout_s, POLL_MIN_S, POLL_MAX_S)
    event = asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(event.set)

    waiter = listener.add(channel, key, wake)
    try:
        while True:
            event.clear()
            live = listener.is_live(channel)
            claimed, entry, lease_left = await listener.reader.run((watch, key), lambda: watch(key))
            delay = _next_sleep(backoff, live, lease_left) if claimed else None
            if delay is None:
                return entry
            timer = loop.call_later(delay, event.set)  # the sleep, cut short by a wake
            try:
                await event.wait()
            finally:
                timer.cancel()
    finally:
        listener.remove(waiter)


_lock = threading.Lock()
#: database (URL without driver) -> this process's listener
_LISTENERS: dict[str, Listener] = {}
#: engine (its sync side) -> its database's listener, or None (no notifications there)
_BY_ENGINE: weakref.WeakKeyDictionary[sa.Engine, Listener | None] = weakref.WeakKeyDictionary()


def listener_for(engine: sa.Engine) -> Listener | None:
    """The listener of ``engine``'s database (the sync side of an AsyncEngine), or None:
    not PostgreSQL, or psycopg 3.2+ is not installed."""
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
    if _version(psycopg.__version__) < (3, 2):  # notifies(timeout=...) came with 3.2
        return None
    if dialect.driver == "psycopg" and not dialect.is_async:  # not psycopg's async mode

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


def _version(text: str) -> tuple[int, ...]:
    """``(major, minor)`` of a version string.

    Example:
        >>> _version("3.2.10"), _version("3.10.0.dev1")
        ((3, 2), (3, 10))
    """
    return tuple(
        int("".join(ch for ch in part if ch.isdigit()) or 0) for part in text.split(".")[:2]
    )


def _after_fork_in_child() -> None:
    # The parent's listeners (threads gone, connections the parent's) are dropped;
    # psycopg does not close a connection another process opened.
    global _lock, _LISTENERS
    _lock = threading.Lock()
    for listener in _LISTENERS.values():
        listener.close_pipe()
    _LISTENERS = {}
    _BY_ENGINE.clear()


forks.reset_in_child(_after_fork_in_child)
