"""``next_time`` refreshes of async functions: tasks the wrapper keeps alive until done."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

import pytest

from cachier_like import cached

DEADLINE_S = 10.0


async def _until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


@pytest.mark.memory
def test_a_refresh_nobody_awaits_is_not_garbage_collected_mid_flight() -> None:
    # The refresh awaits a future that only its own frame holds: without the wrapper's
    # reference, the task, its coroutine and the future form a cycle the collector frees.
    calls: list[int] = []
    gates: list[weakref.ref[asyncio.Future[None]]] = []

    @cached(backend="memory", stale_after=0.001, next_time=True)
    async def f(x: int) -> str:
        calls.append(x)
        if len(calls) == 1:
            return "first"
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gates.append(weakref.ref(gate))
        await gate
        return "second"

    async def main() -> None:
        assert await f(1) == "first"
        first = f.cached_entry(1)
        assert first is not None
        await _until(lambda: time.time() - first.timestamp > 0.002, "the entry to go stale")
        assert await f(1) == "first"  # served stale; the refresh runs in the background
        await _until(lambda: gates, "the refresh to start")
        for _ in range(3):
            gc.collect()
        gate = gates[0]()
        assert gate is not None, "the refresh task was garbage-collected mid-flight"
        gate.set_result(None)
        del gate
        await _until(lambda: getattr(f.cached_entry(1), "value", None) == "second", "the store")

    asyncio.run(main())
    assert calls == [1, 1]
