"""Invalidation on every core (``core_options``): versions, one call, tags, get_many, ignore.

The core-level operations are the contract's (:mod:`cachier_like.testing.contract.invalidation`);
these tests check what a user of ``@cached`` sees.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable
from datetime import timedelta
from typing import Any

import pytest

from cachier_like import Args, ConfigurationError, cached
from cachier_like.cores.base import Core
from cachier_like.cores.memory import MemoryCore
from cachier_like.cores.pickle import PickleCore
from cachier_like.testing.processes import library_warnings
from tests.test_behaviour import DEADLINE_S, TINY_S, Caller, Calls, CoreOptions, wait_until


def spy(monkeypatch: pytest.MonkeyPatch, core: Core, name: str) -> list[tuple[Any, ...]]:
    """Record the arguments of each call of ``core.<name>`` (the method still runs)."""
    seen: list[tuple[Any, ...]] = []
    original = getattr(core, name)

    def recording(*args: Any) -> Any:
        seen.append(args)
        return original(*args)

    monkeypatch.setattr(core, name, recording)
    return seen


# -- version= -------------------------------------------------------------------------


def test_entries_of_another_version_are_never_served(core_options: CoreOptions) -> None:
    calls = Calls()

    def make(version: object) -> Any:
        @cached(**core_options(namespace="inv.versioned", version=version))
        def f(x: int) -> str:
            calls.record(x)
            return f"v{version}:{x}"

        return f

    one, two = make(1), make("2")
    assert one(1) == "v1:1" and one(1) == "v1:1"
    assert two(1) == "v2:1"  # a miss: version 1's entry is not read
    assert calls.n == 2
    assert one(1) == "v1:1" and two(1) == "v2:1"
    assert calls.n == 2
    assert one.core.namespace == "inv.versioned@v1"
    assert two.core.namespace == "inv.versioned@v2"


@pytest.mark.parametrize("version", [True, 2.5, "", "x" * 65, "line\nbreak"])
def test_a_bad_version_is_a_configuration_error(core_options: CoreOptions, version: Any) -> None:
    with pytest.raises(ConfigurationError, match="version"):

        @cached(**core_options(version=version))
        def f(x: int) -> int:
            return x


def test_cleanup_stale_removes_the_other_versions(core_options: CoreOptions) -> None:
    @cached(**core_options(namespace="inv.cleanup", version=1))
    def old(x: int) -> int:
        return x

    old(1)
    old(2)
    if isinstance(old.core, MemoryCore):
        pytest.skip("a memory core's store is its own: no other version shares it")

    @cached(
        **core_options(
            namespace="inv.cleanup",
            version=2,
            cleanup_stale=True,
            cleanup_interval=timedelta(milliseconds=1),
        )
    )
    def new(x: int) -> int:
        return x * 10

    assert old.core.stats().entries == 2
    assert new(1) == 10  # a call starts the background purge
    assert wait_until(lambda: old.core.stats().entries == 0)
    entry = new.cached_entry(1)
    assert entry is not None and entry.value == 10


# -- invalidate -----------------------------------------------------------------------


def test_invalidate_removes_exactly_that_call(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int, scale: int = 1) -> int:
        calls.record((x, scale))
        return x * scale

    assert (f(1), f(2), f(1, scale=3)) == (1, 2, 3)
    assert f.invalidate(x=1, scale=1) is True  # another spelling of f(1)
    assert f.invalidate(1) is False  # gone already
    assert f.invalidate(9) is False  # never stored
    assert f.cached_entry(1) is None
    assert f.cached_entry(2) is not None and f.cached_entry(1, 3) is not None
    assert f(1) == 1 and f(2) == 2
    assert calls.args.count((1, 1)) == 2 and calls.args.count((2, 1)) == 1


def test_ainvalidate(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    async def f(x: int) -> int:
        calls.record(x)
        return x

    async def main() -> tuple[bool, bool, int]:
        await f(1)
        first = await f.ainvalidate(1)
        second = await f.ainvalidate(1)
        return first, second, await f(1)

    assert asyncio.run(main()) == (True, False, 1)
    assert calls.n == 2


# -- tags -----------------------------------------------------------------------------


def test_invalidating_a_tag_recomputes_every_function_carrying_it(
    core_options: CoreOptions,
) -> None:
    calls = Calls()

    @cached(**core_options(tags=lambda user_id: [f"user:{user_id}", "users"]))
    def profile(user_id: int) -> str:
        calls.record(("profile", user_id))
        return f"profile {user_id}"

    @cached(**core_options(tags=lambda user_id, **_: [f"user:{user_id}"]))
    def orders(user_id: int, limit: int = 10) -> str:
        calls.record(("orders", user_id))
        return f"orders {user_id}"

    @cached(**core_options(tags=["reports"]))
    def report(month: int) -> str:
        calls.record(("report", month))
        return f"report {month}"

    for _ in range(2):
        assert profile(7) == "profile 7" and profile(8) == "profile 8"
        assert orders(7) == "orders 7" and report(1) == "report 1"
    assert calls.n == 4
    profile.invalidate_tags("user:7")  # also the other function's entries on this store
    assert profile(7) == "profile 7" and profile(8) == "profile 8"
    assert orders(7) == "orders 7" and report(1) == "report 1"
    assert calls.of(("profile", 7)) == 2
    assert calls.of(("profile", 8)) == 1  # another tag
    assert calls.of(("report", 1)) == 1
    assert calls.of(("orders", 7)) == 2  # memory: one process is one store too
    assert profile.core.tag_versions(["user:7"]) == (1,)
    report.invalidate_tags("users", "reports")
    assert profile(8) == "profile 8" and report(1) == "report 1" and orders(7) == "orders 7"
    assert calls.of(("profile", 8)) == 2 and calls.of(("report", 1)) == 2
    assert calls.of(("orders", 7)) == 2


def test_an_invalidated_entry_is_served_once_more_with_next_time(
    core_options: CoreOptions,
) -> None:
    calls = Calls()
    refreshed = threading.Event()

    @cached(**core_options(tags=["t"], next_time=True))
    def f(x: int) -> int:
        n = calls.record(x)
        if n > 1:
            refreshed.set()
        return n

    assert f(1) == 1
    f.invalidate_tags("t")
    if isinstance(f.core, MemoryCore):
        # The memory core drops an invalidated entry at once (so on_evict can close a
        # live value): there is nothing stale to serve, the next call recomputes.
        assert f(1) == 2
        return
    assert f(1) == 1  # stale by its tag: served while refreshed in the background
    assert refreshed.wait(DEADLINE_S)
    assert wait_until(lambda: f(1) == 2)
    assert calls.n == 2


@pytest.mark.memory
def test_memory_core_invalidation_passes_dropped_values_to_on_evict() -> None:
    closed: list[Any] = []

    @cached(backend="memory", tags=lambda x: [f"x:{x}"], on_evict=closed.append)
    def load(x: int) -> list[int]:
        return [x]

    first = load(1)
    load(2)
    load.invalidate_tags("x:1")
    assert closed == [first]
    assert load(1) == [1] and load(1) is not first


def test_a_tag_invalidated_while_computing_leaves_the_value_stale(
    core_options: CoreOptions,
) -> None:
    started, go_on = threading.Event(), threading.Event()
    calls = Calls()

    @cached(**core_options(tags=["t"]))
    def f(x: int) -> int:
        n = calls.record(x)
        if n == 1:
            started.set()
            assert go_on.wait(DEADLINE_S)
        return n

    first = Caller(lambda: f(1))
    first.start()
    assert started.wait(DEADLINE_S)
    f.invalidate_tags("t")  # while the first computation runs
    go_on.set()
    first.finish()
    assert first.result == 1  # the caller still gets what it computed
    assert f(1) == 2  # ...but it was computed before the invalidation: not served
    assert f(1) == 2


def test_a_tagged_async_function(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(tags=lambda x: [f"x:{x}"]))
    async def f(x: int) -> int:
        return calls.record(x)

    async def main() -> list[int]:
        got = [await f(1), await f(1), await f(2)]
        await f.ainvalidate_tags("x:1")
        got += [await f(1), await f(2)]
        return got

    assert asyncio.run(main()) == [1, 1, 2, 3, 2]


def test_a_tags_callable_that_raises_is_warned_about_and_the_call_runs(
    core_options: CoreOptions,
) -> None:
    @cached(**core_options(tags=lambda x: [f"x:{1 // x}"]))
    def f(x: int) -> int:
        return x + 1

    with library_warnings() as warned:
        assert f(0) == 1
    assert any("tags callable" in message for message in warned), warned
    assert f.cached_entry(0) is None


@pytest.mark.parametrize("bad", [lambda x: "one string", lambda x: [1], lambda x: [""]])
def test_a_tags_callable_returning_no_tags_is_a_configuration_error(
    core_options: CoreOptions, bad: Any
) -> None:
    @cached(**core_options(tags=bad))
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="tags"):
        f(1)


@pytest.mark.parametrize("bad", ["one", [1], [""], 7])
def test_bad_tags_are_a_configuration_error_at_decoration(
    core_options: CoreOptions, bad: Any
) -> None:
    with pytest.raises(ConfigurationError, match="tags"):

        @cached(**core_options(tags=bad))
        def f(x: int) -> int:
            return x


def test_precache_value_records_the_current_tag_versions(core_options: CoreOptions) -> None:
    @cached(**core_options(tags=["t"]))
    def f(x: int) -> int:
        raise AssertionError("not called")

    f.invalidate_tags("t")
    f.precache_value(1, value_to_cache=10)
    assert f(1) == 10


# -- get_many -------------------------------------------------------------------------


def test_get_many_reads_once_computes_the_misses_and_writes_once(
    core_options: CoreOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls()

    @cached(**core_options())
    def f(x: int, scale: int = 1) -> int:
        calls.record(x)
        return x * scale

    assert f(2) == 2
    reads = spy(monkeypatch, f.core, "get_many")
    writes = spy(monkeypatch, f.core, "set_many")
    claims = spy(monkeypatch, f.core, "claim")
    asked = [(3,), (2,), Args(1, scale=5), (3,), (4, 1)]
    assert f.get_many(asked) == [3, 2, 5, 3, 4]
    assert sorted(calls.args) == [1, 2, 3, 4]  # 2 was stored before; 3 asked twice
    assert len(reads) == 2  # the batch, then the claimed keys again
    assert len(writes) == 1 and len(writes[0][0]) == 3
    claimed: list[Hashable] = [args[0] for args in claims]
    assert claimed == sorted(claimed, key=str)
    assert f.get_many([(1, 5), (3,), (4,)]) == [5, 3, 4]
    assert calls.n == 4


def test_get_many_calls_the_batch_function_once(core_options: CoreOptions) -> None:
    batches: list[list[Any]] = []

    @cached(**core_options())
    def f(x: int) -> int:
        raise AssertionError("computed by the batch function")

    @f.batch_function
    def many(items: list[tuple[int]]) -> list[int]:
        batches.append(items)
        return [x * 10 for (x,) in items]

    f.precache_value(1, value_to_cache=100)
    assert f.get_many([(1,), (2,), (3,), (2,)]) == [100, 20, 30, 20]
    assert [sorted(batch) for batch in batches] == [[(2,), (3,)]]
    assert f.get_many([(2,), (3,)]) == [20, 30]
    assert len(batches) == 1


def test_get_many_keeps_its_claims_alive_through_a_long_batch(
    cross_process_core_options: CoreOptions,
) -> None:
    lease = 0.6

    options = cross_process_core_options(lease=lease, namespace="inv.long_batch")

    @cached(**options)
    def f(x: int) -> int:
        return x

    @cached(**options)
    def rival_function(x: int) -> int:
        return x

    if not f.core.leases:
        pytest.skip("this core's claims end with their holder, not with a lease")
    rival = rival_function.core
    taken: list[bool] = []

    @f.batch_function
    def slow(items: list[tuple[int]]) -> list[int]:
        started = time.monotonic()
        assert wait_until(lambda: time.monotonic() - started > 3 * lease)  # leases lapse
        key = f._current().keys.key((1,), {})
        taken.append(rival.claim(key, 30.0))
        return [x for (x,) in items]

    assert f.get_many([(1,), (2,)]) == [1, 2]
    assert taken == [False]  # renewed while the batch ran: still this caller's


def test_a_batch_function_returning_too_few_values_raises(core_options: CoreOptions) -> None:
    @cached(**core_options())
    def f(x: int) -> int:
        return x

    f.batch_function(lambda items: [0])
    with pytest.raises(ValueError, match="returned 1 values for 2 calls"):
        f.get_many([(1,), (2,)])
    assert f.cached_entry(1) is None


def test_get_many_waits_for_a_key_another_caller_computes(core_options: CoreOptions) -> None:
    started, go_on = threading.Event(), threading.Event()
    calls = Calls()

    @cached(**core_options())
    def f(x: int) -> int:
        calls.record(x)
        if x == 1:
            started.set()
            assert go_on.wait(DEADLINE_S)
        return x * 2

    single = Caller(lambda: f(1))
    single.start()
    assert started.wait(DEADLINE_S)
    batch = Caller(lambda: f.get_many([(1,), (2,)]))
    batch.start()
    assert wait_until(lambda: calls.of(2) == 1)  # computed its own key meanwhile
    go_on.set()
    single.finish()
    batch.finish()
    assert batch.error is None and batch.result == [2, 4]
    assert calls.of(1) == 1


def test_get_many_with_tags_respects_invalidation(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(tags=lambda x: [f"x:{x}"]))
    def f(x: int) -> int:
        return calls.record(x)

    assert f.get_many([(1,), (2,)]) == [1, 2]
    f.invalidate_tags("x:2")
    assert f.get_many([(1,), (2,)]) == [1, 3]
    assert f(2) == 3


def test_aget_many(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options())
    async def f(x: int) -> int:
        calls.record(x)
        return -x

    @f.batch_function
    async def many(items: list[tuple[int]]) -> list[int]:
        calls.record(("batch", len(items)))
        return [-x for (x,) in items]

    async def main() -> tuple[list[int], list[int]]:
        await f(1)
        return await f.aget_many([(1,), (2,), (3,)]), await f.aget_many([(3,), (2,)])

    assert asyncio.run(main()) == ([-1, -2, -3], [-3, -2])
    assert calls.args == [1, ("batch", 2)]


def test_get_many_takes_tuples_or_args(core_options: CoreOptions) -> None:
    @cached(**core_options())
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match=r"write \(1,\)"):
        f.get_many([1])
    assert f.get_many([]) == []


# -- ignore= --------------------------------------------------------------------------


def test_ignored_parameters_do_not_split_the_cache(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(ignore=["verbose", "log"]))
    def f(x: int, verbose: bool = False, *, log: Any = None) -> int:
        calls.record(x)
        return x * 2

    assert f(1) == 2
    assert f(1, True, log=print) == 2
    assert f(x=1, verbose=True) == 2
    assert calls.n == 1
    assert f(2, verbose=True) == 4 and calls.n == 2
    assert f.invalidate(1, verbose=True) is True  # the same key rules as a call


def test_ignoring_an_unknown_parameter_is_a_configuration_error(
    core_options: CoreOptions,
) -> None:
    with pytest.raises(ConfigurationError, match=r"'verbos'.*its parameters: x, verbose"):

        @cached(**core_options(ignore="verbos"))
        def f(x: int, verbose: bool = False) -> int:
            return x


def test_a_stale_tagged_entry_is_replaced_by_a_current_one(core_options: CoreOptions) -> None:
    calls = Calls()

    @cached(**core_options(tags=["t"], stale_after=timedelta(seconds=TINY_S)))
    def f(x: int) -> int:
        return calls.record(x)

    assert f(1) == 1
    f.invalidate_tags("t")
    assert f(1) == 2
    entry = f.cached_entry(1)
    assert entry is not None and entry.value == 2 and dict(entry.tags)["t"] >= 1


@pytest.mark.pickle
@pytest.mark.memory
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_tagged_function_whose_default_core_changes_keeps_following_its_tags(
    tmp_path: Any, is_async: bool
) -> None:
    """The hit path is chosen per core (memory: the plain one): changing the default
    backend between calls must move the function to the other one, or a pickle entry
    would be served after its tag was invalidated."""
    from cachier_like import set_default_params

    calls = Calls()
    set_default_params(cache_dir=tmp_path)

    def plain(x: int) -> int:
        return calls.record(x)

    async def coroutine(x: int) -> int:
        return calls.record(x)

    f: Any = cached(tags=["t"])(coroutine if is_async else plain)

    def call(x: int) -> int:
        return asyncio.run(f(x)) if is_async else f(x)  # type: ignore[no-any-return]

    set_default_params(backend="pickle")
    assert [call(1), call(1)] == [1, 1]  # a pickle entry, tagged "t" at version 0
    set_default_params(backend="memory")
    assert [call(1), call(1)] == [2, 2]  # the memory core's hit path (the plain one)
    PickleCore("elsewhere", cache_dir=tmp_path).bump_tags(["t"])  # another process's
    set_default_params(backend="pickle")
    assert call(1) == 3, "served a pickle entry whose tag was invalidated"
    assert call(1) == 3
    set_default_params(backend="memory")
    back = call(1)
    assert call(1) == back
    f.invalidate_tags("t")
    assert call(1) == back + 1
