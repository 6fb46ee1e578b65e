"""Cancelling an async call at any point releases whatever it took, on every core.

The sweep cancels one cold call at 150 points: after 0 to 99 turns of the event loop,
then at 50 moments spread over the time an uncancelled call takes. The loop's
executor has one worker, so a core operation still running in a thread when the call
is cancelled has finished once a no-op submitted after it has run; only then is the
claim checked. A claim left behind would also stall the next call on the key, which
the last step of each test makes (with a deadline).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cachier_like import cached
from cachier_like.keys import KeyMaker
from cachier_like.leases import KEEPER
from tests.backends.types import CoreOptions

SPINS = 100
MOMENTS = 50
DEADLINE_S = 10.0


async def _executor_idle() -> None:
    # One worker: this runs after every operation submitted before it.
    await asyncio.get_running_loop().run_in_executor(None, lambda: None)


async def _cancel_at(call: asyncio.Task[Any], spins: int, delay_s: float) -> bool:
    """Cancel ``call`` after ``spins`` loop turns and ``delay_s``; whether it was cut short."""
    for _ in range(spins):
        await asyncio.sleep(0)
    if delay_s:
        await asyncio.sleep(delay_s)
    call.cancel()
    try:
        await call
    except asyncio.CancelledError:
        return True
    return False


@pytest.mark.asyncio
async def test_a_cancelled_call_leaves_no_claim_at_any_point(core_options: CoreOptions) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    computed: list[int] = []

    @cached(**core_options(wait_for_calc_timeout=DEADLINE_S))
    async def f(x: int) -> int:
        await asyncio.sleep(0.0005)
        # At least SPINS loop turns, so every spin point lands before the call is done,
        # however fast the machine.
        for _ in range(SPINS):
            await asyncio.sleep(0)
        computed.append(x)
        return x * 2

    core, key = f.core, _key(f, 1)
    start = time.perf_counter()
    assert await f(1) == 2
    duration = time.perf_counter() - start
    points = [(spins, 0.0) for spins in range(SPINS)]
    points += [(0, duration * (i + 1) / MOMENTS) for i in range(MOMENTS)]
    leaked, cut_short = [], 0
    for spins, delay in points:
        f.clear_cache()
        cut_short += await _cancel_at(asyncio.ensure_future(f(1)), spins, delay)
        await _executor_idle()
        if core.is_claimed(key) or KEEPER.held():
            leaked.append((spins, round(delay * 1e6)))
            f.clear_being_calculated()
    assert not leaked, f"claims left by calls cancelled at (spins, µs): {leaked}"
    assert cut_short >= SPINS  # the sweep really cancelled calls
    f.clear_cache()
    computed.clear()
    assert await asyncio.wait_for(f(1), DEADLINE_S) == 2
    assert computed == [1]


def _key(f: Any, x: int) -> Any:
    """The key ``f(x)`` is stored under, made as the decorator makes it."""
    return KeyMaker(f.__wrapped__, stable=f.core.stable_keys).key((x,), {})
