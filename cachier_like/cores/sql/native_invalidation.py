"""The async twins of :mod:`.invalidation` (``adelete``, ``aget_many``, ``aset_many``,
``atag_versions``, ``abump_tags``, ``aget_tagged``), awaited on the caller's loop.

Statement for statement what the sync operations run, through the
:class:`~.async_native.NativeRunner`; off the native path (a sync engine, an in-memory
SQLite AsyncEngine) they fall back to the base class's worker threads.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from ...entry import Entry
from ..shared import storage_name
from .invalidation import InvalidationOps, _Found
from .tags import TAGGED_MAX, bump_batches, tag_key, version_batches, versions_of

__all__ = ["NativeInvalidationOps"]


class NativeInvalidationOps(InvalidationOps):
    """The native async twins of :class:`~.invalidation.InvalidationOps` (a base)."""

    def _native_path(self) -> bool:
        return self.native_async or self._native_from_env()

    async def adelete(self, key: Hashable) -> bool:
        """:meth:`delete` on the caller's loop."""
        if not self._native_path():
            return await super().adelete(key)
        _, runner, statements = await self._anative()
        params = {"ns": self._ns, "k": storage_name(key)}
        if await runner.run(statements.batches.delete, params) == 1:
            return True
        return bool(await runner.run(statements.batches.delete_value, params) >= 1)

    async def aget_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """:meth:`get_many` on the caller's loop."""
        if not self._native_path():
            return await super().aget_many(keys)
        if not keys:
            return []
        _, runner, statements = await self._anative()
        names = [storage_name(key) for key in keys]
        offset = await self._aoffset(runner, statements)
        found: _Found = {}
        for size, params in self._read_batches(names):
            for name, value, timestamp in await runner.run(statements.batches.read(size), params):
                found[name] = (value, timestamp)
        return self._entries_from(names, found, offset)

    async def aset_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """:meth:`set_many` on the caller's loop."""
        if not self._native_path():
            return await super().aset_many(items)
        if not items:
            return []
        _, runner, statements = await self._anative()
        stored, batch = self._store_batch(items, await self._aoffset(runner, statements))
        await runner.run_many(statements.set, batch)
        self._stored(batch)
        return stored

    async def atag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """:meth:`tag_versions` on the caller's loop."""
        if not self._native_path():
            return await super().atag_versions(tags)
        if not tags:
            return ()
        _, runner, statements = await self._anative()
        keys = [tag_key(tag) for tag in tags]
        found: dict[str, int] = {}
        for size, params in version_batches(keys):
            found.update(await runner.run(statements.tags.versions(size), params))
        return versions_of(keys, found)

    async def abump_tags(self, tags: Sequence[str]) -> None:
        """:meth:`bump_tags` on the caller's loop."""
        if not self._native_path():
            return await super().abump_tags(tags)
        if not tags:
            return
        _, runner, statements = await self._anative()
        for size, params in bump_batches(tags):
            await runner.run(statements.tags.bump(size), params)

    async def aget_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """:meth:`get_tagged` on the caller's loop."""
        if not self._native_path():
            return await super().aget_tagged(key, tags)
        if not tags or len(tags) > TAGGED_MAX:
            return await self.aget(key), await self.atag_versions(tags)
        _, runner, statements = await self._anative()
        name, params = self._tagged_params(key, tags)
        offset = await self._aoffset(runner, statements)
        rows = await runner.run(statements.tags.tagged(len(tags)), params)
        value, timestamp, *versions = rows[0]
        entry = self._entry(name, value, timestamp, offset)
        return entry, tuple(int(version or 0) for version in versions)
