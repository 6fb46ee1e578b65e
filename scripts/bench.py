"""Benchmark cachier_like against a bare call, functools, cachier, cachetools and diskcache.

Everything is measured in one run, so the ratios compare figures taken under the same
machine load. Times are microseconds per call from ``timeit.repeat``: the table shows the
median and the minimum of the repeats (targets are judged on the median).

Sections:

1. memory core, ``f(1, 2)``: hit, and miss with ever-new arguments (state cleared
   before every repeat, so every miss is a real miss);
2. pickle core with 100, 1,000 and 10,000 entries pre-populated in a fresh temporary
   directory per size: hit (cycling over the stored keys) and miss (new key, compute and
   store; at most as many misses as there are entries, so the store holds n..2n entries).
   Peers: cachier's pickle core (default single file, and ``separate_files=True``),
   ``diskcache.Cache.memoize``; plus a bare file-per-key "floor" for this file system.
   cachier's default core rereads/rewrites one file holding every entry, so its figures
   at 10,000 entries come from a handful of calls (shown in the "repeats x calls" column);
3. key cost for a 1 MB ``bytes`` argument and a 100,000-element list of ints.

Usage::

    python scripts/bench.py            # full run (about a minute, < 5 minutes)
    python scripts/bench.py --quick    # smoke run (< 20 s)
    python scripts/bench.py --json results.json
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import itertools
import json
import os
import pickle
import platform
import random
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import cachier_like
from cachier_like import cached, stable_hash
from cachier_like.keys import KeyMaker

OURS = "cachier_like"

# Targets from the project's issue (microseconds), judged on the median.
TARGET_MEMORY_HIT_US = 1.5
TARGET_PICKLE_HIT_US = 20.0
TARGET_PICKLE_MISS_US = 80.0
TARGET_KEY_1MB_US = 200.0
#: "Flat" pickle hits: the slowest size's median within this factor of the fastest's.
FLATNESS_FACTOR = 1.5

#: The memory caches' bound for the cachetools row: large enough never to evict here.
CACHETOOLS_MAXSIZE = 1 << 21
#: At most this many misses per memory-miss repeat (each one adds an entry).
MEMORY_MISS_MAX_NUMBER = 100_000


# -- settings and measurement ------------------------------------------------------------


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


# -- results -------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One implementation's figure for one case."""

    section: str  # "memory", "pickle", "key"
    case: str  # "hit", "miss", "1 MB bytes", "100k-int list"
    impl: str
    entries: int | None = None
    timing: Timing | None = None
    note: str = ""

    def as_json(self, ratios: dict[str, float | None]) -> dict[str, Any]:
        """A JSON-ready dict, with the ratios computed against this run's baselines."""
        out: dict[str, Any] = {
            "section": self.section,
            "case": self.case,
            "impl": self.impl,
            "entries": self.entries,
            "note": self.note,
            "skipped": self.timing is None,
        }
        if self.timing is not None:
            out.update(dataclasses.asdict(self.timing))
        out.update(ratios)
        return out


@dataclasses.dataclass
class Report:
    """Every row of the run, plus notes printed once."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def find(self, section: str, case: str, impl: str, entries: int | None = None) -> Row | None:
        for row in self.rows:
            if (row.section, row.case, row.impl, row.entries) == (section, case, impl, entries):
                return row
        return None

    def median(
        self, section: str, case: str, impl: str, entries: int | None = None
    ) -> float | None:
        row = self.find(section, case, impl, entries)
        return row.timing.median_us if row is not None and row.timing is not None else None


class Counter:
    """Counts real calls of a benchmarked function, to prove hits are hits."""

    def __init__(self) -> None:
        self.calls = 0


def make_add(counter: Counter) -> Callable[[int, int], int]:
    """A fresh ``add(a, b)`` that counts its calls (identical body for every row)."""

    def add(a: int, b: int) -> int:
        counter.calls += 1
        return a + b

    return add


def optional_module(name: str) -> ModuleType | None:
    """Import a peer library, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclasses.dataclass
class Impl:
    """One implementation under test for one section (``func`` None: skipped)."""

    name: str
    counter: Counter
    func: Callable[..., Any] | None
    reset: Callable[[], object] | None = None
    note: str = ""
    computes_on_hit: bool = False  # the bare baseline always computes


def check_calls(impl: Impl, before: int, expected: int, what: str) -> str:
    """A warning when the function ran a different number of times than expected."""
    got = impl.counter.calls - before
    if got != expected:
        return f"WARNING: {got} computations during {what} (expected {expected})"
    return ""


def join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def limit_note(timing: Timing) -> str:
    if not timing.limited_by:
        return ""
    return f"limited to {timing.repeats}x{timing.number} calls ({timing.limited_by})"


# -- 1. memory core ------------------------------------------------------------------------


def memory_impls() -> list[Impl]:
    impls: list[Impl] = []
    counter = Counter()
    impls.append(Impl("bare call (no cache)", counter, make_add(counter), computes_on_hit=True))

    counter = Counter()
    ours = cached(backend="memory")(make_add(counter))
    impls.append(Impl(f"{OURS} @cached(backend='memory')", counter, ours, ours.clear_cache))

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


def timed_row(
    report: Report,
    settings: Settings,
    impl: Impl,
    where: tuple[str, str, int | None],
    *,
    stmt: str,
    namespace: dict[str, Any],
    computes: bool,
    reset: Callable[[], object] | None = None,
    max_calls: int | None = None,
    max_number: int | None = None,
) -> None:
    """Measure one figure into a row; check the function computed exactly as expected.

    A peer that raises is recorded as failed rather than stopping the run.
    """
    section, case, entries = where
    before = impl.counter.calls
    try:
        timing = measure(
            stmt, namespace, settings, reset=reset, max_calls=max_calls, max_number=max_number
        )
    except Exception as exc:
        note = join_notes(impl.note, f"{case} failed: {exc!r}")
        report.rows.append(Row(section, case, impl.name, entries, None, note))
        return
    warn = check_calls(impl, before, timing.calls if computes else 0, f"{case} timing")
    note = join_notes(impl.note, limit_note(timing), warn)
    report.rows.append(Row(section, case, impl.name, entries, timing, note))


def bench_memory(report: Report, settings: Settings) -> None:
    for impl in memory_impls():
        if impl.func is None:
            for case in ("hit", "miss"):
                report.rows.append(Row("memory", case, impl.name, note=impl.note))
            continue
        # Hit: f(1, 2) after one computing call.
        if impl.reset is not None:
            impl.reset()
        impl.func(1, 2)
        timed_row(
            report,
            settings,
            impl,
            ("memory", "hit", None),
            stmt="f(1, 2)",
            namespace={"f": impl.func},
            computes=impl.computes_on_hit,
        )
        # Miss: ever-new first argument; the cache is cleared before every repeat.
        timed_row(
            report,
            settings,
            impl,
            ("memory", "miss", None),
            stmt="f(next(fresh), 2)",
            namespace={"f": impl.func, "fresh": itertools.count(1_000)},
            computes=True,
            reset=impl.reset,
            max_number=MEMORY_MISS_MAX_NUMBER,
        )
        if impl.reset is not None:
            impl.reset()


# -- 2. pickle core ------------------------------------------------------------------------


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


def verify_hits(impl: Impl, n: int) -> None:
    """Raise unless a sample of the pre-populated keys hits without computing."""
    assert impl.func is not None
    before = impl.counter.calls
    for i in sorted({0, 1, n // 2, n - 1}):
        if impl.func(i, 2) != i + 2:
            raise RuntimeError(f"wrong value for key {i}")
    if impl.counter.calls != before:
        raise RuntimeError("pre-populated keys were recomputed (not hits)")


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
            f"{OURS} @cached(cache_dir=tmp)",
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


def bench_pickle(report: Report, settings: Settings, base: Path) -> None:
    for n in settings.sizes:
        with tempfile.TemporaryDirectory(prefix=f"pickle_{n}_", dir=base) as tmp:
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
            report.rows.append(Row("pickle", case, impl.name, n, note=impl.note))
        return
    # Hit: cycle over the n stored keys (each a different entry).
    timed_row(
        report,
        settings,
        impl,
        ("pickle", "hit", n),
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
        ("pickle", "miss", n),
        stmt="f(next(fresh), 2)",
        namespace={"f": impl.func, "fresh": itertools.count(n)},
        computes=True,
        max_calls=n,
    )


# -- 3. key cost ---------------------------------------------------------------------------


def key_arguments() -> list[tuple[str, Any]]:
    rng = random.Random(20240601)
    return [
        ("1 MB bytes", rng.randbytes(1 << 20)),
        ("100k-int list", [rng.randrange(1 << 31) for _ in range(100_000)]),
    ]


def one_arg(x: Any) -> Any:
    return x


def bench_keys(report: Report, settings: Settings) -> None:
    cachier_hash: Callable[..., Any] | None = None
    cachier_note = "skipped: cachier not installed"
    cachier = optional_module("cachier")
    if cachier is not None:
        import cachier.config

        cachier_hash = cachier.config.get_global_params().hash_func
        cachier_note = "hash_func((), {'x': arg}), as its wrapper calls it"
    key_maker = KeyMaker(one_arg)
    for case, arg in key_arguments():
        ns: dict[str, Any] = {
            "km": key_maker,
            "args": (arg,),
            "kw": {},
            "kw1": {"x": arg},
            "arg": arg,
            "stable_hash": stable_hash,
            "hf": cachier_hash,
            "sha256": hashlib.sha256,
            "dumps": pickle.dumps,
        }
        cases: list[tuple[str, str | None, str]] = [
            (f"{OURS} KeyMaker(f).key((arg,), {{}})", "km.key(args, kw)", ""),
            (f"{OURS} stable_hash(arg)", "stable_hash(arg)", ""),
            ("cachier default hash_func", "hf((), kw1)" if cachier_hash else None, cachier_note),
            ("sha256(pickle.dumps(arg))", "sha256(dumps(arg)).hexdigest()", "baseline"),
        ]
        for impl, stmt, note in cases:
            if stmt is None:
                report.rows.append(Row("key", case, impl, note=note))
                continue
            try:
                timing = measure(stmt, ns, settings)
            except Exception as exc:  # a failing peer is recorded, not fatal
                report.rows.append(Row("key", case, impl, note=f"failed: {exc!r}"))
                continue
            report.rows.append(Row("key", case, impl, None, timing, note))


# -- output --------------------------------------------------------------------------------


def fmt_us(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 10:
        return f"{value:,.3f}"
    if value < 1_000:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"


def ratio(row: Row | None, reference: Row | None) -> float | None:
    if row is None or reference is None or row.timing is None or reference.timing is None:
        return None
    return row.timing.median_us / reference.timing.median_us


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain-text table: first column left-aligned, the last (notes) too."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            left = i in (0, last)
            out.append(cell.ljust(widths[i]) if left else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def impl_names(report: Report, section: str, entries: int | None = None) -> list[str]:
    names: list[str] = []
    for row in report.rows:
        if row.section == section and row.entries == entries and row.impl not in names:
            names.append(row.impl)
    return names


def section_rows(
    report: Report,
    section: str,
    cases: Sequence[str],
    reference: Callable[[str], str | None],
    *,
    entries: int | None = None,
    show_calls: bool = False,
) -> list[list[str]]:
    """Per implementation: for each case median, min, / reference, / ours; then notes."""
    ours_name = next(n for n in impl_names(report, section, entries) if n.startswith(OURS))
    table: list[list[str]] = []
    for name in impl_names(report, section, entries):
        cells = [name]
        notes: list[list[str]] = []
        for case in cases:
            row = report.find(section, case, name, entries)
            ours = report.find(section, case, ours_name, entries)
            ref_name = reference(case)
            ref = report.find(section, case, ref_name, entries) if ref_name else None
            timing = row.timing if row is not None else None
            cells += [
                fmt_us(timing.median_us if timing else None),
                fmt_us(timing.min_us if timing else None),
            ]
            if ref_name is not None:
                cells.append(fmt_ratio(ratio(row, ref)))
            cells.append(fmt_ratio(ratio(row, ours)))
            if show_calls:
                cells.append(f"{timing.repeats}x{timing.number:,}" if timing else "n/a")
            notes.append(row.note.split("; ") if row is not None and row.note else [])
        cells.append(merge_notes(cases, notes))
        table.append(cells)
    return table


def merge_notes(cases: Sequence[str], notes: Sequence[list[str]]) -> str:
    """Notes shared by every case once, the others prefixed with their case."""
    shared = [n for n in notes[0] if all(n in other for other in notes[1:])]
    out = list(shared)
    for case, parts in zip(cases, notes, strict=True):
        out += [f"{case}: {n}" for n in parts if n not in shared]
    return "; ".join(out)


def print_report(report: Report, settings: Settings) -> None:
    mem_ref = "bare call (no cache)"
    print()
    print("1. Memory core, f(1, 2)  [us per call; x = median / median of the named row]")
    headers = ["implementation"]
    for case in ("hit", "miss"):
        headers += [f"{case} med", f"{case} min", "/bare", f"/{OURS}"]
    print_table(
        [*headers, "notes"],
        section_rows(report, "memory", ("hit", "miss"), lambda _case: mem_ref),
    )

    for n in settings.sizes:
        print()
        print(f"2. Pickle core, {n:,} entries pre-populated  [us per call]")
        headers = ["implementation"]
        for case in ("hit", "miss"):
            headers += [f"{case} med", f"{case} min", f"/{OURS}", "repeats x calls"]
        print_table(
            [*headers, "notes"],
            section_rows(
                report, "pickle", ("hit", "miss"), lambda _case: None, entries=n, show_calls=True
            ),
        )

    print()
    print("3. Key cost  [us per key]")
    key_cases = ("1 MB bytes", "100k-int list")
    headers = ["implementation"]
    for case in key_cases:
        headers += [f"{case} med", "min", "/sha256", f"/{OURS}"]
    print_table(
        [*headers, "notes"],
        section_rows(report, "key", key_cases, lambda _case: "sha256(pickle.dumps(arg))"),
    )


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "MISS")


@dataclasses.dataclass
class Target:
    """One target of the issue, checked on this run's median (and, for noise, its min)."""

    target: str
    median: str
    passed: bool | None  # None: not measured
    min: str
    passed_on_min: bool | None

    @property
    def verdict(self) -> str:
        return verdict(self.passed)


def check_targets(report: Report, settings: Settings) -> list[Target]:
    ours_mem = f"{OURS} @cached(backend='memory')"
    ours_pickle = f"{OURS} @cached(cache_dir=tmp)"
    ours_key = f"{OURS} KeyMaker(f).key((arg,), {{}})"
    targets: list[Target] = []

    def figures(row: Row | None) -> tuple[float | None, float | None]:
        if row is None or row.timing is None:
            return None, None
        return row.timing.median_us, row.timing.min_us

    def add(label: str, row: Row | None, limit: float) -> None:
        med, low = figures(row)
        targets.append(
            Target(
                label,
                f"{fmt_us(med)} us",
                None if med is None else med <= limit,
                f"{fmt_us(low)} us",
                None if low is None else low <= limit,
            )
        )

    add(
        f"memory hit <= {TARGET_MEMORY_HIT_US} us",
        report.find("memory", "hit", ours_mem),
        TARGET_MEMORY_HIT_US,
    )
    hits = [figures(report.find("pickle", "hit", ours_pickle, n)) for n in settings.sizes]
    for n in settings.sizes:
        row = report.find("pickle", "hit", ours_pickle, n)
        add(f"pickle hit <= {TARGET_PICKLE_HIT_US:g} us @ {n:,}", row, TARGET_PICKLE_HIT_US)
    span = f"{settings.sizes[0]:,} -> {settings.sizes[-1]:,}"
    label = f"pickle hit flat {span} (slowest/fastest <= {FLATNESS_FACTOR})"
    spreads: list[float | None] = []
    for index in (0, 1):  # 0: medians, 1: mins
        values = [pair[index] for pair in hits]
        known = [v for v in values if v is not None]
        spreads.append(max(known) / min(known) if known and len(known) == len(values) else None)
    targets.append(
        Target(
            label,
            "n/a" if spreads[0] is None else f"{spreads[0]:.3f}x",
            None if spreads[0] is None else spreads[0] <= FLATNESS_FACTOR,
            "n/a" if spreads[1] is None else f"{spreads[1]:.3f}x",
            None if spreads[1] is None else spreads[1] <= FLATNESS_FACTOR,
        )
    )
    for n in settings.sizes:
        row = report.find("pickle", "miss", ours_pickle, n)
        add(f"pickle miss <= {TARGET_PICKLE_MISS_US:g} us @ {n:,}", row, TARGET_PICKLE_MISS_US)
    add(
        f"1 MB key <= {TARGET_KEY_1MB_US / 1000:g} ms (KeyMaker.key)",
        report.find("key", "1 MB bytes", ours_key),
        TARGET_KEY_1MB_US,
    )
    return targets


def print_targets(targets: Sequence[Target], settings: Settings) -> None:
    print()
    print("Targets (from the issue). RESULT is judged on the median; the min column shows")
    print("whether the best repeat meets it (a hint when the machine is noisy).")
    rows = [[t.target, t.median, t.verdict, t.min, verdict(t.passed_on_min)] for t in targets]
    print_table(["target", "median", "RESULT", "min", "on min"], rows)
    if settings.quick:
        print("(quick run: pickle sizes stop at 1,000 entries; run without --quick for 10,000)")


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {
            dist: version_of(dist)
            for dist in ("cachier_like", "cachier", "cachetools", "diskcache", "xxhash")
        },
    }


@contextmanager
def defaults_guard(report: Report) -> Iterator[None]:
    """Make sure the run leaves cachier_like's global defaults as it found them."""
    before = dict(cachier_like.get_default_params())
    try:
        yield
    finally:
        after = dict(cachier_like.get_default_params())
        if after != before:
            changed = sorted(k for k in before if before[k] != after.get(k))
            cachier_like.set_default_params(**before)
            report.notes.append(f"WARNING: global defaults changed ({changed}); restored")


def write_json(path: Path, report: Report, targets: Sequence[Target], meta: dict[str, Any]) -> None:
    rows = []
    for row in report.rows:
        ref_name = {"memory": "bare call (no cache)", "key": "sha256(pickle.dumps(arg))"}.get(
            row.section
        )
        ours = next(
            (
                r
                for r in report.rows
                if (r.section, r.case, r.entries) == (row.section, row.case, row.entries)
                and r.impl.startswith(OURS)
            ),
            None,
        )
        ref = report.find(row.section, row.case, ref_name, row.entries) if ref_name else None
        ratios = {"ratio_to_baseline": ratio(row, ref), "ratio_to_ours": ratio(row, ours)}
        rows.append(row.as_json(ratios))
    payload = {
        "meta": meta,
        "results": rows,
        "targets": [
            {
                **dataclasses.asdict(t),
                "verdict": t.verdict,
                "verdict_on_min": verdict(t.passed_on_min),
            }
            for t in targets
        ],
        "notes": report.notes,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark cachier_like's memory core, pickle core and key hashing against a "
            "bare call, functools.lru_cache, cachier, cachetools and diskcache, in one run."
        )
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: fewer iterations, sizes 100 and 1,000"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    report = Report()
    env = environment()
    started = time.perf_counter()
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in env["versions"].items())
    print(f"cachier_like benchmark ({'quick' if settings.quick else 'full'} run)")
    print(f"Python {env['python']} on {env['platform']}, {env['cpus']} CPUs; {versions}")
    if env["load_average"] is not None:
        load = ", ".join(f"{x:.2f}" for x in env["load_average"])
        print(f"load average at start: {load} (other work on the machine adds noise)")
    print(
        f"Each figure: median and min of up to {settings.repeats} timeit repeats of "
        f"~{settings.per_repeat_s * 1000:g} ms (slow peers capped at ~{settings.cap_s:g} s "
        "per figure, then marked 'limited'); GC off inside timed loops (timeit default)."
    )
    print(
        "Pickle misses: at most n misses per figure (store holds n..2n entries); "
        "hits cycle over the n stored keys."
    )
    with (
        defaults_guard(report),
        tempfile.TemporaryDirectory(prefix="cachier_like_bench_") as base,
    ):
        print("running: memory core...", flush=True)
        bench_memory(report, settings)
        print("running: pickle core...", flush=True)
        bench_pickle(report, settings, Path(base))
        print("running: key cost...", flush=True)
        bench_keys(report, settings)
    print_report(report, settings)
    targets = check_targets(report, settings)
    print_targets(targets, settings)
    report.notes.append(
        "global cachier_like defaults unchanged"
        if not any(n.startswith("WARNING: global") for n in report.notes)
        else "see warning about global defaults"
    )
    elapsed = time.perf_counter() - started
    for note in report.notes:
        print(f"note: {note}")
    print(f"total time: {elapsed:.1f} s")
    if args.json is not None:
        meta = {
            **env,
            "mode": "quick" if settings.quick else "full",
            "settings": dataclasses.asdict(settings),
            "statistic": "median and min of timeit repeats, microseconds per call",
            "elapsed_s": elapsed,
        }
        write_json(args.json, report, targets, meta)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
