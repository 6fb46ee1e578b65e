"""Section: async functions on the memory core, and one flight shared by 1,000 awaits.

Hit: ``await f(1, 2)`` once stored, against awaiting the bare ``async def`` (the
baseline); miss: ever-new first argument. Each figure times a batch of awaits run in
one coroutine on one event loop (the loop's own start-up is outside the timing).

Flight: 1,000 tasks await one cold key of a function that sleeps; the figures are the
computations made (the target: one) and the time from the computation's return to the
last awaiter's, in milliseconds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cachier_like import cached

from .measure import Settings, Timing, measure_awaits
from .report import OURS, Report, Row, Target, print_table, section_rows, target_from_row

NAME: str = "async"
TITLE: str = "async functions, memory core"
BARE_ROW = "bare await (no cache)"
BASELINE: str | None = BARE_ROW
OURS_ROW = f"{OURS} @cached(backend='memory') async"

# Targets from the project's issue.
TARGET_HIT_US = 3.0
TARGET_FLIGHT_MS = 50.0
FLIGHT_AWAITS = 1_000
FLIGHT_SLEEP_S = 0.02
#: This run's flight figures: computations made and the last awaiter's lag in ms.
FLIGHT: dict[str, float] = {}


def _time_awaits(
    settings: Settings, call: Callable[[], Awaitable[Any]], reset: Callable[[], object] | None
) -> Timing:
    """Microseconds per ``await call()``, on an event loop of its own."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(measure_awaits(call, settings, reset=reset))
    finally:
        loop.close()


def _flight() -> tuple[int, float]:
    """Computations made, and ms from the computation's return to the last awaiter's."""
    computed: list[float] = []

    @cached(backend="memory")
    async def slow(x: int) -> int:
        await asyncio.sleep(FLIGHT_SLEEP_S)
        computed.append(time.perf_counter())
        return x

    async def main() -> float:
        finished: list[float] = []

        async def one() -> None:
            await slow(7)
            finished.append(time.perf_counter())

        await asyncio.gather(*(one() for _ in range(FLIGHT_AWAITS)))
        return (max(finished) - computed[0]) * 1e3

    lag_ms = asyncio.run(main())
    return len(computed), lag_ms


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure the hit and miss rows and the shared flight (nothing touches disk)."""

    async def bare(a: int, b: int) -> int:
        return a + b

    ours = cached(backend="memory")(bare)

    fresh = itertools.count(1_000)

    def bare_hit() -> Awaitable[int]:
        return bare(1, 2)

    def ours_hit() -> Awaitable[int]:
        return ours(1, 2)

    def ours_miss() -> Awaitable[int]:
        return ours(next(fresh), 2)

    asyncio.run(ours(1, 2))
    for impl, case, call, reset in (
        (BARE_ROW, "hit", bare_hit, None),
        (BARE_ROW, "miss", bare_hit, None),
        (OURS_ROW, "hit", ours_hit, None),
        (OURS_ROW, "miss", ours_miss, ours.clear_cache),
    ):
        timing = _time_awaits(settings, call, reset)
        report.rows.append(Row(NAME, case, impl, None, timing, ""))
    ours.clear_cache()
    computations, lag_ms = _flight()
    FLIGHT.update(computations=computations, lag_ms=lag_ms)
    note = f"{FLIGHT_AWAITS} awaits: {computations} computation(s), last done {lag_ms:.1f} ms after"
    # The figure is the last awaiter's lag behind the computation, in microseconds.
    lag = Timing(lag_ms * 1e3, lag_ms * 1e3, FLIGHT_AWAITS, 1, FLIGHT_AWAITS, "")
    report.rows.append(Row(NAME, "flight", OURS_ROW, None, lag, note))


def print_tables(report: Report, settings: Settings) -> None:
    print()
    print("Async functions, memory core: await f(1, 2)  [us per await]")
    headers = ["implementation"]
    for case in ("hit", "miss"):
        headers += [f"{case} med", f"{case} min", "/bare", f"/{OURS}"]
    print_table(
        [*headers, "notes"], section_rows(report, NAME, ("hit", "miss"), lambda _case: BARE_ROW)
    )
    row = report.find(NAME, "flight", OURS_ROW)
    if row is not None:
        print(f"   one cold key: {row.note}")


def targets(report: Report, settings: Settings) -> list[Target]:
    """The async memory hit in µs; one computation for 1,000 awaits, all done within 50 ms."""
    hit = target_from_row(
        f"async memory hit <= {TARGET_HIT_US:g} us",
        report.find(NAME, "hit", OURS_ROW),
        TARGET_HIT_US,
    )
    label = f"{FLIGHT_AWAITS} awaits: 1 computation, all done <= {TARGET_FLIGHT_MS:g} ms after"
    if not FLIGHT:
        return [hit, Target(label, "-", None, "-", None)]
    passed = FLIGHT["computations"] == 1 and FLIGHT["lag_ms"] <= TARGET_FLIGHT_MS
    shown = f"{FLIGHT['computations']:g} / {FLIGHT['lag_ms']:.1f} ms"
    return [hit, Target(label, shown, passed, shown, passed)]
