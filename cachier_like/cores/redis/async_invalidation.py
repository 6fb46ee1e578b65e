"""The Redis core's invalidation and batches for ``async def`` functions, on the loop.

:class:`RedisAsyncInvalidation` gives :class:`~.invalidation.RedisInvalidation`'s
operations their native twins on an :class:`~.async_link.AsyncLink`: the same commands
in the same round trips, never in a thread. Without a ``redis.asyncio`` client they run
the sync operations in threads, as the other async operations do
(:class:`~.async_ops.RedisAsyncOps`, whose link and clock it uses).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from ...entry import Entry
from ...steps import calling_task
from ..shared import storage_name
from . import scripts as lua
from .async_ops import RedisAsyncOps
from .invalidation import RedisInvalidation, versions


class RedisAsyncInvalidation(RedisInvalidation, RedisAsyncOps):
    """``adelete``, ``aget_many``, ``aset_many``, ``atag_versions``, ``abump_tags`` and
    ``aget_tagged`` on a ``redis.asyncio`` client."""

    async def adelete(self, key: Hashable) -> bool:
        """:meth:`delete` on the loop: one ``UNLINK``."""
        link = await self._alink()
        if link is None:
            return await super().adelete(key)
        suffix = storage_name(key)
        if self._held:
            self._forget_snapshot(suffix)
        return bool(await link.call("UNLINK", self._v + suffix))

    async def aget_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """:meth:`get_many` on the loop: one ``MGET``."""
        link = await self._alink()
        if link is None:
            return await super().aget_many(keys)
        if not keys:
            return []
        suffixes = [storage_name(key) for key in keys]
        replies = await link.call("MGET", *(self._v + suffix for suffix in suffixes))
        offset = await self._aoffset(link)
        return [
            None if data is None else self._decode(suffix, data, offset)
            for suffix, data in zip(suffixes, replies, strict=True)
        ]

    async def aset_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """:meth:`set_many` on the loop: one pipeline; the calling task's claims end."""
        link = await self._alink()
        if link is None:
            return await super().aset_many(items)
        offset = await self._aoffset(link)
        commands, ended, stored = self._stores(items, offset, calling_task())
        if commands:
            await link.batch(*commands)
            for held in ended:
                held.stored = True
        return stored

    async def atag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """:meth:`tag_versions` on the loop: one ``MGET``."""
        link = await self._alink()
        if link is None:
            return await super().atag_versions(tags)
        if not tags:
            return ()
        return versions(await link.call("MGET", *self._tag_keys(tags)))

    async def abump_tags(self, tags: Sequence[str]) -> None:
        """:meth:`bump_tags` on the loop: one script."""
        link = await self._alink()
        if link is None:
            return await super().abump_tags(tags)
        if tags:
            await link.script(lua.BUMP_TAGS, self._tag_keys(tags))
        return None

    async def aget_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """:meth:`get_tagged` on the loop: one ``MGET`` (a cluster: one pipeline)."""
        link = await self._alink()
        if link is None:
            return await super().aget_tagged(key, tags)
        if not tags:
            return await self.aget(key), ()
        suffix = storage_name(key)
        if self._held:
            self._forget_read(suffix, calling_task())
        replies = await link.pipeline(*self._tagged_commands(suffix, tags, link.cluster))
        data, found = (replies[0], replies[1]) if link.cluster else (replies[0][0], replies[0][1:])
        entry = None if data is None else self._decode(suffix, data, await self._aoffset(link))
        return entry, versions(found)
