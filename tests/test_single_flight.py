"""Single flight for async functions: one computation per cold key and event loop, on every core.

Concurrency is staged with events: the computation waits for the test to open it, and
the test opens it once every caller has joined (``cachier_like.flights.joined``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cachier_like import CachedFunction, cached
from cachier_like.flights import joined
from cachier_like.keys import KeyMaker
from tests.backends.types import CoreOptions
from tests.support import DEADLINE_S


def _name(f: CachedFunction[..., Any], x: int) -> tuple[Any, Any]:
    """The flight name of ``f(x)``: its core and key."""
    return (f.core, KeyMaker(f.__wrapped__, stable=f.core.stable_keys).key((x,), {}))


async def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` from the loop until it holds, or fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


async def _until_joined(f: CachedFunction[..., Any], x: int, n: int) -> None:
    await _until(lambda: joined(_name(f, x)) >= n)


@pytest.mark.asyncio
async def test_many_awaits_of_a_cold_key_share_one_computation(core_options: CoreOptions) -> None:
    options = core_options()
    n = 1000 if options["backend"] in ("memory", "pickle") else 200
    calls: list[int] = []
    gate = asyncio.Event()

    @cached(**options)
    async def f(x: int) -> str:
        calls.append(x)
        await gate.wait()
        return f"value-{x}"

    tasks = [asyncio.ensure_future(f(1)) for _ in range(n)]
    await _until_joined(f, 1, n)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), DEADLINE_S)
    assert results == ["value-1"] * n
    assert calls == [1]
    assert joined(_name(f, 1)) == 0, "the flight outlived its computation"
    assert await f(1) == "value-1" and calls == [1]  # stored: a hit now


@pytest.mark.asyncio
async def test_cancelling_one_joiner_leaves_the_computation_to_the_others(
    core_options: CoreOptions,
) -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    @cached(**core_options())
    async def f(x: int) -> int:
        calls.append(x)
        await gate.wait()
        return x * 2

    tasks = [asyncio.ensure_future(f(3)) for _ in range(5)]
    await _until_joined(f, 3, 5)
    tasks[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert joined(_name(f, 3)) == 4
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks[1:]), DEADLINE_S) == [6] * 4
    assert calls == [3]


@pytest.mark.asyncio
async def test_when_every_joiner_is_cancelled_the_computation_stops_and_frees_the_key(
    core_options: CoreOptions,
) -> None:
    calls: list[int] = []
    stopped = asyncio.Event()
    never = asyncio.Event()

    @cached(**core_options())
    async def f(x: int) -> int:
        calls.append(x)
        try:
            await never.wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return x

    tasks = [asyncio.ensure_future(f(4)) for _ in range(3)]
    await _until_joined(f, 4, 3)
    await _until(lambda: bool(calls))  # the function runs (is not still claiming)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stopped.is_set(), "the computation kept running with nobody waiting for it"
    _, key = _name(f, 4)
    assert not await asyncio.to_thread(f.core.is_claimed, key), "its claim was left behind"
    never.set()
    assert await asyncio.wait_for(f(4), DEADLINE_S) == 4  # the next caller computes anew
    assert calls == [4, 4]


@pytest.mark.asyncio
async def test_an_exception_reaches_every_joiner_once_and_is_not_cached(
    core_options: CoreOptions,
) -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    @cached(**core_options())
    async def f(x: int) -> int:
        calls.append(x)
        await gate.wait()
        if len(calls) == 1:
            raise LookupError("upstream down")
        return x

    tasks = [asyncio.ensure_future(f(5)) for _ in range(6)]
    await _until_joined(f, 5, 6)
    gate.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE_S)
    assert all(isinstance(o, LookupError) for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == 1, "joiners share the one outcome"
    assert calls == [5], "the failing function ran again for a joiner"
    assert await f(5) == 5  # not cached: the next call computes
    assert calls == [5, 5]


@pytest.mark.memory
@pytest.mark.asyncio
async def test_different_keys_and_per_call_controls_fly_apart() -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    @cached(backend="memory")
    async def f(x: int) -> int:
        calls.append(x)
        await gate.wait()
        return x

    first = [asyncio.ensure_future(f(1)), asyncio.ensure_future(f(2))]
    await _until_joined(f, 1, 1)
    await _until_joined(f, 2, 1)
    gate.set()
    assert await asyncio.gather(*first) == [1, 2]
    assert sorted(calls) == [1, 2]
    # A per-call control keeps its own semantics: an overwrite always computes.
    assert await f(1, cachier__overwrite_cache=True) == 1  # type: ignore[call-arg]
    assert sorted(calls) == [1, 1, 2]
