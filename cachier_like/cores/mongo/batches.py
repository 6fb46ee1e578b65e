"""The MongoDB core's deletes and batches: ``delete``, ``get_many``, ``set_many``, sync and async.

A batched read is one ``find`` with ``$in`` on the ``(ns, key)`` index; a batched store
is one ``bulk_write`` of the updates :meth:`~.core.MongoCore.set` makes, so a claim
holder's store ends its own claim as a single ``set`` does. The native async twins
await the same requests on the ``AsyncCollection`` (:mod:`.async_ops`).

Example:
    >>> import mongomock
    >>> from cachier_like.cores.mongo import MongoCore
    >>> core = MongoCore("demo.batch", mongetter=mongomock.MongoClient().db.entries)
    >>> core.set("a", Entry(1, 0.0))
    True
    >>> [None if e is None else e.value for e in core.get_many(["a", "b"])]
    [1, None]
    >>> core.delete("a"), core.delete("a")
    (True, False)
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from ...entry import Entry
from ..shared import storage_name
from . import documents as docs
from .async_ops import MongoAsyncOps

__all__ = ["MongoBatches", "StorePlan", "races_to_retry"]

logger = logging.getLogger(__name__)

#: The server's code of a duplicate-key error (an upsert racing another's insert).
DUPLICATE_KEY = 11000


def races_to_retry(error: BulkWriteError, requests: list[Any], ordered: bool) -> list[Any] | None:
    """The requests of a bulk write to run again: those that lost a duplicate-key race.

    None when anything else failed (the caller re-raises). An ordered bulk stopped at
    its first error, so it resumes there; an unordered one ran every other request.

    Example:
        >>> error = BulkWriteError({"writeErrors": [{"index": 1, "code": DUPLICATE_KEY}]})
        >>> races_to_retry(error, ["a", "b", "c"], ordered=True)
        ['b', 'c']
        >>> races_to_retry(error, ["a", "b", "c"], ordered=False)
        ['b']
    """
    details = error.details
    errors = details.get("writeErrors") or []
    if not errors or details.get("writeConcernErrors"):
        return None
    if any(err.get("code") != DUPLICATE_KEY for err in errors):
        return None
    if ordered:
        return requests[errors[0]["index"] :]
    return [requests[err["index"]] for err in errors]


@dataclass
class StorePlan:
    """What one ``set_many`` sends: the bulk's requests, and what each item came to.

    An item under this process's claim gets two requests, in order: the update matched
    on the claim's token, which also ends the claim, then the plain upsert, which
    rewrites the same fields when the first matched and stores them (leaving the
    other's claim alone) when the claim was lost; as :meth:`~.core.MongoCore.set` does,
    in one round trip.
    """

    #: Whether each item is stored (False: over the size limit, not sent).
    stored: list[bool] = field(default_factory=list)
    requests: list[UpdateOne] = field(default_factory=list)
    #: ``(name, token)`` of the claims of this process the stores end.
    held: list[tuple[str, str]] = field(default_factory=list)


class MongoBatches(MongoAsyncOps):
    """``delete``, ``get_many`` and ``set_many`` (and their async twins) for MongoDB."""

    # -- shared by both paths ------------------------------------------------------

    def _plan_stores(self, items: Sequence[tuple[Hashable, Entry]], offset: float) -> StorePlan:
        plan = StorePlan()
        for key, entry in items:
            name, stamp = storage_name(key), float(entry.timestamp) + offset
            payload = self.encode_entry(entry, name, stamp)
            plan.stored.append(payload is not None)
            if payload is None:
                continue
            update = docs.entry_update(payload, stamp, self._ttl)
            token = self._tokens.get(name)
            if token is not None:
                query = docs.token_query(self.namespace, name, token)
                plan.requests.append(UpdateOne(query, docs.ending_claim(update)))
                plan.held.append((name, token))
            plan.requests.append(
                UpdateOne(docs.doc_query(self.namespace, name), update, upsert=True)
            )
        return plan

    def _stored(self, plan: StorePlan) -> list[bool]:
        # Whether its token request matched or the claim had been lost before, no
        # document holds a claim with these tokens now: the releases have nothing to do.
        for name, token in plan.held:
            self._ended(name, token)
        return plan.stored

    def _entries_of(
        self, found: list[Any], keys: Sequence[Hashable], names: list[str], offset: float
    ) -> list[Entry | None]:
        by_name = {doc.get("key"): doc for doc in found}
        return [self._entry_of(by_name.get(n), k, offset) for k, n in zip(keys, names, strict=True)]

    # -- sync ----------------------------------------------------------------------

    def delete(self, key: Hashable) -> bool:
        """Remove the entry of ``key``; a live claim on its document stays.

        Unclaimed, the document goes (one ``delete_one``); under a live claim, its entry
        fields are unset instead, so the holder's store lands as usual.
        """
        unclaimed, claimed = docs.delete_queries(
            self.namespace, storage_name(key), self._server_now()
        )
        coll = self._collection()
        if coll.delete_one(unclaimed).deleted_count:
            return True
        return bool(coll.update_one(claimed, {"$unset": docs.ENTRY_FIELDS}).modified_count)

    def get_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """The entries of ``keys`` in order, read with one ``find`` (``$in`` on the keys)."""
        if not keys:
            return []
        names = [storage_name(key) for key in keys]
        offset = self._offset()
        found = self._collection().find_list(
            docs.many_query(self.namespace, names), docs.MANY_PROJECTION
        )
        return self._entries_of(found, keys, names, offset)

    def set_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """Store each item with one ordered ``bulk_write`` (see :class:`StorePlan`)."""
        plan = self._plan_stores(items, self._offset())
        requests = plan.requests
        coll = self._collection()
        for _ in range(docs.UPSERT_ATTEMPTS):
            if not requests:
                break
            try:
                coll.bulk_write(requests, ordered=True)
                break
            except BulkWriteError as exc:
                retry = races_to_retry(exc, requests, ordered=True)
                if retry is None:
                    raise
                requests = retry  # the rest, from the store that lost the race
        else:
            raise self._upsert_races(f"<{len(items)} keys of set_many>")
        return self._stored(plan)

    # -- native async --------------------------------------------------------------

    async def adelete(self, key: Hashable) -> bool:
        """:meth:`delete`, awaited."""
        coll = await self._acollection()
        if coll is None:
            return await super().adelete(key)
        now = await self._aserver_now(coll)
        unclaimed, claimed = docs.delete_queries(self.namespace, storage_name(key), now)
        if (await coll.delete_one(unclaimed)).deleted_count:
            return True
        return bool((await coll.update_one(claimed, {"$unset": docs.ENTRY_FIELDS})).modified_count)

    async def aget_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """:meth:`get_many`, awaited: one ``find``."""
        coll = await self._acollection()
        if coll is None:
            return await super().aget_many(keys)
        if not keys:
            return []
        names = [storage_name(key) for key in keys]
        offset = await self._aoffset(coll)
        found = await coll.find_list(docs.many_query(self.namespace, names), docs.MANY_PROJECTION)
        return self._entries_of(found, keys, names, offset)

    async def aset_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """:meth:`set_many`, awaited: one ``bulk_write``."""
        coll = await self._acollection()
        if coll is None:
            return await super().aset_many(items)
        plan = self._plan_stores(items, await self._aoffset(coll))
        requests = plan.requests
        for _ in range(docs.UPSERT_ATTEMPTS):
            if not requests:
                break
            try:
                await coll.bulk_write(requests, ordered=True)
                break
            except BulkWriteError as exc:
                retry = races_to_retry(exc, requests, ordered=True)
                if retry is None:
                    raise
                requests = retry  # the rest, from the store that lost the race
        else:
            raise self._upsert_races(f"<{len(items)} keys of set_many>")
        return self._stored(plan)
