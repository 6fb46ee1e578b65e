"""cachier's decorator and per-call semantics: negative and ``next_time`` ``max_age``,
decorated ``functools.partial`` objects, ``cache_dpath()`` and ``cachier__verbose``.

The policy tests run on every core of ``core_options``; entries are aged by polling
with a deadline, and background refreshes are staged with events.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cachier_like import CachedFunction, Entry, cached
from cachier_like.identity import function_namespace
from cachier_like.keys import KeyMaker
from tests.backends.types import CoreOptions
from tests.support import DEADLINE_S, start_waiter, wait_until

HOUR = timedelta(hours=1)
TINY = timedelta(milliseconds=50)
NEGATIVE = timedelta(seconds=-1)


def stored(f: CachedFunction[..., Any], *args: Any) -> Entry:
    entry = f.cached_entry(*args)
    assert entry is not None, f"no entry for {args}"
    return entry


def precache_older_than(f: CachedFunction[..., Any], arg: Any, value: Any, age: float) -> None:
    """Precache ``value`` for ``arg`` and return once the entry is older than ``age`` s."""
    f.precache_value(arg, value_to_cache=value)
    written = stored(f, arg).timestamp
    wait_until(lambda: time.time() - written > age + 0.001)


class Counter:
    """Counts calls, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.n = 0

    def add(self) -> int:
        with self._lock:
            self.n += 1
            return self.n


# -- negative max_age -------------------------------------------------------------------


@pytest.mark.maxage
@pytest.mark.parametrize("max_age", [NEGATIVE, -1, -0.5], ids=["timedelta", "int", "float"])
def test_negative_max_age_recomputes(core_options: CoreOptions, max_age: Any) -> None:
    calls = Counter()

    @cached(**core_options(stale_after=HOUR))
    def f(x: int) -> str:
        calls.add()
        return "new"

    f.precache_value(1, value_to_cache="old")  # written this instant: fresh by any age >= 0
    assert f(1, max_age=max_age) == "new"  # type: ignore[call-arg]
    assert calls.n == 1
    assert stored(f, 1).value == "new"
    assert f(1) == "new"  # without max_age the new entry is fresh
    assert calls.n == 1


@pytest.mark.maxage
def test_negative_max_age_with_next_time_serves_stale_and_refreshes(
    core_options: CoreOptions,
) -> None:
    release = threading.Event()

    @cached(**core_options(stale_after=HOUR, next_time=True))
    def f(x: int) -> str:
        release.wait(DEADLINE_S)
        return "new"

    f.precache_value(1, value_to_cache="old")
    try:
        assert f(1, max_age=NEGATIVE) == "old"  # type: ignore[call-arg]
    finally:
        release.set()
    wait_until(lambda: stored(f, 1).value == "new")


# -- next_time with max_age -------------------------------------------------------------


@pytest.mark.maxage
def test_next_time_serves_entry_stale_by_max_age_and_refreshes_once(
    core_options: CoreOptions,
) -> None:
    calls = Counter()
    started = threading.Event()
    release = threading.Event()

    @cached(**core_options(stale_after=HOUR, next_time=True))
    def f(x: int) -> str:
        calls.add()
        started.set()
        release.wait(DEADLINE_S)
        return "new"

    precache_older_than(f, 1, "old", TINY.total_seconds())
    try:
        # Fresh by stale_after, stale by max_age: served at once, refreshed behind.
        assert f(1, max_age=TINY) == "old"  # type: ignore[call-arg]
        assert started.wait(DEADLINE_S), "no background refresh started"
        for _ in range(5):  # while the refresh runs: served stale, no second refresh
            assert f(1, max_age=TINY) == "old"  # type: ignore[call-arg]
        assert calls.n == 1
    finally:
        release.set()
    wait_until(lambda: stored(f, 1).value == "new")
    assert calls.n == 1
    assert f(1, max_age=HOUR) == "new"  # type: ignore[call-arg]
    assert calls.n == 1


# -- functools.partial ------------------------------------------------------------------


def add3(a: int, b: int = 2, *, c: int = 3) -> tuple[int, int, int]:
    """Return the arguments as a tuple."""
    return (a, b, c)


def test_partial_namespace_is_that_of_its_function() -> None:
    assert function_namespace(functools.partial(add3, 1)) == function_namespace(add3)
    nested = functools.partial(functools.partial(add3, 1), c=7)
    assert function_namespace(nested) == function_namespace(add3)
    wrapper = cached(backend="memory")(functools.partial(add3, 1))
    assert wrapper.namespace == function_namespace(add3)


@pytest.mark.parametrize("stable", [True, False], ids=["stable", "local"])
def test_partial_key_merges_its_arguments(stable: bool) -> None:
    def key(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return KeyMaker(func, stable=stable).key(args, kwargs)

    plain = functools.partial(key, add3)
    assert key(functools.partial(add3, 1)) == plain(1)
    assert key(functools.partial(add3, 1), 5) == plain(1, 5)
    assert key(functools.partial(add3, b=5), 1) == plain(1, 5)
    assert key(functools.partial(add3, b=5), 1, b=6) == plain(1, 6)  # the call overrides
    assert key(functools.partial(add3, c=9), a=1) == plain(1, c=9)
    assert key(functools.partial(add3, 1)) != plain(2)


def test_nested_partial_key_merges_every_level() -> None:
    inner = functools.partial(add3, 1, c=5)
    inner.note = "an attribute keeps Python from flattening partials of it"  # type: ignore[attr-defined]
    outer = functools.partial(inner, c=7)
    assert outer.func is inner  # really nested
    assert KeyMaker(outer).key((), {}) == KeyMaker(add3).key((1,), {"c": 7})
    deeper = functools.partial(inner, 4)
    assert KeyMaker(deeper).key((), {}) == KeyMaker(add3).key((1, 4), {"c": 5})


def test_partial_hash_func_sees_merged_arguments() -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def hash_func(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        seen.append((args, kwargs))
        return "k"

    KeyMaker(functools.partial(add3, 1, c=4), hash_func=hash_func).key((), {})
    assert seen == [((), {"a": 1, "b": 2, "c": 4})]


def test_decorated_partial_shares_entries_with_its_function(core_options: CoreOptions) -> None:
    options = core_options()
    if options["backend"] == "memory":
        pytest.skip("each memory-core function has a store of its own")
    calls = Counter()

    def fn(a: int, b: int = 2, *, c: int = 3) -> tuple[int, int, int]:
        calls.add()
        return (a, b, c)

    plain = cached(**options)(fn)
    assert cached(**options)(functools.partial(fn, 1))() == (1, 2, 3)
    assert cached(**options)(functools.partial(fn, b=5))(1) == (1, 5, 3)
    nested = functools.partial(functools.partial(fn, 1), c=7)
    assert cached(**options)(nested)() == (1, 2, 7)
    assert calls.n == 3
    assert plain(1) == (1, 2, 3)
    assert plain(1, 5) == (1, 5, 3)
    assert plain(1, c=7) == (1, 2, 7)
    assert calls.n == 3, "the plain function recomputed what its partials stored"


def test_decorated_partial_computes_and_caches(core_options: CoreOptions) -> None:
    calls = Counter()

    def fn(a: int, b: int = 2) -> int:
        calls.add()
        return a * 10 + b

    wrapper = cached(**core_options())(functools.partial(fn, 1))
    assert wrapper() == 12
    assert wrapper(b=3) == 13
    assert wrapper() == 12
    assert calls.n == 2
    assert stored(wrapper).value == 12


def test_decorated_partial_looks_like_its_function() -> None:
    partial = functools.partial(add3, 1)
    wrapper = cached(backend="memory")(partial)
    assert inspect.signature(wrapper) == inspect.signature(partial)
    assert list(inspect.signature(wrapper).parameters) == ["b", "c"]
    assert wrapper.__name__ == "add3"
    assert wrapper.__qualname__ == "add3"
    assert wrapper.__module__ == add3.__module__
    assert wrapper.__doc__ == add3.__doc__
    assert wrapper.__wrapped__ is partial


def test_partial_of_a_method_needs_allow_non_static_methods() -> None:
    class Service:
        def lookup(self, x: int) -> int:
            return x

    with pytest.raises(TypeError, match=r"Service\.lookup looks like an instance method"):
        cached(backend="memory")(functools.partial(Service.lookup, x=1))
    wrapper = cached(backend="memory", allow_non_static_methods=True)(
        functools.partial(Service.lookup, x=1)
    )
    assert wrapper(Service()) == 1
    assert stored(wrapper, Service()).value == 1  # self is left out of the key


def test_decorated_async_partial() -> None:
    calls = Counter()

    async def fetch(a: int, b: int) -> int:
        calls.add()
        return a + b

    wrapper = cached(backend="memory")(functools.partial(fetch, 1))
    assert wrapper.namespace == function_namespace(fetch)
    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        assert inspect.iscoroutinefunction(wrapper)

    async def main() -> list[int]:
        return [await wrapper(2), await wrapper(b=2), await wrapper(3)]

    assert asyncio.run(main()) == [3, 3, 4]
    assert calls.n == 2


# -- cache_dpath ------------------------------------------------------------------------


def test_cache_dpath_is_the_cache_dir_given(tmp_path: Path) -> None:
    @cached(cache_dir=tmp_path)
    def f(x: int) -> int:
        return x

    f(1)
    assert f.cache_dpath() == str(tmp_path)
    assert isinstance(f.cache_dpath(), str)
    # The entries still live in the function's own subdirectory.
    assert f.core.directory.parent == tmp_path
    assert [p.name for p in f.core.directory.iterdir() if p.name.endswith(".entry")]


def test_cache_dpath_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    @cached(cache_dir="~/calls-cache")
    def f(x: int) -> int:
        return x

    assert f.cache_dpath() == str(tmp_path / "calls-cache")
    assert f.core.directory.parent == tmp_path / "calls-cache"


# -- cachier__verbose -------------------------------------------------------------------


@pytest.fixture
def logging_silenced() -> Any:
    """The library's loggers set to drop everything: verbose output must not need them."""
    library = logging.getLogger("cachier_like")
    level = library.level
    library.setLevel(logging.CRITICAL + 1)
    yield
    library.setLevel(level)


@pytest.mark.usefixtures("logging_silenced")
def test_verbose_prints_what_happened(
    core_options: CoreOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    @cached(**core_options(stale_after=HOUR))
    def f(x: int) -> int:
        return x + 1

    def printed() -> list[str]:
        return capsys.readouterr().out.splitlines()

    assert f(1) == 2
    assert f(1) == 2
    assert printed() == [], "calls without cachier__verbose print nothing"

    assert f(2, cachier__verbose=True) == 3  # type: ignore[call-arg]
    (miss,) = printed()
    assert "miss" in miss and "hit" not in miss
    assert f(2, cachier__verbose=True) == 3  # type: ignore[call-arg]
    (hit,) = printed()
    assert "hit" in hit
    assert f(2, cachier__verbose=True, max_age=NEGATIVE) == 3  # type: ignore[call-arg]
    (stale,) = printed()
    assert "stale" in stale
    assert f(2, cachier__verbose=True, cachier__overwrite_cache=True) == 3  # type: ignore[call-arg]
    (overwrite,) = printed()
    assert "overwrit" in overwrite


@pytest.mark.usefixtures("logging_silenced")
def test_verbose_prints_stale_refresh_with_next_time(
    core_options: CoreOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    release = threading.Event()

    @cached(**core_options(stale_after=HOUR, next_time=True))
    def f(x: int) -> str:
        release.wait(DEADLINE_S)
        return "new"

    f.precache_value(1, value_to_cache="old")
    try:
        assert f(1, cachier__verbose=True, max_age=NEGATIVE) == "old"  # type: ignore[call-arg]
    finally:
        release.set()
    (line,) = capsys.readouterr().out.splitlines()
    assert "stale" in line and "refresh" in line
    wait_until(lambda: stored(f, 1).value == "new")


@pytest.mark.memory
@pytest.mark.usefixtures("logging_silenced")
def test_verbose_prints_waiting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = threading.Event()
    release = threading.Event()

    @cached(backend="memory")
    def f(x: int) -> int:
        started.set()
        release.wait(DEADLINE_S)
        return x

    calculator = threading.Thread(target=f, args=(1,), daemon=True)
    calculator.start()
    assert started.wait(DEADLINE_S)
    try:
        waiter, results = start_waiter(
            monkeypatch,
            f.core,
            lambda: f(1, cachier__verbose=True),  # type: ignore[call-arg]
        )
    finally:
        release.set()
    waiter.join(DEADLINE_S)
    calculator.join(DEADLINE_S)
    assert results == [1]
    lines = capsys.readouterr().out.splitlines()
    assert any("wait" in line for line in lines), lines


@pytest.mark.usefixtures("logging_silenced")
def test_verbose_prints_for_async_calls(capsys: pytest.CaptureFixture[str]) -> None:
    @cached(backend="memory")
    async def f(x: int) -> int:
        return x

    async def main() -> list[int]:
        return [await f(1, cachier__verbose=True), await f(1, cachier__verbose=True)]  # type: ignore[call-arg]

    assert asyncio.run(main()) == [1, 1]
    miss, hit = capsys.readouterr().out.splitlines()
    assert "miss" in miss
    assert "hit" in hit
