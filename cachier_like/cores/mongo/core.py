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
(:mod:`.guard`); URL clients are shared per process (:mod:`.clients`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Hashable
from datetime import datetime, timezone
from typing import Any

from bson.binary import Binary
from pymongo.errors import DuplicateKeyError

from ...config import as_seconds
from ...entry import Entry
from ...errors import BackendError, ConfigurationError
from ...serialize import DEFAULT_SERIALIZER, Serializer
from ..base import UNREADABLE
from ..shared import StoreSource, StoreSpec, storage_name
from . import clients
from .clients import (
    DEFAULT_COLLECTION,
    DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    URL_ENV,
    _check_url,
    _checked_collection,
    _collection_from_url,
    _is_collection,
)
from .guard import _Guarded
from .maintenance import MongoMaintenance

logger = logging.getLogger(__name__)

INDEX_NAME = "cachier_like_ns_key"
TTL_INDEX_NAME = "cachier_like_expires_at"
_CLAIM_FIELDS = {"claim_token": "", "claim_until": ""}
_WAIT_MIN_S = 0.002
_WAIT_MAX_S = 0.1
_UPSERT_ATTEMPTS = 5


def _date(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class MongoCore(MongoMaintenance):
    """Entries and claims of one function in a MongoDB collection.

    ``mongetter`` is a collection, a zero-argument callable returning one, or a
    ``mongodb://`` URL (``database`` and ``collection`` then name where entries go);
    with none, the URL comes from ``$CACHIER_LIKE_MONGO_URL``. Nothing touches the
    server until the first operation. The maintenance operations (``clear``,
    ``purge_stale``, ``entries``, ``namespaces``, ``stats``) come from
    :class:`~.maintenance.MongoMaintenance`.

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
        if coll is None or self._coll_generation != clients._generation:
            generation = clients._generation
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
        return _collection_from_url(url, self._timeout_ms, self._database, self._collection_name)

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
        value = self.decode(payload, where, storage_name(key), stamp)
        return None if value is UNREADABLE else Entry(value, stamp)

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Upsert the entry's fields, leaving any claim on the document as it is."""
        stamp = float(entry.timestamp)
        payload = self.encode(entry.value, storage_name(key), stamp)
        if payload is None:
            return False
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
