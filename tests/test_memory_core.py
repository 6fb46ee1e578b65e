"""The in-process memory core: thread safety, LRU bounds, claims and waits.

Threads meet at barriers and events; where a test needs another thread to be blocked
inside ``MemoryCore.wait`` it inspects that thread's stack, polling with a deadline,
so no test sleeps for a fixed time.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from cachier_like import ConfigurationError, Entry, cached
from cachier_like.cores.memory import MemoryCore
from tests.support import in_call, wait_until, warnings_in

pytestmark = pytest.mark.memory

DEADLINE_S = 30.0


WAIT_CODE = MemoryCore.wait.__code__


def start(target: Callable[[], object]) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    """Run ``target`` in a daemon thread; its result or exception lands in the lists."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(target())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results, errors


# -- thread safety ---------------------------------------------------------------------


@pytest.mark.parametrize("max_entries", [None, 8])
def test_sixteen_threads_of_mixed_operations_leave_a_consistent_store(
    max_entries: int | None,
) -> None:
    core = MemoryCore("tests.memory_core.mixed", max_entries=max_entries)
    threads, ops, keys = 16, 3000, 64
    barrier = threading.Barrier(threads)
    holders: dict[Hashable, int] = {}
    holders_lock = threading.Lock()
    violations: list[str] = []
    errors: list[BaseException] = []
    written: list[set[tuple[int, int, int]]] = [set() for _ in range(threads)]

    def worker(tid: int) -> None:
        rng = random.Random(tid)
        try:
            barrier.wait(timeout=DEADLINE_S)
            for n in range(ops):
                key = rng.randrange(keys)
                roll = rng.random()
                if roll < 0.35:
                    entry = core.get(key)
                    if entry is not None and entry.value[0] != key:
                        violations.append(f"key {key} holds {entry.value}")
                elif roll < 0.65:
                    value = (key, tid, n)
                    written[tid].add(value)
                    assert core.set(key, Entry(value, float(n))) is True
                elif roll < 0.93:
                    if core.claim(key, 60.0):
                        with holders_lock:
                            if key in holders:
                                violations.append(f"key {key} claimed by {holders[key]} and {tid}")
                            holders[key] = tid
                        with holders_lock:
                            del holders[key]
                        core.release(key)
                elif roll < 0.99:
                    entry = core.wait(key, 0.0)
                    if entry is not None and entry.value[0] != key:
                        violations.append(f"wait on {key} returned {entry.value}")
                else:
                    stats = core.stats()
                    if max_entries is not None and stats.entries > max_entries:
                        violations.append(f"{stats.entries} entries above {max_entries}")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(tid,)) for tid in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(DEADLINE_S)
    assert not any(thread.is_alive() for thread in workers)
    assert errors == []
    assert violations == []

    every_write = set().union(*written)
    present = {key: core.get(key) for key in range(keys)}
    stored = {key: entry for key, entry in present.items() if entry is not None}
    for key, entry in stored.items():
        assert entry.value[0] == key
        assert entry.value in every_write
        assert entry.timestamp == float(entry.value[2])
    stats = core.stats()
    assert stats.entries == len(stored)
    assert stats.claims == 0
    if max_entries is not None:
        assert len(stored) <= max_entries
    assert all(core.claim(key, 60.0) for key in range(keys))  # nothing left claimed


# -- max_entries: least recently used eviction -------------------------------------------


def test_max_entries_evicts_the_least_recently_used_call() -> None:
    calls: list[int] = []

    @cached(backend="memory", max_entries=3)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert [double(1), double(2), double(3)] == [2, 4, 6]
    assert double(1) == 2  # a hit: 1 is now the most recently used
    assert double(4) == 8  # evicts 2, the least recently used
    assert calls == [1, 2, 3, 4]
    assert [double(1), double(3), double(4)] == [2, 6, 8]  # all still cached
    assert calls == [1, 2, 3, 4]
    assert double(2) == 4  # recomputed; evicts 1 (least recently used of 1, 3, 4)
    assert calls == [1, 2, 3, 4, 2]
    assert double.core.stats().entries == 3
    assert double.cached_entry(1) is None
    assert [double.cached_entry(x) is not None for x in (2, 3, 4)] == [True, True, True]


def test_memory_core_lru_order_follows_reads_and_writes() -> None:
    core = MemoryCore("tests.memory_core.lru", max_entries=3)
    for key in "abc":
        core.set(key, Entry(key, 1.0))
    assert core.get("a") == Entry("a", 1.0)  # order: b c a
    assert core.get("zz") is None  # a miss changes nothing
    core.set("d", Entry("d", 1.0))  # evicts b; order: c a d
    assert core.get("b") is None
    core.set("c", Entry("c2", 2.0))  # an overwrite counts as use; order: a d c
    core.set("e", Entry("e", 1.0))  # evicts a; order: d c e
    assert core.get("a") is None
    assert [core.get(k) for k in "dce"] == [Entry("d", 1.0), Entry("c2", 2.0), Entry("e", 1.0)]
    assert core.stats().entries == 3


@pytest.mark.parametrize("bad", [0, -1])
def test_max_entries_below_one_is_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCore("tests.memory_core.bad", max_entries=bad)

    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="max_entries"):
        cached(backend="memory", max_entries=bad)(f)(1)


# -- the rest of the core API ----------------------------------------------------------


def test_get_set_clear_purge_and_stats() -> None:
    core = MemoryCore("tests.memory_core.api")
    assert core.get("k") is None
    assert core.set("k", Entry([1], 10.0)) is True
    assert core.set(("t", 1), Entry("tuple", 30.0)) is True
    assert core.get("k") == Entry([1], 10.0)
    stats = core.stats()
    assert (stats.entries, stats.total_bytes, stats.oldest, stats.newest, stats.claims) == (
        2,
        None,
        10.0,
        30.0,
        0,
    )
    core.set("old", Entry("old", 100.0))
    core.set("new", Entry("new", 199.0))
    assert core.purge_stale(50.0, 200.0) == 3  # "k" at 10, ("t", 1) at 30, "old" at 100
    assert core.get("new") == Entry("new", 199.0)
    assert core.clear() == 1
    assert core.clear() == 0
    assert core.location() is None


# -- claims and waits ------------------------------------------------------------------


def test_a_stored_value_alone_does_not_end_the_wait() -> None:
    core = MemoryCore("tests.memory_core.set_then_release")
    assert core.claim("k", 60.0)
    waiter, results, _ = start(lambda: core.wait("k", None))
    wait_until(lambda: in_call(waiter, WAIT_CODE), timeout_s=DEADLINE_S)
    core.set("k", Entry("value", 5.0))  # wakes the waiter, which must go back to sleep
    # Proving that something does not happen takes a bounded wait.
    waiter.join(0.2)
    assert waiter.is_alive(), "wait ended while the claim was still held"
    assert results == []
    core.release("k")
    waiter.join(DEADLINE_S)
    assert results == [Entry("value", 5.0)]


# -- the decorator on the memory core --------------------------------------------------


def test_eight_threads_racing_one_key_compute_once() -> None:
    calls: list[int] = []
    threads: list[threading.Thread] = []
    barrier = threading.Barrier(8)

    @cached(backend="memory")
    def slow_square(x: int) -> dict[str, int]:
        calls.append(x)
        me = threading.current_thread()
        # Finish only once every other racer is blocked waiting for this calculation.
        wait_until(
            lambda: (
                len(threads) == 8 and all(in_call(t, WAIT_CODE) for t in threads if t is not me)
            ),
            timeout_s=DEADLINE_S,
        )
        return {"square": x * x}

    def race() -> dict[str, int]:
        barrier.wait(timeout=DEADLINE_S)
        return slow_square(9)

    runs = [start(race) for _ in range(8)]
    threads.extend(thread for thread, _, _ in runs)
    outcomes: list[dict[str, int]] = []
    for thread, results, errors in runs:
        thread.join(DEADLINE_S)
        assert errors == []
        outcomes.extend(results)
    assert outcomes == [{"square": 81}] * 8
    assert calls == [9]
    assert slow_square.core.stats().claims == 0


def test_a_failed_calculation_hands_over_to_a_waiter() -> None:
    calls: list[str] = []
    first_started = threading.Event()
    second: list[threading.Thread] = []

    @cached(backend="memory")
    def fragile(x: int) -> str:
        if not calls:
            calls.append("failed")
            first_started.set()
            wait_until(lambda: bool(second) and in_call(second[0], WAIT_CODE), timeout_s=DEADLINE_S)
            raise RuntimeError("the first calculation fails")
        calls.append("succeeded")
        return f"value-{x}"

    first, first_results, first_errors = start(lambda: fragile(1))
    assert first_started.wait(DEADLINE_S)
    waiter, results, errors = start(lambda: fragile(1))
    second.append(waiter)
    first.join(DEADLINE_S)
    waiter.join(DEADLINE_S)
    assert not waiter.is_alive()
    assert [type(exc) for exc in first_errors] == [RuntimeError]
    assert first_results == []
    assert errors == []
    assert results == ["value-1"]
    assert calls == ["failed", "succeeded"]
    assert fragile(1) == "value-1"
    assert calls == ["failed", "succeeded"]


# -- large str and bytes arguments ----------------------------------------------------------


def test_a_large_argument_is_not_kept_alive_by_its_entry() -> None:
    @cached(backend="memory")
    def size(data: bytes, label: str = "") -> int:
        return len(data) + len(label)

    big = random.Random(3).randbytes(1 << 20)
    label = "x" * 10_000
    refs = sys.getrefcount(big), sys.getrefcount(label)
    assert size(big, label) == (1 << 20) + 10_000
    assert (sys.getrefcount(big), sys.getrefcount(label)) == refs
    assert size.cached_entry(bytes(bytearray(big)), label) is not None  # an equal copy hits


def test_dropped_large_arguments_free_their_memory() -> None:
    @cached(backend="memory")
    def first_byte(data: bytes) -> int:
        return data[0]

    chunk = 20 << 20
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(4):
            data = bytes([i]) * chunk
            assert first_byte(data) == i
            del data
        resident = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert resident < chunk // 4, f"{resident} bytes still held after dropping the arguments"
    assert first_byte.core.stats().entries == 4


def test_large_and_small_str_and_bytes_arguments_hit_and_never_collide() -> None:
    calls: list[object] = []

    @cached(backend="memory")
    def describe(value: str | bytes) -> str:
        calls.append(value)
        return f"{type(value).__name__}:{len(value)}:{value[-1:]!r}"

    arguments: list[str | bytes] = [
        b"a" * 300,
        "a" * 300,
        b"a" * 299 + b"b",
        b"a" * 301,
        "a" * 299 + "b",
        b"a" * 10,
        "a" * 10,
        bytes(range(256)) * 4096,
        bytes(range(256)) * 4095 + bytes(range(255)) + b"\x00",
    ]
    first = [describe(value) for value in arguments]
    assert len(set(first)) == len(arguments)
    assert len(calls) == len(arguments)
    # Equal, not identical: a new object, whose hash Python has not cached.
    copies = [bytes(bytearray(v)) if isinstance(v, bytes) else (v + ".")[:-1] for v in arguments]
    assert [describe(value) for value in copies] == first
    assert len(calls) == len(arguments)


# -- on_evict: values leaving the store ----------------------------------------------------


class Resource:
    """A value that must be closed exactly once when its entry leaves the cache."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


class Closer:
    """An ``on_evict`` that closes each value and records its name, in order."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, value: Resource) -> None:
        with self._lock:
            self.names.append(value.name)
        value.close()


def test_on_evict_closes_lru_evictions_and_cleared_values_once_each() -> None:
    closer = Closer()
    made: dict[int, Resource] = {}

    @cached(backend="memory", max_entries=2, on_evict=closer)
    def open_(x: int) -> Resource:
        made[x] = Resource(f"r{x}")
        return made[x]

    open_(1), open_(2)
    assert closer.names == []
    open_(3)  # evicts 1, the least recently used
    assert closer.names == ["r1"]
    assert open_(2) is made[2]  # a hit: 2 is now the most recently used
    open_(4)  # evicts 3
    assert closer.names == ["r1", "r3"]
    assert open_.clear_cache() == 2
    assert sorted(closer.names[2:]) == ["r2", "r4"]
    assert [made[x].closes for x in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert open_.clear_cache() == 0
    assert len(closer.names) == 4


def test_on_evict_receives_a_replaced_value_on_refresh_and_on_expiry() -> None:
    closer = Closer()
    versions = iter(range(100))

    @cached(backend="memory", on_evict=closer, stale_after=0.05)
    def open_(x: int) -> Resource:
        return Resource(f"r{x}-{next(versions)}")

    first = open_(1)
    assert first.name == "r1-0"
    entry = open_.cached_entry(1)
    assert entry is not None
    wait_until(lambda: time.time() - entry.timestamp > 0.05)
    second = open_(1)  # expired: recomputed, and the old value leaves the store
    assert second.name == "r1-1"
    assert closer.names == ["r1-0"]
    assert open_.refresh(1).name == "r1-2"
    assert closer.names == ["r1-0", "r1-1"]
    assert (first.closes, second.closes) == (1, 1)


def test_on_evict_at_core_level_delete_purge_batches_and_an_identical_value() -> None:
    seen: list[object] = []
    core = MemoryCore("tests.memory_core.evict", max_entries=3, on_evict=seen.append)
    shared = ["shared"]
    assert core.set("a", Entry("a", 1.0))
    assert core.set("a", Entry("a2", 2.0))  # replaced
    assert seen == ["a"]
    assert core.set("a", Entry(shared, 3.0))
    assert core.set("a", Entry(shared, 4.0))  # the same object again: it has not left
    assert seen == ["a", "a2"]
    assert core.delete("a") is True
    assert core.delete("a") is False
    assert seen == ["a", "a2", shared]
    seen.clear()
    # A batch: the first of four over a bound of three is evicted.
    assert core.set_many([(k, Entry(k.upper(), 10.0)) for k in "wxyz"]) == [True] * 4
    assert seen == ["W"]
    assert core.get_many(["x", "w", "z"]) == [Entry("X", 10.0), None, Entry("Z", 10.0)]
    assert core.set("old", Entry("OLD", 1.0))  # evicts y, the least recently used
    assert seen == ["W", "Y"]
    assert core.purge_stale(5.0, 12.0) == 1
    assert seen == ["W", "Y", "OLD"]
    core.set("twin", Entry(shared, 11.0))
    core.set("twin2", Entry(shared, 11.0))  # evicts x
    assert seen[-1] == "X"
    seen.clear()
    assert core.clear() == 3
    assert seen == ["Z", shared]  # one object under two keys leaves once


def test_on_evict_runs_outside_the_cores_lock() -> None:
    # The lock is not reentrant: a callback run under it would deadlock here.
    core: MemoryCore
    inside: list[tuple[Entry | None, int]] = []

    def evicted(value: object) -> None:
        inside.append((core.get("b"), core.stats().entries))

    core = MemoryCore("tests.memory_core.evict_lock", max_entries=1, on_evict=evicted)
    core.set("a", Entry("A", 1.0))
    thread, results, errors = start(lambda: core.set("b", Entry("B", 1.0)))
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), "on_evict ran under the core's lock"
    assert (results, errors) == ([True], [])
    assert inside == [(Entry("B", 1.0), 1)]


def test_an_on_evict_that_raises_is_logged_once_and_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts: list[str] = []

    def broken(value: str) -> None:
        attempts.append(value)
        raise RuntimeError(f"cannot close {value}")

    @cached(backend="memory", max_entries=1, on_evict=broken)
    def name(x: int) -> str:
        return f"v{x}"

    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert [name(1), name(2), name(3)] == ["v1", "v2", "v3"]
    assert attempts == ["v1", "v2"]
    assert name.core.stats().entries == 1
    assert name.cached_entry(3) is not None and name.cached_entry(1) is None
    logged = warnings_in(caplog, "cachier_like.cores.memory")
    assert len(logged) == 1  # rate-limited: the second failure is held back
    assert "on_evict raised RuntimeError('cannot close v1')" in logged[0]
    assert name.clear_cache() == 1
    assert attempts == ["v1", "v2", "v3"]


def test_sixteen_threads_load_one_key_once_and_evicted_values_close_once() -> None:
    closer = Closer()
    loads: list[int] = []
    threads: list[threading.Thread] = []
    barrier = threading.Barrier(16)

    @cached(backend="memory", max_entries=2, on_evict=closer)
    def connect(x: int) -> Resource:
        loads.append(x)
        if x == 7:
            me = threading.current_thread()
            # Slow: finish only once every other caller waits for this load.
            wait_until(
                lambda: (
                    len(threads) == 16
                    and all(in_call(t, WAIT_CODE) for t in threads if t is not me)
                ),
                timeout_s=DEADLINE_S,
            )
        return Resource(f"c{x}")

    def race() -> Resource:
        barrier.wait(timeout=DEADLINE_S)
        return connect(7)

    runs = [start(race) for _ in range(16)]
    threads.extend(thread for thread, _, _ in runs)
    got: list[Resource] = []
    for thread, results, errors in runs:
        thread.join(DEADLINE_S)
        assert errors == []
        got.extend(results)
    assert loads == [7]
    assert len(got) == 16 and all(r is got[0] for r in got)
    connect(8), connect(9)  # evicts 7
    assert (closer.names, got[0].closes) == (["c7"], 1)
    connect.clear_cache()
    assert sorted(closer.names) == ["c7", "c8", "c9"]
    assert got[0].closes == 1 and loads == [7, 8, 9]


@pytest.mark.parametrize("bad", [3, "close"])
def test_a_non_callable_on_evict_is_refused_with_what_to_pass(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"on_evict must be a callable taking the value"):
        MemoryCore("tests.memory_core.bad_evict", on_evict=bad)  # type: ignore[arg-type]

    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match=r"e\.g\. on_evict=lambda value: value\.close\(\)"):
        cached(backend="memory", on_evict=bad)(f)  # type: ignore[call-overload]
