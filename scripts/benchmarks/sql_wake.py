"""Part of section 4 (SQL core): PostgreSQL waiter wake-ups, and what NOTIFY adds to a store.

Wake-up: a calculator thread in this process holds a key's claim while a waiter in each
of :data:`WAKE_WAITERS` forked processes blocks on it (its ``LISTEN`` in place); the
figure is the time from the calculator's store (as it starts, so the store's own round
trip counts) to each waiter's return, over many rounds (p50, p95, max; the note also
gives the p50 from the store's return, i.e. its commit). Clocks: ``time.monotonic()``,
one system-wide clock on Linux.

Store cost: the holder's store statement as the core sends it (``RETURNING
pg_notify(...)``) against the same statement compiled without the notification, run
on the core's runner in interleaved batches, on a row with no claim (so the
notification is sent each time).
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Hashable
from multiprocessing.connection import Connection
from typing import Any

import sqlalchemy as sa

from cachier_like import Entry, cached
from cachier_like.cores.sql import SQLCore
from cachier_like.cores.sql.statements import Statements
from cachier_like.testing.processes import FORK, reap

from .measure import Settings, Timing
from .report import OURS, Report, Row, Target

NAME = "sql"
WAKE_CASE = "postgres wake"
STORE_CASE = "postgres holder's store"
WAKE_ROW = f"{OURS} sync waiter in another process (LISTEN/NOTIFY)"
NOTIFY_ROW = f"{OURS} store statement with pg_notify (as sent)"
PLAIN_ROW = "the same store statement without pg_notify"
TARGET_WAKE_P50_MS = 5.0
#: Wake-up rounds (full run, quick run), after one warm-up round, and waiter processes.
WAKE_ROUNDS = (100, 20)
WAKE_WAITERS = 2
DEADLINE_S = 30.0
#: This run's wake-ups in milliseconds ("p50", "p95", "min", "max", "p50_commit").
WAKE_MS: dict[str, float] = {}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _waiter(slow: Any, pipe: Connection) -> None:
    """In a forked process: for each x received, call ``slow(x)`` (it waits), report."""
    core = slow.core
    original_wait = core.wait

    def wait_spy(key: Hashable, timeout_s: float | None) -> Entry | None:
        pipe.send("waiting")
        entry: Entry | None = original_wait(key, timeout_s)
        return entry

    core.wait = wait_spy
    while True:
        x = pipe.recv()
        if x is None:
            return
        slow(x)
        pipe.send(time.monotonic())


def wake_latencies(engine: sa.Engine, table: str, rounds: int) -> tuple[list[float], list[float]]:
    """Milliseconds from the start, and from the end, of the store to each waiter's return."""
    go = threading.Event()

    @cached(backend="sql", sql_engine=engine, table_name=table, namespace="bench.wake", lease=60)
    def slow(x: int) -> int:
        go.wait(DEADLINE_S)
        return x

    core = slow.core
    stores: list[tuple[float, float]] = []
    original_set = core.set

    def set_spy(key: Hashable, entry: Entry) -> bool:
        started = time.monotonic()
        stored: bool = original_set(key, entry)
        stores.append((started, time.monotonic()))
        return stored

    pipes, processes = [], []
    for _ in range(WAKE_WAITERS):
        ours, theirs = FORK.Pipe()
        process = FORK.Process(target=_waiter, args=(slow, theirs), daemon=True)
        process.start()
        pipes.append(ours)
        processes.append(process)
    setattr(core, "set", set_spy)  # noqa: B010 - after the fork: the waiters' cores stay as they are
    from_start: list[float] = []
    from_end: list[float] = []
    try:
        for x in range(rounds + 1):  # round 0 warms up: connections, LISTEN
            go.clear()
            calculator = threading.Thread(target=slow, args=(x,), daemon=True)
            calculator.start()
            key = slow._current().keys.key((x,), {})
            deadline = time.monotonic() + DEADLINE_S
            while not core.is_claimed(key) and time.monotonic() < deadline:
                time.sleep(0.0005)
            for pipe in pipes:
                pipe.send(x)
            for pipe in pipes:
                assert pipe.poll(DEADLINE_S) and pipe.recv() == "waiting"
            time.sleep(0.01)  # let every waiter reach its blocking wait
            go.set()
            calculator.join(DEADLINE_S)
            returned = [pipe.recv() for pipe in pipes if pipe.poll(DEADLINE_S)]
            if x:
                started, ended = stores[-1]
                from_start += [(t - started) * 1000 for t in returned]
                from_end += [(t - ended) * 1000 for t in returned]
        for pipe in pipes:
            pipe.send(None)
        for process in processes:
            process.join(DEADLINE_S)
    finally:
        reap(*processes)
    return from_start, from_end


def _per_call(run: Any, prepared: Any, params: dict[str, Any]) -> float:
    started = time.perf_counter()
    for _ in range(20):
        run(prepared, params)
    return max((time.perf_counter() - started) / 20, 1e-6)


def store_timings(
    engine: sa.Engine, table: str, settings: Settings
) -> tuple[Timing, Timing] | None:
    """The holder's store as sent (with pg_notify) and without it, on the core's runner."""
    core = SQLCore("bench.store", sql_engine=engine, table_name=table)
    core.set("k", Entry(1, 1.0))  # connects, creates the table, and the row
    ready = core._ready
    if ready is None or not ready.statements.notifies:
        return None
    runner, statements = ready
    plain = Statements(core.table, engine.dialect, notify=False)
    payload = core.encode(1, "k", 1.0)
    params = {"ns": core._ns, "k": "k", "v": payload, "ts": 1.0, "tok": "t" * 32}
    params["chan"] = core._channel
    # Interleaved batches, so that the machine's load weighs on both alike.
    batch = max(1, round(settings.per_repeat_s / _per_call(runner.run, plain.set, params)))
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(max(settings.repeats, 3)):
        for notify, prepared in ((True, statements.set), (False, plain.set)):
            started = time.perf_counter()
            for _ in range(batch):
                runner.run(prepared, params)
            times[notify].append((time.perf_counter() - started) / batch * 1e6)
    with_notify, without = (
        Timing(
            median_us=statistics.median(times[notify]),
            min_us=min(times[notify]),
            number=batch,
            repeats=len(times[notify]),
            calls=batch * len(times[notify]),
            limited_by="",
        )
        for notify in (True, False)
    )
    return with_notify, without


def run(report: Report, settings: Settings, url: str, problem: str) -> None:
    """Append the wake-up row and the two store rows (skipped when PostgreSQL is not there)."""
    if problem:
        for case, impl in (
            (WAKE_CASE, WAKE_ROW),
            (STORE_CASE, NOTIFY_ROW),
            (STORE_CASE, PLAIN_ROW),
        ):
            report.rows.append(Row(NAME, case, impl, note=problem))
        return
    engine = sa.create_engine(url)
    table = f"bench_{uuid.uuid4().hex[:16]}"
    try:
        rounds = WAKE_ROUNDS[1] if settings.quick else WAKE_ROUNDS[0]
        ms, from_commit = wake_latencies(engine, table, rounds)
        WAKE_MS.update(
            p50=statistics.median(ms),
            p95=_percentile(ms, 0.95),
            min=min(ms),
            max=max(ms),
            p50_commit=statistics.median(from_commit),
        )
        timing = Timing(
            median_us=WAKE_MS["p50"] * 1000,
            min_us=min(ms) * 1000,
            number=1,
            repeats=len(ms),
            calls=len(ms),
            limited_by="",
        )
        note = (
            f"p95 {WAKE_MS['p95']:.2f} ms, max {WAKE_MS['max']:.2f} ms, p50 from the "
            f"store's commit {WAKE_MS['p50_commit']:.2f} ms; {rounds} rounds x "
            f"{WAKE_WAITERS} waiter processes"
        )
        report.rows.append(Row(NAME, WAKE_CASE, WAKE_ROW, None, timing, note))
        timings = store_timings(engine, table, settings)
        if timings is None:
            note = "skipped: this store sends no notification"
            report.rows.append(Row(NAME, STORE_CASE, NOTIFY_ROW, note=note))
            report.rows.append(Row(NAME, STORE_CASE, PLAIN_ROW, note=note))
        else:
            extra = timings[0].median_us - timings[1].median_us
            extra_min = timings[0].min_us - timings[1].min_us
            note = (
                f"{extra:+.1f} us per store for the notification (on the mins: "
                f"{extra_min:+.1f} us; noise included)"
            )
            report.rows.append(Row(NAME, STORE_CASE, NOTIFY_ROW, None, timings[0], note))
            report.rows.append(Row(NAME, STORE_CASE, PLAIN_ROW, None, timings[1]))
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def print_tables(report: Report) -> None:
    print()
    print("   PostgreSQL waiter wake-up: the calculator's store -> a waiting process's return")
    row = report.find(NAME, WAKE_CASE, WAKE_ROW)
    if row is None or row.timing is None:
        print(f"   not measured ({row.note if row is not None else 'no row'})")
    else:
        print(f"   p50 {row.timing.median_us / 1000:.2f} ms, {row.note}")
    print("   The holder's store (us per statement, median of repeats):")
    for impl in (NOTIFY_ROW, PLAIN_ROW):
        row = report.find(NAME, STORE_CASE, impl)
        if row is None or row.timing is None:
            print(f"   {impl}: not measured ({row.note if row is not None else 'no row'})")
        else:
            print(f"   {impl}: {row.timing.median_us:.1f} us {row.note}".rstrip())


def targets() -> list[Target]:
    """The wake-up's p50 from the store's start (the min column: from its commit)."""
    label = f"sql postgres waiter wakes p50 <= {TARGET_WAKE_P50_MS:g} ms (min col.: from commit)"
    if not WAKE_MS:
        return [Target(label, "n/a", None, "n/a", None)]
    p50, committed = WAKE_MS["p50"], WAKE_MS["p50_commit"]
    return [
        Target(
            label,
            f"{p50:.2f} ms",
            p50 <= TARGET_WAKE_P50_MS,
            f"{committed:.2f} ms",
            committed <= TARGET_WAKE_P50_MS,
        )
    ]
