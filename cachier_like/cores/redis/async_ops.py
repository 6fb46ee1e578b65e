"""The Redis core's operations for ``async def`` functions, awaited on the caller's loop.

:class:`RedisAsyncOps` is mixed into :class:`~.core.RedisCore`: the same keys, scripts
and round trips as the sync operations, on an :class:`~.async_link.AsyncLink`, so an
async call never leaves its event loop (no ``asyncio.to_thread``, no executor). A core
whose client is not a ``redis.asyncio`` one (``native_async`` false, or a callable that
returned a sync client) runs the sync operations in threads instead, as any blocking
core does.

A claim's holder is the task whose flow took it (:func:`~cachier_like.steps.calling_task`,
not the task ``drive_async`` runs the step in), so the first read after a won claim is
served from the claim's own snapshot for that task only; a concurrent task reading the
same key asks the server.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import redis
from redis.cluster import RedisCluster

from ...entry import Entry
from ...errors import AsyncOnlyError
from ...steps import calling_task
from ..base import Backoff, Core
from ..clocks import StoreClock
from ..shared import storage_name
from . import scripts as lua
from .async_clients import AsyncLinks
from .async_link import AsyncLink
from .keys import WAKE_MS, ms, new_token
from .link import ClientSource, is_async_client

if TYPE_CHECKING:
    from .invalidation import Store

logger = logging.getLogger(__name__)

_POLL_MIN_S, _POLL_MAX_S = 0.001, 0.05
#: Releases finishing after a cancellation (see ``RedisAsyncOps._finish_later``).
_finishing: set[asyncio.Task[None]] = set()


class Held:
    """A claim this process won: its token, who took it (thread or task), what it read."""

    __slots__ = ("holder", "snapshot", "stored", "token", "unread")

    def __init__(self, token: str, snapshot: bytes | None, holder: object) -> None:
        self.token = token
        self.holder = holder  # a thread's ident, or the task whose flow claimed
        self.snapshot = snapshot  # the entry as the claim was taken: the policy's re-read
        self.unread = True
        self.stored = False  # released already, by the store that ended the calculation


class RedisAsyncOps(Core):
    """``aget``, ``aset``, ``aclaim``, ``arelease``, ``arenew``, ``aclear``,
    ``aclear_claims`` and ``wait_async`` on a ``redis.asyncio`` client."""

    _v: str
    _c: str
    _w: str
    _ttl: str
    _px: tuple[str, str] | tuple[()]
    _held: dict[str, Held]
    _alinks: AsyncLinks
    _source: ClientSource
    _sync_caller: bool | None

    def check_caller(self, is_async: bool) -> None:
        """A ``redis.asyncio`` client serves ``async def`` functions only, natively.

        An async function is served natively unless ``redis_client`` is a sync client
        (then through threads); a sync function given an async client is refused.
        """
        self._sync_caller = not is_async
        given = self._source.given
        if not is_async and is_async_client(given):
            raise AsyncOnlyError(self._sync_advice())
        self.native_async = is_async and not isinstance(given, (redis.Redis, RedisCluster))
        # Known to be native before the first call unless a callable names the client.
        self.cancel_safe_async = self.native_async and not callable(given)

    def _sync_advice(self) -> str:
        if self._sync_caller:
            return (
                f"{self.namespace}: redis_client is a redis.asyncio client, which serves "
                "only async def functions; pass a redis.Redis or a URL, or make the "
                "function async def"
            )
        return (
            f"{self.namespace}: redis_client is a redis.asyncio client, which sync code "
            "cannot use: await the async method (aclear_cache(), "
            "aclear_being_calculated()), or give redis_client a URL, which serves both"
        )

    clock: StoreClock

    @abc.abstractmethod
    def _decode(self, suffix: str, data: bytes, offset: float) -> Entry | None:
        """The entry ``data`` holds (None: damaged, after a warning), its time made local."""

    @abc.abstractmethod
    def _store(self, suffix: str, entry: Entry, offset: float, holder: object) -> Store | None:
        """The command storing ``entry`` (see :class:`~.invalidation.RedisInvalidation`)."""

    async def _aoffset(self, link: AsyncLink) -> float:
        """The server's time minus this process's, read on the loop when due."""

        async def server_time() -> float:
            seconds, micros = await link.call("TIME")
            return int(seconds) + int(micros) / 1e6

        return await self.clock.aoffset_from(server_time)

    @abc.abstractmethod
    async def _thread_wait_async(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """:meth:`wait_async` through threads, for a sync client."""

    async def _alink(self) -> AsyncLink | None:
        """The running loop's link; None: serve through threads (no async client)."""
        if not self.native_async:
            return None
        link = self._alinks.current()
        if link is None and not self._alinks.known():
            link = await self._alinks.make()
            # Cancel-safe on the native path only: a thread cannot be stopped.
            self.cancel_safe_async = link is not None
        return link

    def _finish_later(
        self, link: AsyncLink, script: lua.Script, keys: tuple[str, ...], token: str
    ) -> None:
        """Run a release cut short by a cancellation to its end, in a task of its own."""

        async def release() -> None:
            try:
                await link.script(script, keys, (token, WAKE_MS))
            except Exception as exc:  # the lease ends the claim anyway
                logger.debug("%s: a cancelled release failed: %r", self.namespace, exc)

        task = asyncio.get_running_loop().create_task(release())
        _finishing.add(task)  # the loop holds its tasks weakly
        task.add_done_callback(_finishing.discard)

    async def aget(self, key: Hashable) -> Entry | None:
        """One ``GET``; a claiming task's first read is the claim's own snapshot."""
        link = await self._alink()
        if link is None:
            return await super().aget(key)
        suffix = storage_name(key)
        if self._held:
            held = self._held.get(suffix)
            if held is not None and held.unread and held.holder is calling_task():
                held.unread = False
                data = held.snapshot
                return (
                    None if data is None else self._decode(suffix, data, await self._aoffset(link))
                )
        data = await link.call("GET", self._v + suffix)
        return None if data is None else self._decode(suffix, data, await self._aoffset(link))

    async def aset(self, key: Hashable, entry: Entry) -> bool:
        """Store ``entry``; from the task holding the key's claim, release it too."""
        link = await self._alink()
        if link is None:
            return await super().aset(key, entry)
        store = self._store(storage_name(key), entry, await self._aoffset(link), calling_task())
        if store is None:
            return False
        command, held = store
        await link.batch(command)
        if held is not None:
            held.stored = True
        return True

    async def aclaim(self, key: Hashable, lease_s: float) -> bool:
        """``SET claim token NX PX lease`` and ``GET entry``, in one round trip."""
        link = await self._alink()
        if link is None:
            return await super().aclaim(key, lease_s)
        suffix, token = storage_name(key), new_token()
        try:
            claimed, snapshot = await link.pipeline(
                ("SET", self._c + suffix, token, "NX", "PX", ms(lease_s)),
                ("GET", self._v + suffix),
            )
        except asyncio.CancelledError:
            # The SET may have reached the server: drop the claim if it took it.
            keys = (self._c + suffix, f"{self._w}{suffix}:{token}")
            self._finish_later(link, lua.RELEASE, keys, token)
            raise
        if claimed:
            self._held[suffix] = Held(token, snapshot, calling_task())
        return bool(claimed)

    async def arenew(self, key: Hashable, lease_s: float) -> bool:
        """Extend this process's claim on ``key`` if it still holds it."""
        link = await self._alink()
        if link is None:
            return await super().arenew(key, lease_s)
        suffix = storage_name(key)
        held = self._held.get(suffix)
        if held is None:
            return False  # cleared by clear_claims()
        if held.stored:
            return True
        return bool(await link.script(lua.RENEW, (self._c + suffix,), (held.token, ms(lease_s))))

    async def arelease(self, key: Hashable) -> None:
        """Drop the claim if it is still ours, and wake the waiters (one script)."""
        link = await self._alink()
        if link is None:
            return await super().arelease(key)
        suffix = storage_name(key)
        held = self._held.pop(suffix, None)
        if held is not None and not held.stored:
            keys = (self._c + suffix, f"{self._w}{suffix}:{held.token}")
            try:
                await link.script(lua.RELEASE, keys, (held.token, WAKE_MS))
            except asyncio.CancelledError:
                self._finish_later(link, lua.RELEASE, keys, held.token)
                raise
        return None

    async def aclear(self) -> int:
        """``UNLINK`` this function's entries; return how many were removed."""
        link = await self._alink()
        if link is None:
            return await super().aclear()
        removed = 0
        async for batch in link.scan(self._v + "*"):
            removed += int(await link.call("UNLINK", *batch))
        return removed

    async def aclear_claims(self) -> int:
        """Drop every claim of this function and wake its waiters; return how many."""
        link = await self._alink()
        if link is None:
            return await super().aclear_claims()
        self._held.clear()
        dropped = 0
        async for batch in link.scan(self._c + "*"):
            keys, tokens = [], []
            holders = await link.pipeline(*(("GET", c) for c in batch))
            for claim, token in zip(batch, holders, strict=True):
                if token is not None:  # else it lapsed meanwhile
                    tokens.append(token.decode())
                    keys += [claim, f"{self._w}{claim[len(self._c) :]}:{tokens[-1]}"]
            if keys:
                dropped += int(await link.script(lua.DROP_CLAIMS, keys, (WAKE_MS, *tokens)))
        return dropped

    async def wait_async(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Block on the claim's wake list on the loop, in slices no longer than its lease.

        Each blocked waiter holds one of the link's connections, so at most
        :data:`~.async_link.MAX_BLOCKERS` block at once per link; the others probe with
        back-off (up to 50 ms), so a crowd of waiters cannot drain the client's pool.
        """
        link = await self._alink()
        if link is None:
            return await self._thread_wait_async(key, timeout_s)
        backoff = Backoff(timeout_s, _POLL_MIN_S, _POLL_MAX_S)
        while True:
            blocking = link.blockers < link.max_blockers
            if blocking:
                link.blockers += 1
            try:
                most_s = link.max_block if blocking else 0.0
                done, entry = await self._await_step(link, key, backoff.deadline, most_s)
            finally:
                if blocking:
                    link.blockers -= 1
            if done:
                return entry
            if not blocking:
                await asyncio.sleep(backoff.next_delay() or 0.0)  # None: the next step ends it

    async def _await_step(
        self, link: AsyncLink, key: Hashable, deadline: float | None, most_s: float
    ) -> tuple[bool, Entry | None]:
        """The sync ``_wait_step`` on the loop: probe, then block up to ``most_s``."""
        suffix = storage_name(key)
        reply: Any = await link.script(lua.PROBE, (self._c + suffix, self._v + suffix))
        ttl = int(reply[0])
        if ttl == -2:
            offset = await self._aoffset(link)
            return True, None if reply[1] is None else self._decode(suffix, reply[1], offset)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True, await self.aget(key)
            most_s = min(most_s, remaining)
        if ttl >= 0:
            most_s = min(most_s, ttl / 1000 + 0.002)  # no block outlasts the lease
        if most_s > 0:
            block = round(max(most_s, 0.001), 3)
            wake = f"{self._w}{suffix}:{reply[1].decode()}"
            await link.pipeline(("BLMOVE", wake, wake, "LEFT", "LEFT", block), block_s=block)
        return False, None
