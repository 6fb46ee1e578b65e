"""The SQL core's async twins (``aget``, ``aclaim``, ...), awaited on the caller's loop.

Each mirrors its sync operation in :mod:`.core` statement for statement, through a
:class:`~.async_native.NativeRunner`; with ``native_async`` off (a sync engine, an
in-memory SQLite one) they fall back to the base class's worker threads. Here too:
which functions an async engine serves (``check_caller``), and when the native path
applies (``native_async``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ...entry import Entry
from ...errors import AsyncOnlyError
from ..base import Core
from ..clocks import StoreClock
from ..shared import StoreSource, storage_name
from .async_engines import is_async_engine
from .async_native import (
    Native,
    NativeRunner,
    is_async_url,
    loop_engine,
    native_capable,
    native_statements,
)
from .engines import AnyEngine, adopt_pool, runner_for

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["NativeOps"]


class NativeOps(Core):
    """The native async twins of :class:`~.core.SQLCore`'s operations (a mixin base)."""

    # Set by SQLCore.
    table: sa.Table
    _ns: str
    #: The PostgreSQL NOTIFY channel of this namespace's waiters (see :mod:`.notify`).
    _channel: str
    _pid: int
    _held: dict[str, str | None]
    _sync_caller: bool | None
    _engine: AnyEngine | None
    #: Whether the engine comes from $CACHIER_LIKE_SQL_URL (sql_engine not given).
    _by_env: bool
    _source: StoreSource[AnyEngine]
    #: The application's AsyncEngine, awaited on its loop (None: one engine per loop, from the URL).
    _user_engine: AsyncEngine | None
    _native: Native | None
    _native_task: asyncio.Task[Native] | None

    clock: StoreClock

    def _entry(
        self, name: str, value: bytes | None, timestamp: float | None, offset: float
    ) -> Entry | None:
        raise NotImplementedError

    async def _aoffset(self, runner: Any, statements: Any) -> float:
        """The database's time minus this process's, read on the loop when due."""

        async def database_time() -> float:
            return float((await runner.run(statements.now, {}))[0][0])

        return await self.clock.aoffset_from(database_time)

    def _resolve(self) -> AnyEngine:
        raise NotImplementedError

    def _native_from_env(self) -> bool:
        """Whether ``$CACHIER_LIKE_SQL_URL``, read now, gives this async function a native path.

        Resolving builds the engine object without connecting, so it may run on the loop;
        a URL given to the decorator was looked at as it decorated, an engine when given.
        """
        if self._engine is not None or self._sync_caller is not False or not self._by_env:
            return False
        self._resolve()
        return self.native_async

    def check_caller(self, is_async: bool) -> None:
        """An AsyncEngine, or a URL naming an async driver, serves ``async def`` functions only.

        Such a URL gives an async function a native client (see ``docs/cores/sql.md``).
        """
        self._sync_caller = not is_async
        url = self._source.url
        if not is_async and (is_async_engine(self._source.given) or is_async_url(url)):
            raise AsyncOnlyError(self._sync_caller_advice(url is not None))
        if is_async and is_async_url(url):
            self.native_async = native_capable(url)

    def _sync_caller_advice(self, by_url: bool) -> str:
        if by_url:
            return (
                f"{self.namespace}: sql_engine names an async driver, which serves only "
                "async def functions; use the sync driver's URL (sqlite://, "
                "postgresql+psycopg://, mysql+pymysql://) or make the function async def"
            )
        return (
            f"{self.namespace}: sql_engine is an AsyncEngine, which serves only async def "
            "functions; make the function async def, or pass a sync Engine or a URL"
        )

    async def _anative(self) -> Native:
        """The runner and statements for the running loop (set up once per loop)."""
        loop = asyncio.get_running_loop()
        native = self._native
        if native is not None and native.loop is loop:
            return native
        task = self._native_task
        if task is None or task.done() or task.get_loop() is not loop:
            # One set-up per loop, however many callers arrive while it connects.
            task = self._native_task = loop.create_task(self._set_up_native(loop))
        return await asyncio.shield(task)

    async def _set_up_native(self, loop: asyncio.AbstractEventLoop) -> Native:
        shared = self._resolve()  # the sync operations' engine: its runner is the breaker
        assert is_async_engine(shared)
        breaker = runner_for(shared)
        engine = self._user_engine
        if engine is None:
            engine = await loop_engine(shared.url)
        else:
            adopt_pool(engine.sync_engine, inherited=self._pid != os.getpid())
        statements = await native_statements(engine, self.table, breaker)
        native = self._native = Native(loop, NativeRunner(breaker, engine), statements)
        return native

    async def aget(self, key: Hashable) -> Entry | None:
        """:meth:`get` on the caller's loop."""
        if not (self.native_async or self._native_from_env()):
            return await super().aget(key)
        _, runner, statements = await self._anative()
        name = storage_name(key)
        offset = await self._aoffset(runner, statements)  # with the first read, not a miss
        rows = await runner.run(statements.get, {"ns": self._ns, "k": name})
        return self._entry(name, rows[0][0], rows[0][1], offset) if rows else None

    async def aset(self, key: Hashable, entry: Entry) -> bool:
        """:meth:`set` on the caller's loop."""
        if not (self.native_async or self._native_from_env()):
            return await super().aset(key, entry)
        _, runner, statements = await self._anative()
        k, stamp = storage_name(key), entry.timestamp + await self._aoffset(runner, statements)
        payload = self.encode_entry(entry, k, stamp)
        if payload is None:
            return False
        token = self._held.get(k)
        params = {"ns": self._ns, "k": k, "v": payload, "ts": stamp, "tok": token}
        params["chan"] = self._channel  # on PostgreSQL, the store that ends a claim notifies
        await runner.run(statements.set, params)
        if token is not None and self._held.get(k) == token:
            self._held[k] = None
        return True

    async def aclaim(self, key: Hashable, lease_s: float) -> bool:
        """:meth:`claim` on the caller's loop."""
        if not (self.native_async or self._native_from_env()):
            return await super().aclaim(key, lease_s)
        _, runner, statements = await self._anative()
        k = storage_name(key)
        token = secrets.token_hex(16)
        params = {"ns": self._ns, "k": k, "tok": token, "lease": float(lease_s)}
        if statements.takeover is None:
            won = bool(await runner.run(statements.claim, params))
        else:
            won = (
                await runner.run(statements.claim, params) == 1
                or await runner.run(statements.takeover, params) == 1
            )
        if won:
            self._held[k] = token
        return won

    async def arenew(self, key: Hashable, lease_s: float) -> bool:
        """:meth:`renew` on the caller's loop."""
        if not (self.native_async or self._native_from_env()):
            return await super().arenew(key, lease_s)
        k = storage_name(key)
        if k not in self._held:
            return False
        token = self._held.get(k)
        if token is None:
            return True
        _, runner, statements = await self._anative()
        params = {"ns": self._ns, "k": k, "tok": token, "lease": float(lease_s)}
        return bool(await runner.run(statements.renew, params, finish=True) == 1)

    async def arelease(self, key: Hashable) -> None:
        """:meth:`release` on the caller's loop."""
        if not (self.native_async or self._native_from_env()):
            return await super().arelease(key)
        token = self._held.pop(storage_name(key), None)
        if token is None:
            return
        _, runner, statements = await self._anative()
        params = {"ns": self._ns, "k": storage_name(key), "tok": token, "chan": self._channel}
        if await runner.run(statements.release_empty, params) == 0:
            await runner.run(statements.release, params)

    async def aclear(self) -> int:
        """:meth:`clear` on the caller's loop."""
        if not (self.native_async or self._native_from_env()):
            return await super().aclear()
        _, runner, statements = await self._anative()
        params = {"ns": self._ns}
        removed: int = await runner.run(statements.clear_free, params, finish=True)
        return removed + int(await runner.run(statements.clear_claimed, params, finish=True))

    async def aclear_claims(self) -> int:
        """:meth:`clear_claims` on the caller's loop."""
        if not (self.native_async or self._native_from_env()):
            return await super().aclear_claims()
        _, runner, statements = await self._anative()
        params = {"ns": self._ns, "chan": self._channel}
        cleared: int = await runner.run(statements.clear_claims, params, finish=True)
        await runner.run(statements.drop_claim_rows, params, finish=True)
        return cleared

    async def _apoll(self, key: str) -> tuple[bool, Entry | None]:
        """One poll of a waiter (see ``SQLCore._poll``) without leaving the loop."""
        if not (self.native_async or self._native_from_env()):
            return await asyncio.to_thread(self._poll, key)
        _, runner, statements = await self._anative()
        rows: Any = await runner.run(statements.poll, {"ns": self._ns, "k": key}, finish=True)
        if not rows:
            return False, None
        value, timestamp, live, _left = rows[0]
        return bool(live), self._entry(
            key, value, timestamp, await self._aoffset(runner, statements)
        )

    def _poll(self, key: str) -> tuple[bool, Entry | None]:
        raise NotImplementedError
