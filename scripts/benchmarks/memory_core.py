"""Section 1, memory core: ``f(1, 2)`` hit, and miss with ever-new arguments.

The cache is cleared before every miss repeat, so every miss is a real miss. Peers:
a bare call (the baseline), ``functools.lru_cache``, cachier's memory core and
``cachetools.cached(LRUCache)``.
"""

from __future__ import annotations

import functools
import itertools
from pathlib import Path

from cachier_like import cached

from .measure import Settings
from .peers import Counter, Impl, make_add, optional_module, timed_row
from .report import OURS, Report, Row, Target, print_table, section_rows, target_from_row

NAME: str = "memory"
TITLE: str = "memory core"
BARE_ROW = "bare call (no cache)"
BASELINE: str | None = BARE_ROW
OURS_ROW = f"{OURS} @cached(backend='memory')"

# Target from the project's issue (microseconds), judged on the median.
TARGET_MEMORY_HIT_US = 1.5

#: The memory caches' bound for the cachetools row: large enough never to evict here.
CACHETOOLS_MAXSIZE = 1 << 21
#: At most this many misses per memory-miss repeat (each one adds an entry).
MEMORY_MISS_MAX_NUMBER = 100_000


def memory_impls() -> list[Impl]:
    """Ours, the peers (skipped when not installed) and the baselines, fresh and empty."""
    impls: list[Impl] = []
    counter = Counter()
    impls.append(Impl(BARE_ROW, counter, make_add(counter), computes_on_hit=True))

    counter = Counter()
    ours = cached(backend="memory")(make_add(counter))
    impls.append(Impl(OURS_ROW, counter, ours, ours.clear_cache))

    counter = Counter()
    lru = functools.lru_cache(maxsize=None)(make_add(counter))
    impls.append(Impl("functools.lru_cache(maxsize=None)", counter, lru, lru.cache_clear))

    counter = Counter()
    cachier = optional_module("cachier")
    if cachier is None:
        impls.append(
            Impl("cachier memory core", counter, None, note="skipped: cachier not installed")
        )
    else:
        peer = cachier.cachier(backend="memory")(make_add(counter))
        impls.append(Impl("cachier(backend='memory')", counter, peer, peer.clear_cache))

    counter = Counter()
    cachetools = optional_module("cachetools")
    if cachetools is None:
        impls.append(
            Impl("cachetools LRUCache", counter, None, note="skipped: cachetools not installed")
        )
    else:
        store = cachetools.LRUCache(maxsize=CACHETOOLS_MAXSIZE)
        peer = cachetools.cached(store)(make_add(counter))
        impls.append(
            Impl("cachetools.cached(LRUCache)", counter, peer, store.clear, "maxsize 2**21")
        )
    return impls


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure every memory-core row (``workdir`` is unused: nothing touches disk)."""
    for impl in memory_impls():
        if impl.func is None:
            for case in ("hit", "miss"):
                report.rows.append(Row(NAME, case, impl.name, note=impl.note))
            continue
        # Hit: f(1, 2) after one computing call.
        if impl.reset is not None:
            impl.reset()
        impl.func(1, 2)
        timed_row(
            report,
            settings,
            impl,
            (NAME, "hit", None),
            stmt="f(1, 2)",
            namespace={"f": impl.func},
            computes=impl.computes_on_hit,
        )
        # Miss: ever-new first argument; the cache is cleared before every repeat.
        timed_row(
            report,
            settings,
            impl,
            (NAME, "miss", None),
            stmt="f(next(fresh), 2)",
            namespace={"f": impl.func, "fresh": itertools.count(1_000)},
            computes=True,
            reset=impl.reset,
            max_number=MEMORY_MISS_MAX_NUMBER,
        )
        if impl.reset is not None:
            impl.reset()


def print_tables(report: Report, settings: Settings) -> None:
    print()
    print("1. Memory core, f(1, 2)  [us per call; x = median / median of the named row]")
    headers = ["implementation"]
    for case in ("hit", "miss"):
        headers += [f"{case} med", f"{case} min", "/bare", f"/{OURS}"]
    print_table(
        [*headers, "notes"],
        section_rows(report, NAME, ("hit", "miss"), lambda _case: BARE_ROW),
    )


def targets(report: Report, settings: Settings) -> list[Target]:
    return [
        target_from_row(
            f"memory hit <= {TARGET_MEMORY_HIT_US} us",
            report.find(NAME, "hit", OURS_ROW),
            TARGET_MEMORY_HIT_US,
        )
    ]
