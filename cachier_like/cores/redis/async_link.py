"""The Redis core's native async path: running commands on a ``redis.asyncio`` client.

Imported only by :mod:`cachier_like.cores.redis`. An :class:`AsyncLink` runs the core's
commands for ``async def`` functions on the caller's event loop, as :class:`~.link.Link`
does for threads. A ``redis.asyncio.Redis`` on a plain ``ConnectionPool`` lends it a few
connections, which it keeps checked out (redis-py's check-out and check-in per command
cost more than the round trip) and drives with the core's own packing; any other client
(``RedisCluster``, a ``BlockingConnectionPool``, ...) runs them through its own
``execute_command``. A link is a circuit breaker too: its prober thread pings the
server through the link's loop (``run_coroutine_threadsafe``).

Which client serves each event loop is :mod:`.async_clients`' job.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import sys
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import BackendError
from .._breaker import Breaker
from . import wire
from .link import (
    MAX_BLOCK_S,
    NETWORK_ERRORS,
    SCAN_COUNT,
    Link,
)
from .scripts import Script, by_sha, by_text
from .wire import _joined, _pack

if sys.version_info >= (3, 11):
    from asyncio import timeout as async_timeout
else:  # pragma: no cover - redis-py requires async-timeout before 3.11
    from async_timeout import timeout as async_timeout  # type: ignore[import-not-found]

logger = logging.getLogger(__name__)

AsyncClient = aredis.Redis | AsyncRedisCluster
#: Idle private connections a link keeps per loop; more in use at once are handed back.
MAX_IDLE = 8
#: Most connections a link borrows from the client's pool at once (at most half the
#: pool's ``max_connections``, leaving the rest to the application); more concurrent
#: operations queue for one, as they would for a ``BlockingConnectionPool``.
MAX_LENT = 32
#: Waiters of one link blocking on wake lists at once (each holds a connection, at most
#: half of those lent); the others poll, with back-off up to 50 ms.
MAX_BLOCKERS = 16
#: Longest wait for a probe's PING, from the prober thread.
PROBE_TIMEOUT_S = 2.0
_FAST_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)


class _Conn:
    __slots__ = ("conn", "generation", "used")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.generation = wire._generation  # a forked child must not use the parent's
        self.used = False


async def _exchange(conn: Any, commands: tuple[tuple[Any, ...], ...], timeout: float | None) -> Any:
    """Send ``commands`` on ``conn`` and read every reply, all within ``timeout``.

    Written to the connection's stream and read with its parser directly: redis-py's
    ``send_packed_command`` starts a task per write (``asyncio.wait_for``) and
    ``read_response`` a timer per reply, which together cost more than the round trip.
    An error reply comes back in the list, as the parser gives it.
    """
    if not conn.is_connected:
        await conn.connect()
    writer, parser = getattr(conn, "_writer", None), getattr(conn, "_parser", None)
    try:
        async with async_timeout(timeout):
            if writer is None or parser is None:  # a redis-py without them: its public API
                await conn.send_packed_command(_pack(commands), check_health=False)
                return [await _reply(conn) for _ in commands]
            writer.writelines(_pack(commands))
            await writer.drain()
            return [await parser.read_response() for _ in commands]
    except asyncio.TimeoutError:
        raise RedisTimeoutError(f"no reply from the Redis server within {timeout} s") from None
    except OSError as exc:
        raise RedisConnectionError(f"Error talking to the Redis server: {exc!r}") from exc


async def _reply(conn: Any) -> Any:
    try:
        return await conn.read_response(timeout=math.inf)  # the exchange's timeout bounds it
    except ResponseError as exc:
        return exc


class AsyncLink(Breaker):
    """Runs the core's commands on one event loop, for one ``redis.asyncio`` client."""

    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop, owned: bool) -> None:
        self.client = client
        self.owned = owned  # built from a URL here: closed with the loop
        self._loop = weakref.ref(loop)  # the link must not keep its loop alive
        self._init_breaker("Redis")
        #: Whether keys of different slots must go in separate commands.
        self.cluster = isinstance(client, AsyncRedisCluster)
        pool = getattr(client, "connection_pool", None)
        self._pool = pool if type(pool) is aredis.ConnectionPool else None
        if self._pool is not None and self._pool.connection_class not in _FAST_CONNECTIONS:
            self._pool = None
        self._free: list[_Conn] = []
        self._lent = 0  # private connections out of the pool now
        self._queue: collections.deque[asyncio.Future[_Conn]] = collections.deque()
        limit = getattr(pool, "max_connections", None) or 2 * MAX_LENT  # any pool's own cap
        self._most = max(1, min(MAX_LENT, limit // 2))
        self.blockers = 0  # waiters blocking on a wake list now
        #: How many waiters may block at once; the others poll.
        self.max_blockers = max(1, min(MAX_BLOCKERS, self._most // 2))
        kwargs = pool.connection_kwargs if pool is not None else {}
        if pool is None:  # a cluster: its nodes' settings
            kwargs = getattr(getattr(client, "nodes_manager", None), "connection_kwargs", {})
        self.timeout: float | None = kwargs.get("socket_timeout")
        #: Longest single blocking read: below the socket timeout, which would cut it.
        self.max_block = MAX_BLOCK_S if self.timeout is None else min(MAX_BLOCK_S, self.timeout / 2)

    async def call(self, *args: Any) -> Any:
        """Run one command and return redis-py's reply (an error reply raises)."""
        return (await self.pipeline(args))[0]

    async def pipeline(self, *commands: tuple[Any, ...], block_s: float = 0.0) -> list[Any]:
        """Run commands in one round trip; ``block_s``: how long the last one may block."""
        if self.down:
            raise self.refusal()
        with Link.errors():
            try:
                if self._pool is not None:
                    return await self._private(commands, block_s)
                return await self._through_client(commands)
            except NETWORK_ERRORS as exc:
                self.trip(exc)
                raise

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run a Lua script by SHA1, sending its text when the server lacks it."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.call("EVAL", script.text, len(keys), *keys, *args)

    async def batch(self, *commands: tuple[Any, ...]) -> list[Any]:
        """:meth:`pipeline` of commands and scripts (``(Script, numkeys, ...)``, see
        :mod:`.scripts`): by SHA1, once more as text when the server lacks a script."""
        try:
            return await self.pipeline(*by_sha(commands))
        except NoScriptError:  # a plain command re-run stores the same bytes again
            return await self.pipeline(*by_text(commands))

    async def scan(self, match: str) -> AsyncIterator[list[str]]:
        """Keys matching ``match``, in batches (``SCAN``, through the client)."""
        if self.down:
            raise self.refusal()
        batch: list[str] = []
        with Link.errors():
            async for key in self.client.scan_iter(match=match, count=SCAN_COUNT):
                batch.append(key.decode() if isinstance(key, bytes) else key)
                if len(batch) == SCAN_COUNT:
                    yield batch
                    batch = []
        if batch:
            yield batch

    async def _through_client(self, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        client: Any = self.client
        if len(commands) == 1:
            return [await client.execute_command(*_joined(commands[0]))]
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*_joined(command))
        return list(await pipe.execute())

    async def _private(self, commands: tuple[tuple[Any, ...], ...], block_s: float) -> list[Any]:
        slot = await self._take()
        timeout = None if self.timeout is None else self.timeout + block_s
        for attempt in (0, 1):
            try:
                replies: list[Any] = await _exchange(slot.conn, commands, timeout)
            except RedisConnectionError:
                await slot.conn.disconnect(nowait=True)
                # A connection that worked may have been closed by the server: retry once.
                if attempt or not slot.used:
                    await self._give_back(slot)
                    raise
                slot.used = False
                continue
            except BaseException:
                await slot.conn.disconnect(nowait=True)  # a reply may be on its way: afresh
                slot.used = False
                await self._give_back(slot)
                raise
            slot.used = True
            await self._give_back(slot)
            for reply in replies:
                if isinstance(reply, ResponseError):  # all read: the connection is in step
                    raise reply
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    async def _take(self) -> _Conn:
        """A private connection: an idle one, a new one from the pool, or the next freed."""
        free = self._free
        while free:
            slot = free.pop()
            if slot.generation == wire._generation:
                return slot
            self._lent -= 1  # the parent's, in a forked child: left alone
        if self._lent < self._most:
            self._lent += 1
            pool: Any = self._pool  # redis-py leaves get_connection untyped
            try:
                return _Conn(await pool.get_connection())
            except BaseException:
                self._lent -= 1
                raise
        future: asyncio.Future[_Conn] = asyncio.get_running_loop().create_future()
        self._queue.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                await self._give_back(future.result())  # handed over as this was cancelled
            raise

    async def _give_back(self, slot: _Conn) -> None:
        queue = self._queue
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(slot)
                return
        if len(self._free) < MAX_IDLE:
            self._free.append(slot)
        else:
            self._lent -= 1
            assert self._pool is not None
            await self._pool.release(slot.conn)

    def probe(self) -> None:
        """``PING`` the server past the breaker, on the link's loop (from the prober thread)."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise BackendError("the event loop of this Redis client has closed")

        async def ping() -> None:
            with Link.errors():
                if self._pool is not None:
                    await self._private((("PING",),), 0.0)
                else:
                    await self._through_client((("PING",),))

        asyncio.run_coroutine_threadsafe(ping(), loop).result(PROBE_TIMEOUT_S)

    async def aclose(self) -> None:
        """Hand the private connections back (and close the client, if the link built it)."""
        free, self._free = self._free, []
        try:
            if self.owned:
                await self.client.aclose()
            elif self._pool is not None:
                for slot in free:  # closed: a connection belongs to the loop that opened it
                    await slot.conn.disconnect()
                    await self._pool.release(slot.conn)
        except Exception as exc:  # closing at the loop's end: nothing to fail
            logger.debug("closing a Redis client at the loop's end: %r", exc)
