"""Warming (``f.warm``, ``f.awarm``) on every core: what is computed, what is left.

Each test counts the function's real calls: warming computes exactly the distinct calls
that are missing, stale by age or behind their tags, once each (also when two warmers
race), and a later call of a warmed key is a hit.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cachier_like import Args, WarmReport, cached
from tests.support import record, records, run_forked, warnings_in
from tests.test_behaviour import DEADLINE_S, Calls, CoreOptions


def test_warm_computes_only_what_is_missing(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def square(x: int, scale: int = 1) -> int:
        calls.record(x)
        return x * x * scale

    square(1)
    report = square.warm([(1,), (2,), (3,), (2,), Args(4, scale=2)])
    assert report == WarmReport(computed=3, fresh=1, failed=0) and report.total == 4
    assert calls.of(1) == 1 and calls.of(2) == 1 and calls.of(3) == 1 and calls.of(4) == 1
    assert [square(2), square(3), square(4, scale=2)] == [4, 9, 32]
    assert calls.n == 4  # all hits now
    assert square.warm([(1,), (2,)]) == WarmReport(computed=0, fresh=2, failed=0)


def test_warm_recomputes_stale_and_invalidated_entries(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(stale_after=timedelta(hours=1), next_time=True, tags=["t"]))
    def f(x: int) -> int:
        return calls.record(x)

    f(1), f(2)
    f.invalidate_tags("t")  # both behind their tag now
    assert f.warm([(1,), (2,)]) == WarmReport(computed=2, fresh=0, failed=0)
    assert calls.of(1) == 2 and calls.of(2) == 2  # computed by warm itself, not later
    assert f(1) == 3 and f(2) == 4 and calls.n == 4  # served current, no refresh


def test_one_failure_is_counted_and_warned_about_and_the_rest_is_warmed(
    core_options: CoreOptions, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: Any) -> Any:
        calls.record(x)
        if x == 2:
            raise RuntimeError("no 2")
        return x

    with caplog.at_level(logging.WARNING):
        report = f.warm([(1,), (2,), (3,), (threading.Lock(),)])  # a lock gives no key
    assert report == WarmReport(computed=2, fresh=0, failed=2)
    assert any("warming" in m and "RuntimeError: no 2" in m for m in warnings_in(caplog))
    assert f.cached_entry(1) is not None and f.cached_entry(3) is not None
    assert f.cached_entry(2) is None


@pytest.mark.memory
def test_workers_compute_in_parallel() -> None:
    together = threading.Barrier(4, timeout=DEADLINE_S)

    @cached(backend="memory")
    def slow(x: int) -> int:
        together.wait()  # passes only when 4 calls run at once
        return x

    report = slow.warm([(x,) for x in range(8)], workers=4)
    assert report == WarmReport(computed=8, fresh=0, failed=0)


@pytest.mark.memory
def test_two_warmers_of_the_same_keys_compute_each_once() -> None:
    calls = Calls()
    started = threading.Barrier(2, timeout=DEADLINE_S)

    @cached(backend="memory")
    def f(x: int) -> int:
        return calls.record(x)

    reports: list[WarmReport] = []

    def warmer() -> None:
        started.wait()
        reports.append(f.warm([(x,) for x in range(20)], workers=2))

    threads = [threading.Thread(target=warmer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert len(reports) == 2 and calls.n == 20
    assert all(calls.of(x) == 1 for x in range(20))
    assert sum(r.computed + r.fresh for r in reports) == 40


def test_awarm(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    async def f(x: int) -> int:
        await asyncio.sleep(0)
        return calls.record(x)

    async def main() -> tuple[WarmReport, WarmReport]:
        await f(1)
        first = await f.awarm([(x,) for x in range(1, 6)], concurrency=3)
        return first, await f.awarm([(1,), (5,)])

    first, second = asyncio.run(main())
    assert first == WarmReport(computed=4, fresh=1, failed=0)
    assert second == WarmReport(computed=0, fresh=2, failed=0)
    assert calls.n == 5


@pytest.mark.memory
def test_a_progress_line_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    @cached(backend="memory")
    def f(x: int) -> int:
        return x

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    f.warm([(1,), (2,), (3,)])
    assert terminal.getvalue().endswith(f"\rwarming {f.namespace}: 3/3\n")
    assert f"warming {f.namespace}: 1/3" in terminal.getvalue()
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    f.warm([(4,)])
    assert piped.getvalue() == ""


@pytest.mark.memory
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(bad: Any) -> None:
    @cached(backend="memory")
    def f(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="workers must be a positive int"):
        f.warm([(1,)], workers=bad)
    with pytest.raises(ValueError, match="concurrency must be a positive int"):
        asyncio.run(f.awarm([(1,)], concurrency=bad))


def test_processes_warming_the_same_keys_compute_each_once(
    cross_process_core_options: CoreOptions, tmp_path: Path
) -> None:
    computed = tmp_path / "computed"

    @cached(**cross_process_core_options())
    def f(x: int) -> int:
        record(computed, str(x))
        return x

    assert f.cached_entry(0) is None  # the parent has used the store before forking
    keys = [(x,) for x in range(12)]
    reports = run_forked(4, lambda index: f.warm(keys, workers=2), start_together=True)
    done = Counter(records(computed))
    assert done == Counter(str(x) for x in range(12)), done  # each key once, in any process
    assert all(r.failed == 0 and r.total == 12 for r in reports)
    assert f.warm(keys) == WarmReport(computed=0, fresh=12, failed=0)
