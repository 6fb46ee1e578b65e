"""The MongoDB core's maintenance: clearing, purging, listing and counting documents.

None of this is on the call path; :class:`~.core.MongoCore` inherits it. Every query
filters on ``ns``, so it uses the ``(ns, key)`` index and touches one function only.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..base import Core, CoreStats, EntryInfo
from .documents import ENTRY_FIELDS, clear_queries


class MongoMaintenance(Core):
    """``clear``, ``purge_stale``, ``entries``, ``namespaces`` and ``stats`` for MongoDB."""

    @abc.abstractmethod
    def _collection(self) -> Any:
        """The collection, behind its client's breaker (resolved on first use)."""

    @abc.abstractmethod
    def _offset(self) -> float:
        """The server's time minus this process's: documents hold the server's time."""

    def _server_now(self) -> float:
        """Now, in the server's time: what claim expiries in documents are compared with."""
        return time.time() + self._offset()

    def clear(self) -> int:
        """Remove this function's entries (calculations in progress keep their claims)."""
        coll = self._collection()
        entries, dead_claims, claimed = clear_queries(self.namespace, self._server_now())
        removed = coll.delete_many(entries).deleted_count
        coll.delete_many(dead_claims)
        return int(removed + coll.update_many(claimed, {"$unset": ENTRY_FIELDS}).modified_count)

    def purge_stale(self, older_than_s: float, now: float) -> int:
        """One ``delete_many``: entries older than the bound and dead claim documents.

        Documents under an unexpired claim (a refresh in progress) stay.
        """
        now += self._offset()  # the documents hold the server's time
        query = {
            "ns": self.namespace,
            "claim_until": {"$not": {"$gt": now}},
            "$or": [{"ts": {"$lt": now - older_than_s}}, {"value": {"$exists": False}}],
        }
        return int(self._collection().delete_many(query).deleted_count)

    def entries(self) -> Iterator[EntryInfo]:
        """Every entry of this function: key, calculation time and payload size."""
        query = {"ns": self.namespace, "value": {"$exists": True}}
        offset = self._offset()
        for doc in self._collection().find(query, {"_id": 0, "key": 1, "ts": 1, "size": 1}):
            stamp = float(doc["ts"]) - offset
            yield EntryInfo(key=doc["key"], timestamp=stamp, size=doc.get("size"))

    @classmethod
    def namespaces(cls, **options: Any) -> list[str]:
        """Functions with documents in the collection ``options`` name (as for a core)."""
        # Only strings: tag documents have no ``ns``, which a distinct served by the
        # (ns, key) index may report as null.
        names = cls("", **options)._collection().distinct("ns", {"ns": {"$type": "string"}})
        return sorted(names)

    def stats(self) -> CoreStats:
        """Count entries, their payload bytes and timestamps, and held claims."""
        coll = self._collection()
        match = {"ns": self.namespace, "value": {"$exists": True}}
        group = {"_id": None, "n": {"$sum": 1}, "bytes": {"$sum": "$size"}}
        group.update(oldest={"$min": "$ts"}, newest={"$max": "$ts"})
        rows = list(coll.aggregate([{"$match": match}, {"$group": group}]))
        row: Mapping[str, Any] = rows[0] if rows else {}
        offset = self._offset()
        live = {"ns": self.namespace, "claim_until": {"$gt": time.time() + offset}}
        oldest, newest = row.get("oldest"), row.get("newest")
        return CoreStats(
            entries=int(row.get("n", 0)),
            total_bytes=int(row.get("bytes", 0)),
            oldest=None if oldest is None else float(oldest) - offset,
            newest=None if newest is None else float(newest) - offset,
            claims=int(coll.count_documents(live)),
        )
