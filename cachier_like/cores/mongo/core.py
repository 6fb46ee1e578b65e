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

Every time in a document (``ts``, ``claim_until``, ``expires_at``) is in the server's
clock: this process's time plus an offset measured against the ``localTime`` of the
server's ``hello`` reply (:mod:`..clocks`), so processes whose clocks disagree judge
entries and leases alike, and the TTL monitor deletes expired entries on time.

The core reaches its collection through the breaker of the collection's client
(:mod:`.guard`); URL clients are shared per process (:mod:`.clients`). For ``async def``
functions on an ``AsyncCollection`` or a URL, the native async operations
(:mod:`.async_ops`) build the same documents with the same queries
(:mod:`.documents`), awaited on the event loop.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Hashable
from typing import Any

from pymongo.errors import DuplicateKeyError

from ...config import as_seconds
from ...entry import Entry
from ...errors import AsyncOnlyError, BackendError, ConfigurationError
from ...serialize import DEFAULT_SERIALIZER, Serializer
from ..clocks import StoreClock
from ..shared import StoreSource, StoreSpec, storage_name
from . import clients
from . import documents as docs
from .clients import (
    DEFAULT_COLLECTION,
    DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    URL_ENV,
    _check_url,
    _checked_collection,
    _collection_from_url,
    _is_collection,
    is_async_collection,
)
from .documents import INDEX_NAME, TTL_INDEX_NAME
from .guard import _Guarded
from .tags import MongoTags

__all__ = ["INDEX_NAME", "TTL_INDEX_NAME", "MongoCore"]

logger = logging.getLogger(__name__)

_WAIT_MIN_S = 0.002
_WAIT_MAX_S = 0.1


class MongoCore(MongoTags):
    """Entries and claims of one function in a MongoDB collection.

    ``mongetter`` is a collection (pymongo's ``Collection``, or ``AsyncCollection`` for
    ``async def`` functions), a zero-argument callable returning one, or a
    ``mongodb://`` URL (``database`` and ``collection`` then name where entries go);
    with none, the URL comes from ``$CACHIER_LIKE_MONGO_URL``. Nothing touches the
    server until the first operation. The maintenance operations (``clear``,
    ``purge_stale``, ``entries``, ``namespaces``, ``stats``) come from
    :class:`~.maintenance.MongoMaintenance`, the native async ones from
    :class:`~.async_ops.MongoAsyncOps`, ``delete`` and the batches from
    :class:`~.batches.MongoBatches`, the tag versions from :class:`~.tags.MongoTags`.

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
            kinds=(
                "a pymongo Collection or AsyncCollection, a callable returning one, "
                "or a mongodb:// URL"
            ),
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
        #: Whether the decorated function is ``async def`` (None: no function told us).
        self._async_caller: bool | None = None
        self._loop_colls = {}  # see MongoAsyncOps._acollection
        given = self._source.obj
        self.native_async = given is not None and is_async_collection(given)
        # key -> token of the claim this process holds on it, or None once a store by
        # the holder has ended it (the release then has nothing left to do).
        self._tokens: dict[str, str | None] = {}
        #: The server's clock against this process's: documents hold the server's time.
        self.clock = StoreClock()

    # -- the collection ------------------------------------------------------------

    def _collection(self) -> Any:
        # No lock: threads racing to resolve build the same thing, and a lock held by
        # another thread at a fork would deadlock the child.
        coll = self._coll
        if coll is None or self._coll_generation != clients._generation:
            generation = clients._generation
            coll = self._coll = self._resolve()
            self._coll_generation = generation
        return coll

    def _resolve(self) -> Any:
        raw = self._source.resolve()
        if is_async_collection(raw):
            raise AsyncOnlyError(self._async_advice())
        if self.native_async and not self._source.by_url:
            self.native_async = False  # the callable gives a sync collection: threads
        coll = _Guarded(raw)
        for keys, options in docs.indexes(self._ttl):
            coll.create_index(keys, **options)
        return coll

    def _from_url(self, url: str) -> Any:
        return _collection_from_url(url, self._timeout_ms, self._database, self._collection_name)

    def _server_time(self) -> float:
        return docs.server_seconds(self._collection().command("hello"))

    def _offset(self) -> float:
        """The server's time minus this process's (see :mod:`..clocks`)."""
        return self.clock.offset_from(self._server_time)

    # -- entries -------------------------------------------------------------------

    def _entry_of(self, doc: Any, key: Hashable, offset: float) -> Entry | None:
        """The entry a read document holds: a claim-only, expired or unreadable one is None.

        ``offset`` (the server's time minus this process's) turns the stored stamp back
        into this process's time.
        """
        if doc is None or "value" not in doc:
            return None
        where = f"{self.namespace}/{key}"
        try:
            stamp = float(doc["ts"])
            payload = bytes(doc["value"])
        except (KeyError, TypeError, ValueError) as exc:
            self.warn_damaged(where, repr(exc))
            return None
        if self._ttl is not None and time.time() + offset - stamp >= self._ttl:
            return None  # past server_ttl; MongoDB's TTL monitor deletes it soon
        return self.decode_entry(payload, where, storage_name(key), stamp, stamp - offset)

    def get(self, key: Hashable) -> Entry | None:
        """Read the entry; a claim-only, expired or unreadable document is a miss."""
        query = docs.doc_query(self.namespace, storage_name(key))
        offset = self._offset()  # measured with the first read, not within a miss
        doc = self._collection().find_one(query, docs.ENTRY_PROJECTION)
        return self._entry_of(doc, key, offset)

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Store the entry's fields; the claim holder's store also ends its own claim.

        Any other store (or a holder whose claim was taken over) upserts the fields and
        leaves a claim on the document as it is.
        """
        name, stamp = storage_name(key), float(entry.timestamp) + self._offset()
        payload = self.encode_entry(entry, name, stamp)
        if payload is None:
            return False
        update = docs.entry_update(payload, stamp, self._ttl)
        coll = self._collection()
        token = self._tokens.get(name)
        if token is not None:
            query = docs.token_query(self.namespace, name, token)
            if coll.update_one(query, docs.ending_claim(update)).matched_count == 1:
                self._ended(name, token)
                return True
        query = docs.doc_query(self.namespace, name)
        for _ in range(docs.UPSERT_ATTEMPTS):
            try:
                coll.update_one(query, update, upsert=True)
                return True
            except DuplicateKeyError:
                continue  # another writer inserted it first: now it is an update
        raise self._upsert_races(key)

    def _ended(self, name: str, token: str) -> None:
        """This process's claim with ``token`` was ended by its own store."""
        if self._tokens.get(name) == token:
            self._tokens[name] = None

    def _upsert_races(self, key: Hashable) -> BackendError:
        return BackendError(f"could not store {self.namespace}/{key}: duplicate-key races")

    # -- claims --------------------------------------------------------------------

    def claim(self, key: Hashable, lease_s: float) -> bool:
        """Take the claim unless an unexpired one is held: a conditional upsert.

        The filter matches the document only when its claim is absent or expired;
        otherwise the upsert's insert hits the unique index, which means another
        caller holds the claim.
        """
        name = storage_name(key)
        token = secrets.token_hex(8)
        now = self._server_now()
        query = docs.claim_query(self.namespace, name, now)
        update = docs.lease_update(now + lease_s, token, self._ttl)
        try:
            self._collection().update_one(query, update, upsert=True)
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
        if name not in self._tokens:
            return False
        token = self._tokens[name]
        if token is None:
            return True  # ended by our own store; the release is on its way
        query = docs.token_query(self.namespace, name, token)
        update = docs.lease_update(self._server_now() + lease_s, None, self._ttl)
        return int(self._collection().update_one(query, update).matched_count) == 1

    def release(self, key: Hashable) -> None:
        """End this process's claim: drop a claim-only document, else unset the claim."""
        name = storage_name(key)
        token = self._tokens.pop(name, None)
        if token is None:
            return
        coll = self._collection()
        query = docs.token_query(self.namespace, name, token)
        if not coll.delete_one(docs.claim_only(query)).deleted_count:
            coll.update_one(query, {"$unset": docs.CLAIM_FIELDS})

    def is_claimed(self, key: Hashable) -> bool:
        """Whether an unexpired claim is held on ``key`` by any caller anywhere."""
        query = docs.live_claim_query(self.namespace, storage_name(key), self._server_now())
        return self._collection().find_one(query, {"_id": 1}) is not None

    def wait(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Poll the claim with back-off (2 ms doubling to 100 ms) until it ends."""
        return self.poll_wait(key, timeout_s, _WAIT_MIN_S, _WAIT_MAX_S)

    def clear_claims(self) -> int:
        """Drop every claim of this function; return how many documents held one."""
        coll = self._collection()
        query = docs.claims_query(self.namespace)
        dropped = coll.delete_many(docs.claim_only(query)).deleted_count
        return int(dropped + coll.update_many(query, {"$unset": docs.CLAIM_FIELDS}).modified_count)
