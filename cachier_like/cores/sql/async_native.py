"""The SQL core's native async path: an async function's statements awaited on its own loop.

An ``async def`` function cached on an ``AsyncEngine`` (asyncpg, psycopg's async mode,
aiosqlite on a file, aiomysql) never leaves the caller's event loop: each prepared
statement is awaited through the engine there (:class:`NativeRunner`), with the sync
runner's retries, and its breaker (shared by every path to the database; its probe
runs on the private loop of :mod:`.async_engines`). Nothing goes to a thread.

Which engine: the application's own ``AsyncEngine``, as given (it belongs to the
application's loop, as the cache's calls do); for a URL naming an async driver, one
engine per event loop (:func:`loop_engine`), since asyncpg's connections belong to the
loop that opened them. That engine is disposed as its loop shuts down: an async
generator started on the loop awaits ``engine.dispose()`` in its ``finally``, which
``loop.shutdown_asyncgens()`` (``asyncio.run`` calls it) runs. A loop closed without
that keeps its engine's connections until the process ends.

The table is created on first use, awaited too. There is no watchdog on this path (it
cuts a hung statement's socket, which an async driver does not show): asyncpg's
``command_timeout`` (30 s on engines built from a URL) bounds a statement on a hung server.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Coroutine, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from ... import forks
from .async_engines import create_table_on, execute, execute_many
from .engines import engine_from_url
from .runner import Retry, Runner, is_memory_sqlite
from .statements import Params, Prepared, Statements

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "Native",
    "NativeRunner",
    "is_async_url",
    "loop_engine",
    "native_capable",
    "native_statements",
]


def is_async_url(url: sa.URL | None) -> bool:
    """Whether ``url`` names an async driver (an explicit async dialect).

    ``postgresql+psycopg`` is psycopg's sync dialect; ``postgresql+psycopg_async`` its async one.

    Example:
        >>> is_async_url(sa.make_url("sqlite+aiosqlite:///cache.db"))
        True
        >>> is_async_url(sa.make_url("postgresql+psycopg://db/app"))
        False
    """
    return url is not None and bool(url.get_dialect().is_async)


def native_capable(url: sa.URL | None) -> bool:
    """Whether statements on an async engine of ``url`` may be awaited on the caller's loop.

    Not on in-memory SQLite: its one connection is the database, which the core's sync
    operations use on their own loop at the same time.
    """
    return url is not None and not is_memory_sqlite(url)


class NativeRunner:
    """Awaits prepared statements on ``engine`` on the running loop, guarded by ``breaker``.

    Example (an aiosqlite file):
        >>> import asyncio, tempfile
        >>> from cachier_like.cores.sql.engines import engine_from_url, runner_for
        >>> engine: Any = engine_from_url(sa.make_url(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/c.db"))
        >>> select_one = Prepared(sa.text("SELECT 1"), "SELECT 1", None, False, True)
        >>> async def main() -> Any:
        ...     try:
        ...         return await NativeRunner(runner_for(engine), engine).run(select_one, {})
        ...     finally:
        ...         await engine.dispose()
        >>> asyncio.run(main())
        [(1,)]
    """

    __slots__ = ("breaker", "engine")

    def __init__(self, breaker: Runner, engine: AsyncEngine) -> None:
        self.breaker = breaker
        self.engine = engine

    async def run(self, prepared: Prepared, params: Params, finish: bool = False) -> Any:
        """Run one statement: its rows (a list) if it returns rows, else its row count.

        With ``finish``, a cancelled caller lets the statement finish in the background
        (a task more per statement), for statements cancelled in the normal course: lease
        renewals, waiters' polls. A hit cut short costs its connection instead.
        """
        breaker = self.breaker
        if breaker.down:
            raise breaker.refusal()
        attempt = 1
        while True:
            try:
                if finish:
                    return await _finished(execute(self.engine, prepared, params))
                return await execute(self.engine, prepared, params)
            except Retry as retry:
                pause = breaker.retry_pause(retry, attempt)
                if pause is not None:
                    await asyncio.sleep(pause)
                attempt += 1
            except Exception as exc:
                breaker.raise_failure(exc)

    async def run_many(self, prepared: Prepared, batch: Sequence[Params]) -> None:
        """:meth:`~.runner.Runner.run_many` awaited on the running loop."""
        if not batch:
            return
        breaker = self.breaker
        if breaker.down:
            raise breaker.refusal()
        attempt = 1
        while True:
            try:
                return await execute_many(self.engine, prepared, batch, breaker.loops_batches)
            except Retry as retry:
                pause = breaker.retry_pause(retry, attempt)
                if pause is not None:
                    await asyncio.sleep(pause)
                attempt += 1
            except Exception as exc:
                breaker.raise_failure(exc)


#: Statements whose caller was cancelled, finishing in the background.
_FINISHING: set[asyncio.Task[Any]] = set()


def _drop_outcome(task: asyncio.Task[Any]) -> None:
    _FINISHING.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the caller that wanted it is gone


async def _finished(statement: Coroutine[Any, Any, Any]) -> Any:
    """Await ``statement``; if the caller is cancelled, let it finish in the background.

    A statement cut short mid-protocol costs its connection (the pool closes it, and
    the next call connects anew); one round trip more keeps it in the pool.
    """
    task = asyncio.ensure_future(statement)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            _FINISHING.add(task)
            task.add_done_callback(_drop_outcome)
        raise


class Native(NamedTuple):
    """What one core awaits its statements with on one event loop."""

    loop: asyncio.AbstractEventLoop
    runner: NativeRunner
    statements: Statements


# -- one engine per event loop, for URLs ---------------------------------------------

#: loop -> URL (with password) -> its engine on that loop, and the generator disposing it
_LoopEngines = dict[str, tuple["AsyncEngine", AsyncIterator[None]]]
_LOOP_ENGINES: MutableMapping[asyncio.AbstractEventLoop, _LoopEngines] = weakref.WeakKeyDictionary()
_STRONG_LOOP_ENGINES: dict[asyncio.AbstractEventLoop, _LoopEngines] = {}
#: A forked child's inherited engines and generators, kept from the garbage collector:
#: collecting a generator would schedule its clean-up on a loop that does not run here.
_ORPHANS: list[_LoopEngines] = []


async def _disposed_at_shutdown(engine: AsyncEngine) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await engine.dispose()


async def loop_engine(url: sa.URL) -> AsyncEngine:
    """This event loop's engine for ``url`` (an async driver), built on first use.

    Disposed when the loop shuts its async generators down (``asyncio.run`` does).
    """
    loop = asyncio.get_running_loop()
    try:
        engines = _LOOP_ENGINES.setdefault(loop, {})
    except TypeError:  # a loop that takes no weak reference: kept for the process
        engines = _STRONG_LOOP_ENGINES.setdefault(loop, {})
    text = url.render_as_string(hide_password=False)
    held = engines.get(text)
    if held is not None:
        return held[0]
    engine = engine_from_url(url)
    assert not isinstance(engine, sa.Engine)
    closer = _disposed_at_shutdown(engine)
    engines[text] = (engine, closer)
    await anext(closer)  # runs to the yield at once; the loop now finalizes it
    return engine


# -- the table, on first use -----------------------------------------------------------

#: breaker's engine -> the tables known to exist through it
_CREATED: weakref.WeakKeyDictionary[sa.Engine, set[str]] = weakref.WeakKeyDictionary()
#: (table, dialect name) -> the statements (only their dialect-free form is used here)
_STATEMENTS: dict[tuple[str, str], Statements] = {}


async def native_statements(engine: AsyncEngine, table: sa.Table, breaker: Runner) -> Statements:
    """The statements for ``table`` on ``engine``, creating it (awaited) if missing."""
    created = _CREATED.setdefault(breaker.engine, set())
    if table.fullname not in created:
        if breaker.down:
            raise breaker.refusal()
        try:
            await create_table_on(engine, table)
        except Exception as exc:
            outage = breaker.failed(exc)
            if outage is None:
                raise
            raise outage from exc
        created.add(table.fullname)
    dialect = engine.sync_engine.dialect
    statements = _STATEMENTS.get((table.fullname, dialect.name))
    if statements is None:
        statements = _STATEMENTS[(table.fullname, dialect.name)] = Statements(table, dialect)
    return statements


def _after_fork_in_child() -> None:
    # The parent's loops do not run here; their connections are the parent's.
    for registry in (_LOOP_ENGINES, _STRONG_LOOP_ENGINES):
        for engines in registry.values():
            for engine, _ in engines.values():
                engine.sync_engine.dispose(close=False)
            _ORPHANS.append(engines)
        registry.clear()


forks.reset_in_child(_after_fork_in_child)
