"""Shared behaviour suite, cross-process section: forked callers on one store.

Every test runs on each core of ``cross_process_core_options`` (conftest): those whose
``tests/backends`` module lists them in ``CROSS_PROCESS``. Processes are forked, so a
decorated function can be a closure defined in the test; calculations are counted
with ``O_APPEND`` lines in a file that every process appends to, never with a core's
own counters. Nothing sleeps for a fixed time: processes meet at a barrier and report
through pipes and queues, and the rest polls with a deadline.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cachier_like import CachedFunction, Entry, cached
from cachier_like.cores import core_class
from tests.backends.types import CoreOptions
from tests.support import (
    DEADLINE_S,
    FORK,
    ResultQueue,
    StuckCalculator,
    key_windows,
    reap,
    record,
    records,
    run_forked,
    start_waiter,
    wait_until,
)

WORKERS = 8
#: The lease of the take-over test, on cores whose claims are leases (seconds).
LEASE_S = 1.0
#: How soon after the kill the take-over must be over: a lease, and ample slack.
TAKE_OVER_BOUND_S = LEASE_S + 9


# -- helpers ------------------------------------------------------------------------


def take_over_options(core_options: CoreOptions) -> dict[str, Any]:
    """The core's ``@cached`` options, with a short lease where its claims are leases.

    A leasing core frees a killed calculator's key once its lease lapses; the others
    (pickle) hold a claim as a lock that ends with its process, and need no lease.
    """
    if core_class(core_options()["backend"]).leases:
        return core_options(lease=LEASE_S)
    return core_options()


@dataclass
class Waiter:
    """A caller waiting on another's claim, in a thread or a forked process."""

    pid: int
    #: Blocks until the caller's call returns (within the deadline); returns its result.
    result: Callable[[], Any]


@contextmanager
def waiting_caller(
    kind: str, f: CachedFunction[..., Any], call: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Waiter]:
    """Start ``call()`` in a thread or a process; enter once it waits on ``f``'s core."""
    if kind == "thread":
        thread, results = start_waiter(monkeypatch, f.core, call)

        def joined() -> Any:
            thread.join(DEADLINE_S)
            assert not thread.is_alive(), "the waiting thread never took over"
            assert len(results) == 1, "the waiting thread's call failed"
            return results[0]

        yield Waiter(os.getpid(), joined)
        return

    waiting_r, waiting_w = FORK.Pipe(duplex=False)
    outcome: ResultQueue[tuple[str, Any]] = FORK.Queue()

    def waiter_main() -> None:
        core = f.core  # this process's core: patching it patches no other process
        original_wait = core.wait

        def wait_spy(key: Any, timeout_s: float | None) -> Entry | None:
            waiting_w.send("waiting")
            entry: Entry | None = original_wait(key, timeout_s)
            return entry

        core.wait = wait_spy
        try:
            outcome.put(("ok", call()))
        except BaseException as exc:
            outcome.put(("error", repr(exc)))

    process = FORK.Process(target=waiter_main, daemon=True)
    process.start()
    try:
        assert waiting_r.poll(DEADLINE_S), "the waiting process never started waiting"

        def finished() -> Any:
            status, value = outcome.get(timeout=DEADLINE_S)
            assert status == "ok", f"the waiting process's call failed: {value}"
            process.join(DEADLINE_S)
            assert process.exitcode == 0
            return value

        assert process.pid is not None
        yield Waiter(process.pid, finished)
    finally:
        reap(process)


# -- many processes racing ------------------------------------------------------------


def test_one_key_raced_by_eight_processes_is_calculated_once(
    cross_process_core_options: CoreOptions, tmp_path: Path
) -> None:
    calls, arrived = tmp_path / "calls", tmp_path / "arrived"

    @cached(**cross_process_core_options())
    def slow(x: int) -> dict[str, int]:
        record(calls, str(os.getpid()))
        # Hold the claim until every worker is inside its call, so all of them contend.
        wait_until(lambda: len(records(arrived)) >= WORKERS)
        return {"x": x, "square": x * x, "pid": os.getpid()}

    assert slow.cached_entry(7) is None  # the parent has used the store before forking

    def work(index: int) -> Any:
        record(arrived, str(index))
        return slow(7)

    results = run_forked(WORKERS, work, start_together=True, forbid_warnings=True)
    lines = records(calls)
    assert len(lines) == 1, lines
    expected = {"x": 7, "square": 49, "pid": int(lines[0])}
    assert expected["pid"] != os.getpid()
    assert results == [expected] * WORKERS
    assert slow(7) == expected  # a hit in the parent, whose connections still work
    assert len(records(calls)) == 1
    stats = slow.core.stats()
    assert (stats.entries, stats.claims) == (1, 0)


def test_many_keys_raced_by_eight_processes_are_each_calculated_once(
    cross_process_core_options: CoreOptions, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    # Each key is asked for by four processes.
    windows = key_windows(WORKERS, size=40, step=10, key_space=80)

    @cached(**cross_process_core_options())
    def square(k: int) -> int:
        record(calls, str(k))
        return k * k + 7

    def work(index: int) -> list[int]:
        return [square(k) for k in windows[index]]

    results = run_forked(WORKERS, work, start_together=True, forbid_warnings=True)
    asked = {k for window in windows for k in window}
    assert asked == set(range(80))
    for index, values in enumerate(results):
        assert values == [k * k + 7 for k in windows[index]]
    assert Counter(records(calls)) == Counter({str(k): 1 for k in asked})
    stats = square.core.stats()
    assert (stats.entries, stats.claims) == (len(asked), 0)


# -- a calculator killed mid-calculation ---------------------------------------------


@pytest.mark.parametrize("waiter_kind", ["thread", "process"])
def test_a_killed_calculator_is_taken_over_by_a_waiter(
    cross_process_core_options: CoreOptions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    waiter_kind: str,
) -> None:
    calls = tmp_path / "calls"
    stuck = StuckCalculator()

    @cached(**take_over_options(cross_process_core_options))
    def compute(x: int) -> str:
        record(calls, str(os.getpid()))
        stuck.checkpoint()
        return f"value-{x}"

    with (
        stuck.running(lambda: compute(3)) as victim,
        waiting_caller(waiter_kind, compute, lambda: compute(3), monkeypatch) as waiter,
    ):
        # The calculator holds its claim (a leasing core's keeper renews it) while it lives.
        assert compute.core.stats().claims == 1
        stuck.kill()
        killed_at = time.monotonic()
        assert waiter.result() == "value-3"
        elapsed = time.monotonic() - killed_at
        assert elapsed < TAKE_OVER_BOUND_S, f"the take-over took {elapsed:.1f} s"
    # The killed calculation, then the waiter's own.
    assert records(calls) == [str(victim.pid), str(waiter.pid)]
    entry = compute.cached_entry(3)
    assert entry is not None
    assert entry.value == "value-3"
    assert compute.core.stats().claims == 0
    assert compute(3) == "value-3"
    assert len(records(calls)) == 2
