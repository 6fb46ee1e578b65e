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
# The AsyncMongoClients built from URLs: loop -> {(url, timeout): client}, and each
# client's closer, loop -> [(client, closer)]. A closer is an async generator started
# on the client's loop, so the loop's shutdown_asyncgens() (asyncio.run does it) runs its
# ``finally``, which closes the client and drops both entries; holding it here keeps it
# from being finalized earlier. Not WeakKeyDictionaries: a client refers to its loop, so
# an entry would keep its own key alive; loops closed without shutting their generators
# down are pruned as another loop's first client is added.
_loop_clients: dict[asyncio.AbstractEventLoop, dict[tuple[str, int | None], Any]] = {}
_closers: dict[asyncio.AbstractEventLoop, list[tuple[Any, AsyncIterator[None]]]] = {}
# close() tasks started by close_clients on the running loop (the loop keeps only weak
# references to its tasks).
_closing: set[asyncio.Task[None]] = set()
# What a forked child inherited: kept, never finalized there (the parent's sockets).
_inherited: list[object] = []


def _forget_clients() -> tuple[list[Any], list[tuple[asyncio.AbstractEventLoop, Any]]]:
    global _generation, _loop_clients
    clients = list(_clients.values())
    _clients.clear()
    on_loops = [(loop, c) for loop, held in _loop_clients.items() for c in held.values()]
    _loop_clients = {}
    _generation += 1
    return clients, on_loops


def _after_fork_in_child() -> None:
    global _clients_lock, _closers
    _clients_lock = threading.Lock()  # another thread may have held it at the fork
    _inherited.append((_forget_clients(), _closers))
    _closers = {}


forks.reset_in_child(_after_fork_in_child)


def close_clients() -> None:
    """Close the clients this module opened from URLs; cores reconnect on next use.

    An ``AsyncMongoClient`` is closed on its own event loop: at once from that loop's
    thread (a task), else scheduled there; if its loop shuts down first, the loop's
    shutdown closes it.
    """
    with _clients_lock:
        clients, on_loops = _forget_clients()
    for client in clients:
        client.close()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for loop, client in on_loops:
        if loop is running:
            task = loop.create_task(client.close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)
        elif not loop.is_closed():
            asyncio.run_coroutine_threadsafe(client.close(), loop)


async def _close_with_loop(client: Any, loop: asyncio.AbstractEventLoop) -> AsyncIterator[None]:
    """Suspended on the client's loop until the loop shuts its async generators down."""
    try:
        yield
    finally:
        # Read at this time: close_clients may have rebound them.
        held = _loop_clients.get(loop, {})
        for slot in [slot for slot, other in held.items() if other is client]:
            del held[slot]
        closers = _closers.get(loop, [])
        closers[:] = [(other, c) for other, c in closers if other is not client]
        if not held:
            _loop_clients.pop(loop, None)
        if not closers:
            _closers.pop(loop, None)
        await client.close()  # again, after close_clients: a no-op


def async_clients_available() -> bool:
    """Whether this pymongo has ``AsyncMongoClient`` (4.10 and later; stable from 4.13)."""
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
    if loop not in _closers:
        for registry in (_loop_clients, _closers):
            for closed in [other for other in registry if other.is_closed()]:
                del registry[closed]
    held = _loop_clients.setdefault(loop, {})  # no await until stored: one client a loop
    client = held.get(slot)
    if client is None:
        # Looked up on the module at call time, so a test can stand in for it.
        client = held[slot] = _new_client(pymongo.AsyncMongoClient, url, timeout_ms)
        closer = _close_with_loop(client, loop)
        _closers.setdefault(loop, []).append((client, closer))
        await anext(closer)  # runs to its yield at once: registered with the loop
    return _collection_of(client, database_name, collection_name)


def _collection_of(client: Any, database_name: str | None, collection_name: str) -> Any:
    if database_name:
        database = client[database_name]
    else:  # the URL's own database (mongodb://host/<db>), else ours
        database = client.get_default_database(DEFAULT_DATABASE)
    return database[collection_name]
