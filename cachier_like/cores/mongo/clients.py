"""Where a MongoDB core's collection comes from: URL clients shared per process or loop.

A ``mongetter`` is a collection (pymongo's ``Collection`` or ``AsyncCollection``), a
callable returning one, or a ``mongodb://`` URL. The clients built from URLs live here:
a ``MongoClient`` per URL shared by every core of the process, and, for ``async def``
functions, an ``AsyncMongoClient`` per URL and event loop (pymongo binds an async client
to one loop), closed as that loop shuts down. Both are forgotten in a forked child and
by :func:`close_clients`.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pymongo
import pymongo.errors

from ... import forks
from ...errors import ConfigurationError

URL_ENV = "CACHIER_LIKE_MONGO_URL"
"""Environment variable read for the server URL when no ``mongetter`` is given."""
DEFAULT_DATABASE = "cachier_like"
DEFAULT_COLLECTION = "entries"
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 2000
#: Socket timeouts of clients built from URLs (a URL option of the same name wins): an
#: operation on a server that stops answering fails within a second.
URL_TIMEOUTS_MS = {"socketTimeoutMS": 1000, "connectTimeoutMS": 1000}

# Clients built from URLs, shared by every core of this process. Cores re-resolve their
# collection when the generation changes: in a forked child (which must not use its
# parent's sockets) and after close_clients (a closed pymongo client cannot be reused).
# Other modules read ``_generation`` and ``_clients_lock`` on this module at call time:
# both are rebound (after a fork, after close_clients).
_clients: dict[tuple[str, int | None], Any] = {}
_clients_lock = threading.Lock()
_generation = 0
# loop -> {(url, timeout): (AsyncMongoClient, its closer)}; a loop that is dropped takes
# its clients along. The closer is an async generator started on the loop, so the
# loop's shutdown_asyncgens() (asyncio.run does it) runs its ``finally``, which closes
# the client; holding it here keeps it from being finalized any earlier.
_loop_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int | None], tuple[Any, AsyncIterator[None]]]
] = weakref.WeakKeyDictionary()
# What a forked child inherited: kept, never finalized there (the parent's sockets).
_inherited: list[object] = []


def _forget_clients() -> tuple[list[Any], list[tuple[asyncio.AbstractEventLoop, Any]]]:
    global _generation, _loop_clients
    clients = list(_clients.values())
    _clients.clear()
    closers = [(loop, c) for loop, held in _loop_clients.items() for _, c in held.values()]
    _loop_clients = weakref.WeakKeyDictionary()
    _generation += 1
    return clients, closers


def _after_fork_in_child() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()  # another thread may have held it at the fork
    _inherited.append(_forget_clients())


forks.reset_in_child(_after_fork_in_child)


def close_clients() -> None:
    """Close the clients this module opened from URLs; cores reconnect on next use.

    An ``AsyncMongoClient`` is closed on its own event loop, scheduled from here (it
    cannot be closed from another loop or thread).
    """
    with _clients_lock:
        clients, closers = _forget_clients()
    for client in clients:
        client.close()
    for loop, closer in closers:
        if not loop.is_closed():
            asyncio.run_coroutine_threadsafe(_finish(closer), loop)


async def _finish(closer: Any) -> None:
    await closer.aclose()


async def _close_with_loop(client: Any) -> AsyncIterator[None]:
    """Suspended on the client's loop until the loop shuts its async generators down."""
    try:
        yield
    finally:
        await client.close()


def async_clients_available() -> bool:
    """Whether this pymongo has ``AsyncMongoClient`` (4.10 and later)."""
    return hasattr(pymongo, "AsyncMongoClient")


def is_async_collection(obj: object) -> bool:
    """Whether ``obj`` is an async collection (pymongo's ``AsyncCollection``, or one like it).

    Example:
        >>> import mongomock
        >>> is_async_collection(mongomock.MongoClient().db.entries)
        False
    """
    return inspect.iscoroutinefunction(getattr(type(obj), "find_one", None))


def _is_collection(obj: object) -> bool:
    # Checked on the type: pymongo and mongomock collections answer any attribute on
    # the instance (as a sub-collection), so instance look-ups prove nothing.
    return all(
        callable(getattr(type(obj), name, None))
        for name in ("find_one", "update_one", "create_index")
    )


def _check_url(url: str, where: str) -> str:
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigurationError(f"{where} must be a mongodb:// or mongodb+srv:// URL: {url!r}")
    return url


def _checked_collection(value: object) -> Any:
    if not hasattr(value, "update_one"):
        raise ConfigurationError(f"mongetter returned {value!r}, not a collection")
    return value


def _url_options(url: str, timeout_ms: int | None) -> dict[str, Any]:
    """The timeouts a client built from ``url`` gets (the URL's own values win)."""
    options: dict[str, Any] = dict(URL_TIMEOUTS_MS)
    if timeout_ms is not None:
        options["serverSelectionTimeoutMS"] = timeout_ms
    given = {name.lower() for name, _ in parse_qsl(urlsplit(url).query)}
    return {k: v for k, v in options.items() if k.lower() not in given}


def _new_client(client_class: Any, url: str, timeout_ms: int | None) -> Any:
    try:
        return client_class(url, **_url_options(url, timeout_ms))
    except (pymongo.errors.ConfigurationError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid MongoDB URL {url!r}: {exc}") from exc


def _collection_from_url(
    url: str, timeout_ms: int | None, database_name: str | None, collection_name: str
) -> Any:
    slot = (url, timeout_ms)
    with _clients_lock:
        client = _clients.get(slot)
        if client is None:
            # Looked up on the module at call time, so mongomock.patch can stand in.
            client = _clients[slot] = _new_client(pymongo.MongoClient, url, timeout_ms)
    return _collection_of(client, database_name, collection_name)


async def _async_collection_from_url(
    url: str, timeout_ms: int | None, database_name: str | None, collection_name: str
) -> Any:
    """The collection on this event loop's ``AsyncMongoClient`` for ``url``."""
    loop = asyncio.get_running_loop()
    slot = (url, timeout_ms)
    held = _loop_clients.setdefault(loop, {})  # no await until stored: one client a loop
    if slot in held:
        client = held[slot][0]
    else:
        # Looked up on the module at call time, so a test can stand in for it.
        client = _new_client(pymongo.AsyncMongoClient, url, timeout_ms)
        closer = _close_with_loop(client)
        held[slot] = (client, closer)
        await anext(closer)  # runs to its yield at once: registered with the loop
    return _collection_of(client, database_name, collection_name)


def _collection_of(client: Any, database_name: str | None, collection_name: str) -> Any:
    if database_name:
        database = client[database_name]
    else:  # the URL's own database (mongodb://host/<db>), else ours
        database = client.get_default_database(DEFAULT_DATABASE)
    return database[collection_name]
