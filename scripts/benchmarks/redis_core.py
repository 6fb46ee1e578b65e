"""Section: the Redis core against raw redis-py and cachier's Redis core, and waiter wake-ups.

Hit: ``f(1, 2)`` once stored, against a raw redis-py ``GET`` + ``pickle.loads`` of the
same payload (the baseline) and ``cachier(backend="redis")``. Miss: ever-new first
argument (computed, claimed, stored, released), against ``pickle.dumps`` + a raw ``SET``
of the same payload. At most :data:`MISS_MAX_CALLS` misses per figure; every key is
written under a prefix of this run's own and removed at the end.

Wake-up: a calculator holds a key's claim while waiters block on it; the figure is the
time from the calculator's store (as it starts, so the store's own round trip counts)
to each waiter's return, over many rounds (p50, p90, p99, max).

The server is ``$CACHIER_LIKE_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); when it
cannot be reached, or redis-py is not installed, the rows are marked skipped.
"""

from __future__ import annotations

import itertools
import os
import pickle
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from cachier_like import Entry, cached

from .measure import Settings, Timing
from .peers import Counter, Impl, make_add, optional_module, timed_row
from .report import OURS, Report, Row, Target, print_table, row_figures, section_rows

NAME: str = "redis"
TITLE: str = "Redis core"
RAW_ROW = "raw redis-py: GET+pickle.loads / pickle.dumps+SET"
BASELINE: str | None = RAW_ROW
OURS_ROW = f"{OURS} @cached(backend='redis')"
CACHIER_ROW = "cachier(backend='redis')"
URL_ENV = "CACHIER_LIKE_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"

# Targets from the project's issue, judged on the median (ratios to the raw row).
TARGET_HIT_RATIO = 1.1
TARGET_MISS_RATIO = 3.0
TARGET_WAKE_MS = 20.0
#: At most this many misses per figure (each one adds a key).
MISS_MAX_CALLS = 20_000
#: Wake-up rounds (full run, quick run) and waiters per round.
WAKE_ROUNDS = (100, 20)
WAKE_WAITERS = 3
DEADLINE_S = 30.0
#: This run's wake-up percentiles in milliseconds ("p50", "p90", "p99", "max").
WAKE_MS: dict[str, float] = {}


def _skip_all(report: Report, note: str) -> None:
    peer_note = note if optional_module("cachier") else "skipped: cachier not installed"
    for name in (RAW_ROW, OURS_ROW, CACHIER_ROW):
        for case in ("hit", "miss"):
            report.rows.append(
                Row(NAME, case, name, note=peer_note if name == CACHIER_ROW else note)
            )
    report.rows.append(Row(NAME, "wake", OURS_ROW, note=note))


def _unlink_prefix(client: Any, prefix: str) -> None:
    for pattern in (f"{{{prefix}*", f"{prefix}*"):
        batch = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(batch), 1000):
            client.unlink(*batch[start : start + 1000])


def raw_impl(client: Any, prefix: str) -> tuple[Impl, Callable[..., Any], Callable[..., Any]]:
    """The floor a Redis cache is measured against: one GET or SET of the same payload."""
    counter = Counter()
    key = f"{prefix}:raw:hit"
    client.set(key, pickle.dumps(3, protocol=pickle.HIGHEST_PROTOCOL))
    get, loads, dumps, put = client.get, pickle.loads, pickle.dumps, client.set

    def raw_get(a: int, b: int) -> Any:
        return loads(get(key))

    def raw_set(a: int, b: int) -> int:
        counter.calls += 1
        value = a + b
        put(f"{prefix}:raw:{a}", dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        return value

    return Impl(RAW_ROW, counter, raw_get, note="reference, not a cache"), raw_get, raw_set


def bench_hit_miss(
    report: Report, settings: Settings, impl: Impl, miss: Callable[..., Any]
) -> None:
    """Hit ``f(1, 2)`` (stored first), then misses on ever-new first arguments."""
    assert impl.func is not None
    impl.func(1, 2)
    timed_row(
        report,
        settings,
        impl,
        (NAME, "hit", None),
        stmt="f(1, 2)",
        namespace={"f": impl.func},
        computes=False,
    )
    timed_row(
        report,
        settings,
        impl,
        (NAME, "miss", None),
        stmt="f(next(fresh), 2)",
        namespace={"f": miss, "fresh": itertools.count(1_000)},
        computes=True,
        max_calls=MISS_MAX_CALLS,
    )


def wake_latencies(client: Any, prefix: str, rounds: int, waiters: int) -> list[float]:
    """Milliseconds from the start of the calculator's store to each waiter's return."""
    go = threading.Event()

    @cached(backend="redis", redis_client=client, key_prefix=prefix, lease=60)
    def slow(x: int) -> int:
        go.wait(DEADLINE_S)
        return x

    core = slow.core
    entered = threading.Semaphore(0)
    stored_at: list[float] = []
    original_wait, original_set = core.wait, core.set

    def wait_spy(key: Hashable, timeout_s: float | None) -> Entry | None:
        entered.release()
        entry: Entry | None = original_wait(key, timeout_s)
        return entry

    def set_spy(key: Hashable, entry: Entry) -> bool:
        stored_at.append(time.perf_counter())  # as the store starts: its round trip counts
        stored: bool = original_set(key, entry)
        return stored

    setattr(core, "wait", wait_spy)  # noqa: B010 - instance attributes shadow the methods
    setattr(core, "set", set_spy)  # noqa: B010
    latencies: list[float] = []
    for x in range(rounds):
        go.clear()
        calculator = threading.Thread(target=slow, args=(x,), daemon=True)
        calculator.start()
        key = slow._current().keys.key((x,), {})
        deadline = time.monotonic() + DEADLINE_S
        while not core.is_claimed(key) and time.monotonic() < deadline:
            time.sleep(0.0005)
        returned: list[float] = []

        def waiter(x: int = x, returned: list[float] = returned) -> None:
            slow(x)
            returned.append(time.perf_counter())

        threads = [threading.Thread(target=waiter, daemon=True) for _ in range(waiters)]
        for thread in threads:
            thread.start()
        for _ in threads:
            entered.acquire(timeout=DEADLINE_S)
        time.sleep(0.005)  # let every waiter reach its blocking read
        go.set()
        for thread in (calculator, *threads):
            thread.join(DEADLINE_S)
        latencies += [(t - stored_at[-1]) * 1000 for t in returned]
    return latencies


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure every row against the server at ``$CACHIER_LIKE_REDIS_URL`` (or the local one)."""
    redis = optional_module("redis")
    url = os.environ.get(URL_ENV) or DEFAULT_URL
    if redis is None:
        _skip_all(report, "skipped: redis-py not installed")
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    try:
        client.ping()
    except Exception as exc:
        _skip_all(report, f"skipped: no Redis at {url} ({exc.__class__.__name__})")
        return
    prefix = f"clbench-{uuid.uuid4().hex[:12]}"
    peer_cleanup: list[Callable[[], object]] = []
    try:
        raw, _, raw_set = raw_impl(client, prefix)
        bench_hit_miss(report, settings, raw, raw_set)

        counter = Counter()
        ours = cached(backend="redis", redis_client=client, key_prefix=prefix)(make_add(counter))
        bench_hit_miss(report, settings, Impl(OURS_ROW, counter, ours), ours)

        counter = Counter()
        cachier = optional_module("cachier")
        if cachier is None:
            for case in ("hit", "miss"):
                note = "skipped: cachier not installed"
                report.rows.append(Row(NAME, case, CACHIER_ROW, note=note))
        else:
            peer = cachier.cachier(backend="redis", redis_client=client)(make_add(counter))
            peer_cleanup.append(peer.clear_cache)
            peer.clear_cache()
            bench_hit_miss(report, settings, Impl(CACHIER_ROW, counter, peer), peer)
        print("  redis: hit and miss done", flush=True)

        rounds = WAKE_ROUNDS[1] if settings.quick else WAKE_ROUNDS[0]
        ms = wake_latencies(client, prefix, rounds, WAKE_WAITERS)
        timing = Timing(
            median_us=statistics.median(ms) * 1000,
            min_us=min(ms) * 1000,
            number=1,
            repeats=len(ms),
            calls=len(ms),
            limited_by="",
        )
        WAKE_MS.update(
            p50=statistics.median(ms),
            p90=_percentile(ms, 0.9),
            p99=_percentile(ms, 0.99),
            max=max(ms),
        )
        note = (
            f"p90 {WAKE_MS['p90']:.2f} ms, p99 {WAKE_MS['p99']:.2f} ms, "
            f"max {WAKE_MS['max']:.2f} ms; {rounds} rounds x {WAKE_WAITERS} waiter threads"
        )
        report.rows.append(Row(NAME, "wake", OURS_ROW, None, timing, note))
    finally:
        for clear in peer_cleanup:
            clear()
        _unlink_prefix(client, prefix)
        client.close()


def print_tables(report: Report, settings: Settings) -> None:
    print()
    print("4. Redis core, f(1, 2)  [us per call; x = median / median of the named row]")
    headers = ["implementation"]
    for case in ("hit", "miss"):
        headers += [f"{case} med", f"{case} min", "/raw", f"/{OURS}"]
    print_table(
        [*headers, "notes"],
        section_rows(report, NAME, ("hit", "miss"), lambda _case: RAW_ROW),
    )
    row = report.find(NAME, "wake", OURS_ROW)
    print()
    print("   Redis waiter wake-up: the calculator's store -> a blocked waiter's return")
    if row is None or row.timing is None:
        print(f"   not measured ({row.note if row is not None else 'no row'})")
    else:
        print(f"   p50 {row.timing.median_us / 1000:.2f} ms, {row.note}")


def _ratio_target(report: Report, case: str, limit: float, what: str) -> Target:
    ours, raw = report.find(NAME, case, OURS_ROW), report.find(NAME, case, RAW_ROW)
    (med, low), (raw_med, raw_low) = row_figures(ours), row_figures(raw)
    by_median = None if med is None or raw_med is None else med / raw_med
    by_min = None if low is None or raw_low is None else low / raw_low
    return Target(
        f"redis {case} <= {limit:g}x raw {what}",
        "n/a" if by_median is None else f"{by_median:.2f}x",
        None if by_median is None else by_median <= limit,
        "n/a" if by_min is None else f"{by_min:.2f}x",
        None if by_min is None else by_min <= limit,
    )


def targets(report: Report, settings: Settings) -> list[Target]:
    """Hit and miss against the raw round trip; the wake-up's p99 (and p50)."""
    out = [
        _ratio_target(report, "hit", TARGET_HIT_RATIO, "GET+unpickle"),
        _ratio_target(report, "miss", TARGET_MISS_RATIO, "pickle+SET"),
    ]
    label = f"redis waiter wakes <= {TARGET_WAKE_MS:g} ms (p99; min column: p50)"
    if not WAKE_MS:
        out.append(Target(label, "n/a", None, "n/a", None))
        return out
    p99, p50 = WAKE_MS["p99"], WAKE_MS["p50"]
    out.append(
        Target(
            label, f"{p99:.2f} ms", p99 <= TARGET_WAKE_MS, f"{p50:.2f} ms", p50 <= TARGET_WAKE_MS
        )
    )
    return out
