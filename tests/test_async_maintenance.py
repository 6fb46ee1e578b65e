"""Upkeep from event loops: ``aclear_cache``, awaitable counts, and the SQL core's AsyncEngine.

A blocking core's upkeep must run off the event loop: the core operation is gated on
an event that only another task of the loop can set, so an operation run on the loop
itself would wait for it in vain (and fail at the deadline).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from cachier_like import AsyncOnlyError, CachedFunction, ConfigurationError, cached
from cachier_like.cores.base import Core
from cachier_like.cores.sql import SQLCore
from cachier_like.cores.sql.async_engines import LOOP, private_engine
from cachier_like.counts import AwaitableCount
from cachier_like.flights import joined
from cachier_like.keys import KeyMaker
from cachier_like.testing import CoreContract, MakeCore
from tests.backends.sql_backend import drop_table, server_url, unique_table
from tests.backends.types import CoreOptions
from tests.support import DEADLINE_S

KEY = "held_key"


def _fixed_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return KEY


async def eventually(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` from the loop (each poll in a thread) until it holds, or fail."""
    deadline = time.monotonic() + DEADLINE_S
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Gate:
    """Holds a core operation until another task of the event loop opens the gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, core: Core, name: str) -> None:
        self.opened = threading.Event()
        self.threads: list[threading.Thread] = []
        original = getattr(core, name)

        def gated() -> Any:
            self.threads.append(threading.current_thread())
            if core.blocking:
                assert self.opened.wait(DEADLINE_S), "the event loop was blocked meanwhile"
            return original()

        monkeypatch.setattr(core, name, gated)

    async def open_from_another_task(self) -> None:
        await asyncio.sleep(0)  # the gated call has started by now, unless it blocks the loop
        self.opened.set()

    async def run(self, call: Awaitable[int]) -> int:
        """``await call`` while another task opens the gate; check where the work ran."""
        count, _ = await asyncio.gather(call, self.open_from_another_task())
        assert len(self.threads) == 1
        return count


def _ran_where_it_should(gate: Gate, core: Core) -> bool:
    """Blocking cores' work runs in a worker thread; the memory core's inline."""
    on_loop = gate.threads[0] is threading.current_thread()
    return on_loop is not core.blocking


# -- aclear_cache and aclear_being_calculated, on every core --------------------------


@pytest.mark.asyncio
async def test_aclear_cache_removes_entries_without_blocking_the_loop(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    @cached(**core_options())
    async def double(x: int) -> int:
        return 2 * x

    assert (await double(1), await double(2)) == (2, 4)
    core = double.core
    gate = Gate(monkeypatch, core, "clear")
    assert await gate.run(double.aclear_cache()) == 2
    assert _ran_where_it_should(gate, core)
    assert await asyncio.to_thread(double.cached_entry, 1) is None
    assert await asyncio.to_thread(double.cached_entry, 2) is None


@pytest.mark.asyncio
async def test_aclear_being_calculated_drops_a_live_claim_without_blocking_the_loop(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @cached(**core_options(hash_func=_fixed_key))
    async def held(x: int) -> int:
        started.set()  # its claim is taken and recorded by now
        await release.wait()
        return x

    core = held.core
    calculation = asyncio.create_task(held(7))
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    assert await asyncio.to_thread(core.is_claimed, KEY)
    gate = Gate(monkeypatch, core, "clear_claims")
    assert await gate.run(held.aclear_being_calculated()) == 1
    assert _ran_where_it_should(gate, core)
    assert not await asyncio.to_thread(core.is_claimed, KEY)
    release.set()
    assert await asyncio.wait_for(calculation, DEADLINE_S) == 7  # it still finishes and stores
    assert await held(7) == 7


@pytest.mark.asyncio
async def test_aclear_on_a_sync_function_returns_the_sync_count(
    core_options: CoreOptions,
) -> None:
    @cached(**core_options())
    def square(x: int) -> int:
        return x * x

    await asyncio.to_thread(square, 3)
    assert await square.aclear_cache() == 1
    assert await square.aclear_cache() == 0
    assert await square.aclear_being_calculated() == 0


# -- the sync upkeep methods of an async wrapper may be awaited -----------------------


@pytest.mark.asyncio
async def test_async_wrapper_clear_cache_is_an_int_that_may_be_awaited(
    core_options: CoreOptions,
) -> None:
    @cached(**core_options())
    async def triple(x: int) -> int:
        return 3 * x

    await triple(1)
    await triple(2)
    count = triple.clear_cache()  # the work is done here, at once
    assert isinstance(count, AwaitableCount) and count == 2
    assert await asyncio.to_thread(triple.cached_entry, 1) is None
    assert await count == 2
    await triple(1)
    assert await triple.clear_cache() == 1
    claims = triple.clear_being_calculated()
    assert isinstance(claims, AwaitableCount) and claims == 0
    assert await triple.clear_being_calculated() == 0


@pytest.mark.memory
def test_sync_wrapper_counts_stay_plain_ints() -> None:
    @cached(backend="memory")
    def ident(x: int) -> int:
        return x

    ident(1)
    count = ident.clear_cache()
    assert type(count) is int and count == 1
    claims = ident.clear_being_calculated()
    assert type(claims) is int and claims == 0


# -- sql_engine= an AsyncEngine ------------------------------------------------------


def _create_async_engine(url: str | sa.URL, **options: Any) -> Any:
    pytest.importorskip("greenlet", reason="SQLAlchemy's asyncio layer needs greenlet")
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(url, **options)


def close_cache_connections(engine: Any) -> None:
    """Close the connections the cores opened for ``engine`` (they stay open otherwise)."""
    LOOP.run(private_engine(engine).dispose())


@pytest.fixture
def aiosqlite_memory_engine() -> Iterator[Any]:
    """An in-memory aiosqlite AsyncEngine: its one connection (StaticPool) holds the data."""
    pytest.importorskip("aiosqlite")
    engine = _create_async_engine("sqlite+aiosqlite:///:memory:", poolclass=sa.pool.StaticPool)
    yield engine
    close_cache_connections(engine)  # the cores' and the test's: one connection


ASYNC_POSTGRES_DRIVERS = [
    pytest.param("asyncpg", id="postgres-asyncpg"),
    pytest.param("psycopg", id="postgres-psycopg_async"),
]


@pytest.fixture(params=ASYNC_POSTGRES_DRIVERS)
def postgres_async_url(request: pytest.FixtureRequest, postgres_engine: sa.Engine) -> sa.URL:
    """The test PostgreSQL server's URL with an async driver (the test disposes its engine)."""
    driver: str = request.param
    pytest.importorskip(driver)
    return sa.make_url(server_url("postgres")).set(drivername=f"postgresql+{driver}")


def _counting(
    engine: Any, table: str
) -> tuple[CachedFunction[[int], Any], list[int], asyncio.Event]:
    """An async function cached on ``engine``: its calls, and the event that ends them."""
    calls: list[int] = []
    release = asyncio.Event()

    @cached(backend="sql", sql_engine=engine, table_name=table)
    async def lookup(x: int) -> dict[str, int]:
        calls.append(x)
        await release.wait()
        return {"x": x}

    return lookup, calls, release


async def _check_async_engine(
    engine: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> CachedFunction[[int], Any]:
    """Miss, concurrent callers of one key (one computes, the rest join it), hit, stats, clear.

    Returns the function, holding one entry.
    """
    lookup, calls, release = _counting(engine, table)
    core = lookup.core
    waiting: list[object] = []
    wait_async = core.wait_async

    async def spied_wait(key: Any, timeout_s: float | None) -> Any:
        waiting.append(key)
        return await wait_async(key, timeout_s)

    monkeypatch.setattr(core, "wait_async", spied_wait)
    tasks = [asyncio.create_task(lookup(5)) for _ in range(4)]
    # One computes; in one loop the other three join its computation, not its claim.
    key = KeyMaker(lookup.__wrapped__).key((5,), {})
    await eventually(lambda: calls == [5])
    while joined((core, key)) < 4:
        await asyncio.sleep(0.001)
    assert waiting == []
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
    assert results == [{"x": 5}] * 4
    assert calls == [5]
    assert await lookup(5) == {"x": 5} and calls == [5]  # a hit
    assert await lookup(6) == {"x": 6} and calls == [5, 6]  # a miss
    stats = await asyncio.to_thread(core.stats)
    assert (stats.entries, stats.claims) == (2, 0)
    assert await lookup.aclear_being_calculated() == 0
    assert await lookup.aclear_cache() == 2
    assert await asyncio.to_thread(lookup.cached_entry, 5) is None
    assert await lookup(5) == {"x": 5} and calls == [5, 6, 5]
    return lookup


@pytest.mark.sql
@pytest.mark.asyncio
async def test_aiosqlite_memory_async_engine_caches(
    aiosqlite_memory_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookup = await _check_async_engine(aiosqlite_memory_engine, "async_cache", monkeypatch)
    assert lookup.clear_cache() == 1


@pytest.mark.sql
@pytest.mark.asyncio
async def test_aiosqlite_memory_async_engine_keeps_entries_in_the_applications_database(
    aiosqlite_memory_engine: Any,
) -> None:
    @cached(backend="sql", sql_engine=aiosqlite_memory_engine, table_name="shared_cache")
    async def value(x: int) -> int:
        return x

    assert await value(1) == 1 and await value(2) == 2
    async with aiosqlite_memory_engine.connect() as connection:  # on this test's own loop
        rows = await connection.execute(sa.text("SELECT COUNT(*) FROM shared_cache"))
        assert rows.scalar() == 2
    assert await value.aclear_cache() == 2


@pytest.mark.sql
@pytest.mark.asyncio
async def test_postgres_async_engine_caches(
    postgres_async_url: sa.URL, postgres_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres_async_engine = _create_async_engine(postgres_async_url)
    table = unique_table()
    try:
        # The application uses the engine on its own loop before and after the cache.
        async with postgres_async_engine.connect() as connection:
            assert (await connection.execute(sa.text("SELECT 1"))).scalar() == 1
        lookup = await _check_async_engine(postgres_async_engine, table, monkeypatch)
        async with postgres_async_engine.connect() as connection:
            count = await connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}"))
            assert count.scalar() == 1
        assert lookup.clear_cache() == 1
    finally:
        await postgres_async_engine.dispose()
        close_cache_connections(postgres_async_engine)
        drop_table(postgres_engine, table)


@pytest.mark.sql
def test_async_engine_on_a_sync_function_is_a_type_error(aiosqlite_memory_engine: Any) -> None:
    with pytest.raises(TypeError, match="async def") as raised:

        @cached(backend="sql", sql_engine=aiosqlite_memory_engine)
        def plain(x: int) -> int:
            return x

    assert isinstance(raised.value, AsyncOnlyError)
    assert "sync Engine" in str(raised.value)


@pytest.mark.sql
def test_callable_giving_an_async_engine_to_a_sync_function_raises_on_first_call(
    aiosqlite_memory_engine: Any,
) -> None:
    @cached(backend="sql", sql_engine=lambda: aiosqlite_memory_engine)
    def plain(x: int) -> int:
        return x

    with pytest.raises(AsyncOnlyError, match="async def"):
        plain(1)  # a mistake to fix: raised, not failed open


@pytest.mark.sql
@pytest.mark.asyncio
async def test_callable_giving_an_async_engine_serves_an_async_function(
    aiosqlite_memory_engine: Any,
) -> None:
    calls: list[int] = []

    @cached(backend="sql", sql_engine=lambda: aiosqlite_memory_engine, table_name="lazy_cache")
    async def lazy(x: int) -> int:
        calls.append(x)
        return x

    assert (await lazy(1), await lazy(1)) == (1, 1)
    assert calls == [1]
    assert await lazy.clear_cache() == 1


@pytest.mark.sql
def test_in_memory_async_engine_needs_a_static_pool() -> None:
    pytest.importorskip("aiosqlite")
    engine = _create_async_engine("sqlite+aiosqlite:///:memory:", poolclass=sa.pool.NullPool)
    with pytest.raises(ConfigurationError, match="StaticPool"):

        @cached(backend="sql", sql_engine=engine)
        async def anything(x: int) -> int:
            return x


# -- the core contract, on AsyncEngines ------------------------------------------------


class TestAsyncSQLiteMemoryContract(CoreContract):
    """The shipped core contract on an in-memory aiosqlite AsyncEngine (StaticPool)."""

    pytestmark = pytest.mark.sql
    cross_process = False  # a forked child's in-memory database starts empty
    race_rounds = 4

    @pytest.fixture
    def make_core(self, aiosqlite_memory_engine: Any) -> MakeCore:
        table = unique_table()

        def make(namespace: str, **options: Any) -> Core:
            return SQLCore(
                namespace, sql_engine=aiosqlite_memory_engine, table_name=table, **options
            )

        return make


class TestAsyncPostgresContract(CoreContract):
    """The shipped core contract on PostgreSQL through an async driver."""

    pytestmark = pytest.mark.sql
    race_rounds = 4

    @pytest.fixture
    def make_core(
        self, postgres_async_url: sa.URL, postgres_engine: sa.Engine
    ) -> Iterator[MakeCore]:
        engine = _create_async_engine(postgres_async_url)
        table = unique_table()

        def make(namespace: str, **options: Any) -> Core:
            return SQLCore(namespace, sql_engine=engine, table_name=table, **options)

        yield make
        close_cache_connections(engine)
        drop_table(postgres_engine, table)
