"""Faults on real servers: hung stores, killed calculators, long calculations.

Each hang is a private server (``tests/faults.py``) stopped with ``SIGSTOP``: its kernel
still accepts connections and acknowledges data, but nothing answers, as with a frozen
process or host. The bounds asserted are the library's promises (docs/cores/*.md):

- a hung store costs a thread that keeps calling at most about 2 s of blocking per
  10 s of hang, and caching resumes within 2 s of the store answering again;
- with the default lease, a SIGKILLed calculator's key is computed by another process
  within 15 s;
- a calculation lasting many leases is never duplicated while its process lives.

Each test prints what it measured (run with ``-s`` to see it).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from cachier_like import BackendError, cached
from cachier_like.cores.memory import MemoryCore
from cachier_like.leases import LeaseKeeper
from tests.faults import Server, private_mariadb, private_postgres, private_redis
from tests.support import DEADLINE_S, StuckCalculator, start_waiter, wait_until, warnings_in

#: The promises under test.
HANG_S = 10.0
MAX_BLOCKED_S = 2.0
MAX_RESUME_S = 2.0
MAX_RECOVERY_S = 15.0
#: The calling loop's pace: a call, then this pause (the calls are what is timed).
PACE_S = 0.005
#: The breaker's longest pause between probes (PROBE_MAX_S in cachier_like/cores/_breaker.py).
PROBE_MAX_S = 1.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[Server]:
    with private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[Server]:
    with private_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def mariadb_server() -> Iterator[Server]:
    with private_mariadb() as server:
        yield server


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


# -- measuring a hang ----------------------------------------------------------------------


@dataclass
class Outage:
    """What one calling thread saw of a hang."""

    blocked_s: float  # time spent inside calls during the hang
    longest_s: float  # the longest single call
    calls: int
    resumed_s: float  # from the store answering again to the first cache hit

    def __str__(self) -> str:
        return (
            f"blocked {self.blocked_s:.3f} s in {self.calls} calls over {HANG_S:g} s of hang "
            f"(longest call {self.longest_s:.3f} s); cache hits again "
            f"{self.resumed_s:.3f} s after the store answered"
        )


def call_through_hang(
    server: Server, call: Callable[[], object], is_hit: Callable[[], bool]
) -> Outage:
    """Hang ``server`` for HANG_S while calling ``call`` in a loop; time it and the resume."""
    blocked = longest = 0.0
    calls = 0
    server.hang(for_s=HANG_S)
    try:
        while server.hung:
            start = time.monotonic()
            call()
            took = time.monotonic() - start
            blocked, longest, calls = blocked + took, max(longest, took), calls + 1
            time.sleep(PACE_S)
    finally:
        server.resume()
    wait_until(is_hit, timeout_s=DEADLINE_S)
    return Outage(blocked, longest, calls, time.monotonic() - server.resumed_at)


class Counted:
    """A function that records its calls, so a hit (no call) can be told from a miss."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, x: int) -> int:
        self.calls.append(x)
        return x * 2

    def hit(self, f: Callable[[int], int], x: int) -> bool:
        before = len(self.calls)
        assert f(x) == x * 2
        return len(self.calls) == before


def assert_bounded(outage: Outage, what: str) -> None:
    print(f"\n{what}: {outage}")
    assert outage.blocked_s <= MAX_BLOCKED_S, outage
    assert outage.resumed_s <= MAX_RESUME_S, outage


# -- Redis -------------------------------------------------------------------------------


@pytest.mark.redis
def test_a_hung_redis_blocks_a_calling_thread_briefly_and_caching_resumes(
    redis_server: Server,
) -> None:
    counted = Counted()
    f = cached(backend="redis", redis_client=redis_server.url, key_prefix=unique("hang"))(counted)
    assert f(1) == 2 and counted.hit(f, 1)
    outage = call_through_hang(redis_server, lambda: f(1), lambda: counted.hit(f, 1))
    assert_bounded(outage, "Redis (URL client, default timeouts), one thread")
    assert outage.calls > 100  # the calls went on, failing open, without waiting


@pytest.mark.redis
def test_a_hung_redis_blocks_each_of_many_threads_once(redis_server: Server) -> None:
    counted = Counted()
    f = cached(backend="redis", redis_client=redis_server.url, key_prefix=unique("hang"))(counted)
    assert f(1) == 2 and counted.hit(f, 1)
    threads, stop = 8, threading.Event()
    blocked = [0.0] * threads

    def loop(index: int) -> None:
        while not stop.is_set():
            start = time.monotonic()
            f(1)
            blocked[index] += time.monotonic() - start
            time.sleep(PACE_S)

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    redis_server.hang(for_s=HANG_S / 2)
    try:
        wait_until(lambda: not redis_server.hung, timeout_s=DEADLINE_S)
    finally:
        redis_server.resume()
        stop.set()
        for worker in workers:
            worker.join(DEADLINE_S)
    print(f"\nRedis, {threads} threads, {HANG_S / 2:g} s of hang: blocked {blocked} s")
    # Only the call each thread had in flight waited: the breaker let none through after.
    assert max(blocked) <= MAX_BLOCKED_S / 2, blocked
    wait_until(lambda: counted.hit(f, 1))


@pytest.mark.redis
def test_a_users_client_keeps_its_timeout_and_the_breaker_still_applies(
    redis_server: Server,
) -> None:
    port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    client = redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
    counted = Counted()
    f = cached(backend="redis", redis_client=client, key_prefix=unique("user"))(counted)
    assert f(1) == 2 and counted.hit(f, 1)
    outage = call_through_hang(redis_server, lambda: f(1), lambda: counted.hit(f, 1))
    assert_bounded(outage, "Redis (the user's client, socket_timeout=1 s), one thread")
    assert outage.longest_s >= 0.9  # the in-flight call waited the client's own timeout
    client.close()


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.sql
@pytest.mark.parametrize(
    ("server_fixture", "label"),
    [
        ("postgres_server", "PostgreSQL (URL engine, psycopg), one thread"),
        ("mariadb_server", "MariaDB (URL engine, PyMySQL), one thread"),
    ],
    ids=["postgresql", "mariadb"],
)
def test_a_hung_sql_server_blocks_a_calling_thread_briefly_and_caching_resumes(
    request: pytest.FixtureRequest, server_fixture: str, label: str
) -> None:
    server: Server = request.getfixturevalue(server_fixture)
    counted = Counted()
    table = unique("hang")
    f = cached(backend="sql", sql_engine=server.url, table_name=table)(counted)
    assert f(1) == 2 and counted.hit(f, 1)
    outage = call_through_hang(server, lambda: f(1), lambda: counted.hit(f, 1))
    assert_bounded(outage, label)
    assert outage.calls > 100


@pytest.mark.sql
def test_a_statement_waiting_on_a_busy_postgresql_is_not_cut(postgres_server: Server) -> None:
    # The watchdog must tell a server that answers (here: a row lock held by another
    # session) from one that hangs, and leave a slow statement on the former alone.
    table = unique("busy")

    @cached(backend="sql", sql_engine=postgres_server.url, table_name=table)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    core = f.core
    key = f._current().keys.key((1,), {})
    other = sa.create_engine(postgres_server.url)
    stored: list[bool] = []
    with other.connect() as session:
        session.execute(sa.text(f"SELECT * FROM {table} FOR UPDATE"))  # holds every row
        writer = threading.Thread(target=lambda: stored.append(core.set(key, core.get(key))))
        writer.start()
        writer.join(2.0)  # four times the watchdog's stall limit
        assert writer.is_alive(), "the store should still wait for the row lock"
        session.rollback()
    writer.join(DEADLINE_S)
    assert stored == [True]
    assert not core._ready.runner.down
    other.dispose()


# -- leases ----------------------------------------------------------------------------------


def _store_options(store: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if store == "redis":
        server: Server = request.getfixturevalue("redis_server")
        return {"backend": "redis", "redis_client": server.url, "key_prefix": unique("lease")}
    server = request.getfixturevalue("postgres_server")
    return {"backend": "sql", "sql_engine": server.url, "table_name": unique("lease")}


STORES = [
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
    pytest.param("postgres", marks=pytest.mark.sql, id="postgres"),
]


@pytest.mark.parametrize("store", STORES)
def test_a_killed_calculators_key_is_computed_by_another_process_within_15_s(
    store: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = StuckCalculator()

    @cached(**_store_options(store, request))  # the default lease
    def compute(x: int) -> str:
        stuck.checkpoint()
        return f"value-{x}-{os.getpid()}"

    with stuck.running(lambda: compute(3)):  # killed just after its claim: a whole lease
        waiter, results = start_waiter(monkeypatch, compute.core, lambda: compute(3))
        stuck.kill()
        killed_at = time.monotonic()
        waiter.join(DEADLINE_S)
        recovered = time.monotonic() - killed_at
    print(f"\n{store}: the killed calculator's key was computed {recovered:.2f} s after the kill")
    assert results == [f"value-3-{os.getpid()}"]
    assert recovered <= MAX_RECOVERY_S


@pytest.mark.parametrize("store", STORES)
def test_a_calculation_lasting_many_leases_is_never_duplicated(
    store: str, request: pytest.FixtureRequest
) -> None:
    lease = 0.3
    calls: list[int] = []
    started = threading.Event()

    @cached(**_store_options(store, request), lease=lease)
    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        threading.Event().wait(8 * lease)  # a calculation of eight leases
        return x * 2

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(2)]
    threads[0].start()
    assert started.wait(DEADLINE_S)
    threads[1].start()  # waits on the claim, which the lease keeper renews
    for thread in threads:
        thread.join(DEADLINE_S)
    assert calls == [1]
    assert results == [2, 2]


# -- MongoDB ----------------------------------------------------------------------------------


@pytest.mark.mongo
def test_a_mongodb_that_never_answers_blocks_only_the_first_call() -> None:
    # No MongoDB server can be started here: a listener that accepts connections and
    # never answers stands for a hung one (pymongo's real client, no mongomock).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"mongodb://127.0.0.1:{silent.getsockname()[1]}/?directConnection=true"
        counted = Counted()
        f = cached(backend="mongo", mongetter=url)(counted)
        blocked, longest, began = 0.0, 0.0, time.monotonic()
        while time.monotonic() - began < HANG_S / 2:
            start = time.monotonic()
            assert f(1) == 2
            took = time.monotonic() - start
            blocked, longest = blocked + took, max(longest, took)
            time.sleep(PACE_S)
    print(f"\nMongoDB (silent listener): blocked {blocked:.3f} s over {HANG_S / 2:g} s")
    # The first call waits for server selection (2 s by default); the breaker skips the
    # server afterwards, re-checking it in the background at most every PROBE_MAX_S.
    assert longest <= 2.0 + PROBE_MAX_S
    assert blocked - longest <= 0.5


def test_a_failed_renewal_is_retried_soon_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The keeper's own logic, on a core whose store refuses three renewals in a row.
    lease = 1.5
    attempts: list[float] = []

    class Flaky(MemoryCore):
        leases = True

        def renew(self, key: Hashable, lease_s: float) -> bool:
            attempts.append(time.monotonic())
            if len(attempts) <= 3:
                raise BackendError("the store is down")
            return True

    keeper = LeaseKeeper()
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        held_at = time.monotonic()
        token = keeper.hold(Flaky("tests.flaky"), "k", lease)
        wait_until(lambda: len(attempts) >= 4)
        keeper.drop(token)
    gaps = [b - a for a, b in zip([held_at, *attempts], attempts, strict=False)]
    assert gaps[0] >= lease / 3 * 0.9  # the first renewal: a third of the lease in
    # Each retry comes a tenth of a lease after the failure, not a third: three failed
    # renewals in a row still leave time for a fourth before the lease lapses.
    assert all(gap < lease / 3 * 0.8 for gap in gaps[1:]), gaps
    assert attempts[-1] - held_at < lease
    renewals = [m for m in warnings_in(caplog) if "could not renew" in m]
    assert len(renewals) == 1, renewals
