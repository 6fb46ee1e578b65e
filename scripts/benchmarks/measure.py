"""How long to measure, and the measurement itself: ``timeit.repeat`` sized by calibration."""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Settings:
    """How long to measure."""

    quick: bool
    per_repeat_s: float  # target duration of one timed repeat
    repeats: int  # timed repeats per figure
    min_repeats: int  # fewest repeats when a slow peer is capped
    cap_s: float  # most time one figure may take (slow peers get fewer calls)
    calibrate_s: float  # calibration batch duration
    sizes: tuple[int, ...]  # pickle-core entry counts


FULL = Settings(
    quick=False,
    per_repeat_s=0.2,
    repeats=7,
    min_repeats=3,
    cap_s=2.5,
    calibrate_s=0.01,
    sizes=(100, 1_000, 10_000),
)
QUICK = Settings(
    quick=True,
    per_repeat_s=0.02,
    repeats=3,
    min_repeats=2,
    cap_s=0.4,
    calibrate_s=0.002,
    sizes=(100, 1_000),
)


@dataclasses.dataclass(frozen=True)
class Timing:
    """One measured figure: microseconds per call over ``repeats`` x ``number`` calls."""

    median_us: float
    min_us: float
    number: int
    repeats: int
    calls: int  # every call made, calibration included
    limited_by: str  # "" or why the calls were cut below the norm ("time cap", ...)


def measure(
    stmt: str,
    namespace: dict[str, Any],
    settings: Settings,
    *,
    reset: Callable[[], object] | None = None,
    max_calls: int | None = None,
    max_number: int | None = None,
) -> Timing:
    """Time ``stmt`` with ``timeit.repeat`` semantics, sizing the loop by calibration.

    ``reset`` runs (untimed) before the calibration and before every repeat.
    ``max_calls`` bounds every call made, calibration included (for misses that grow
    a store). GC stays disabled inside each timed loop, as ``timeit`` does by default.
    """
    timer = timeit.Timer(stmt, globals=namespace)
    budget = max_calls if max_calls is not None else sys.maxsize
    # Calibrate: double the batch until it takes calibrate_s.
    if reset is not None:
        reset()
    calibration_limit = max(1, budget // 5) if max_calls is not None else sys.maxsize
    batch, used = 1, 0
    while True:
        elapsed = timer.timeit(batch)
        used += batch
        if elapsed >= settings.calibrate_s or used + 2 * batch > calibration_limit:
            break
        batch *= 2
    per_call = max(elapsed / batch, 1e-9)
    limited_by = ""
    number = max(1, round(settings.per_repeat_s / per_call))
    if max_number is not None:
        number = min(number, max_number)
    repeats = settings.repeats
    if number * per_call * repeats > settings.cap_s:
        limited_by = "time cap"
        repeats = max(settings.min_repeats, min(repeats, int(settings.cap_s / (number * per_call))))
        number = max(1, min(number, int(settings.cap_s / (repeats * per_call))))
    left = budget - used
    if number * repeats > left:
        limited_by = f"at most {max_calls:,} misses"
        number = max(1, left // repeats)
        repeats = max(1, min(repeats, left // number))
    times: list[float] = []
    for _ in range(repeats):
        if reset is not None:
            reset()
        times.append(timer.timeit(number) / number * 1e6)
    return Timing(
        median_us=statistics.median(times),
        min_us=min(times),
        number=number,
        repeats=repeats,
        calls=used + number * repeats,
        limited_by=limited_by,
    )


async def measure_awaits(
    call: Callable[[], Awaitable[Any]],
    settings: Settings,
    *,
    most: int = sys.maxsize,
    reset: Callable[[], object] | None = None,
) -> Timing:
    """Microseconds per ``await call()``, as :func:`measure` times a statement.

    The batch is calibrated to ``calibrate_s``, then timed ``repeats`` times on the
    running loop; ``most`` bounds every call made (misses that grow a store), and
    ``reset`` runs, untimed, before the calibration and before every repeat.
    """
    number, calls = 1, 0
    while True:  # calibrate: the batch that takes calibrate_s
        if reset is not None:
            reset()
        began = time.perf_counter()
        for _ in range(number):
            await call()
        calls += number
        took = time.perf_counter() - began
        if took >= settings.calibrate_s or number * 2 > most:
            break
        number *= 2
    number = max(1, min(int(number * settings.per_repeat_s / max(took, 1e-9)), most))
    repeats = max(settings.min_repeats, min(settings.repeats, (most - calls) // number))
    per_call: list[float] = []
    for _ in range(repeats):
        if reset is not None:
            reset()
        began = time.perf_counter()
        for _ in range(number):
            await call()
        per_call.append((time.perf_counter() - began) / number * 1e6)
        calls += number
    return Timing(
        median_us=statistics.median(per_call),
        min_us=min(per_call),
        number=number,
        repeats=repeats,
        calls=calls,
        limited_by="",
    )
