"""The MongoDB core's native async operations: awaited on the event loop, never in a thread.

An ``async def`` function whose ``mongetter`` is an ``AsyncCollection`` (or a callable
returning one) or a URL is served here: reads, stores, claims, renewals, releases, waits
and clears are pymongo coroutines on the function's event loop, with the documents and
queries of the sync operations (:mod:`.documents`), so both kinds of caller, on one
machine or many, share entries and claims. A URL gives each event loop an
``AsyncMongoClient`` of its own (:mod:`.clients`), closed as the loop shuts down.

Where the collection turns out to be a sync one (a sync ``Collection`` given to an
``async def`` function, or returned by its callable), each operation falls back to the
base class's: the sync operation in a worker thread.
"""

from __future__ import annotations

import abc
import asyncio
import secrets
import time
from collections.abc import Hashable
from typing import Any

from pymongo.errors import DuplicateKeyError

from ...entry import Entry
from ...errors import AsyncOnlyError, BackendError
from ..base import Backoff
from ..clocks import StoreClock
from ..shared import StoreSource, storage_name
from . import clients
from . import documents as docs
from .clients import async_clients_available, is_async_collection
from .guard import _AsyncGuarded
from .maintenance import MongoMaintenance

__all__ = ["MongoAsyncOps"]

_WAIT_MIN_S = 0.002
_WAIT_MAX_S = 0.1


def _live(until: object, now: float) -> bool:
    """Whether a document's ``claim_until`` is a claim that has not expired."""
    return isinstance(until, (int, float)) and until > now


class MongoAsyncOps(MongoMaintenance):
    """The ``a``-prefixed operations and ``wait_async`` of :class:`~.core.MongoCore`."""

    # Set by MongoCore.__init__.
    _source: StoreSource[Any]
    _ttl: float | None
    _timeout_ms: int | None
    _database: str | None
    _collection_name: str
    _tokens: dict[str, str | None]
    _async_caller: bool | None
    clock: StoreClock
    # loop -> (clients generation, the task preparing the loop's collection); pruned of
    # closed loops as a new loop comes (a weak key would be kept alive by its task)
    _loop_colls: dict[asyncio.AbstractEventLoop, tuple[int, asyncio.Task[Any]]]

    @abc.abstractmethod
    def _entry_of(self, doc: Any, key: Hashable, offset: float) -> Entry | None:
        """The entry a read document holds, or None."""

    @abc.abstractmethod
    def _ended(self, name: str, token: str) -> None:
        """This process's claim with ``token`` was ended by its own store."""

    @abc.abstractmethod
    def _upsert_races(self, key: Hashable) -> BackendError:
        """The error of a store that lost every duplicate-key race."""

    def check_caller(self, is_async: bool) -> None:
        """Choose the path: native async for ``async def`` functions on an async client.

        An ``AsyncCollection`` serves only ``async def`` functions (a sync one is a
        ``TypeError`` here, or at its first call when a callable returns it). A URL
        gives an ``async def`` function a native client per event loop; a callable is
        taken to be native until it returns a sync collection (then threads).
        """
        self._async_caller = is_async
        given = self._source.obj
        if not is_async:
            if given is not None and is_async_collection(given):
                raise AsyncOnlyError(self._async_advice())
            return
        if given is not None:
            self.native_async = is_async_collection(given)
        elif self._source.by_url:
            self.native_async = async_clients_available()
        else:
            self.native_async = True  # told otherwise once the callable answers

    def _async_advice(self) -> str:
        if self._async_caller:  # a sync method of an async def function
            return (
                f"{self.namespace}: mongetter gives an AsyncCollection, which the sync "
                "methods (clear_cache(), cached_entry(), ...) cannot use; await "
                "aclear_cache() / aclear_being_calculated() instead, or give a mongodb:// "
                "URL, which serves both"
            )
        return (
            f"{self.namespace}: mongetter gives an AsyncCollection, which serves only "
            "async def functions; make the function async def, or give a pymongo "
            "Collection or a mongodb:// URL"
        )

    # -- the collection, per event loop -------------------------------------------

    async def _acollection(self) -> Any:
        """This loop's async collection behind its breaker; None when it is a sync one.

        Prepared (the client, the indexes) once per loop by one task that concurrent
        first calls share; pymongo binds an async client to one loop, so a URL gets a
        client per loop and a callable is called once per loop.
        """
        if not self.native_async:
            return None
        loop = asyncio.get_running_loop()
        generation = clients._generation
        held = self._loop_colls.get(loop)
        if held is None or held[0] != generation:
            if held is None:  # a new loop: forget those closed since (each holds its loop)
                for closed in [other for other in self._loop_colls if other.is_closed()]:
                    del self._loop_colls[closed]
            task = loop.create_task(self._aresolve())
            task.add_done_callback(lambda done: self._forget_failed(loop, done))
            held = self._loop_colls[loop] = (generation, task)
        task = held[1]
        if task.done():
            return task.result()
        return await asyncio.shield(task)  # a cancelled caller leaves it to the others

    def _forget_failed(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            held = self._loop_colls.get(loop)
            if held is not None and held[1] is task:
                del self._loop_colls[loop]  # the next call tries again

    async def _aresolve(self) -> Any:
        if self._source.by_url:
            raw = await clients._async_collection_from_url(
                self._source.current_url(), self._timeout_ms, self._database, self._collection_name
            )
        else:
            raw = self._source.resolve()
            if not is_async_collection(raw):
                self.native_async = False  # a callable giving a sync collection: threads
                return None
        coll = _AsyncGuarded(raw)
        for keys, options in docs.indexes(self._ttl):
            await coll.create_index(keys, **options)
        return coll

    async def _aoffset(self, coll: Any) -> float:
        """The server's time minus this process's, measured with an awaited ``hello``."""

        async def server_time() -> float:
            return docs.server_seconds(await coll.command("hello"))

        return await self.clock.aoffset_from(server_time)

    async def _aserver_now(self, coll: Any) -> float:
        """:meth:`_server_now`, with the offset measured by an awaited ``hello``."""
        return time.time() + await self._aoffset(coll)

    # -- entries -------------------------------------------------------------------

    async def aget(self, key: Hashable) -> Entry | None:
        """:meth:`get`, awaited: one ``find_one``."""
        coll = await self._acollection()
        if coll is None:
            return await super().aget(key)
        query = docs.doc_query(self.namespace, storage_name(key))
        offset = await self._aoffset(coll)  # measured with the first read, not a miss
        return self._entry_of(await coll.find_one(query, docs.ENTRY_PROJECTION), key, offset)

    async def aset(self, key: Hashable, entry: Entry) -> bool:
        """:meth:`set`, awaited: the holder's store ends its claim in the same update."""
        coll = await self._acollection()
        if coll is None:
            return await super().aset(key, entry)
        name, stamp = storage_name(key), float(entry.timestamp) + await self._aoffset(coll)
        payload = self.encode_entry(entry, name, stamp)
        if payload is None:
            return False
        update = docs.entry_update(payload, stamp, self._ttl)
        token = self._tokens.get(name)
        if token is not None:
            query = docs.token_query(self.namespace, name, token)
            if (await coll.update_one(query, docs.ending_claim(update))).matched_count == 1:
                self._ended(name, token)
                return True
        query = docs.doc_query(self.namespace, name)
        for _ in range(docs.UPSERT_ATTEMPTS):
            try:
                await coll.update_one(query, update, upsert=True)
                return True
            except DuplicateKeyError:
                continue
        raise self._upsert_races(key)

    # -- claims --------------------------------------------------------------------

    async def aclaim(self, key: Hashable, lease_s: float) -> bool:
        """:meth:`claim`, awaited: the conditional upsert the unique index decides."""
        coll = await self._acollection()
        if coll is None:
            return await super().aclaim(key, lease_s)
        name = storage_name(key)
        token = secrets.token_hex(8)
        now = await self._aserver_now(coll)
        query = docs.claim_query(self.namespace, name, now)
        update = docs.lease_update(now + lease_s, token, self._ttl)
        try:
            await coll.update_one(query, update, upsert=True)
        except DuplicateKeyError:
            return False
        self._tokens[name] = token
        return True

    async def arenew(self, key: Hashable, lease_s: float) -> bool:
        """:meth:`renew`, awaited (by the lease task on the calculator's loop)."""
        coll = await self._acollection()
        if coll is None:
            return await super().arenew(key, lease_s)
        name = storage_name(key)
        if name not in self._tokens:
            return False
        token = self._tokens[name]
        if token is None:
            return True  # ended by our own store; the release is on its way
        query = docs.token_query(self.namespace, name, token)
        update = docs.lease_update(await self._aserver_now(coll) + lease_s, None, self._ttl)
        return int((await coll.update_one(query, update)).matched_count) == 1

    async def arelease(self, key: Hashable) -> None:
        """:meth:`release`, awaited: only this process's own claim is ended."""
        coll = await self._acollection()
        if coll is None:
            return await super().arelease(key)
        name = storage_name(key)
        token = self._tokens.pop(name, None)
        if token is None:
            return None
        query = docs.token_query(self.namespace, name, token)
        if not (await coll.delete_one(docs.claim_only(query))).deleted_count:
            await coll.update_one(query, {"$unset": docs.CLAIM_FIELDS})
        return None

    async def wait_async(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Poll the document with back-off (2 ms doubling to 100 ms) until its claim ends.

        Each poll is one awaited read that gives both the claim and the entry.
        """
        coll = await self._acollection()
        if coll is None:
            return await super().wait_async(key, timeout_s)
        query = docs.doc_query(self.namespace, storage_name(key))
        backoff = Backoff(timeout_s, _WAIT_MIN_S, _WAIT_MAX_S)
        while True:
            offset = await self._aoffset(coll)
            doc = await coll.find_one(query, docs.POLL_PROJECTION)
            claimed = doc is not None and _live(doc.get("claim_until"), time.time() + offset)
            delay = backoff.next_delay() if claimed else None
            if delay is None:
                return self._entry_of(doc, key, offset)
            await asyncio.sleep(delay)

    # -- clearing ------------------------------------------------------------------

    async def aclear(self) -> int:
        """:meth:`clear`, awaited (calculations in progress keep their claims)."""
        coll = await self._acollection()
        if coll is None:
            return await super().aclear()
        now = await self._aserver_now(coll)
        entries, dead_claims, claimed = docs.clear_queries(self.namespace, now)
        removed = (await coll.delete_many(entries)).deleted_count
        await coll.delete_many(dead_claims)
        unset = await coll.update_many(claimed, {"$unset": docs.ENTRY_FIELDS})
        return int(removed + unset.modified_count)

    async def aclear_claims(self) -> int:
        """:meth:`clear_claims`, awaited."""
        coll = await self._acollection()
        if coll is None:
            return await super().aclear_claims()
        query = docs.claims_query(self.namespace)
        dropped = (await coll.delete_many(docs.claim_only(query))).deleted_count
        unset = await coll.update_many(query, {"$unset": docs.CLAIM_FIELDS})
        return int(dropped + unset.modified_count)
