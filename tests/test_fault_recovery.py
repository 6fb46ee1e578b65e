"""Servers crash and come back under load; a cache directory fills up or turns read-only.

Each server scenario runs forked processes that call a cached function over 50 keys for
SCENARIO_S, while a controller thread breaks the store at FAULT_AT_S and restores it at
RESTORE_AT_S, on a private server (``tests/faults.py``, ``tests/redis_cluster.py``; the
shared services are never touched):

- Redis killed with ``SIGKILL`` and restarted (its entries are lost: recomputed);
- Redis stopped with ``SIGSTOP`` and resumed with ``SIGCONT`` (a hang);
- PostgreSQL stopped with ``pg_ctl stop -m immediate`` and started again;
- one master of a 3-master Redis Cluster killed and restarted.

A value is a pure function of its key, so any wrong value is seen. Each process counts its
calls, the exceptions that reach it and the wrong values, and notes when it was served
from the store (a *hit*: the function was not called). Promised (docs/cores/*.md): no
exception reaches a caller, no wrong value, no call blocks longer than MAX_CALL_S, and
every process is served from the store again within MAX_RECOVERY_S of the store answering.

The pickle scenarios fill the cache directory's file system (a 64 KiB tmpfs when mounting
is allowed, else a write patched to fail half-way) or make it read-only (a read-only bind
mount as root, whom permissions do not stop; else ``chmod``): the right value, one
warning, no file left half-written, and caching resumes once the directory is writable.

Run ``pytest -s -k fault_recovery`` to see each scenario's figures.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from cachier_like import cached
from cachier_like.cores import pickle as pickle_module
from cachier_like.cores import pickle_files
from cachier_like.cores.redis import key_tag
from cachier_like.testing.processes import record, records, run_forked, wait_until
from tests.faults import Server, private_postgres, private_redis
from tests.redis_cluster import Cluster
from tests.support import warnings_in

SCENARIO_S = 15.0
FAULT_AT_S = 5.0
RESTORE_AT_S = 10.0
PROCESSES = 8
KEYS = 50
#: The promises under test.
MAX_RECOVERY_S = 2.0
MAX_CALL_S = 2.0
#: A pause between calls, so that 8 processes leave the servers some CPU.
PACE_S = 0.002
#: Hits are noted at most this often (the first hit after an outage is always noted).
HIT_GRAIN_S = 0.01


def expected(key: int) -> str:
    """The value of ``key``: a pure function of it, so a wrong value is told apart."""
    return f"{key}:{hashlib.sha256(str(key).encode()).hexdigest()}"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# -- one scenario --------------------------------------------------------------------------


@dataclass
class Tally:
    """What one calling process saw."""

    calls: int = 0
    errors: int = 0
    wrong: int = 0
    computed: int = 0
    first_errors: list[str] = field(default_factory=list)
    hits: list[float] = field(default_factory=list)  # time.monotonic() of hits
    longest_s: float = 0.0  # the longest single call

    def first_hit_after(self, moment: float) -> float | None:
        return next((hit for hit in self.hits if hit >= moment), None)


@dataclass
class Schedule:
    """When the controller broke and restored the store (``time.monotonic()``)."""

    started_at: float = 0.0
    broken_at: float = 0.0
    restored_at: float = 0.0  # when the store answered again
    error: BaseException | None = None


@dataclass
class Outcome:
    label: str
    tallies: list[Tally]
    schedule: Schedule

    @property
    def recoveries(self) -> list[float]:
        """Per process: from the store answering again to its first hit (inf: none)."""
        restored = self.schedule.restored_at
        firsts = [tally.first_hit_after(restored) for tally in self.tallies]
        return [float("inf") if hit is None else hit - restored for hit in firsts]

    def hits_between(self, start: float, end: float) -> int:
        return sum(start <= hit < end for tally in self.tallies for hit in tally.hits)

    def summary(self) -> str:
        total = sum(t.calls for t in self.tallies)
        errors, wrong = sum(t.errors for t in self.tallies), sum(t.wrong for t in self.tallies)
        computed = sum(t.computed for t in self.tallies)
        longest = max(t.longest_s for t in self.tallies)
        recoveries = self.recoveries
        return (
            f"{self.label}: {len(self.tallies)} processes, {total} calls, {errors} errors, "
            f"{wrong} wrong, {computed} computed; longest call {longest:.3f} s; "
            f"recovery {min(recoveries):.3f} s (first process) / {max(recoveries):.3f} s "
            f"(last process) after the store answered again; "
            f"{self.hits_between(self.schedule.broken_at, self.schedule.restored_at)} hits "
            f"during the outage"
        )


def _control(
    schedule: Schedule,
    started: Path,
    processes: int,
    fault: Callable[[], None],
    restore: Callable[[], float],
) -> None:
    """Break the store FAULT_AT_S after the processes started; restore it at RESTORE_AT_S."""
    broken = False
    try:
        wait_until(lambda: len(records(started)) >= processes)
        schedule.started_at = time.monotonic()
        time.sleep(max(0.0, schedule.started_at + FAULT_AT_S - time.monotonic()))
        fault()
        broken = True
        schedule.broken_at = time.monotonic()
        time.sleep(max(0.0, schedule.started_at + RESTORE_AT_S - time.monotonic()))
        schedule.restored_at = restore()
    except BaseException as exc:
        schedule.error = exc
        if broken and not schedule.restored_at:
            restore()  # never leave the server down for the next test


def run_scenario(
    label: str,
    call: Callable[[int], str],
    computed: list[int],
    *,
    fault: Callable[[], None],
    restore: Callable[[], float],
    tmp_path: Path,
    processes: int = PROCESSES,
) -> Outcome:
    """Call ``call(key)`` over KEYS keys in ``processes`` forked processes through a fault.

    ``computed[0]`` counts the calculations of the process it is read in (the cached
    function increments it); ``restore()`` returns when the store answers again.
    """
    started = tmp_path / f"started-{uuid.uuid4().hex}"

    def work(index: int) -> Tally:
        tally, rng = Tally(), random.Random(index)
        record(started, str(index))
        end = time.monotonic() + SCENARIO_S
        while (now := time.monotonic()) < end:
            key = rng.randrange(KEYS)
            before = computed[0]
            try:
                value = call(key)
            except Exception as exc:  # what the promise says never happens
                tally.errors += 1
                if len(tally.first_errors) < 3:
                    tally.first_errors.append(repr(exc))
                continue
            finally:
                tally.calls += 1
                tally.longest_s = max(tally.longest_s, time.monotonic() - now)
            if value != expected(key):
                tally.wrong += 1
            elif computed[0] == before and (not tally.hits or now - tally.hits[-1] >= HIT_GRAIN_S):
                tally.hits.append(now)
            time.sleep(PACE_S)
        tally.computed = computed[0]
        return tally

    schedule = Schedule()
    controller = threading.Thread(
        target=_control, args=(schedule, started, processes, fault, restore), daemon=True
    )
    controller.start()
    try:
        tallies = run_forked(processes, work, start_together=True)
    finally:
        controller.join(SCENARIO_S + 60)
    if schedule.error is not None:
        raise schedule.error
    outcome = Outcome(label, tallies, schedule)
    print(f"\n{outcome.summary()}")
    return outcome


def assert_recovered(outcome: Outcome, *, outage_hits: bool = False) -> None:
    """No error reached a caller, no wrong value, bounded calls, caching back in time."""
    tallies, schedule = outcome.tallies, outcome.schedule
    assert [t.errors for t in tallies] == [0] * len(tallies), [t.first_errors for t in tallies]
    assert [t.wrong for t in tallies] == [0] * len(tallies)
    before = [
        sum(schedule.started_at <= hit < schedule.broken_at for hit in t.hits) for t in tallies
    ]
    assert all(before), f"some process was never served from the store before the fault: {before}"
    if not outage_hits:  # the fault took effect: nothing was served from the store
        # Up to the moment the restore began: a server restarting may answer a call
        # before restore() has seen it answer.
        restoring_at = schedule.started_at + RESTORE_AT_S
        assert outcome.hits_between(schedule.broken_at + 0.1, restoring_at) == 0
    assert max(t.longest_s for t in tallies) <= MAX_CALL_S, outcome.summary()
    assert max(outcome.recoveries) <= MAX_RECOVERY_S, outcome.summary()


# -- Redis and PostgreSQL --------------------------------------------------------------------


@pytest.fixture
def redis_server() -> Iterator[Server]:
    with private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[Server]:
    with private_postgres() as server:
        yield server


def _restarted(server: Server) -> Callable[[], float]:
    def restore() -> float:
        server.restart()
        return server.up_at

    return restore


def _resumed(server: Server) -> Callable[[], float]:
    def restore() -> float:
        server.resume()
        return server.resumed_at

    return restore


@pytest.mark.redis
@pytest.mark.parametrize("fault", ["kill", "stop"], ids=["sigkill-restart", "sigstop-sigcont"])
def test_fault_recovery_redis(redis_server: Server, fault: str, tmp_path: Path) -> None:
    computed = [0]

    @cached(backend="redis", redis_client=redis_server.url, key_prefix=unique("recovery"))
    def value(key: int) -> str:
        computed[0] += 1
        return expected(key)

    if fault == "kill":
        label = "Redis kill -9 at 5 s, restart at 10 s (entries lost)"
        breaks, restore = redis_server.kill, _restarted(redis_server)
    else:
        label = "Redis SIGSTOP at 5 s, SIGCONT at 10 s"
        breaks, restore = redis_server.hang, _resumed(redis_server)
    outcome = run_scenario(label, value, computed, fault=breaks, restore=restore, tmp_path=tmp_path)
    assert_recovered(outcome)


@pytest.mark.sql
def test_fault_recovery_postgres(postgres_server: Server, tmp_path: Path) -> None:
    computed = [0]

    @cached(backend="sql", sql_engine=postgres_server.url, table_name=unique("recovery"))
    def value(key: int) -> str:
        computed[0] += 1
        return expected(key)

    value(0)  # the table, created once rather than raced for by 8 processes
    label = "PostgreSQL pg_ctl stop -m immediate at 5 s, start at 10 s"
    outcome = run_scenario(
        label,
        value,
        computed,
        fault=postgres_server.stop_immediately,
        restore=_restarted(postgres_server),
        tmp_path=tmp_path,
    )
    assert_recovered(outcome)


def _on_a_loop_per_process(coroutine_function: Callable[[int], Any]) -> Callable[[int], str]:
    """A sync ``call(key)`` awaiting ``coroutine_function(key)`` on one loop per process.

    The loop is made in the forked worker on its first call, so a per-loop client of
    the native path is made there too and lives for the whole run.
    """
    loops: dict[int, asyncio.AbstractEventLoop] = {}

    def call(key: int) -> str:
        loop = loops.get(os.getpid())
        if loop is None:
            loop = loops[os.getpid()] = asyncio.new_event_loop()
        result: str = loop.run_until_complete(coroutine_function(key))
        return result

    return call


@pytest.mark.redis
def test_fault_recovery_redis_native_async(redis_server: Server, tmp_path: Path) -> None:
    computed = [0]

    @cached(backend="redis", redis_client=redis_server.url, key_prefix=unique("recovery"))
    async def value(key: int) -> str:
        computed[0] += 1
        return expected(key)

    label = "Redis kill -9 at 5 s, restart at 10 s, async def on redis.asyncio"
    outcome = run_scenario(
        label,
        _on_a_loop_per_process(value),
        computed,
        fault=redis_server.kill,
        restore=_restarted(redis_server),
        tmp_path=tmp_path,
    )
    assert_recovered(outcome)


@pytest.mark.sql
def test_fault_recovery_postgres_native_async(postgres_server: Server, tmp_path: Path) -> None:
    pytest.importorskip("asyncpg")
    computed = [0]
    url = postgres_server.url.replace("postgresql+psycopg://", "postgresql+asyncpg://")

    @cached(backend="sql", sql_engine=url, table_name=unique("recovery"))
    async def value(key: int) -> str:
        computed[0] += 1
        return expected(key)

    asyncio.run(value(0))  # the table, created once rather than raced for by 8 processes
    label = "PostgreSQL stop -m immediate at 5 s, start at 10 s, async def on asyncpg"
    outcome = run_scenario(
        label,
        _on_a_loop_per_process(value),
        computed,
        fault=postgres_server.stop_immediately,
        restore=_restarted(postgres_server),
        tmp_path=tmp_path,
    )
    assert_recovered(outcome)


# -- Redis Cluster ---------------------------------------------------------------------------

CLUSTER_FUNCTIONS = 5


@pytest.mark.redis
def test_fault_recovery_redis_cluster_node(redis_cluster: Cluster, tmp_path: Path) -> None:
    # One function's keys share one slot, so one node: five functions (ten keys each),
    # some on the node that is killed and some elsewhere.
    prefix = unique("recovery")
    names = [f"f{i}" for i in range(200)]
    slots = {name: key_slot(key_tag(prefix, name).encode()) for name in names}
    victim = redis_cluster.node_of_slot(slots[names[0]])
    on_victim = [n for n in names if redis_cluster.node_of_slot(slots[n]) is victim]
    elsewhere = [n for n in names if n not in on_victim]
    chosen = on_victim[:2] + elsewhere[: CLUSTER_FUNCTIONS - 2]
    computed = [0]
    functions = []
    for name in chosen:

        @cached(backend="redis", redis_client=redis_cluster.url, key_prefix=prefix, namespace=name)
        def value(key: int) -> str:
            computed[0] += 1
            return expected(key)

        functions.append(value)

    def call(key: int) -> str:
        return str(functions[key % CLUSTER_FUNCTIONS](key))

    def restore() -> float:
        # A restarted master refuses queries (CLUSTERDOWN) until it says the cluster is
        # ok (about 2 s: Redis waits for a failover that could demote it): only then
        # does the store answer again.
        victim.restart()
        redis_cluster.wait_ok()
        return time.monotonic()

    label = "Redis Cluster, one of 3 masters kill -9 at 5 s, restart at 10 s"
    try:
        outcome = run_scenario(
            label,
            call,
            computed,
            fault=victim.kill,
            restore=restore,
            tmp_path=tmp_path,
            processes=4,
        )
    finally:
        redis_cluster.wait_ok()
    assert_recovered(outcome, outage_hits=True)


# -- pickle: a full disk, a read-only directory ---------------------------------------------


def _can_mount() -> bool:
    return os.geteuid() == 0 and _run("mount", "--version")


def _run(*command: str) -> bool:
    try:
        return subprocess.run(command, check=False, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, unmounted afterwards (skips where mounting is not allowed)."""
    point = tmp_path / "small"
    point.mkdir()
    if not (_can_mount() and _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point))):
        pytest.skip("cannot mount a tmpfs here (needs root); the patched-write case runs")
    try:
        yield point
    finally:
        assert _run("umount", str(point))


def _fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; return the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _leftovers(directory: Path) -> list[str]:
    """Files a writer left behind: temporary files and entries that do not read back."""
    found = []
    for path in directory.rglob("*"):
        if path.name.endswith(".tmp"):
            found.append(path.name)
        elif path.name.endswith(".entry"):
            data = path.read_bytes()
            if len(data) <= pickle_files.HEADER_SIZE or not data.startswith(pickle_files.MAGIC):
                found.append(path.name)
    return found


def _briefly(warned: list[str]) -> str:
    """``N warning(s): <the operation and the OS error of the first>``."""
    first = warned[0].split(": ", 1)[-1] if warned else ""
    error = first.rsplit("] ", 1)[-1].rstrip("')\"")
    return f"{len(warned)} warning(s): {first.split(',', 1)[0]} ({error})"


def _pickle_function(cache_dir: Path) -> tuple[Callable[[int], str], list[int]]:
    computed = [0]

    @cached(backend="pickle", cache_dir=cache_dir)
    def value(key: int) -> str:
        computed[0] += 1
        return expected(key) * 20  # about 1.4 KB: one page of tmpfs

    return value, computed


def _assert_served_without_the_cache(
    value: Callable[[int], str], computed: list[int], keys: range
) -> None:
    for _ in range(2):  # each key twice: computed both times, nothing stored
        for key in keys:
            before = computed[0]
            assert value(key) == expected(key) * 20
            assert computed[0] == before + 1


def _assert_caching_resumes(value: Callable[[int], str], computed: list[int]) -> None:
    assert value(1000) == expected(1000) * 20
    before = computed[0]
    assert value(1000) == expected(1000) * 20
    assert computed[0] == before, "the second call should be a hit"


@pytest.mark.pickle
def test_fault_recovery_pickle_disk_full(
    small_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    value, computed = _pickle_function(small_tmpfs / "cache")
    assert value(0) == expected(0) * 20  # the directory and its claim file exist
    filler = _fill(small_tmpfs)
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        _assert_served_without_the_cache(value, computed, range(1, 21))
    warned = warnings_in(caplog)
    print(f"\npickle, tmpfs full: 40 calls, right values; {_briefly(warned)}")
    assert len(warned) == 1 and "store" in warned[0], warned
    assert _leftovers(small_tmpfs) == []
    filler.unlink()
    _assert_caching_resumes(value, computed)


@pytest.mark.pickle
def test_fault_recovery_pickle_write_fails_half_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    value, computed = _pickle_function(tmp_path / "cache")
    assert value(0) == expected(0) * 20

    def half_then_no_space(fd: int, timestamp: float, payload: bytes) -> None:
        os.write(fd, pickle_files.MAGIC)  # part of the header lands; the rest cannot
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pickle_module, "write_entry", half_then_no_space)
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        _assert_served_without_the_cache(value, computed, range(1, 21))
    warned = warnings_in(caplog)
    print(f"\npickle, writes failing half-way: 40 calls, right values; {_briefly(warned)}")
    assert len(warned) == 1 and "store" in warned[0], warned
    assert _leftovers(tmp_path / "cache") == []
    monkeypatch.undo()
    _assert_caching_resumes(value, computed)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Callable[[bool], None]]]:
    """A directory and ``make_read_only(flag)``: a bind mount remounted ro as root, or chmod."""
    directory = tmp_path / "ro"
    directory.mkdir()
    as_root = os.geteuid() == 0
    if as_root and not (_can_mount() and _run("mount", "--bind", str(directory), str(directory))):
        pytest.skip("as root, only a read-only mount stops writes, and mounting fails here")

    def make_read_only(flag: bool) -> None:
        if as_root:
            how = "remount,bind,ro" if flag else "remount,bind,rw"
            assert _run("mount", "-o", how, str(directory))
        else:
            for path in [directory, *directory.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o555 if flag else 0o755)

    try:
        yield directory, make_read_only
    finally:
        if as_root:
            assert _run("umount", str(directory))
        else:
            make_read_only(False)


@pytest.mark.pickle
def test_fault_recovery_pickle_read_only_directory(
    read_only: tuple[Path, Callable[[bool], None]], caplog: pytest.LogCaptureFixture
) -> None:
    directory, make_read_only = read_only
    value, computed = _pickle_function(directory / "cache")
    assert value(0) == expected(0) * 20
    make_read_only(True)
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        before = computed[0]
        assert value(0) == expected(0) * 20  # stored before: still served
        assert computed[0] == before
        _assert_served_without_the_cache(value, computed, range(1, 21))
    warned = warnings_in(caplog)
    print(f"\npickle, read-only directory: 41 calls, right values; {_briefly(warned)}")
    assert len(warned) == 1, warned
    assert _leftovers(directory) == []
    make_read_only(False)
    _assert_caching_resumes(value, computed)


@pytest.mark.redis
def test_fault_recovery_a_cluster_node_down_keeps_the_breaker_open_until_it_is_back(
    redis_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    # A probe that any live node answers would close the breaker while one node is
    # down; each trip that follows holds it open twice as long (up to 8 s), so caching
    # would resume up to 8 s after the node is back instead of within a second.
    prefix = unique("probe")
    victim = redis_cluster.node_of_slot(key_slot(key_tag(prefix, "f").encode()))
    computed = [0]

    @cached(backend="redis", redis_client=redis_cluster.url, key_prefix=prefix, namespace="f")
    def value(key: int) -> str:
        computed[0] += 1
        return expected(key)

    assert value(1) == expected(1)
    with caplog.at_level(logging.DEBUG, logger="cachier_like.cores._breaker"):
        victim.kill()
        try:
            down_until = time.monotonic() + 3.0  # several probe periods
            while time.monotonic() < down_until:
                assert value(1) == expected(1)
                time.sleep(0.01)
            closed = [r for r in caplog.records if "breaker closed" in r.getMessage()]
        finally:
            victim.restart()
            redis_cluster.wait_ok()
        assert closed == [], "the breaker closed while a primary was down"
        back_at = time.monotonic()

        def hit() -> bool:
            before = computed[0]
            assert value(1) == expected(1)  # the first one recomputes: the node lost it
            return computed[0] == before

        wait_until(hit, timeout_s=MAX_RECOVERY_S)
    print(f"\nRedis Cluster, node back: cached again after {time.monotonic() - back_at:.3f} s")


@pytest.mark.pickle
def test_fault_recovery_pickle_room_for_the_entry_only(
    small_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # One page left: the entry file fits, the namespace file written beside it after
    # the first store (for the CLI) does not. The entry is stored all the same, and
    # the namespace file's temporary file must not be left behind.
    filler = small_tmpfs / "filler"
    free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
    filler.write_bytes(b"\0" * (free - 4096))
    value, computed = _pickle_function(small_tmpfs / "cache")
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        _assert_caching_resumes(value, computed)  # stored, then a hit
    assert warnings_in(caplog) == []  # the store succeeded
    assert _leftovers(small_tmpfs) == []
    filler.unlink()
    assert value(1001) == expected(1001) * 20  # the next store writes the namespace file
    (written,) = small_tmpfs.rglob(".namespace")
    assert written.read_text().endswith("_pickle_function.<locals>.value")
