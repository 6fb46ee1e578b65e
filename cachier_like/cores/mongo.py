"""MongoDB core: one document per (namespace, key), claims as leases in the same document.

A document of function ``pkg.mod.f``::

    {"ns": "pkg.mod.f", "key": "<key>",
     "value": Binary(<payload>), "ts": 1700000000.123456, "time": ISODate(...),
     "size": 1234, "expires_at": ISODate(...),            # only with server_ttl
     "claim_token": "<hex>", "claim_until": 1700000060.1}  # only while claimed

A unique index on ``(ns, key)`` makes the claim a conditional upsert that exactly one
caller wins; a document with claim fields but no ``value`` is a calculation in progress,
never an entry. ``ts`` (float seconds) is the entry's exact timestamp; ``time`` is the
same moment as a BSON date (millisecond precision) for people and queries.

The core reaches its collection through the breaker of the collection's client
(:mod:`._breaker`): after a connection failure or a timeout, operations fail at once
while a background thread pings the server, and resume when it answers.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Hashable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pymongo
import pymongo.errors
from bson.binary import Binary
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from .. import forks
from ..config import as_seconds
from ..entry import Entry
from ..errors import BackendError, ConfigurationError
from ..serialize import DEFAULT_SERIALIZER, Serializer
from ._breaker import Breaker
from .base import UNREADABLE, Core, CoreStats, EntryInfo
from .shared import StoreSource, StoreSpec, storage_name

logger = logging.getLogger(__name__)

URL_ENV = "CACHIER_LIKE_MONGO_URL"
"""Environment variable read for the server URL when no ``mongetter`` is given."""
DEFAULT_DATABASE = "cachier_like"
DEFAULT_COLLECTION = "entries"
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 2000
#: Socket timeouts of clients built from URLs (a URL option of the same name wins): an
#: operation on a server that stops answering fails within a second.
URL_TIMEOUTS_MS = {"socketTimeoutMS": 1000, "connectTimeoutMS": 1000}
#: The time budget of operations over many documents (clear, purge, stats, listings,
#: index creation), which the socket timeout above would cut on a large collection;
#: each first pings the server within the short timeouts.
MAINTENANCE_S = 600.0
INDEX_NAME = "cachier_like_ns_key"
TTL_INDEX_NAME = "cachier_like_expires_at"
# Unset when an entry is removed from a claimed document (``expires_at`` stays: the
# claim's renewals keep it ahead of the TTL monitor).
_ENTRY_FIELDS = {"value": "", "ts": "", "time": "", "size": ""}
_CLAIM_FIELDS = {"claim_token": "", "claim_until": ""}
_WAIT_MIN_S = 0.002
_WAIT_MAX_S = 0.1
_UPSERT_ATTEMPTS = 5

# Clients built from URLs, shared by every core of this process. Cores re-resolve their
# collection when the generation changes: in a forked child (which must not use its
# parent's sockets) and after close_clients (a closed pymongo client cannot be reused).
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


class _ClientBreaker(Breaker):
    """The breaker of one client (shared by every core on it); the probe is a ``ping``."""

    def __init__(self, client: Any) -> None:
        self.client = weakref.ref(client)
        self._init_breaker("MongoDB")

    def probe(self) -> None:
        client = self.client()
        if client is not None:  # else no core uses it any more
            client.admin.command("ping")

    def run(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise self.refusal()
        try:
            return method(*args, **kwargs)
        except ConnectionFailure as exc:  # unreachable, timed out, no server selected
            self.trip(exc)
            raise BackendError(f"MongoDB: {type(exc).__name__}: {exc}") from exc

    def run_long(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        # A ping with the client's short timeouts first: the long budget below would
        # also be how long pymongo waits to select a server that is down.
        self.run(self.probe)
        with pymongo.timeout(MAINTENANCE_S):
            return self.run(method, *args, **kwargs)


_breakers: dict[int, _ClientBreaker] = {}


def _breaker_for(coll: Any) -> _ClientBreaker:
    client = coll.database.client
    with _clients_lock:
        breaker = _breakers.get(id(client))
        if breaker is None or breaker.client() is not client:
            for key in [k for k, b in _breakers.items() if b.client() is None]:
                del _breakers[key]
            breaker = _breakers[id(client)] = _ClientBreaker(client)
        return breaker


#: Operations on one document run with the client's own timeouts; operations over many
#: documents get a longer budget (:data:`MAINTENANCE_S`).
_ONE_DOCUMENT = ("find_one", "update_one", "delete_one")
_MANY_DOCUMENTS: tuple[str, ...] = ("create_index", "update_many", "delete_many", "find")
_MANY_DOCUMENTS += ("distinct", "count_documents")


class _Guarded:
    """A collection whose operations (those named above, and ``aggregate``, which
    returns a list) go through its client's breaker."""

    def __init__(self, coll: Any) -> None:
        breaker = _breaker_for(coll)
        for name in _ONE_DOCUMENT:
            setattr(self, name, functools.partial(breaker.run, getattr(coll, name)))
        for name in _MANY_DOCUMENTS:
            setattr(self, name, functools.partial(breaker.run_long, getattr(coll, name)))
        self.aggregate = functools.partial(breaker.run_long, _listing(coll.aggregate))

    def __getattr__(self, name: str) -> Any:  # for type checkers: the operations set above
        raise AttributeError(name)


def _listing(method: Any) -> Any:
    return lambda *args, **kwargs: list(method(*args, **kwargs))


def _date(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _check_url(url: str, where: str) -> str:
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigurationError(f"{where} must be a mongodb:// or mongodb+srv:// URL: {url!r}")
    return url


def _checked_collection(value: object) -> Any:
    if not hasattr(value, "update_one"):
        raise ConfigurationError(f"mongetter returned {value!r}, not a collection")
    return value


class MongoCore(Core):
    """Entries and claims of one function in a MongoDB collection.

    ``mongetter`` is a collection, a zero-argument callable returning one, or a
    ``mongodb://`` URL (``database`` and ``collection`` then name where entries go);
    with none, the URL comes from ``$CACHIER_LIKE_MONGO_URL``. Nothing touches the
    server until the first operation.

    Example:
        >>> import mongomock
        >>> core = MongoCore("demo.f", mongetter=mongomock.MongoClient().db.entries)
        >>> core.set("k", Entry([1, 2], 0.0))
        True
        >>> core.get("k").value
        [1, 2]
    """

    leases = True

    def __init__(
        self,
        namespace: str,
        *,
        mongetter: Any = None,
        server_ttl: Any = None,
        database: str | None = None,
        collection: str | None = None,
        server_selection_timeout_ms: int | None = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
        serializer: Serializer = DEFAULT_SERIALIZER,
    ) -> None:
        super().__init__(namespace, serializer=serializer)
        spec = StoreSpec(
            backend="mongo",
            option="mongetter",
            env=URL_ENV,
            kinds="a pymongo Collection, a callable returning one, or a mongodb:// URL",
            example="mongodb://127.0.0.1:27017/cache",
            is_object=_is_collection,
            parse=_check_url,
            connect=self._from_url,
            check=_checked_collection,
        )
        self._source = StoreSource(mongetter, spec)
        if not self._source.by_url and (database or collection):
            raise ConfigurationError("database and collection apply only to a URL mongetter")
        ttl = as_seconds(server_ttl, "server_ttl")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError(f"server_ttl must be positive, not {server_ttl!r}")
        self._database = database
        self._collection_name = collection or DEFAULT_COLLECTION
        self._timeout_ms = server_selection_timeout_ms
        self._ttl = ttl
        self._coll: Any = None
        self._coll_generation = -1
        # key -> token of the claim this process holds on it.
        self._tokens: dict[str, str] = {}

    # -- the collection ------------------------------------------------------------

    def _collection(self) -> Any:
        # No lock: threads racing to resolve build the same thing, and a lock held by
        # another thread at a fork would deadlock the child.
        coll = self._coll
        if coll is None or self._coll_generation != _generation:
            generation = _generation
            coll = self._coll = self._resolve()
            self._coll_generation = generation
        return coll

    def _resolve(self) -> Any:
        coll = _Guarded(self._source.resolve())
        coll.create_index([("ns", 1), ("key", 1)], unique=True, name=INDEX_NAME)
        if self._ttl is not None:
            coll.create_index("expires_at", expireAfterSeconds=0, name=TTL_INDEX_NAME)
        return coll

    def _from_url(self, url: str) -> Any:
        options: dict[str, Any] = dict(URL_TIMEOUTS_MS)
        if self._timeout_ms is not None:
            options["serverSelectionTimeoutMS"] = self._timeout_ms
        # A timeout in the URL itself (?serverSelectionTimeoutMS=...) wins over ours.
        given = {name.lower() for name, _ in parse_qsl(urlsplit(url).query)}
        options = {k: v for k, v in options.items() if k.lower() not in given}
        slot = (url, self._timeout_ms)
        with _clients_lock:
            client = _clients.get(slot)
            if client is None:
                try:
                    # Looked up on the module at call time, so mongomock.patch can stand in.
                    client = _clients[slot] = pymongo.MongoClient(url, **options)
                except (pymongo.errors.ConfigurationError, ValueError, TypeError) as exc:
                    raise ConfigurationError(f"invalid MongoDB URL {url!r}: {exc}") from exc
        if self._database:
            database = client[self._database]
        else:  # the URL's own database (mongodb://host/<db>), else ours
            database = client.get_default_database(DEFAULT_DATABASE)
        return database[self._collection_name]

    # -- entries -------------------------------------------------------------------

    def get(self, key: Hashable) -> Entry | None:
        """Read the entry; a claim-only, expired or unreadable document is a miss."""
        doc = self._collection().find_one(
            {"ns": self.namespace, "key": storage_name(key)}, {"_id": 0, "value": 1, "ts": 1}
        )
        if doc is None or "value" not in doc:
            return None
        where = f"{self.namespace}/{key}"
        try:
            stamp = float(doc["ts"])
            payload = bytes(doc["value"])
        except (KeyError, TypeError, ValueError) as exc:
            self.warn_damaged(where, repr(exc))
            return None
        if self._ttl is not None and time.time() - stamp >= self._ttl:
            return None  # past server_ttl; MongoDB's TTL monitor deletes it soon
        value = self.decode(payload, where)
        return None if value is UNREADABLE else Entry(value, stamp)

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Upsert the entry's fields, leaving any claim on the document as it is."""
        payload = self.encode(entry.value)
        if payload is None:
            return False
        stamp = float(entry.timestamp)
        fields: dict[str, Any] = {
            "value": Binary(payload),
            "ts": stamp,
            "time": _date(stamp),
            "size": len(payload),
        }
        if self._ttl is not None:
            fields["expires_at"] = _date(stamp + self._ttl)
        query = {"ns": self.namespace, "key": storage_name(key)}
        coll = self._collection()
        for _ in range(_UPSERT_ATTEMPTS):
            try:
                coll.update_one(query, {"$set": fields}, upsert=True)
                return True
            except DuplicateKeyError:
                continue  # another writer inserted it first: now it is an update
        raise BackendError(f"could not store {self.namespace}/{key}: duplicate-key races")

    def clear(self) -> int:
        """Remove this function's entries (calculations in progress keep their claims)."""
        coll = self._collection()
        query = {"ns": self.namespace}
        unclaimed = {**query, "claim_until": {"$not": {"$gt": time.time()}}}
        claimed = {**query, "claim_until": {"$exists": True}, "value": {"$exists": True}}
        removed = coll.delete_many({**unclaimed, "value": {"$exists": True}}).deleted_count
        coll.delete_many({**unclaimed, "value": {"$exists": False}})  # dead claims
        return int(removed + coll.update_many(claimed, {"$unset": _ENTRY_FIELDS}).modified_count)

    # -- claims --------------------------------------------------------------------

    def claim(self, key: Hashable, lease_s: float) -> bool:
        """Take the claim unless an unexpired one is held: a conditional upsert.

        The filter matches the document only when its claim is absent or expired;
        otherwise the upsert's insert hits the unique index, which means another
        caller holds the claim.
        """
        name = storage_name(key)
        token = secrets.token_hex(8)
        now = time.time()
        query = {"ns": self.namespace, "key": name, "claim_until": {"$not": {"$gt": now}}}
        try:
            self._collection().update_one(query, self._lease(now + lease_s, token), upsert=True)
        except DuplicateKeyError:
            return False
        # A same-process takeover of an expired claim replaces the old token; the old
        # holder's release then ends the new claim early, which costs at most an
        # extra calculation, never a wrong value.
        self._tokens[name] = token
        return True

    def renew(self, key: Hashable, lease_s: float) -> bool:
        """Extend this process's claim; False when it was lost (taken over or cleared)."""
        name = storage_name(key)
        token = self._tokens.get(name)
        if token is None:
            return False
        query = {"ns": self.namespace, "key": name, "claim_token": token}
        update = self._lease(time.time() + lease_s)
        return int(self._collection().update_one(query, update).matched_count) == 1

    def _lease(self, until: float, token: str | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"claim_until": until}
        if token is not None:
            fields["claim_token"] = token
        update = {"$set": fields}
        if self._ttl is not None:  # the TTL monitor must not delete a held claim
            update["$max"] = {"expires_at": _date(until)}
        return update

    def release(self, key: Hashable) -> None:
        """End this process's claim: drop a claim-only document, else unset the claim."""
        name = storage_name(key)
        token = self._tokens.pop(name, None)
        if token is None:
            return
        coll = self._collection()
        query = {"ns": self.namespace, "key": name, "claim_token": token}
        if not coll.delete_one({**query, "value": {"$exists": False}}).deleted_count:
            coll.update_one(query, {"$unset": _CLAIM_FIELDS})

    def is_claimed(self, key: Hashable) -> bool:
        """Whether an unexpired claim is held on ``key`` by any caller anywhere."""
        query = {
            "ns": self.namespace,
            "key": storage_name(key),
            "claim_until": {"$gt": time.time()},
        }
        return self._collection().find_one(query, {"_id": 1}) is not None

    def wait(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Poll the claim with back-off (2 ms doubling to 100 ms) until it ends."""
        return self.poll_wait(key, timeout_s, _WAIT_MIN_S, _WAIT_MAX_S)

    def clear_claims(self) -> int:
        """Drop every claim of this function; return how many documents held one."""
        coll = self._collection()
        query = {"ns": self.namespace, "claim_token": {"$exists": True}}
        dropped = coll.delete_many({**query, "value": {"$exists": False}}).deleted_count
        return int(dropped + coll.update_many(query, {"$unset": _CLAIM_FIELDS}).modified_count)

    # -- maintenance ---------------------------------------------------------------

    def purge_stale(self, older_than_s: float, now: float) -> int:
        """One ``delete_many``: entries older than the bound and dead claim documents.

        Documents under an unexpired claim (a refresh in progress) stay.
        """
        query = {
            "ns": self.namespace,
            "claim_until": {"$not": {"$gt": now}},
            "$or": [{"ts": {"$lt": now - older_than_s}}, {"value": {"$exists": False}}],
        }
        return int(self._collection().delete_many(query).deleted_count)

    def entries(self) -> Iterator[EntryInfo]:
        """Every entry of this function: key, calculation time and payload size."""
        query = {"ns": self.namespace, "value": {"$exists": True}}
        for doc in self._collection().find(query, {"_id": 0, "key": 1, "ts": 1, "size": 1}):
            yield EntryInfo(key=doc["key"], timestamp=float(doc["ts"]), size=doc.get("size"))

    @classmethod
    def namespaces(cls, **options: Any) -> list[str]:
        """Functions with documents in the collection ``options`` name (as for a core)."""
        return sorted(cls("", **options)._collection().distinct("ns"))

    def stats(self) -> CoreStats:
        """Count entries, their payload bytes and timestamps, and held claims."""
        coll = self._collection()
        match = {"ns": self.namespace, "value": {"$exists": True}}
        group = {"_id": None, "n": {"$sum": 1}, "bytes": {"$sum": "$size"}}
        group.update(oldest={"$min": "$ts"}, newest={"$max": "$ts"})
        rows = list(coll.aggregate([{"$match": match}, {"$group": group}]))
        row: Mapping[str, Any] = rows[0] if rows else {}
        claims = coll.count_documents({"ns": self.namespace, "claim_until": {"$gt": time.time()}})
        return CoreStats(
            entries=int(row.get("n", 0)),
            total_bytes=int(row.get("bytes", 0)),
            oldest=row.get("oldest"),
            newest=row.get("newest"),
            claims=int(claims),
        )
