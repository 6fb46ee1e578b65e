"""Section: ``async def`` functions on the Redis core's native ``redis.asyncio`` path.

Hit: ``await f(1, 2)`` once stored, against a raw ``await r.get(k)`` + ``pickle.loads``
on the same ``redis.asyncio`` client (the baseline). Miss: ever-new first argument
(read, claimed, computed, stored and released: every round trip on the loop), against
``pickle.dumps`` + a raw ``await r.set(k, v)`` on that client. The function is given
the client itself (``redis_client=r``). Every figure is timed inside one event loop:
``number`` awaits in a row per repeat, the median and the fastest repeat per call.

The server is ``$CACHIER_LIKE_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); when it
cannot be reached, or redis-py is not installed, the rows are marked skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

from cachier_like import cached

from .measure import Settings, measure_awaits
from .peers import Counter, optional_module
from .redis_core import DEFAULT_URL, URL_ENV
from .report import OURS, Report, Row, Target, print_table, row_figures, section_rows

NAME: str = "redis-async"
TITLE: str = "Redis core, async def on redis.asyncio"
RAW_ROW = "raw redis.asyncio: await GET+pickle.loads / pickle.dumps+await SET"
BASELINE: str | None = RAW_ROW
OURS_ROW = f"{OURS} @cached(backend='redis'), async def"

# Targets from the project's issue, judged on the median (ratios to the raw row).
TARGET_HIT_RATIO = 1.2
TARGET_MISS_RATIO = 3.0
#: At most this many misses per figure (each one adds a key).
MISS_MAX_CALLS = 20_000


async def _measure(report: Report, settings: Settings, client: Any, prefix: str) -> None:
    loads, dumps = pickle.loads, pickle.dumps
    key = f"{prefix}:raw:hit"
    await client.set(key, dumps(3, protocol=pickle.HIGHEST_PROTOCOL))
    fresh = itertools.count(1_000)

    async def raw_get() -> Any:
        return loads(await client.get(key))

    async def raw_set() -> Any:
        value = next(fresh) + 2
        await client.set(f"{prefix}:raw:{value}", dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return value

    counter = Counter()

    @cached(backend="redis", redis_client=client, key_prefix=prefix)
    async def add(a: int, b: int) -> int:
        counter.calls += 1
        return a + b

    await add(1, 2)
    misses = itertools.count(1_000)
    rows = (
        ("hit", RAW_ROW, raw_get, 10**9),
        ("hit", OURS_ROW, lambda: add(1, 2), 10**9),
        ("miss", RAW_ROW, raw_set, MISS_MAX_CALLS),
        ("miss", OURS_ROW, lambda: add(next(misses), 2), MISS_MAX_CALLS),
    )
    for case, name, call, most in rows:
        before = counter.calls
        timing = await measure_awaits(call, settings, most=most)
        note = "reference, not a cache" if name == RAW_ROW else ""
        if name == OURS_ROW:
            expected = timing.calls if case == "miss" else 0
            if counter.calls - before != expected:
                note = f"computed {counter.calls - before} times, expected {expected}"
        report.rows.append(Row(NAME, case, name, None, timing, note))
    await add.aclear_cache()
    batch = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    for start in range(0, len(batch), 1000):
        await client.unlink(*batch[start : start + 1000])


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure every row against the server at ``$CACHIER_LIKE_REDIS_URL`` (or the local one)."""
    redis = optional_module("redis")
    url = os.environ.get(URL_ENV) or DEFAULT_URL
    note = "skipped: redis-py not installed" if redis is None else ""
    if redis is not None:

        async def main() -> None:
            client = redis.asyncio.Redis.from_url(
                url, socket_connect_timeout=1.0, socket_timeout=5.0
            )
            try:
                await client.ping()
                await _measure(report, settings, client, f"clbench-{uuid.uuid4().hex[:12]}")
            finally:
                await client.aclose()

        try:
            asyncio.run(main())
        except Exception as exc:
            note = f"skipped: no Redis at {url} ({exc.__class__.__name__})"
    if note:
        report.rows = [r for r in report.rows if r.section != NAME]
        for case in ("hit", "miss"):
            for name in (RAW_ROW, OURS_ROW):
                report.rows.append(Row(NAME, case, name, note=note))


def print_tables(report: Report, settings: Settings) -> None:
    print()
    print("4b. Redis core, await f(1, 2) on redis.asyncio  [us per call; x = median / raw]")
    headers = ["implementation"]
    for case in ("hit", "miss"):
        headers += [f"{case} med", f"{case} min", "/raw", f"/{OURS}"]
    print_table(
        [*headers, "notes"],
        section_rows(report, NAME, ("hit", "miss"), lambda _case: RAW_ROW),
    )


def _ratio_target(report: Report, case: str, limit: float, what: str) -> Target:
    ours, raw = report.find(NAME, case, OURS_ROW), report.find(NAME, case, RAW_ROW)
    (med, low), (raw_med, raw_low) = row_figures(ours), row_figures(raw)
    by_median = None if med is None or raw_med is None else med / raw_med
    by_min = None if low is None or raw_low is None else low / raw_low
    return Target(
        f"redis async {case} <= {limit:g}x raw {what}",
        "n/a" if by_median is None else f"{by_median:.2f}x",
        None if by_median is None else by_median <= limit,
        "n/a" if by_min is None else f"{by_min:.2f}x",
        None if by_min is None else by_min <= limit,
    )


def targets(report: Report, settings: Settings) -> list[Target]:
    """Hit and miss against the raw round trip on the same redis.asyncio client."""
    return [
        _ratio_target(report, "hit", TARGET_HIT_RATIO, "await GET+unpickle"),
        _ratio_target(report, "miss", TARGET_MISS_RATIO, "pickle+await SET"),
    ]
