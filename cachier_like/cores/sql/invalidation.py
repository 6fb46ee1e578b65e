"""The SQL core's invalidation and batch operations: ``delete``, ``get_many``,
``set_many`` and the tag versions (``tag_versions``, ``bump_tags``, ``get_tagged``).

Their statements are in :mod:`.batches` and :mod:`.tags`; the plans (parameters in,
entries out) here are shared with their async twins (:mod:`.native_invalidation`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from ...entry import Entry
from ..shared import storage_name
from .batches import numbered, padded
from .native_ops import NativeOps
from .prepared import Params
from .runner import Runner
from .statements import Statements
from .tags import TAGGED_MAX, bump_batches, tag_key, version_batches, versions_of

__all__ = ["InvalidationOps"]

#: A row of a ``get_many`` read: (key, value, calculated_at).
_Found = dict[str, tuple[bytes | None, float | None]]


class InvalidationOps(NativeOps):
    """``delete``, the batches and the tag versions of :class:`~.core.SQLCore` (a base)."""

    # Set by SQLCore: the runner and statements, once set up.
    _ready: tuple[Runner, Statements] | None

    def _setup(self) -> tuple[Runner, Statements]:
        raise NotImplementedError

    def _offset(self) -> float:
        raise NotImplementedError

    # -- plans, shared with the async twins ----------------------------------------------

    def _read_batches(self, names: Sequence[str]) -> list[tuple[int, Params]]:
        """The ``(size, params)`` of each ``get_many`` read of ``names``."""
        return [(size, numbered("k", chunk, {"ns": self._ns})) for size, chunk in padded(names)]

    def _entries_from(
        self, names: Sequence[str], found: _Found, offset: float
    ) -> list[Entry | None]:
        """The entry of each name, decoded once per distinct name."""
        decoded: dict[str, Entry | None] = {}
        for name, (value, timestamp) in found.items():
            decoded[name] = self._entry(name, value, timestamp, offset)
        return [decoded.get(name) for name in names]

    def _store_batch(
        self, items: Sequence[tuple[Hashable, Entry]], offset: float
    ) -> tuple[list[bool], list[dict[str, Any]]]:
        """Whether each item is stored, and the ``set`` parameters (the last per key)."""
        stored: list[bool] = []
        batch: dict[str, dict[str, Any]] = {}
        for key, entry in items:
            k = storage_name(key)
            stamp = entry.timestamp + offset
            payload = self.encode_entry(entry, k, stamp)
            stored.append(payload is not None)
            if payload is not None:
                batch.pop(k, None)  # the last store of a key is the one to land
                batch[k] = {"ns": self._ns, "k": k, "v": payload, "ts": stamp}
                batch[k].update(tok=self._held.get(k), chan=self._channel)
        return stored, list(batch.values())

    def _stored(self, batch: Sequence[Params]) -> None:
        """After a holder's store: its claim ended with it (as in ``set``)."""
        for params in batch:
            token, k = params["tok"], params["k"]
            if token is not None and self._held.get(k) == token:
                self._held[k] = None

    def _tagged_params(self, key: Hashable, tags: Sequence[str]) -> tuple[str, Params]:
        name = storage_name(key)
        return name, numbered("t", [tag_key(tag) for tag in tags], {"ns": self._ns, "k": name})

    # -- the operations ---------------------------------------------------------------

    def delete(self, key: Hashable) -> bool:
        """One DELETE of the unclaimed row; a claimed row only loses its value (its
        claim stays for the holder's store), with a second statement."""
        runner, statements = self._ready or self._setup()
        params = {"ns": self._ns, "k": storage_name(key)}
        if runner.run(statements.batches.delete, params) == 1:
            return True
        return bool(runner.run(statements.batches.delete_value, params) >= 1)

    def get_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """One ``SELECT ... IN`` per 512 distinct keys."""
        if not keys:
            return []
        runner, statements = self._ready or self._setup()
        names = [storage_name(key) for key in keys]
        offset = self._offset()
        found: _Found = {}
        for size, params in self._read_batches(names):
            for name, value, timestamp in runner.run(statements.batches.read(size), params):
                found[name] = (value, timestamp)
        return self._entries_from(names, found, offset)

    def set_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """``set``'s upsert for every item, in one ``executemany``."""
        if not items:
            return []
        runner, statements = self._ready or self._setup()
        stored, batch = self._store_batch(items, self._offset())
        runner.run_many(statements.set, batch)
        self._stored(batch)
        return stored

    def tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """One ``SELECT ... WHERE tag_key IN (...)`` (per 512 tags)."""
        if not tags:
            return ()
        runner, statements = self._ready or self._setup()
        keys = [tag_key(tag) for tag in tags]
        found: dict[str, int] = {}
        for size, params in version_batches(keys):
            found.update(runner.run(statements.tags.versions(size), params))
        return versions_of(keys, found)

    def bump_tags(self, tags: Sequence[str]) -> None:
        """One upsert incrementing every tag (per 256 tags)."""
        if not tags:
            return
        runner, statements = self._ready or self._setup()
        for size, params in bump_batches(tags):
            runner.run(statements.tags.bump(size), params)

    def get_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """One SELECT: the entry's row and each tag's version (beyond 64 tags, two)."""
        if not tags or len(tags) > TAGGED_MAX:
            return self.get(key), self.tag_versions(tags)
        runner, statements = self._ready or self._setup()
        name, params = self._tagged_params(key, tags)
        offset = self._offset()
        value, timestamp, *versions = runner.run(statements.tags.tagged(len(tags)), params)[0]
        entry = self._entry(name, value, timestamp, offset)
        return entry, tuple(int(version or 0) for version in versions)
