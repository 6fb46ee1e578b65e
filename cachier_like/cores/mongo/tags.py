"""The MongoDB core's tag versions: one counter document per tag, per collection.

Tag versions belong to the collection: every function stored in it reads and bumps
the same counters. Each is a document of its own beside the entries (its layout, which
no query of a function's documents can match, is in :mod:`.documents`), advanced by an
atomic ``$inc`` upsert; ``clear()``, purges, listings and the TTL monitor never touch
it. ``get_tagged`` reads an entry and its tags' versions with one query (an ``$or`` of
the entry's ``(ns, key)`` and the tags' ``_id``\\ s).

Example:
    >>> import mongomock
    >>> from cachier_like.cores.mongo import MongoCore
    >>> core = MongoCore("demo.f", mongetter=mongomock.MongoClient().db.entries)
    >>> core.set("k", Entry(1, 0.0, (("user:7", 0),)))
    True
    >>> entry, versions = core.get_tagged("k", ["user:7", "team:2"])
    >>> entry.tags, versions
    ((('user:7', 0),), (0, 0))
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from ...entry import Entry
from ...errors import BackendError
from ..shared import storage_name
from . import documents as docs
from .batches import MongoBatches, races_to_retry

__all__ = ["MongoTags"]


def _bump_requests(tags: Sequence[str]) -> list[UpdateOne]:
    return [
        UpdateOne({"_id": docs.tag_id(tag)}, docs.bump_update(tag), upsert=True)
        for tag in dict.fromkeys(tags)
    ]


def _bump_races(tags: Sequence[str]) -> BackendError:
    return BackendError(f"could not bump tags {list(tags)!r}: duplicate-key races")


class MongoTags(MongoBatches):
    """``tag_versions``, ``bump_tags`` and ``get_tagged`` (and their async twins)."""

    # -- sync ----------------------------------------------------------------------

    def tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """The collection's version of each tag (0 for one never bumped): one ``find``."""
        if not tags:
            return ()
        found = self._collection().find_list(docs.tags_query(tags), docs.TAG_PROJECTION)
        return docs.versions_of(found, tags)

    def bump_tags(self, tags: Sequence[str]) -> None:
        """Advance each tag's version by one: an ``$inc`` upsert each, in one ``bulk_write``.

        Unordered, so one tag's lost insert race does not hold up the others; only the
        increments that lost are sent again (an ``$inc`` must not apply twice).
        """
        requests = _bump_requests(tags)
        coll = self._collection()
        for _ in range(docs.UPSERT_ATTEMPTS):
            if not requests:
                return
            try:
                coll.bulk_write(requests, ordered=False)
                return
            except BulkWriteError as exc:
                retry = races_to_retry(exc, requests, ordered=False)
                if retry is None:
                    raise
                requests = retry
        raise _bump_races(tags)

    def get_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """The entry of ``key`` and the versions of ``tags``, read with one ``find``."""
        if not tags:
            return self.get(key), ()
        query = docs.tagged_query(self.namespace, storage_name(key), tags)
        offset = self._offset()
        found = self._collection().find_list(query, docs.TAGGED_PROJECTION)
        return self._entry_of(docs.entry_among(found), key, offset), docs.versions_of(found, tags)

    # -- native async --------------------------------------------------------------

    async def atag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """:meth:`tag_versions`, awaited."""
        coll = await self._acollection()
        if coll is None:
            return await super().atag_versions(tags)
        if not tags:
            return ()
        found = await coll.find_list(docs.tags_query(tags), docs.TAG_PROJECTION)
        return docs.versions_of(found, tags)

    async def abump_tags(self, tags: Sequence[str]) -> None:
        """:meth:`bump_tags`, awaited: one unordered ``bulk_write``."""
        coll = await self._acollection()
        if coll is None:
            return await super().abump_tags(tags)
        requests = _bump_requests(tags)
        for _ in range(docs.UPSERT_ATTEMPTS):
            if not requests:
                return None
            try:
                await coll.bulk_write(requests, ordered=False)
                return None
            except BulkWriteError as exc:
                retry = races_to_retry(exc, requests, ordered=False)
                if retry is None:
                    raise
                requests = retry
        raise _bump_races(tags)

    async def aget_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """:meth:`get_tagged`, awaited: one ``find``."""
        coll = await self._acollection()
        if coll is None:
            return await super().aget_tagged(key, tags)
        if not tags:
            return await self.aget(key), ()
        query = docs.tagged_query(self.namespace, storage_name(key), tags)
        offset = await self._aoffset(coll)
        found = await coll.find_list(query, docs.TAGGED_PROJECTION)
        return self._entry_of(docs.entry_among(found), key, offset), docs.versions_of(found, tags)
