"""PostgreSQL LISTEN/NOTIFY wake-ups of the SQL core's waiters (``cores/sql/notify.py``).

A waiter is woken by the ``pg_notify`` that the statement ending a claim sends, across
processes, for sync and async waiters (on a psycopg engine and on AsyncEngines); when
the listener's connection dies, waiters poll until it is back; a killed calculator is
still taken over as its lease lapses; other databases, or no psycopg, poll as before.

To know that a waiter has read its row with its channel listened to (so that a store
from then on must wake it), the tests wrap the waiting core's ``_watch`` and report
each read; the store follows such a read at once, so a waiter that is not woken by the
notification sleeps a whole re-check interval (1 s) and fails the latency bounds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from cachier_like import Entry, cached
from cachier_like.cores.sql import SQLCore, notify
from cachier_like.cores.sql.notify import RECHECK_S, Listener, Watch, listener_for
from tests.backends.sql_backend import drop_table, server_url, unique_table
from tests.support import (
    DEADLINE_S,
    FORK,
    StuckCalculator,
    library_warnings,
    reap,
    start_waiter,
    thread_hops,
    wait_until,
)

pytestmark = pytest.mark.sql

#: The issue's bound for a waiter in another process, from the store's commit.
WAKE_BOUND_S = 0.05
#: A woken waiter, in this process: well under the re-check interval a missed
#: notification costs.
PROMPT_S = RECHECK_S / 2
LEASE_S = 1.0


@pytest.fixture
def table(postgres_engine: sa.Engine) -> Iterator[str]:
    name = unique_table()
    yield name
    drop_table(postgres_engine, name)


@pytest.fixture
def own_listeners(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's engines get listeners of their own (not this process's, by URL)."""
    monkeypatch.setattr(notify, "_LISTENERS", {})
    monkeypatch.setattr(notify, "_BY_ENGINE", weakref.WeakKeyDictionary())


def make_core(engine: object, table: str, namespace: str = "notify.f") -> SQLCore:
    return SQLCore(namespace, sql_engine=engine, table_name=table)


def listener_of(core: SQLCore) -> Listener:
    listener = core._listener()
    assert listener is not None, "PostgreSQL with psycopg must have a listener"
    return listener


def report_reads(core: SQLCore, report: Callable[[bool, Watch], None]) -> None:
    """Wrap ``core._watch``: ``report(live, read)`` after each read of a waiter's row."""
    original = core._watch

    def watch(key: str) -> Watch:
        live = listener_of(core).is_live(core._channel)
        read = original(key)
        report(live, read)
        return read

    core._watch = watch  # type: ignore[method-assign]


class LiveReads:
    """Signals a waiting core's first read made with LISTEN in place (the claim held);
    counts the reads after it."""

    def __init__(self, core: SQLCore) -> None:
        self.after = 0
        self.live_at = 0.0
        self.live_and_claimed = threading.Event()
        report_reads(core, self._report)

    def _report(self, live: bool, read: Watch) -> None:
        if self.live_and_claimed.is_set():
            self.after += 1
        elif live and read[0]:
            self.live_at = time.monotonic()
            self.live_and_claimed.set()

    def wait(self) -> None:
        assert self.live_and_claimed.wait(DEADLINE_S), "the waiter never listened"

    def assert_woken_not_polled(self) -> None:
        """One read after the wake; besides it, only the re-read that the LISTEN taking
        hold asks for (its wake-up may land just after the live read) and one per
        re-check interval since the live read (a loaded machine may be slow to store):
        never a poll loop."""
        rechecks = int((time.monotonic() - self.live_at) / RECHECK_S)
        assert 1 <= self.after <= 2 + rechecks, (self.after, rechecks)


# -- across processes -----------------------------------------------------------------


def _waiter_process(core: SQLCore, rounds: int, pipe: Connection) -> None:
    """In a forked child: wait on ``k<round>`` each round; report reads and the return."""
    report_reads(core, lambda live, read: pipe.send(("read", live, read[0])))
    for n in range(rounds):
        entry = core.wait(f"k{n}", DEADLINE_S)
        pipe.send(("woke", time.monotonic(), None if entry is None else entry.value))
    pipe.send(("pid", listener_of(core).backend_pid, None))


def test_a_waiter_in_another_process_gets_the_value_within_50_ms_of_the_store(
    postgres_engine: sa.Engine, table: str
) -> None:
    holder, waiter = make_core(postgres_engine, table), make_core(postgres_engine, table)
    # This process listens too, before the fork: the child must get a listener of its
    # own and leave this one's connection alone.
    parent_listener = listener_of(waiter)
    assert waiter.wait("warm-up", 1.0) is None
    wait_until(lambda: parent_listener.is_live(waiter._channel))
    parent_pid = parent_listener.backend_pid
    rounds = 3
    for n in range(rounds):
        assert holder.claim(f"k{n}", 30.0)
    ours, theirs = FORK.Pipe()
    child = FORK.Process(target=_waiter_process, args=(waiter, rounds, theirs), daemon=True)
    child.start()
    latencies = []
    try:
        for n in range(rounds):
            while True:  # until the child read its row with its channel listened to
                assert ours.poll(DEADLINE_S), "the waiter process stopped"
                kind, live, claimed = ours.recv()
                assert kind == "read"
                if live and claimed:
                    break
            holder.set(f"k{n}", Entry(n, 1.0))  # ends the claim; commits before returning
            committed = time.monotonic()
            while True:
                assert ours.poll(DEADLINE_S), "the waiter process never woke"
                kind, woke, value = ours.recv()
                if kind == "woke":
                    break
            assert value == n
            latencies.append(woke - committed)
        assert ours.poll(DEADLINE_S)
        kind, child_pid, _ = ours.recv()
        assert kind == "pid"
        child.join(DEADLINE_S)
        assert child.exitcode == 0
    finally:
        reap(child)
    assert child_pid not in (None, parent_pid)
    assert max(latencies) < PROMPT_S, f"a waiter was not woken by the store: {latencies}"
    assert min(latencies) < WAKE_BOUND_S, f"wake-ups took {latencies} s"
    # The parent's listener is still the one it had, and still wakes its waiters.
    assert parent_listener.backend_pid == parent_pid
    assert holder.claim("again", 30.0)
    reads = LiveReads(waiter)
    thread, got = start_waiter_thread(lambda: waiter.wait("again", DEADLINE_S))
    reads.wait()
    holder.set("again", Entry("v", 1.0))
    stored = time.monotonic()
    thread.join(DEADLINE_S)
    assert got == [Entry("v", 1.0)]
    assert time.monotonic() - stored < PROMPT_S


def start_waiter_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(call()), daemon=True)
    thread.start()
    return thread, got


# -- what wakes a waiter --------------------------------------------------------------


@pytest.mark.parametrize("end", ["release", "clear_claims"])
def test_a_claim_ended_without_a_value_wakes_the_waiter(
    postgres_engine: sa.Engine, table: str, end: str
) -> None:
    holder, waiter = make_core(postgres_engine, table), make_core(postgres_engine, table)
    assert holder.claim("k", 30.0)
    reads = LiveReads(waiter)
    thread, got = start_waiter_thread(lambda: waiter.wait("k", DEADLINE_S))
    reads.wait()
    if end == "release":
        holder.release("k")
    else:
        assert holder.clear_claims() == 1
    ended = time.monotonic()
    thread.join(DEADLINE_S)
    assert got == [None]
    assert time.monotonic() - ended < PROMPT_S
    reads.assert_woken_not_polled()


def test_only_the_stores_and_releases_that_end_a_claim_notify_its_key(
    postgres_engine: sa.Engine, table: str
) -> None:
    core, other = make_core(postgres_engine, table), make_core(postgres_engine, table, "x.g")
    with psycopg.connect(server_url("postgres").replace("+psycopg", ""), autocommit=True) as own:
        own.execute(f"LISTEN {core._channel}")
        core.set("plain", Entry(1, 1.0))  # no claim held: nobody waits for this store
        other.set("k", Entry(1, 1.0))  # another namespace, another channel
        assert core.claim("k", 30.0) and core.claim("empty", 30.0) and core.claim("c", 30.0)
        core.set("k", Entry(2, 1.0))  # the holder's store ends its claim
        core.release("k")  # already ended by the store: sends nothing
        core.release("empty")  # a claim-only row, deleted
        assert core.claim("k", 30.0)
        core.release("k")  # a row with a value: its claim cleared
        core.clear_claims()
        got = [(n.channel, n.payload) for n in own.notifies(timeout=0.5, stop_after=4)]
    assert got == [(core._channel, key) for key in ("k", "empty", "k", "c")]


def test_a_killed_calculator_is_taken_over_after_its_lease(
    postgres_engine: sa.Engine, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = StuckCalculator()

    @cached(backend="sql", sql_engine=postgres_engine, table_name=table, lease=LEASE_S)
    def compute(x: int) -> str:
        stuck.checkpoint()
        return f"value-{x}"

    with stuck.running(lambda: compute(3)):
        core = compute.core
        assert isinstance(core, SQLCore)
        waiter, results = start_waiter(monkeypatch, core, lambda: compute(3))
        stuck.kill()
        killed = time.monotonic()
        waiter.join(DEADLINE_S)
        elapsed = time.monotonic() - killed
    assert results == ["value-3"]
    # The waiter reads again as the lease runs out, not a re-check interval later.
    assert elapsed < LEASE_S + PROMPT_S + 1.0, f"the take-over took {elapsed:.2f} s"


# -- the listener's connection --------------------------------------------------------


@pytest.mark.usefixtures("own_listeners")
def test_a_killed_listener_connection_reconnects_and_waiters_poll_meanwhile(
    postgres_engine: sa.Engine, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sa.create_engine(server_url("postgres"))
    try:
        holder, waiter = make_core(engine, table), make_core(engine, table)
        listener = listener_of(waiter)
        assert waiter.wait("warm-up", 1.0) is None
        wait_until(lambda: listener.is_live(waiter._channel))
        first_pid = listener.backend_pid
        back = threading.Event()
        connect = listener._connect

        def connect_when_allowed() -> Any:
            if not back.is_set():
                raise ConnectionError("not yet")
            return connect()

        monkeypatch.setattr(listener, "_connect", connect_when_allowed)
        assert holder.claim("k", 30.0)
        thread, got = start_waiter_thread(lambda: waiter.wait("k", DEADLINE_S))
        with library_warnings() as warned:
            with postgres_engine.connect() as admin:
                admin.execute(sa.text(f"SELECT pg_terminate_backend({first_pid})"))
            wait_until(lambda: not listener.is_live(waiter._channel))
            holder.set("k", Entry("polled", 1.0))  # heard by no listener: found by polling
            stored = time.monotonic()
            thread.join(DEADLINE_S)
            assert got == [Entry("polled", 1.0)]
            assert time.monotonic() - stored < PROMPT_S
            back.set()
            wait_until(lambda: listener.is_live(waiter._channel))
        assert any("LISTEN lost" in message for message in warned)
        assert listener.backend_pid not in (None, first_pid)
        assert holder.claim("k2", 30.0)
        reads = LiveReads(waiter)
        thread, got = start_waiter_thread(lambda: waiter.wait("k2", DEADLINE_S))
        reads.wait()
        holder.set("k2", Entry("notified", 1.0))
        stored = time.monotonic()
        thread.join(DEADLINE_S)
        assert got == [Entry("notified", 1.0)]
        assert time.monotonic() - stored < PROMPT_S
        reads.assert_woken_not_polled()
    finally:
        engine.dispose()


# -- async waiters --------------------------------------------------------------------


def test_200_async_waiters_of_one_key_wake_on_few_threads_without_thread_hops(
    postgres_engine: sa.Engine, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder, waiter = make_core(postgres_engine, table), make_core(postgres_engine, table)
    listener = listener_of(waiter)
    assert waiter.wait("warm-up", 1.0) is None  # the listener and its channel are up
    wait_until(lambda: listener.is_live(waiter._channel))
    assert holder.claim("k", 30.0)
    count = 200

    async def main() -> tuple[list[Entry | None], int, float]:
        before = threading.active_count()
        tasks = [asyncio.create_task(waiter.wait_async("k", DEADLINE_S)) for _ in range(count)]
        while listener.waiting(waiter._channel, "k") < count:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # every waiter has read its row and sleeps
        threads = threading.active_count() - before
        holder.set("k", Entry("v", 1.0))  # blocks the loop a moment: the waiters sleep
        stored = time.monotonic()
        results = await asyncio.gather(*tasks)
        return results, threads, time.monotonic() - stored

    with thread_hops(monkeypatch) as hops:
        results, threads, elapsed = asyncio.run(main())
    assert hops == []
    assert results == [Entry("v", 1.0)] * count
    assert threads <= 1, "only the listener's reader thread may start"
    assert elapsed < PROMPT_S


@pytest.mark.usefixtures("own_listeners")  # connected the way this engine's listener is
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
def test_async_waiters_on_an_async_engine_are_woken_by_notify(
    table: str, driver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec(driver.removesuffix("_async")) is None:
        pytest.skip(f"{driver} is not installed")
    from sqlalchemy.ext.asyncio import create_async_engine

    url = sa.make_url(server_url("postgres")).set(drivername=f"postgresql+{driver}")
    engine = create_async_engine(url)
    try:
        holder, waiter = make_core(engine, table), make_core(engine, table)
        assert holder.claim("k", 30.0)
        listener_of(waiter)  # connected (in a thread, on first use) before the wait
        reads = LiveReads(waiter)

        stored: list[float] = []

        def store_once_listened() -> None:
            reads.wait()
            holder.set("k", Entry("v", 1.0))
            stored.append(time.monotonic())

        async def main() -> tuple[Entry | None, float]:
            entry = await waiter.wait_async("k", DEADLINE_S)
            return entry, time.monotonic()

        storer = threading.Thread(target=store_once_listened, daemon=True)
        storer.start()
        with thread_hops(monkeypatch) as hops:
            entry, woke = asyncio.run(main())
        storer.join(DEADLINE_S)
        assert hops == []
        assert entry == Entry("v", 1.0)
        assert woke - stored[0] < PROMPT_S
        reads.assert_woken_not_polled()
        assert listener_of(waiter).is_live(waiter._channel)
    finally:
        asyncio.run(engine.dispose())


# -- polling where there is no listener -----------------------------------------------


def _polled_wait(core: SQLCore) -> tuple[Entry | None, int]:
    reads: list[bool] = []
    original = core._poll

    def poll(key: str) -> tuple[bool, Entry | None]:
        reads.append(True)
        return original(key)

    core._poll = poll  # type: ignore[method-assign]
    holder = make_core(core._source.given, core.table.name)
    assert holder.claim("k", 30.0)
    thread, got = start_waiter_thread(lambda: core.wait("k", DEADLINE_S))
    wait_until(lambda: len(reads) >= 3)
    holder.set("k", Entry("v", 1.0))
    thread.join(DEADLINE_S)
    return got[0], len(reads)


def test_sqlite_waiters_poll(tmp_path: Any) -> None:
    core = make_core(f"sqlite:///{tmp_path / 'cache.sqlite'}", "entries")
    entry, reads = _polled_wait(core)
    assert entry == Entry("v", 1.0)
    assert reads >= 4
    assert core._listener() is None


def test_without_psycopg_postgresql_waiters_poll(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # the one importlib.util: as if psycopg were not installed
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "psycopg" else find_spec(name, *args),
    )
    engine = sa.create_engine(server_url("postgres"))
    try:
        core = make_core(engine, table)
        entry, reads = _polled_wait(core)
        assert entry == Entry("v", 1.0)
        assert reads >= 4
        assert listener_for(engine) is None
    finally:
        engine.dispose()


def test_a_listener_nobody_waits_on_stops_retrying_a_database_that_is_gone() -> None:
    """Its thread ends at the next failure once no waiter is left (no retries, no
    warnings for ever: a test's stopped server, a decommissioned database), and the
    next waiter starts one again."""
    attempts: list[float] = []

    def unreachable() -> Any:
        attempts.append(time.monotonic())
        raise OSError("connection refused")

    listener = Listener("gone", connect=unreachable)
    waiter = listener.add("cachier_like_gone", "k", lambda: None)
    wait_until(lambda: len(attempts) >= 2)  # retried while someone waits
    first = listener._thread
    assert first is not None
    listener.remove(waiter)
    first.join(DEADLINE_S)
    assert not first.is_alive() and listener._thread is None  # no retry can follow
    tried = len(attempts)
    listener.add("cachier_like_gone", "k", lambda: None)
    wait_until(lambda: len(attempts) > tried)  # a new waiter: a new thread tries again
    assert listener._thread is not None and listener._thread is not first
