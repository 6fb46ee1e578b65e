"""Where a MongoDB core's collection comes from: URL clients shared per process.

A ``mongetter`` is a collection, a callable returning one, or a ``mongodb://`` URL;
the clients built from URLs live here, shared by every core of the process, and are
forgotten in a forked child and by :func:`close_clients`.
"""

from __future__ import annotations

import threading
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


def _forget_clients() -> list[Any]:
    global _generation
    clients = list(_clients.values())
    _clients.clear()
    _generation += 1
    return clients


def _after_fork_in_child() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()  # another thread may have held it at the fork
    _forget_clients()


forks.reset_in_child(_after_fork_in_child)


def close_clients() -> None:
    """Close the clients this module opened from URLs; cores reconnect on next use."""
    with _clients_lock:
        clients = _forget_clients()
    for client in clients:
        client.close()


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


def _collection_from_url(
    url: str, timeout_ms: int | None, database_name: str | None, collection_name: str
) -> Any:
    options: dict[str, Any] = dict(URL_TIMEOUTS_MS)
    if timeout_ms is not None:
        options["serverSelectionTimeoutMS"] = timeout_ms
    # A timeout in the URL itself (?serverSelectionTimeoutMS=...) wins over ours.
    given = {name.lower() for name, _ in parse_qsl(urlsplit(url).query)}
    options = {k: v for k, v in options.items() if k.lower() not in given}
    slot = (url, timeout_ms)
    with _clients_lock:
        client = _clients.get(slot)
        if client is None:
            try:
                # Looked up on the module at call time, so mongomock.patch can stand in.
                client = _clients[slot] = pymongo.MongoClient(url, **options)
            except (pymongo.errors.ConfigurationError, ValueError, TypeError) as exc:
                raise ConfigurationError(f"invalid MongoDB URL {url!r}: {exc}") from exc
    if database_name:
        database = client[database_name]
    else:  # the URL's own database (mongodb://host/<db>), else ours
        database = client.get_default_database(DEFAULT_DATABASE)
    return database[collection_name]
