"""The SQL core's native async path: an async function's statements on its own event loop.

On real servers: PostgreSQL through asyncpg and psycopg's async mode, MariaDB through
aiomysql (when installed), and a SQLite file through aiosqlite; each reached by a URL
naming the async driver (the core builds one engine per event loop) and, for
PostgreSQL, by an ``AsyncEngine`` of the test's own.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import time
from collections.abc import AsyncIterator, Hashable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
import sqlalchemy as sa

from cachier_like import ConfigurationError, Entry, cached
from cachier_like.cores.sql import SQLCore, async_native
from cachier_like.cores.sql.async_native import Native, NativeRunner, loop_engine
from cachier_like.cores.sql.engines import missing_driver_advice
from cachier_like.cores.sql.statements import Prepared
from cachier_like.flights import joined
from cachier_like.keys import KeyMaker
from tests.backends.sql_backend import drop_table, server_url, unique_table
from tests.support import (
    DEADLINE_S,
    FORK,
    reap,
    record,
    records,
    run_forked,
    thread_hops,
    wait_until,
    warnings_in,
)

pytestmark = pytest.mark.sql

#: id -> (the server's sync engine fixture, or None for SQLite; the async driver)
DRIVERS = {
    "postgres-asyncpg": ("postgres_engine", "postgresql+asyncpg"),
    "postgres-psycopg_async": ("postgres_engine", "postgresql+psycopg_async"),
    "mariadb-aiomysql": ("mariadb_engine", "mysql+aiomysql"),
    "sqlite-aiosqlite": (None, "sqlite+aiosqlite"),
}
MODULES = {"postgresql+asyncpg": "asyncpg", "postgresql+psycopg_async": "psycopg"}
MODULES |= {"mysql+aiomysql": "aiomysql", "sqlite+aiosqlite": "aiosqlite"}


class Store:
    """One test's database: the ``sql_engine`` to give (a URL or an AsyncEngine), a table."""

    def __init__(self, url: str, sql_engine: object, table: str) -> None:
        self.url = url
        self.sql_engine = sql_engine
        self.table = table

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"backend": "sql", "sql_engine": self.sql_engine, "table_name": self.table, **extra}


def _skip_a_broken_aiomysql() -> None:
    """aiomysql 0.3.2 sends no bytes parameter with PyMySQL 1.2.3+ (aio-libs/aiomysql#1080)."""
    converters = importlib.import_module("pymysql.converters")
    if not callable(getattr(converters, "escape_bytes_prefixed", None)):
        pytest.skip("aiomysql cannot send bytes with this PyMySQL (aio-libs/aiomysql#1080)")


def _async_url(request: pytest.FixtureRequest, driver_id: str, tmp_path: Path) -> tuple[str, Any]:
    """The driver's URL (skipping a missing driver), and the server's sync engine (or None)."""
    fixture, scheme = DRIVERS[driver_id]
    pytest.importorskip(MODULES[scheme])
    if scheme == "mysql+aiomysql":
        _skip_a_broken_aiomysql()
    if fixture is None:
        return f"{scheme}:///{tmp_path / 'cache.sqlite'}", None
    sync_engine = request.getfixturevalue(fixture)
    server = "postgres" if fixture == "postgres_engine" else "mariadb"
    url = sa.make_url(server_url(server)).set(drivername=scheme)
    return url.render_as_string(hide_password=False), sync_engine


@pytest.fixture(params=list(DRIVERS))
def url_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A URL naming an async driver, and a table of this test's own."""
    url, sync_engine = _async_url(request, request.param, tmp_path)
    store = Store(url, url, unique_table())
    yield store
    if sync_engine is not None:
        drop_table(sync_engine, store.table)


@pytest_asyncio.fixture(params=["postgres-asyncpg", "postgres-psycopg_async", "url"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """PostgreSQL through an AsyncEngine of the test's own (asyncpg, psycopg), or asyncpg's URL."""
    from sqlalchemy.ext.asyncio import create_async_engine

    driver_id = "postgres-asyncpg" if request.param == "url" else request.param
    url, sync_engine = _async_url(request, driver_id, tmp_path)
    engine = None if request.param == "url" else create_async_engine(url)
    table = unique_table()
    yield Store(url, url if engine is None else engine, table)
    if engine is not None:
        await engine.dispose()
    drop_table(sync_engine, table)


def _key(func: Any, *args: Any) -> Hashable:
    return KeyMaker(func.__wrapped__).key(args, {})


async def _claimed(core: Any, key: Hashable) -> bool:
    claimed, _ = await core._apoll(key)
    return bool(claimed)


# -- hits, misses, staleness -----------------------------------------------------------


@pytest.mark.asyncio
async def test_hit_miss_stale_and_next_time(url_store: Store) -> None:
    calls: list[int] = []

    @cached(**url_store.options(stale_after=60))
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @cached(**url_store.options(stale_after=60, next_time=True), namespace=double.namespace)
    async def double_next(x: int) -> int:
        calls.append(-x)
        return 2 * x

    core = double.core
    assert core.native_async
    assert await double(1) == 2 and calls == [1]  # a miss
    assert await double(1) == 2 and calls == [1]  # a hit
    key = _key(double, 1)
    await core.aset(key, Entry(99, time.time() - 3600))  # stale
    assert await double(1) == 2 and calls == [1, 1]  # recomputed
    await core.aset(key, Entry(99, time.time() - 3600))
    assert await double_next(1) == 99  # served stale, refreshed in the background
    deadline = time.monotonic() + DEADLINE_S
    while (entry := await core.aget(key)) is None or entry.value != 2:
        assert time.monotonic() < deadline, "the background refresh never stored"
        await asyncio.sleep(0.005)
    assert calls == [1, 1, -1]
    assert await double.aclear_cache() == 1


@pytest.mark.asyncio
async def test_a_thousand_concurrent_awaits_of_a_cold_key_compute_once(url_store: Store) -> None:
    calls: list[int] = []
    release = asyncio.Event()

    @cached(**url_store.options())
    async def slow(x: int) -> int:
        calls.append(x)
        await release.wait()
        return x + 1

    tasks = [asyncio.create_task(slow(7)) for _ in range(1000)]
    key = _key(slow, 7)
    deadline = time.monotonic() + DEADLINE_S
    while joined((slow.core, key)) < 1000:
        assert time.monotonic() < deadline, "the callers never joined"
        await asyncio.sleep(0.001)
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S) == [8] * 1000
    assert calls == [7]
    assert await slow(7) == 8 and calls == [7]


# -- no thread, ever -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_core_operation_leaves_the_event_loop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    @cached(**store.options(lease=1.0, wait_for_calc_timeout=DEADLINE_S))
    async def slow(x: int) -> int:
        calls.append(x)
        started.set()
        await release.wait()
        return x * 3

    core: Any = slow.core
    renewals: list[bool] = []
    waits: list[Hashable] = []
    arenew, wait_async = core.arenew, core.wait_async

    async def counted_renew(key: Hashable, lease_s: float) -> bool:
        kept = bool(await arenew(key, lease_s))
        renewals.append(kept)
        return kept

    async def counted_wait(key: Hashable, timeout_s: float | None) -> Any:
        waits.append(key)
        return await wait_async(key, timeout_s)

    monkeypatch.setattr(core, "arenew", counted_renew)
    monkeypatch.setattr(core, "wait_async", counted_wait)
    other = SQLCore(slow.namespace, sql_engine=store.sql_engine, table_name=store.table)
    other.check_caller(is_async=True)  # as the decorator tells it: a URL's core is then native
    with thread_hops(monkeypatch) as hops:
        # A miss whose claim is renewed (lease 1 s: every third of it) while it computes.
        call = asyncio.create_task(slow(1))
        await asyncio.wait_for(started.wait(), DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while len(renewals) < 2:
            assert time.monotonic() < deadline, "the lease was never renewed"
            await asyncio.sleep(0.01)
        assert renewals[:2] == [True, True]
        release.set()
        assert await call == 3
        assert await slow(1) == 3 and calls == [1]  # a hit
        # A wait: another caller holds the claim; its store ends the wait.
        key = _key(slow, 2)
        assert await other.aclaim(key, 10.0)
        waiter = asyncio.create_task(slow(2))
        while not waits:
            await asyncio.sleep(0.005)
        await other.aset(key, Entry(42, time.time()))
        await other.arelease(key)
        assert await asyncio.wait_for(waiter, DEADLINE_S) == 42 and calls == [1]
        # Clearing claims and entries.
        assert await other.aclaim(_key(slow, 3), 10.0)
        assert await slow.aclear_being_calculated() == 1
        assert await slow.aclear_cache() == 2
        assert await slow(1) == 3 and calls == [1, 1]
    assert hops == []


@pytest.mark.asyncio
async def test_a_cancelled_call_releases_its_claim(url_store: Store) -> None:
    started = asyncio.Event()

    @cached(**url_store.options())
    async def forever(x: int) -> int:
        started.set()
        await asyncio.Event().wait()
        return x

    core: Any = forever.core
    key = _key(forever, 1)
    call = asyncio.create_task(forever(1))
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    assert await _claimed(core, key)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert not await _claimed(core, key)
    assert core._held == {}


# -- across processes ------------------------------------------------------------------


@pytest.mark.skipif(FORK is None, reason="needs fork")
def test_a_forked_process_waits_for_anothers_claim(url_store: Store, tmp_path: Path) -> None:
    log = tmp_path / "log"

    @cached(**url_store.options(wait_for_calc_timeout=DEADLINE_S))
    async def compute(x: int) -> int:
        record(log, "computing")
        # Hold the claim until the other process waits for it.
        await asyncio.to_thread(wait_until, lambda: "waiting" in records(log))
        return x * 10

    def work(index: int) -> int:
        core: Any = compute.core
        if index == 1:
            wait_until(lambda: "computing" in records(log))
            original = core.wait_async

            async def noted_wait(key: Hashable, timeout_s: float | None) -> Any:
                record(log, "waiting")
                return await original(key, timeout_s)

            core.wait_async = noted_wait
        return asyncio.run(compute(4))

    assert run_forked(2, work) == [40, 40]
    assert records(log).count("computing") == 1
    assert "waiting" in records(log)


@pytest.mark.skipif(FORK is None, reason="needs fork")
def test_a_killed_calculator_is_taken_over_after_its_lease(
    url_store: Store, tmp_path: Path
) -> None:
    log = tmp_path / "log"

    @cached(**url_store.options(lease=1.0, wait_for_calc_timeout=DEADLINE_S))
    async def compute(x: int) -> int:
        record(log, f"computing {os.getpid()}")
        if os.getpid() != parent:
            await asyncio.Event().wait()  # stuck (its lease renewed) until killed
        return x * 10

    parent = os.getpid()
    calculator = FORK.Process(target=lambda: asyncio.run(compute(5)), daemon=True)
    calculator.start()
    try:
        wait_until(lambda: bool(records(log)))
        assert calculator.pid is not None
        os.kill(calculator.pid, signal.SIGKILL)
        calculator.join(DEADLINE_S)
        waits: list[Hashable] = []
        core: Any = compute.core
        original = core.wait_async

        async def noted_wait(key: Hashable, timeout_s: float | None) -> Any:
            waits.append(key)
            return await original(key, timeout_s)

        core.wait_async = noted_wait
        assert asyncio.run(compute(5)) == 50
    finally:
        reap(calculator)
    assert records(log) == [f"computing {calculator.pid}", f"computing {parent}"]
    assert waits  # the claim outlived its killed holder until the lease lapsed


# -- URLs naming an async driver -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///cache.sqlite",
        "postgresql+asyncpg://db/app",
        "postgresql+psycopg_async://db/app",
        "mysql+aiomysql://db/app",
    ],
)
def test_an_async_driver_url_for_a_sync_function_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sync driver") as raised:

        @cached(backend="sql", sql_engine=url)
        def plain(x: int) -> int:
            return x

    assert "async def" in str(raised.value)


def test_psycopgs_url_serves_a_sync_function() -> None:
    @cached(backend="sql", sql_engine="postgresql+psycopg://db/app")
    def plain(x: int) -> int:
        return x

    assert not plain.core.native_async


def test_a_url_gives_each_event_loop_an_engine_disposed_with_it(
    url_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.ext.asyncio import AsyncEngine

    disposed: list[AsyncEngine] = []
    dispose = AsyncEngine.dispose

    async def recorded_dispose(self: AsyncEngine, close: bool = True) -> None:
        disposed.append(self)
        await dispose(self, close)

    monkeypatch.setattr(AsyncEngine, "dispose", recorded_dispose)

    @cached(**url_store.options())
    async def ident(x: int) -> int:
        return x

    async def main() -> AsyncEngine:
        assert await ident(1) == 1
        engine = await loop_engine(sa.make_url(url_store.url))
        core: Any = ident.core
        native: Native = core._native
        assert native.runner.engine is engine
        pool: Any = engine.sync_engine.pool
        assert pool.checkedin() >= 1  # a connection, idle in its pool
        return engine

    first = asyncio.run(main())
    assert disposed == [first]
    pool: Any = first.sync_engine.pool  # the one dispose() left: empty
    assert pool.checkedin() == 0
    second = asyncio.run(main())
    assert second is not first and disposed == [first, second]


def test_a_sync_clear_cache_of_a_url_configured_async_function(url_store: Store) -> None:
    @cached(**url_store.options())
    async def ident(x: int) -> int:
        return x

    async def fill() -> None:
        assert (await ident(1), await ident(2)) == (1, 2)

    asyncio.run(fill())
    assert ident.clear_cache() == 2  # the core's own loop, with an engine of its own
    assert ident.cached_entry(1) is None


@pytest.mark.asyncio
async def test_an_unreachable_server_fails_open_on_the_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("asyncpg")
    calls: list[int] = []
    refused = "postgresql+asyncpg://postgres@127.0.0.1:9/test"  # nothing listens there

    @cached(backend="sql", sql_engine=refused, table_name=unique_table())
    async def ident(x: int) -> int:
        calls.append(x)
        return x

    with thread_hops(monkeypatch) as hops:
        assert (await ident(1), await ident(1)) == (1, 1)
    assert calls == [1, 1] and hops == []
    assert any("without the cache" in m for m in warnings_in(caplog, "cachier_like"))


@pytest.mark.asyncio
async def test_the_environments_async_url_is_native_from_the_first_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aiosqlite")

    @cached(backend="sql", table_name="env_cache")
    async def ident(x: int) -> int:
        return x

    monkeypatch.setenv("CACHIER_LIKE_SQL_URL", f"sqlite+aiosqlite:///{tmp_path / 'env.sqlite'}")
    with thread_hops(monkeypatch) as hops:
        assert (await ident(1), await ident(1)) == (1, 1)
        assert await ident.aclear_cache() == 1
    assert ident.core.native_async and hops == []


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("postgresql+asyncpg://db/app", "postgres-async"),
        ("sqlite+aiosqlite:///cache.sqlite", "sqlite-async"),
        ("mysql+aiomysql://db/app", "mysql-async"),
    ],
)
def test_a_missing_async_driver_names_its_extra(url: str, extra: str) -> None:
    driver = sa.make_url(url).get_dialect().driver
    advice = missing_driver_advice(sa.make_url(url), ModuleNotFoundError(name=driver))
    assert f"pip install 'cachier_like[{extra}]'" in advice


@pytest.mark.asyncio
async def test_a_cancelled_renewal_or_poll_lets_its_statement_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = asyncio.Event()
    finished: list[bool] = []

    async def gated_execute(engine: object, prepared: Prepared, params: object) -> int:
        await gate.wait()  # a statement in flight
        finished.append(True)
        return 1

    monkeypatch.setattr(async_native, "execute", gated_execute)

    class Up:
        down = False

    runner = NativeRunner(cast(Any, Up()), cast(Any, None))
    select = Prepared(sa.text("SELECT 1"), "SELECT 1", None, False, True)
    for finish in (True, False):
        call = asyncio.create_task(runner.run(select, {}, finish=finish))
        for _ in range(3):
            await asyncio.sleep(0)  # the statement has started
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        gate.set()
        for _ in range(3):
            await asyncio.sleep(0)
        gate.clear()
    assert finished == [True]  # only the statement run with finish=True completed


@pytest.mark.asyncio
async def test_invalidation_and_batches_stay_on_the_loop(
    url_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = SQLCore("native.tags", sql_engine=url_store.sql_engine, table_name=url_store.table)
    core.check_caller(is_async=True)
    with thread_hops(monkeypatch) as hops:
        assert await core.aset_many([("a", Entry(1, 1.0, (("t", 0),))), ("b", Entry(2, 1.0))])
        assert await core.aget_many(["b", "missing", "a"]) == [
            Entry(2, 1.0),
            None,
            Entry(1, 1.0, (("t", 0),)),
        ]
        await core.abump_tags(["t", "u"])
        assert await core.atag_versions(["t", "u", "v"]) == (1, 1, 0)
        assert await core.aget_tagged("a", ["t"]) == (Entry(1, 1.0, (("t", 0),)), (1,))
        assert await core.adelete("a") is True
        assert await core.adelete("a") is False
        assert await core.aget_tagged("a", ["t"]) == (None, (1,))
    assert core.native_async and hops == []
