"""Section 5, the SQL core's native async path: async hit and miss on PostgreSQL (asyncpg).

Measured inside one event loop, each figure a median over repeats of a batch of awaits
(the implementations take turns, repeat by repeat):

* ours, given a ``postgresql+asyncpg://`` URL (a native engine per loop, autocommit);
* ours, given an application's ``create_async_engine(url)`` (native; not autocommit, so
  each statement also sends BEGIN and, on a read, a ROLLBACK);
* ours, given the sync ``postgresql+psycopg://`` URL: an async function on a sync engine,
  each core operation in a worker thread (the documented slower path);
* the baseline: ``async with engine.connect(): await conn.execute(select)`` + unpickle on
  an autocommit asyncpg engine (a pool checkout per read, as ours does);
* a floor: the same ``await conn.execute(select)`` on one connection held throughout.

Hits cycle over the stored keys, one await at a time and in bursts of ``BURST``
concurrent awaits (``asyncio.gather``, per-await figures: where the thread path queues
on the worker threads); misses compute and store new keys. The server comes
from ``$CACHIER_LIKE_TEST_POSTGRES_URL`` (default: the local test server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import itertools
import os
import pickle
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cachier_like import cached
from cachier_like.cores.shared import storage_name
from cachier_like.cores.sql.engines import engine_from_url
from cachier_like.cores.sql.schema import namespace_text
from cachier_like.keys import KeyMaker

from .measure import Settings, Timing
from .report import (
    OURS,
    Report,
    Row,
    Target,
    print_table,
    print_targets,
    row_figures,
    section_rows,
)

NAME: str = "sql-async"
TITLE: str = "SQL core, native async (PostgreSQL, asyncpg)"
RAW_ROW = "raw: async with engine.connect(): await conn.execute(select) + unpickle"
BASELINE: str | None = RAW_ROW
OURS_URL_ROW = f"{OURS} async def, sql_engine='postgresql+asyncpg://...' (native)"
OURS_ENGINE_ROW = f"{OURS} async def, sql_engine=create_async_engine(url) (native)"
OURS_THREAD_ROW = f"{OURS} async def, sql_engine='postgresql+psycopg://...' (threads)"
FLOOR_ROW = "floor: await conn.execute(select) on one held connection + unpickle"
READERS = (RAW_ROW, FLOOR_ROW)
ENTRIES = 1_000
#: Concurrent awaits in the burst case (distinct stored keys).
BURST = 100
BURST_CASE = f"hit, {BURST} concurrent"
CASES = ("hit", BURST_CASE, "miss")
WARM_UP_CALLS = 200
#: The native URL path's hit, judged on the median against the raw read.
TARGET_RATIO = 1.5

Call = Callable[[int], Awaitable[Any]]


def server_url() -> sa.URL:
    text = os.environ.get("CACHIER_LIKE_TEST_POSTGRES_URL") or (
        "postgresql+psycopg://postgres@127.0.0.1/test"
    )
    return sa.make_url(text)


async def _timed(
    calls: dict[str, Call], keys: Callable[[], Iterator[int]], s: Settings
) -> dict[str, Timing]:
    """Microseconds per ``await call(key)`` for each call: batches sized to ``per_repeat_s``.

    The repeats take turns (one batch of each call, then the next repeat), so a machine
    whose load drifts during the run slows every row alike.
    """
    numbers, made, streams = {}, {}, {name: keys() for name in calls}
    for name, call in calls.items():
        started, batch = time.perf_counter(), 0
        while time.perf_counter() - started < s.calibrate_s * 10 or batch < 10:
            await call(next(streams[name]))
            batch += 1
        per_call = (time.perf_counter() - started) / batch
        cap = int(s.cap_s / s.repeats / per_call)
        numbers[name] = max(1, min(round(s.per_repeat_s / per_call), cap))
        made[name] = batch
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(s.repeats):
        for name, call in calls.items():
            stream, number = streams[name], numbers[name]
            t0 = time.perf_counter()
            for _ in range(number):
                await call(next(stream))
            times[name].append((time.perf_counter() - t0) / number * 1e6)
    return {
        name: Timing(
            statistics.median(times[name]),
            min(times[name]),
            numbers[name],
            s.repeats,
            made[name] + numbers[name] * s.repeats,
            "",
        )
        for name in calls
    }


def _burst(call: Call) -> Call:
    """``BURST`` concurrent awaits of ``call`` on consecutive keys, from ``first``."""

    async def burst(first: int) -> None:
        await asyncio.gather(*(call(first + j) for j in range(BURST)))

    return burst


def _add(calls: list[int]) -> Callable[[int], Awaitable[int]]:
    async def add(a: int) -> int:
        calls.append(a)
        return a + 2

    return add


async def _bench(report: Report, settings: Settings) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    sync_url = server_url().set(drivername="postgresql+psycopg")
    async_url = sync_url.set(drivername="postgresql+asyncpg")
    table = f"bench_{uuid.uuid4().hex[:16]}"
    ns = "bench.async_add"
    user_engine = create_async_engine(async_url)
    raw_engine: Any = engine_from_url(async_url)
    calls: list[int] = []
    ours = {
        OURS_URL_ROW: async_url.render_as_string(hide_password=False),
        OURS_ENGINE_ROW: user_engine,
        OURS_THREAD_ROW: sync_url.render_as_string(hide_password=False),
    }
    funcs: dict[str, Call] = {
        name: cached(backend="sql", sql_engine=engine, table_name=table, namespace=ns)(_add(calls))
        for name, engine in ours.items()
    }
    first = funcs[OURS_URL_ROW]
    try:
        for i in range(ENTRIES):
            await first(i)
        keys = [storage_name(KeyMaker(_add([])).key((i,), {})) for i in range(ENTRIES)]
        t = sa.table(table, sa.column("namespace"), sa.column("cache_key"), sa.column("value"))
        select = sa.select(t.c.value).where(
            t.c.namespace == sa.bindparam("ns"), t.c.cache_key == sa.bindparam("k")
        )
        ns_text = namespace_text(ns)

        async def raw(i: int) -> Any:
            async with raw_engine.connect() as conn:
                row = (await conn.execute(select, {"ns": ns_text, "k": keys[i]})).first()
            return pickle.loads(row[0])

        held = await raw_engine.connect()

        async def floor(i: int) -> Any:
            row = (await held.execute(select, {"ns": ns_text, "k": keys[i]})).first()
            return pickle.loads(row[0])

        readers: dict[str, Call] = {RAW_ROW: raw, FLOOR_ROW: floor}
        hitters = {**funcs, **readers}
        for call in hitters.values():
            for i in range(WARM_UP_CALLS):
                assert await call(i) == i + 2
        before = len(calls)
        hits = await _timed(hitters, lambda: itertools.cycle(range(ENTRIES)), settings)
        note = "" if len(calls) == before else f"{len(calls) - before} computed on hits!"
        for name, timing in hits.items():
            report.rows.append(Row(NAME, "hit", name, ENTRIES, timing, note))
        bursts = {name: _burst(call) for name, call in hitters.items() if name != FLOOR_ROW}
        timed = await _timed(bursts, lambda: itertools.cycle(range(0, ENTRIES, BURST)), settings)
        for name, timing in timed.items():
            per_call = dataclasses.replace(
                timing, median_us=timing.median_us / BURST, min_us=timing.min_us / BURST
            )
            report.rows.append(Row(NAME, BURST_CASE, name, ENTRIES, per_call))
        report.rows.append(Row(NAME, BURST_CASE, FLOOR_ROW, ENTRIES, note="one connection"))
        fresh = itertools.count(10_000_000)  # one stream of new keys, shared
        misses = await _timed(funcs, lambda: fresh, settings)
        for name, timing in misses.items():
            report.rows.append(Row(NAME, "miss", name, ENTRIES, timing))
        for name in readers:
            report.rows.append(Row(NAME, "miss", name, ENTRIES, note="reads only"))
        await held.close()
    finally:
        async with raw_engine.begin() as conn:
            await conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        await raw_engine.dispose()
        await user_engine.dispose()


def _skip(report: Report, why: str) -> None:
    for name in (OURS_URL_ROW, OURS_ENGINE_ROW, OURS_THREAD_ROW, *READERS):
        for case in CASES:
            report.rows.append(Row(NAME, case, name, ENTRIES, note=f"skipped: {why}"))


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure every row on the PostgreSQL server, if asyncpg is installed and it answers."""
    if importlib.util.find_spec("asyncpg") is None or importlib.util.find_spec("greenlet") is None:
        _skip(report, "asyncpg or greenlet not installed")
        return
    try:
        asyncio.run(_bench(report, settings))
    except OSError as exc:
        _skip(report, f"database not reachable ({type(exc).__name__})")
    print("  sql_async: done", flush=True)


def print_tables(report: Report, settings: Settings) -> None:
    print()
    print(f"5. SQL core, native async, PostgreSQL asyncpg, {ENTRIES:,} rows  [us per await]")
    headers = ["implementation"]
    for case in ("hit", f"x{BURST}", "miss"):
        headers += [f"{case} med", f"{case} min", "/raw", f"/{OURS}", "repeats x calls"]
    rows = section_rows(report, NAME, CASES, lambda _: RAW_ROW, entries=ENTRIES, show_calls=True)
    print_table([*headers, "notes"], rows)


def targets(report: Report, settings: Settings) -> list[Target]:
    """The native URL path's hit against the raw read, on the medians (and the mins)."""
    ours = row_figures(report.find(NAME, "hit", OURS_URL_ROW, ENTRIES))
    raw = row_figures(report.find(NAME, "hit", RAW_ROW, ENTRIES))
    ratios = [None if o is None or r is None else o / r for o, r in zip(ours, raw, strict=True)]
    shown = ["n/a" if value is None else f"{value:.2f}x" for value in ratios]
    passed = [None if value is None else value <= TARGET_RATIO for value in ratios]
    label = f"sql async (asyncpg URL) hit <= {TARGET_RATIO:g}x raw await"
    return [Target(label, shown[0], passed[0], shown[1], passed[1])]


if __name__ == "__main__":  # this section alone: cd scripts && python -m benchmarks.sql_async
    import sys

    from .measure import FULL, QUICK

    chosen = QUICK if "--quick" in sys.argv else FULL
    result = Report()
    run(result, chosen, Path("."))
    print_tables(result, chosen)
    print_targets(targets(result, chosen), chosen)
