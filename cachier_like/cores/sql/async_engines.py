"""SQLAlchemy ``AsyncEngine`` for the SQL core's sync operations: run on a loop of its own.

An ``async def`` function's calls await their statements on the caller's own event
loop (:mod:`.async_native`). The core's plain (sync) operations are made from whatever
thread needs them: the breaker's prober, the CLI, a sync ``clear_cache()``, the purge
thread, and the calls of a function given an in-memory SQLite AsyncEngine (whose one
connection the two paths would share, so it keeps the worker-thread path). An AsyncEngine's
connections are only driven by awaiting, so each statement is a coroutine run on one
private event loop, in a daemon thread (:class:`EngineLoop`), and the calling thread
waits for its result. Every connection the core uses is opened and used on that loop.

asyncpg's (and psycopg's async) connections belong to the event loop that opened them,
and a connection the cache opened must not reach the application's loop through a
shared pool: so the core runs its statements on a copy of the engine with a pool of
its own, built like the engine's (``Pool.recreate()``: same class, size and listeners).
An in-memory SQLite database lives in its one connection, so that engine (it needs
``StaticPool``) is used as it is: aiosqlite does not tie a connection to a loop.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import sys
import threading
import weakref
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ... import forks
from ...errors import ConfigurationError, MissingDriverError
from .prepared import Params, Prepared
from .runner import Retry, Runner, execute_batch, is_memory_sqlite, is_transient
from .schema import make_tags_table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "LOOP",
    "AsyncRunner",
    "EngineLoop",
    "check_async_engine",
    "create_table_async",
    "create_table_on",
    "create_tables",
    "execute",
    "execute_many",
    "has_table_async",
    "is_async_engine",
    "namespaces_async",
    "own_engine",
    "private_engine",
]

T = TypeVar("T")


def is_async_engine(value: object) -> TypeGuard[AsyncEngine]:
    """Whether ``value`` is a SQLAlchemy ``AsyncEngine`` (without importing its module).

    Example:
        >>> is_async_engine(sa.create_engine("sqlite://"))
        False
    """
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    return module is not None and isinstance(value, module.AsyncEngine)


def check_async_engine(engine: AsyncEngine) -> AsyncEngine:
    """Refuse an AsyncEngine the core cannot use: no greenlet, or a memory database
    that each connection would see empty."""
    if importlib.util.find_spec("greenlet") is None:  # SQLAlchemy's asyncio layer needs it
        raise MissingDriverError(
            "an AsyncEngine needs the greenlet package: pip install 'cachier_like[sql-async]'"
        )
    if is_memory_sqlite(engine.url) and not isinstance(engine.sync_engine.pool, StaticPool):
        raise ConfigurationError(
            "an in-memory SQLite AsyncEngine needs poolclass=StaticPool: with any other pool "
            "each connection has a database of its own"
        )
    return engine


class EngineLoop:
    """One event loop in a daemon thread, started on first use, that runs coroutines
    for threads that wait for them.

    Example:
        >>> async def answer() -> int:
        ...     return 42
        >>> EngineLoop().run(answer())
        42
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        forks.reset_in_child(self._after_fork)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop; block this thread until it ends; return its result."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("EngineLoop.run() called on the loop's own thread")
        return asyncio.run_coroutine_threadsafe(coroutine, self._started()).result()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="cachier_like-sql-async", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def _after_fork(self) -> None:
        # The thread did not survive the fork; the child starts a loop of its own.
        self._lock = threading.Lock()
        self._loop = self._thread = None


#: The loop every AsyncEngine of this process runs its statements on.
LOOP = EngineLoop()

_private_lock = threading.Lock()
#: the application's engine (its sync side) -> the core's copy with a pool of its own
_PRIVATE: weakref.WeakKeyDictionary[sa.Engine, AsyncEngine] = weakref.WeakKeyDictionary()


def private_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine the core runs statements on for the application's ``engine``.

    The same for every function given ``engine``, so they share one pool.
    """
    if is_memory_sqlite(engine.url):
        return engine  # its data lives in the one connection
    with _private_lock:
        private = _PRIVATE.get(engine.sync_engine)
        if private is None:
            sync = copy.copy(engine.sync_engine)  # shares dialect, URL and engine events
            sync.pool = engine.sync_engine.pool.recreate()
            private = _PRIVATE[engine.sync_engine] = type(engine)(sync)
        return private


def own_engine(engine: AsyncEngine) -> AsyncEngine:
    """Mark ``engine``, which the core built from a URL, as its own private engine (no copy)."""
    with _private_lock:
        _PRIVATE[engine.sync_engine] = engine
    return engine


async def _connect(engine: AsyncEngine) -> AsyncConnection:
    try:
        return await engine.connect()
    except (TypeError, ValueError, sa.exc.ProgrammingError) as exc:
        shown = engine.url.render_as_string(hide_password=True)
        raise ConfigurationError(f"the driver refused the options of {shown!r}: {exc}") from exc


def create_tables(connection: sa.Connection, table: sa.Table) -> None:
    """Create the entries ``table`` and its tag versions table, each if it is missing.

    A table made by an older version (entries only) gains its tags table here.
    """
    for each in (table, make_tags_table(table)):
        try:
            with connection.begin():
                connection.execute(sa.schema.CreateTable(each, if_not_exists=True))
        except sa.exc.DBAPIError:
            # A concurrent creation (PostgreSQL may report a race on its catalog), or
            # no CREATE privilege on a table a DBA made: fine if the table is there.
            exists = sa.inspect(connection).has_table(each.name, schema=each.schema)
            connection.rollback()  # the inspection's transaction: the next begin() is ours
            if not exists:
                raise


async def create_table_on(engine: AsyncEngine, table: sa.Table) -> None:
    """Create ``table`` through ``engine`` if it is missing, on the running loop."""
    connection = await _connect(engine)
    try:
        await connection.run_sync(create_tables, table)
    finally:
        await connection.close()


def create_table_async(engine: AsyncEngine, table: sa.Table) -> None:
    """Create ``table`` through ``engine`` if it is missing (from any thread but the loop's)."""
    LOOP.run(create_table_on(engine, table))


async def execute(engine: AsyncEngine, prepared: Prepared, params: Params) -> Any:
    """One attempt at ``prepared`` on a connection of ``engine``, on the running loop.

    Its rows (a list) or its row count; a dropped connection or a deadlock raises
    :class:`~.runner.Retry`.
    """
    try:
        async with engine.connect() as connection:
            result = await connection.execute(prepared.statement, dict(params))
            out = result.fetchall() if prepared.returns_rows else result.rowcount
            if prepared.write:
                await connection.commit()
            return out
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated or is_transient(exc.orig):
            raise Retry(exc) from exc
        raise


async def execute_many(
    engine: AsyncEngine, prepared: Prepared, batch: Sequence[Params], loop: bool
) -> None:
    """One attempt at ``prepared`` once per parameter set of ``batch``, on one connection
    of ``engine``, committed once (see :meth:`~.runner.Runner.run_many`)."""
    try:
        async with engine.connect() as connection:
            await connection.run_sync(execute_batch, prepared, batch, loop)
            await connection.commit()
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated or is_transient(exc.orig):
            raise Retry(exc) from exc
        raise


def has_table_async(engine: AsyncEngine, name: str, schema: str | None) -> bool:
    """Whether the table ``schema.name`` exists (``sa.inspect`` takes no AsyncEngine)."""

    async def run() -> bool:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: sa.inspect(sync).has_table(name, schema=schema)
            )

    return LOOP.run(run())


def namespaces_async(engine: AsyncEngine, table: sa.Table) -> list[str]:
    """The namespaces with rows in ``table`` (an empty list if it does not exist)."""

    def read(connection: sa.Connection) -> list[str]:
        if not sa.inspect(connection).has_table(table.name, schema=table.schema):
            return []
        query = sa.select(table.c.namespace).distinct().order_by(table.c.namespace)
        return [row[0] for row in connection.execute(query)]

    async def run() -> list[str]:
        async with engine.connect() as connection:
            return await connection.run_sync(read)

    return LOOP.run(run())


class AsyncRunner(Runner):
    """A :class:`Runner` whose statements run through an AsyncEngine, on :data:`LOOP`.

    Retries, the breaker and its probe work as for a sync engine. No watchdog: it cuts
    a hung statement's socket, which an async driver does not show; bound statements
    with the driver's own timeout instead (asyncpg's ``command_timeout``).
    """

    watched = False

    def __init__(self, engine: AsyncEngine) -> None:
        self.async_engine = engine
        super().__init__(engine.sync_engine)
        # asyncpg raises the socket's own errors (a refused connection, a timeout: OSErrors).
        self._unreachable = (*self._unreachable, OSError)

    def _once(self, prepared: Prepared, params: Params) -> Any:
        return LOOP.run(execute(self.async_engine, prepared, params))

    def _many(self, prepared: Prepared, batch: Sequence[Params]) -> None:
        LOOP.run(execute_many(self.async_engine, prepared, batch, self.loops_batches))

    def probe(self) -> None:
        """``SELECT 1`` past the breaker."""

        async def select_one() -> None:
            async with self.async_engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))

        LOOP.run(select_one())
