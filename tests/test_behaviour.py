"""Shared behaviour suite: every test runs on each core of ``core_options`` (conftest).

Time is never waited on with fixed sleeps: entries are made old by precaching them
and polling (with a deadline) until they are older than a tiny ``stale_after``, and
concurrency is staged with real threads, ``threading.Event`` and barriers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import cachier_like
from cachier_like import BackendError, CachedFunction, Entry, cached
from cachier_like.flights import joined
from cachier_like.keys import KeyMaker

CoreOptions = Callable[..., dict[str, Any]]

#: Upper bound for any poll or join; a correct library finishes far sooner.
DEADLINE_S = 10.0
#: A ``stale_after`` small enough to reach by polling, in seconds.
TINY_S = 0.05
TINY = timedelta(milliseconds=50)
HOUR = timedelta(hours=1)


# -- helpers ------------------------------------------------------------------------


class Calls:
    """A thread-safe record of the arguments a function was called with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.args: list[Any] = []

    def record(self, arg: Any = None) -> int:
        """Record one call; return how many calls there have been (this one included)."""
        with self._lock:
            self.args.append(arg)
            return len(self.args)

    @property
    def n(self) -> int:
        with self._lock:
            return len(self.args)

    def of(self, arg: Any) -> int:
        with self._lock:
            return sum(1 for a in self.args if a == arg and type(a) is type(arg))


class Caller(threading.Thread):
    """Runs one call in a thread and keeps its result or exception."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._call = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = DEADLINE_S) -> None:
        self.join(timeout)
        assert not self.is_alive(), "call did not finish"


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE_S) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


async def async_wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE_S) -> bool:
    """``wait_until`` for coroutines: yields to the event loop between polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.002)
    return True


def stored(f: CachedFunction[..., Any], *args: Any, **kwargs: Any) -> Entry:
    """The entry ``f`` holds for these arguments, which must exist."""
    entry = f.cached_entry(*args, **kwargs)
    assert entry is not None, f"no entry for {args} {kwargs}"
    return entry


def wait_until_older(entry: Entry, seconds: float) -> None:
    """Poll until ``entry`` is more than ``seconds`` old."""
    assert wait_until(lambda: time.time() - entry.timestamp > seconds + 0.001)


def precache_old(f: CachedFunction[..., Any], *args: Any, value: Any, age: float = TINY_S) -> Entry:
    """Precache ``value`` for ``args`` and return its entry once older than ``age``."""
    f.precache_value(*args, value_to_cache=value)
    entry = stored(f, *args)
    wait_until_older(entry, age)
    return entry


def count_waits(monkeypatch: pytest.MonkeyPatch, f: CachedFunction[..., Any]) -> Calls:
    """Count the calls that start waiting for another caller's calculation."""
    core = f.core
    original = core.wait
    waits = Calls()

    original_async = core.wait_async

    def wait(key: Hashable, timeout_s: float | None) -> Entry | None:
        waits.record(key)
        result: Entry | None = original(key, timeout_s)
        return result

    async def wait_async(key: Hashable, timeout_s: float | None) -> Entry | None:
        waits.record(key)
        result: Entry | None = await original_async(key, timeout_s)
        return result

    monkeypatch.setattr(core, "wait", wait)
    monkeypatch.setattr(core, "wait_async", wait_async)
    return waits


def backend_of(core_options: CoreOptions) -> str:
    backend: str = core_options()["backend"]
    return backend


def warnings_from_library(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("cachier_like")
    ]


# -- hits and misses ----------------------------------------------------------------


def test_second_call_with_same_args_is_a_hit(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def square(x: int) -> int:
        calls.record(x)
        return x * x

    assert square(3) == 9
    assert square(3) == 9
    assert square(3) == 9
    assert calls.n == 1
    assert square(4) == 16
    assert calls.n == 2
    assert square(4) == 16
    assert calls.n == 2
    assert stored(square, 3).value == 9
    assert stored(square, 4).value == 16
    assert square.cached_entry(5) is None


def test_positional_keyword_and_default_spellings_share_one_entry(
    core_options: CoreOptions,
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(a: int, b: int = 2, *, c: str = "x") -> str:
        calls.record((a, b, c))
        return f"{a}-{b}-{c}"

    spellings: list[Callable[[], str]] = [
        lambda: f(1),
        lambda: f(1, 2),
        lambda: f(a=1),
        lambda: f(1, b=2),
        lambda: f(b=2, a=1),
        lambda: f(1, c="x"),
        lambda: f(1, 2, c="x"),
        lambda: f(c="x", b=2, a=1),
    ]
    for spelling in spellings:
        assert spelling() == "1-2-x"
    assert calls.n == 1
    assert stored(f, a=1, b=2).value == "1-2-x"

    assert f(1, 3) == "1-3-x"
    assert f(1, c="y") == "1-2-y"
    assert calls.n == 3
    assert f(1, b=3) == "1-3-x"
    assert calls.n == 3


def test_equal_values_of_different_types_are_separate_entries(
    core_options: CoreOptions,
) -> None:
    calls = Calls()

    @cached(**core_options())
    def kind(x: object) -> str:
        calls.record(x)
        return type(x).__name__

    arguments: list[object] = [1, 1.0, True, "1", (1,), [1]]
    expected = ["int", "float", "bool", "str", "tuple", "list"]
    assert [kind(x) for x in arguments] == expected
    assert calls.n == len(arguments)
    # Every one of them is now a hit that returns its own value.
    assert [kind(x) for x in arguments] == expected
    assert calls.n == len(arguments)
    for x, name in zip(arguments, expected, strict=True):
        assert stored(kind, x).value == name


def test_containers_hash_by_content(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def total(values: Any) -> int:
        calls.record()
        return len(values)

    assert total({"a": 1, "b": 2}) == 2
    assert total({"b": 2, "a": 1}) == 2
    assert total([1, 2, 3]) == 3
    assert total([1, 2, 3]) == 3
    assert total({3, 2, 1}) == 3
    assert total({1, 2, 3}) == 3
    assert calls.n == 3


def test_two_local_functions_with_the_same_name_do_not_share_entries(
    core_options: CoreOptions,
) -> None:
    def first() -> CachedFunction[[int], int]:
        @cached(**core_options())
        def f(x: int) -> int:
            return x + 100

        return f

    def second() -> CachedFunction[[int], int]:
        @cached(**core_options())
        def f(x: int) -> int:
            return x + 200

        return f

    f1, f2 = first(), second()
    assert f1(1) == 101
    assert f2(1) == 201
    assert f1(1) == 101


@pytest.mark.parametrize(
    "key",
    ["k", "user_profile_42", "item-0042", "abcdefABCDEF0123456789"],
    ids=["short", "readable-long", "dashed", "mixed-case"],
)
def test_custom_hash_func_string_keys_hit(core_options: CoreOptions, key: str) -> None:
    calls = Calls()

    def by_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return f"{key}{kwargs['x']}"

    @cached(**core_options(hash_func=by_name))
    def f(x: int) -> int:
        calls.record(x)
        return x * 10

    assert f(7) == 70
    assert f(7) == 70
    assert calls.n == 1, "a hash_func key was not cached"
    assert stored(f, 7).value == 70
    assert f(8) == 80
    assert calls.n == 2


# -- stale_after --------------------------------------------------------------------


@pytest.mark.parametrize("stale_after", [TINY, TINY_S], ids=["timedelta", "seconds"])
def test_stale_entry_is_recomputed(core_options: CoreOptions, stale_after: Any) -> None:
    calls = Calls()

    @cached(**core_options(stale_after=stale_after))
    def f(x: int) -> str:
        calls.record(x)
        return f"new-{x}"

    old = precache_old(f, 1, value="old")
    assert f(1) == "new-1"
    assert calls.n == 1
    new = stored(f, 1)
    assert new.value == "new-1"
    assert new.timestamp > old.timestamp


@pytest.mark.parametrize("stale_after", [HOUR, 3600.0], ids=["timedelta", "seconds"])
def test_entry_younger_than_stale_after_is_served(
    core_options: CoreOptions, stale_after: Any
) -> None:
    calls = Calls()

    @cached(**core_options(stale_after=stale_after))
    def f(x: int) -> str:
        calls.record(x)
        return "computed"

    precache_old(f, 1, value="cached")
    assert f(1) == "cached"
    assert calls.n == 0


def test_without_stale_after_entries_never_go_stale(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> str:
        calls.record(x)
        return "computed"

    precache_old(f, 1, value="cached")
    assert f(1) == "cached"
    assert calls.n == 0


# -- next_time ----------------------------------------------------------------------


def test_next_time_serves_stale_value_and_refreshes_once(core_options: CoreOptions) -> None:
    calls = Calls()
    started = threading.Event()
    release = threading.Event()

    @cached(**core_options(stale_after=TINY_S, next_time=True))
    def f(x: int) -> str:
        calls.record(x)
        if x == 1:
            started.set()
            release.wait(DEADLINE_S)
        return f"fresh-{x}"

    precache_old(f, 1, value="stale")
    try:
        # Returned at once, while the refresh is still blocked inside f.
        assert f(1) == "stale"
        assert started.wait(DEADLINE_S), "no background refresh started"
        assert not release.is_set()
        # Twenty more callers while the refresh is blocked: all served the stale
        # value, none starts another refresh.
        callers = [Caller(lambda: f(1)) for _ in range(20)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.finish()
        assert [c.error for c in callers] == [None] * 20
        assert [c.result for c in callers] == ["stale"] * 20
        assert f(1) == "stale"
        assert calls.of(1) == 1
    finally:
        release.set()
    assert wait_until(lambda: stored(f, 1).value == "fresh-1"), "refresh never stored"
    assert calls.of(1) == 1
    assert f(1) == "fresh-1"
    # A missing entry is computed synchronously, even with next_time.
    assert f(2) == "fresh-2"
    assert calls.of(2) == 1


# -- concurrent callers and wait_for_calc_timeout -----------------------------------


@pytest.mark.parametrize("timeout", [0, 30.0, timedelta(seconds=30)], ids=["none", "s", "td"])
def test_concurrent_misses_compute_once(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch, timeout: Any
) -> None:
    n_threads = 8
    calls = Calls()
    release = threading.Event()

    @cached(**core_options(wait_for_calc_timeout=timeout))
    def f(x: int) -> str:
        n = calls.record(x)
        release.wait(DEADLINE_S)
        return f"value-{x}-{n}"

    waits = count_waits(monkeypatch, f)
    barrier = threading.Barrier(n_threads)

    def call() -> str:
        barrier.wait(DEADLINE_S)
        return f(7)

    callers = [Caller(call) for _ in range(n_threads)]
    for caller in callers:
        caller.start()
    try:
        # One caller computes (blocked on release); every other one is waiting for it.
        assert wait_until(lambda: calls.n >= 1 and waits.n >= n_threads - 1)
        assert calls.n == 1
    finally:
        release.set()
    for caller in callers:
        caller.finish()
    assert [c.error for c in callers] == [None] * n_threads
    assert [c.result for c in callers] == ["value-7-1"] * n_threads
    assert calls.n == 1
    assert stored(f, 7).value == "value-7-1"


@pytest.mark.parametrize("timeout", [0.1, timedelta(milliseconds=100)], ids=["s", "td"])
def test_waiter_past_wait_for_calc_timeout_computes_itself(
    core_options: CoreOptions, timeout: Any
) -> None:
    calls = Calls()
    started = threading.Event()
    release = threading.Event()

    @cached(**core_options(wait_for_calc_timeout=timeout))
    def f(x: int) -> str:
        n = calls.record(x)
        if n == 1:
            started.set()
            release.wait(DEADLINE_S)
        return f"v{n}"

    first = Caller(lambda: f(1))
    first.start()
    try:
        assert started.wait(DEADLINE_S)
        begin = time.monotonic()
        assert f(1) == "v2"  # not the blocked calculator's value
        waited = time.monotonic() - begin
        assert waited >= 0.09, "the waiter did not wait before taking over"
        assert calls.n == 2
        assert stored(f, 1).value == "v2"
    finally:
        release.set()
    first.finish()
    assert first.error is None
    assert first.result == "v1"
    assert calls.n == 2


def test_exceptions_are_not_cached(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> int:
        n = calls.record(x)
        if n <= 2:
            raise ValueError(f"failure {n}")
        return n

    with pytest.raises(ValueError, match="failure 1"):
        f(1)
    assert f.cached_entry(1) is None
    with pytest.raises(ValueError, match="failure 2"):
        f(1)
    assert f(1) == 3
    assert f(1) == 3
    assert calls.n == 3


def test_when_the_calculator_raises_a_waiter_takes_over(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_waiters = 4
    calls = Calls()
    started = threading.Event()
    release = threading.Event()

    @cached(**core_options())
    def f(x: int) -> str:
        n = calls.record(x)
        if n == 1:
            started.set()
            release.wait(DEADLINE_S)
            raise RuntimeError("calculator failed")
        return f"v{n}"

    waits = count_waits(monkeypatch, f)
    first = Caller(lambda: f(1))
    first.start()
    assert started.wait(DEADLINE_S)
    waiters = [Caller(lambda: f(1)) for _ in range(n_waiters)]
    for waiter in waiters:
        waiter.start()
    try:
        assert wait_until(lambda: waits.n >= n_waiters)
        assert calls.n == 1
    finally:
        release.set()
    first.finish()
    for waiter in waiters:
        waiter.finish()
    assert isinstance(first.error, RuntimeError)
    assert [w.error for w in waiters] == [None] * n_waiters
    assert [w.result for w in waiters] == ["v2"] * n_waiters
    assert calls.n == 2
    assert stored(f, 1).value == "v2"


# -- allow_none ---------------------------------------------------------------------


def test_none_is_not_cached_by_default(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> None:
        calls.record(x)

    assert f(1) is None
    assert f(1) is None
    assert calls.n == 2


def test_allow_none_caches_none(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(allow_none=True))
    def f(x: int) -> None:
        calls.record(x)

    assert f(1) is None
    assert f(1) is None
    assert calls.n == 1
    entry = stored(f, 1)
    assert entry.value is None


def test_per_call_allow_none(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(allow_none=False))
    def f(x: int) -> None:
        calls.record(x)

    assert f(1, cachier__allow_none=True) is None  # type: ignore[call-arg]
    assert f(1, cachier__allow_none=True) is None  # type: ignore[call-arg]
    assert calls.n == 1
    assert stored(f, 1).value is None


# -- entry_size_limit ---------------------------------------------------------------


@pytest.mark.parametrize("limit", [500, "1KB", "0.5 KB"], ids=["int", "KB", "fraction"])
def test_entry_size_limit(core_options: CoreOptions, limit: int | str) -> None:
    calls = Calls()

    @cached(**core_options(entry_size_limit=limit))
    def f(size: int) -> str:
        calls.record(size)
        return "x" * size

    big = 5000
    assert f(big) == "x" * big
    assert f.cached_entry(big) is None
    assert f(big) == "x" * big
    assert calls.of(big) == 2

    small = 10
    assert f(small) == "x" * small
    assert f(small) == "x" * small
    assert calls.of(small) == 1
    assert stored(f, small).value == "x" * small


# -- cleanup_stale ------------------------------------------------------------------


def test_cleanup_stale_purges_stale_entries_of_other_keys(core_options: CoreOptions) -> None:
    stale_after = 0.3  # room for the fresh entry to stay fresh while the purge runs

    @cached(
        **core_options(
            stale_after=stale_after,
            cleanup_stale=True,
            cleanup_interval=timedelta(milliseconds=10),
        )
    )
    def f(x: int) -> int:
        return x * 2

    f.precache_value(1, value_to_cache=10)
    f.precache_value(2, value_to_cache=20)
    wait_until_older(stored(f, 2), stale_after)
    assert f(3) == 6  # any call starts the background purge
    assert wait_until(lambda: f.cached_entry(1) is None and f.cached_entry(2) is None)
    assert stored(f, 3).value == 6  # fresh entries stay

    # Past cleanup_interval, a later call purges again.
    f.precache_value(4, value_to_cache=40)
    wait_until_older(stored(f, 4), stale_after)
    assert f(5) == 10
    assert wait_until(lambda: f.cached_entry(3) is None and f.cached_entry(4) is None)
    assert stored(f, 5).value == 10


def test_stale_entries_stay_without_cleanup_stale(core_options: CoreOptions) -> None:
    @cached(**core_options(stale_after=TINY_S))
    def f(x: int) -> int:
        return x

    precache_old(f, 1, value=10)
    assert f(2) == 2
    # Nothing purges without cleanup_stale: the stale entry is still readable.
    assert stored(f, 1).value == 10


# -- precache_value, cached_entry, clear_cache, clear_being_calculated ----------------


def test_precache_value_is_served_without_calling(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(a: int, b: int = 0) -> int:
        calls.record(a)
        return a + b

    assert f.precache_value(1, value_to_cache=100) == 100
    assert f(1) == 100
    assert f(a=1, b=0) == 100
    assert f.precache_value(2, b=5, value_to_cache=-1) == -1
    assert f(2, 5) == -1
    assert calls.n == 0
    assert f(3) == 3
    assert calls.n == 1


def test_cached_entry_has_value_and_aware_utc_time(core_options: CoreOptions) -> None:
    @cached(**core_options())
    def f(x: int) -> list[int]:
        return [x, x]

    assert f.cached_entry(1) is None
    before = datetime.now(timezone.utc)
    assert f(1) == [1, 1]
    after = datetime.now(timezone.utc)
    entry = f.cached_entry(1)
    assert isinstance(entry, Entry)
    assert entry.value == [1, 1]
    assert entry.time.tzinfo is not None
    assert entry.time.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= entry.time <= after + timedelta(seconds=1)
    assert entry.time == datetime.fromtimestamp(entry.timestamp, tz=timezone.utc)


def test_clear_cache_removes_only_this_functions_entries(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> int:
        calls.record(x)
        return x

    @cached(**core_options())
    def g(x: int) -> int:
        return -x

    assert f.clear_cache() == 0
    f(1)
    f(2)
    f(3)
    g(1)
    g(2)
    assert f.clear_cache() == 3
    assert [f.cached_entry(x) for x in (1, 2, 3)] == [None, None, None]
    assert stored(g, 1).value == -1
    assert stored(g, 2).value == -2
    assert f(1) == 1
    assert calls.of(1) == 2
    assert f.clear_cache() == 1


def test_clear_being_calculated_with_nothing_in_progress_returns_zero(
    core_options: CoreOptions,
) -> None:
    @cached(**core_options())
    def f(x: int) -> int:
        return x

    assert f.clear_being_calculated() == 0
    f(1)
    f(2)
    assert f.clear_being_calculated() == 0
    assert f(1) == 1


def test_clear_being_calculated_lets_a_new_caller_compute(core_options: CoreOptions) -> None:
    calls = Calls()
    started = threading.Event()
    release = threading.Event()

    @cached(**core_options())
    def f(x: int) -> str:
        n = calls.record(x)
        if n == 1:
            started.set()
            release.wait(DEADLINE_S)
        return f"v{n}"

    stuck = Caller(lambda: f(1))
    stuck.start()
    try:
        assert started.wait(DEADLINE_S)
        assert f.clear_being_calculated() >= 1
        # The stuck calculation no longer holds the key: a new caller computes.
        second = Caller(lambda: f(1))
        second.start()
        second.join(3.0)
        assert not second.is_alive(), "caller still waits for the cleared calculation"
        assert second.error is None
        assert second.result == "v2"
    finally:
        release.set()
    stuck.finish()
    assert stuck.result == "v1"


# -- per-call controls --------------------------------------------------------------


def test_skip_cache_neither_reads_nor_writes(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> str:
        calls.record(x)
        return "computed"

    f.precache_value(1, value_to_cache="cached")
    assert f(1, cachier__skip_cache=True) == "computed"  # type: ignore[call-arg]
    assert stored(f, 1).value == "cached"
    assert f(2, cachier__skip_cache=True) == "computed"  # type: ignore[call-arg]
    assert f.cached_entry(2) is None
    assert calls.n == 2
    assert f(1) == "cached"
    assert calls.n == 2


def test_overwrite_cache_recomputes_and_stores(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> str:
        n = calls.record(x)
        return f"v{n}"

    f.precache_value(1, value_to_cache="old")
    assert f(1, cachier__overwrite_cache=True) == "v1"  # type: ignore[call-arg]
    assert stored(f, 1).value == "v1"
    assert f(1) == "v1"
    assert calls.n == 1


def test_refresh_recomputes_and_stores(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int, y: int = 0) -> str:
        n = calls.record(x)
        return f"v{n}"

    f.precache_value(1, value_to_cache="old")
    assert f.refresh(1) == "v1"
    assert stored(f, 1).value == "v1"
    assert f(1) == "v1"
    assert f.refresh(x=1, y=0) == "v2"
    assert f(1) == "v2"
    assert calls.n == 2


def test_uncached_calls_through_without_reading_or_writing(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> str:
        calls.record(x)
        return "computed"

    f.precache_value(1, value_to_cache="cached")
    assert f.uncached(1) == "computed"
    assert stored(f, 1).value == "cached"
    assert f.uncached(2) == "computed"
    assert f.cached_entry(2) is None
    assert calls.n == 2


def test_verbose_logs_at_info(core_options: CoreOptions, caplog: pytest.LogCaptureFixture) -> None:
    @cached(**core_options())
    def f(x: int) -> int:
        return x + 1

    def info_messages() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.INFO and r.name.startswith("cachier_like")
        ]

    with caplog.at_level(logging.INFO, logger="cachier_like"):
        assert f(1) == 2
        assert f(1) == 2
        assert info_messages() == [], "non-verbose calls must not log at INFO"

        assert f(2, cachier__verbose=True) == 3  # type: ignore[call-arg]
        miss = info_messages()
        assert len(miss) >= 1
        assert not any("hit" in m for m in miss)
        caplog.clear()

        assert f(2, cachier__verbose=True) == 3  # type: ignore[call-arg]
        hit = info_messages()
        assert len(hit) >= 1
        assert any("hit" in m for m in hit)


@pytest.mark.maxage
@pytest.mark.parametrize(
    ("stale_after", "max_age", "recomputed"),
    [
        (None, TINY, True),
        (HOUR, TINY, True),
        (TINY, HOUR, True),
        (HOUR, HOUR, False),
        (None, HOUR, False),
    ],
    ids=["max-age-only", "max-age-tighter", "stale-after-tighter", "both-loose", "loose"],
)
def test_max_age_bound_is_min_of_stale_after_and_max_age(
    core_options: CoreOptions,
    stale_after: timedelta | None,
    max_age: timedelta,
    recomputed: bool,
) -> None:
    calls = Calls()

    @cached(**core_options(stale_after=stale_after))
    def f(x: int) -> str:
        calls.record(x)
        return "new"

    precache_old(f, 1, value="old")
    assert f(1, max_age=max_age) == ("new" if recomputed else "old")  # type: ignore[call-arg]
    assert calls.n == (1 if recomputed else 0)
    assert stored(f, 1).value == ("new" if recomputed else "old")


@pytest.mark.maxage
def test_max_age_entry_is_served_while_younger(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> str:
        calls.record(x)
        return "new"

    f.precache_value(1, value_to_cache="cached")
    assert f(1, max_age=HOUR) == "cached"  # type: ignore[call-arg]
    assert calls.n == 0


@pytest.mark.maxage
def test_max_age_with_next_time_serves_stale_and_refreshes(core_options: CoreOptions) -> None:
    calls = Calls()
    release = threading.Event()

    @cached(**core_options(stale_after=HOUR, next_time=True))
    def f(x: int) -> str:
        calls.record(x)
        release.wait(DEADLINE_S)
        return "new"

    precache_old(f, 1, value="old")
    try:
        # Older than max_age, fresh by stale_after: served at once, as in cachier, while
        # the refresh is held inside f.
        assert f(1, max_age=TINY) == "old"  # type: ignore[call-arg]
    finally:
        release.set()
    assert wait_until(lambda: stored(f, 1).value == "new"), "refresh never stored"
    assert calls.n == 1


@pytest.mark.maxage
def test_function_declaring_max_age_receives_it(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int, max_age: int = 0) -> int:
        calls.record((x, max_age))
        return x + max_age

    assert f(1, max_age=5) == 6
    assert f(1, max_age=7) == 8
    assert f(1) == 1
    assert calls.n == 3
    assert f(1, 5) == 6
    assert f(1, max_age=5) == 6
    assert calls.n == 3
    assert stored(f, 1, max_age=7).value == 8


# -- global defaults ----------------------------------------------------------------


def test_set_default_params_reaches_already_decorated_functions(
    core_options: CoreOptions,
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> None:
        calls.record(x)

    f(1)
    f(1)
    assert calls.n == 2
    cachier_like.set_default_params(allow_none=True)
    f(1)
    f(1)
    assert calls.n == 3


def test_set_default_stale_after_reaches_already_decorated_functions(
    core_options: CoreOptions,
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> str:
        n = calls.record(x)
        return f"v{n}"

    f.precache_value(1, value_to_cache="old")
    assert f(1) == "old"
    cachier_like.set_default_params(stale_after=timedelta(0))
    assert f(1) == "v1"
    cachier_like.set_default_params(stale_after=HOUR)
    assert f(1) == "v1"
    assert calls.n == 1


def test_explicit_options_win_over_defaults(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(allow_none=False, stale_after=HOUR))
    def f(x: int) -> str | None:
        calls.record(x)
        return None if x == 0 else "computed"

    f.precache_value(1, value_to_cache="old")
    cachier_like.set_default_params(allow_none=True, stale_after=timedelta(0))
    assert f(1) == "old"
    assert f(0) is None
    assert f(0) is None
    assert calls.of(0) == 2
    assert calls.of(1) == 0


@pytest.mark.parametrize(
    "change",
    [{"cache_dir": "elsewhere"}, {"entry_size_limit": "1MB"}],
    ids=["cache_dir", "entry_size_limit"],
)
def test_changing_an_unrelated_default_keeps_entries(
    core_options: CoreOptions, tmp_path: Path, change: dict[str, Any]
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> int:
        calls.record(x)
        return x

    assert f(1) == 1
    params = dict(change)
    if "cache_dir" in params:
        params["cache_dir"] = str(tmp_path / params["cache_dir"])
    # The function's core does not use this option (or fixes it explicitly),
    # so its cached entries must survive the change.
    cachier_like.set_default_params(**params)
    assert f(1) == 1
    assert calls.n == 1, f"set_default_params({change}) dropped the function's entries"


def test_disable_and_enable_caching(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> str:
        calls.record(x)
        return "computed"

    f.precache_value(1, value_to_cache="cached")
    assert f(1) == "cached"
    cachier_like.disable_caching()
    assert f(1) == "computed"
    assert f(1) == "computed"
    assert f(2) == "computed"
    assert f.cached_entry(2) is None
    assert calls.n == 3
    cachier_like.enable_caching()
    assert f(1) == "cached"
    assert f(2) == "computed"
    assert f(2) == "computed"
    assert calls.n == 4


# -- async functions ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_hit_and_miss(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    async def f(x: int) -> int:
        calls.record(x)
        await asyncio.sleep(0)
        return x * 3

    assert await f(2) == 6
    assert await f(2) == 6
    assert await f(x=2) == 6
    assert calls.n == 1
    assert await f(3) == 9
    assert calls.n == 2
    assert stored(f, 2).value == 6


@pytest.mark.asyncio
async def test_async_stale_entry_is_recomputed(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(stale_after=TINY))
    async def f(x: int) -> str:
        calls.record(x)
        return "new"

    f.precache_value(1, value_to_cache="old")
    old = stored(f, 1)
    assert await async_wait_until(lambda: time.time() - old.timestamp > TINY_S + 0.001)
    assert await f(1) == "new"
    assert calls.n == 1
    assert stored(f, 1).value == "new"


@pytest.mark.asyncio
async def test_async_exceptions_are_not_cached(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    async def f(x: int) -> int:
        n = calls.record(x)
        if n == 1:
            raise ValueError("first call fails")
        return n

    with pytest.raises(ValueError, match="first call fails"):
        await f(1)
    assert f.cached_entry(1) is None
    assert await f(1) == 2
    assert await f(1) == 2
    assert calls.n == 2


def _joined(f: CachedFunction[..., Any], x: int) -> int:
    """How many awaits of ``f(x)`` share its computation in the running loop."""
    key = KeyMaker(f.__wrapped__, stable=f.core.stable_keys).key((x,), {})
    return joined((f.core, key))


async def _gather_same_key(
    f: Callable[[int], Awaitable[str]],
    n_callers: int,
    release: asyncio.Event,
    ready: Callable[[], bool],
) -> list[str]:
    async def releaser() -> None:
        try:
            await async_wait_until(ready)
        finally:
            release.set()

    release_task = asyncio.create_task(releaser())
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(f(1) for _ in range(n_callers))), timeout=DEADLINE_S
        )
    finally:
        await release_task
    return list(results)


@pytest.mark.asyncio
async def test_async_concurrent_same_key_computes_once(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_callers = 4
    calls = Calls()
    release = asyncio.Event()

    # A bounded wait, so a broken claim fails the test instead of hanging it.
    @cached(**core_options(wait_for_calc_timeout=5.0))
    async def f(x: int) -> str:
        n = calls.record(x)
        await release.wait()
        return f"v{n}"

    # In one loop the callers share one computation (cachier_like.flights), not waits.
    waits = count_waits(monkeypatch, f)
    results = await _gather_same_key(
        f, n_callers, release, lambda: calls.n >= 1 and _joined(f, 1) == n_callers
    )
    assert waits.n == 0
    assert results == ["v1"] * n_callers
    assert calls.n == 1
    assert stored(f, 1).value == "v1"


@pytest.mark.asyncio
async def test_async_waiters_beyond_the_thread_pool_do_not_starve_the_calculator(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More concurrent waiters than the loop's thread pool has workers: waiting must
    # not hold every worker while the calculator still needs one to store its value.
    workers = 4
    n_callers = 3 * workers
    timeout = 1.0  # bounds how long a broken test takes; a working one never gets near
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=workers))
    calls = Calls()
    release = asyncio.Event()

    @cached(**core_options(wait_for_calc_timeout=timeout))
    async def f(x: int) -> str:
        n = calls.record(x)
        await release.wait()
        return f"v{n}"

    begin = time.monotonic()
    results = await _gather_same_key(
        f, n_callers, release, lambda: calls.n >= 1 and _joined(f, 1) == n_callers
    )
    elapsed = time.monotonic() - begin
    assert calls.n == 1, f"{calls.n} calculations; waiters gave up after {elapsed:.2f}s"
    assert results == ["v1"] * n_callers
    assert elapsed < timeout


# -- fail-open on core errors -------------------------------------------------------


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise OSError("backend down")


@pytest.mark.parametrize("operation", ["get", "set", "claim", "release"])
def test_failing_core_operation_fails_open(
    core_options: CoreOptions,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> int:
        calls.record(x)
        return x * 2

    monkeypatch.setattr(f.core, operation, _boom)
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert f(21) == 42
    assert calls.n == 1
    warnings = warnings_from_library(caplog)
    assert warnings, f"no warning for a failing core.{operation}"
    assert any("backend down" in r.getMessage() for r in warnings)


@pytest.mark.parametrize("operation", ["get", "set", "claim"])
def test_failing_core_operation_raises_with_raise_on_error(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    @cached(**core_options(raise_on_error=True))
    def f(x: int) -> int:
        return x * 2

    monkeypatch.setattr(f.core, operation, _boom)
    with pytest.raises(BackendError, match="backend down"):
        f(21)


@pytest.mark.asyncio
@pytest.mark.parametrize("operation", ["get", "set", "claim"])
async def test_async_failing_core_operation_fails_open(
    core_options: CoreOptions,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:
    @cached(**core_options())
    async def f(x: int) -> int:
        return x * 2

    monkeypatch.setattr(f.core, operation, _boom)
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert await f(21) == 42
    assert any("backend down" in r.getMessage() for r in warnings_from_library(caplog))


@pytest.mark.parametrize(
    "make",
    [lambda: lambda: 1, threading.Lock],
    ids=["lambda", "lock"],
)
def test_unpicklable_result_is_returned(
    core_options: CoreOptions,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[], object],
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> object:
        calls.record(x)
        return make()

    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        result = f(1)
        again = f(1)
    assert result is not None
    assert type(result) is type(make())
    if backend_of(core_options) != "memory":
        # Every persistent core pickles: returned anyway, with a warning, and not stored.
        assert warnings_from_library(caplog), "no warning for an unpicklable result"
        assert f.cached_entry(1) is None
        assert again is not result
        assert calls.n == 2
    else:
        # The memory core keeps objects as they are.
        assert again is result
        assert calls.n == 1
