"""Section 2, pickle core: hit and miss with 100, 1,000 and 10,000 entries pre-populated.

Each size gets a fresh temporary directory. Hits cycle over the stored keys; misses
compute and store a new key, at most as many as there are entries (so the store holds
n..2n entries). Peers: cachier's pickle core (default single file, and
``separate_files=True``), ``diskcache.Cache.memoize``; plus a bare file-per-key "floor"
for this file system. cachier's default core rereads/rewrites one file holding every
entry, so its figures at 10,000 entries come from a handful of calls (shown in the
"repeats x calls" column).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachier_like import cached

from .measure import Settings
from .peers import Counter, Impl, make_add, optional_module, timed_row, verify_hits
from .report import (
    OURS,
    Report,
    Row,
    Target,
    print_table,
    row_figures,
    section_rows,
    target_from_row,
)

NAME: str = "pickle"
TITLE: str = "pickle core"
BASELINE: str | None = None  # no baseline column: ratios are to ours only
OURS_ROW = f"{OURS} @cached(cache_dir=tmp)"

# Targets from the project's issue (microseconds), judged on the median.
TARGET_PICKLE_HIT_US = 20.0
TARGET_PICKLE_MISS_US = 80.0
#: "Flat" pickle hits: the slowest size's median within this factor of the fastest's.
FLATNESS_FACTOR = 1.5


def populate_cachier_file(func: Any, cache_dir: Path, n: int) -> None:
    """Fill a cachier single-file pickle cache with ``add(i, 2)`` for ``i < n`` quickly.

    cachier's ``precache_value`` rewrites the whole cache file per entry (O(n) each,
    ~5 s per 1,000 entries), so: precache one entry to let cachier write its own file,
    then add the other entries to that file's dict in one write, keyed by cachier's
    default hash function exactly as its wrapper computes keys. Hits are verified after.
    """
    import cachier.config

    func.precache_value(0, 2, value_to_cache=2)
    files = [p for p in cache_dir.iterdir() if p.is_file()]
    if len(files) != 1:
        raise RuntimeError(f"expected one cachier cache file, found {len(files)}")
    with files[0].open("rb") as handle:
        store = pickle.load(handle)
    if not isinstance(store, dict) or len(store) != 1:
        raise RuntimeError("unexpected cachier cache-file layout")
    template = next(iter(store.values()))
    hash_func = cachier.config.get_global_params().hash_func
    for i in range(1, n):
        store[hash_func((), {"a": i, "b": 2})] = dataclasses.replace(template, value=i + 2)
    with files[0].open("wb") as handle:
        pickle.dump(store, handle, protocol=4)


FLOOR_NAME = "floor: bare file per key, no hash/pickle/lock"


def make_file_floor(directory: Path, counter: Counter) -> Callable[[int, int], int]:
    """The least a file-per-entry cache can do: a hit opens and reads one small file;
    a miss fails that open, computes, then writes a temporary file and renames it.

    No key hashing, serialisation, header, claim or error handling: a floor for
    judging the pickle-core figures on this machine's file system.
    """
    directory.mkdir()
    prefix = f"{directory}/"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC

    def add(a: int, b: int) -> int:
        path = f"{prefix}{a}-{b}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            counter.calls += 1
            value = a + b
            fd = os.open(path + ".tmp", flags, 0o666)
            try:
                os.write(fd, b"%d" % value)
            finally:
                os.close(fd)
            os.replace(path + ".tmp", path)
            return value
        try:
            return int(os.read(fd, 64))
        finally:
            os.close(fd)

    return add


def pickle_impls(root: Path, n: int, stack: list[Callable[[], None]]) -> list[Impl]:
    """Build and pre-populate every pickle-style cache with ``n`` entries under ``root``."""
    impls: list[Impl] = []

    counter = Counter()
    ours = cached(cache_dir=str(root / "cachier_like"))(make_add(counter))
    started = time.perf_counter()
    for i in range(n):
        ours.precache_value(i, 2, value_to_cache=i + 2)
    impls.append(
        Impl(
            OURS_ROW,
            counter,
            ours,
            note=f"filled via precache_value in {time.perf_counter() - started:.2f} s",
        )
    )

    diskcache = optional_module("diskcache")
    counter = Counter()
    name = "diskcache.Cache(tmp).memoize()"
    if diskcache is None:
        impls.append(Impl(name, counter, None, note="skipped: diskcache not installed"))
    else:
        store = diskcache.Cache(str(root / "diskcache"))
        stack.append(store.close)
        peer = store.memoize()(make_add(counter))
        started = time.perf_counter()
        for i in range(n):
            peer(i, 2)
        note = f"filled via calls in {time.perf_counter() - started:.2f} s"
        impls.append(Impl(name, counter, peer, note=note))

    cachier = optional_module("cachier")
    for label, separate in (
        ("cachier(cache_dir=tmp)", False),
        ("cachier(cache_dir=tmp, separate_files=True)", True),
    ):
        counter = Counter()
        if cachier is None:
            impls.append(Impl(label, counter, None, note="skipped: cachier not installed"))
            continue
        directory = root / ("cachier_separate" if separate else "cachier")
        directory.mkdir()
        peer = cachier.cachier(cache_dir=str(directory), separate_files=separate)(make_add(counter))
        started = time.perf_counter()
        if separate:
            for i in range(n):
                peer.precache_value(i, 2, value_to_cache=i + 2)
            how = "precache_value"
        else:
            populate_cachier_file(peer, directory, n)
            how = "one precache_value + one bulk write of its file"
        note = f"filled via {how} in {time.perf_counter() - started:.2f} s"
        impls.append(Impl(label, counter, peer, note=note))

    counter = Counter()
    floor = make_file_floor(root / "floor", counter)
    started = time.perf_counter()
    for i in range(n):
        floor(i, 2)
    note = f"reference, not a library; filled via calls in {time.perf_counter() - started:.2f} s"
    impls.append(Impl(FLOOR_NAME, counter, floor, note=note))

    for impl in impls:
        if impl.func is None:
            continue
        try:
            verify_hits(impl, n)
        except Exception as exc:  # a peer that cannot be populated is skipped, not fatal
            impl.func = None
            impl.note = f"skipped: pre-population failed ({exc})"
    return impls


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure every pickle-style row, per size, in a fresh directory under ``workdir``."""
    for n in settings.sizes:
        with tempfile.TemporaryDirectory(prefix=f"pickle_{n}_", dir=workdir) as tmp:
            closers: list[Callable[[], None]] = []
            try:
                for impl in pickle_impls(Path(tmp), n, closers):
                    bench_pickle_impl(report, settings, impl, n)
            finally:
                for close in closers:
                    close()
        print(f"  pickle: {n:,} entries done", flush=True)


def bench_pickle_impl(report: Report, settings: Settings, impl: Impl, n: int) -> None:
    if impl.func is None:
        for case in ("hit", "miss"):
            report.rows.append(Row(NAME, case, impl.name, n, note=impl.note))
        return
    # Hit: cycle over the n stored keys (each a different entry).
    timed_row(
        report,
        settings,
        impl,
        (NAME, "hit", n),
        stmt="f(next(keys), 2)",
        namespace={"f": impl.func, "keys": itertools.cycle(range(n))},
        computes=False,
    )
    # Miss: a new key each call, computed and stored. At most n misses in all, so the
    # store holds between n and 2n entries throughout.
    timed_row(
        report,
        settings,
        impl,
        (NAME, "miss", n),
        stmt="f(next(fresh), 2)",
        namespace={"f": impl.func, "fresh": itertools.count(n)},
        computes=True,
        max_calls=n,
    )


def print_tables(report: Report, settings: Settings) -> None:
    for n in settings.sizes:
        print()
        print(f"2. Pickle core, {n:,} entries pre-populated  [us per call]")
        headers = ["implementation"]
        for case in ("hit", "miss"):
            headers += [f"{case} med", f"{case} min", f"/{OURS}", "repeats x calls"]
        print_table(
            [*headers, "notes"],
            section_rows(
                report, NAME, ("hit", "miss"), lambda _case: None, entries=n, show_calls=True
            ),
        )


def targets(report: Report, settings: Settings) -> list[Target]:
    """Hit per size, hits flat across sizes, miss per size (in that order)."""
    out: list[Target] = []
    hits = [row_figures(report.find(NAME, "hit", OURS_ROW, n)) for n in settings.sizes]
    for n in settings.sizes:
        row = report.find(NAME, "hit", OURS_ROW, n)
        label = f"pickle hit <= {TARGET_PICKLE_HIT_US:g} us @ {n:,}"
        out.append(target_from_row(label, row, TARGET_PICKLE_HIT_US))
    span = f"{settings.sizes[0]:,} -> {settings.sizes[-1]:,}"
    label = f"pickle hit flat {span} (slowest/fastest <= {FLATNESS_FACTOR})"
    spreads: list[float | None] = []
    for index in (0, 1):  # 0: medians, 1: mins
        values = [pair[index] for pair in hits]
        known = [v for v in values if v is not None]
        spreads.append(max(known) / min(known) if known and len(known) == len(values) else None)
    out.append(
        Target(
            label,
            "n/a" if spreads[0] is None else f"{spreads[0]:.3f}x",
            None if spreads[0] is None else spreads[0] <= FLATNESS_FACTOR,
            "n/a" if spreads[1] is None else f"{spreads[1]:.3f}x",
            None if spreads[1] is None else spreads[1] <= FLATNESS_FACTOR,
        )
    )
    for n in settings.sizes:
        row = report.find(NAME, "miss", OURS_ROW, n)
        label = f"pickle miss <= {TARGET_PICKLE_MISS_US:g} us @ {n:,}"
        out.append(target_from_row(label, row, TARGET_PICKLE_MISS_US))
    return out
