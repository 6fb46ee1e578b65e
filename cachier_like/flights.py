"""Single flight for ``async def`` functions: one computation per cold key and event loop.

Concurrent awaits of one key in one loop share one task: the first starts it, the others
join it, and every joiner gets its outcome — the value, or the same exception (which is
not cached), as async-lru and Go's singleflight do, so a failing function is not run
again once per joiner. The task is shielded: cancelling one joiner never cancels it for
the others; when every joiner has gone, it is cancelled (its flow then releases its
claim) and the key is free for the next caller at once.

Threads do not join flights: a thread that finds the key claimed waits on the core's
claim, as a caller in another process does, and takes over if the calculation fails.
A thread blocked in a wait cannot be handed another thread's exception without a
second channel beside the store's, and the claim protocol already gives every kind of
caller the value.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import weakref
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

__all__ = ["joined", "share"]


class _Flight:
    """One computation in progress, and the futures of the awaits that share it."""

    __slots__ = ("task", "waiters")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.waiters: list[asyncio.Future[Any]] = []

    def joined(self) -> int:
        return sum(not waiter.done() for waiter in self.waiters)


# loop -> {(core, key): flight}; a loop that is closed and dropped takes its table along.
_tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Flight]] = (
    weakref.WeakKeyDictionary()
)
#: Python 3.12+ starts a task eagerly: a computation that never suspends (a memory-core
#: miss of a function that does not await) ends before ``create_task`` returns.
_EAGER = sys.version_info >= (3, 12)


def _forget(table: dict[Hashable, _Flight], name: Hashable, flight: _Flight) -> None:
    if table.get(name) is flight:
        del table[name]


async def _lead(
    table: dict[Hashable, _Flight],
    name: Hashable,
    flight: _Flight,
    start: Callable[[], Coroutine[Any, Any, Any]],
) -> Any:
    """Run the computation; hand its outcome to every await still sharing it.

    The outcome goes to each joiner's own future, set from inside this task: that wakes
    the joiners in the loop's next turn (a shield around the task would take one more).
    """
    try:
        result = await start()
    except BaseException as exc:
        _forget(table, name, flight)
        for waiter in flight.waiters:
            if not waiter.done():
                if isinstance(exc, asyncio.CancelledError):
                    waiter.cancel()
                else:
                    waiter.set_exception(exc)
        raise
    _forget(table, name, flight)
    for waiter in flight.waiters:
        if not waiter.done():
            waiter.set_result(result)
    return result


def _retrieved(task: asyncio.Task[Any]) -> None:
    # The joiners hold the outcome; the task's own copy must not be reported as
    # "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _retrieved_waiter(waiter: asyncio.Future[Any]) -> None:
    # A joiner cancelled while its future got an exception never reads it.
    if not waiter.cancelled():
        waiter.exception()


async def _settled(task: asyncio.Task[Any]) -> None:
    """Wait for ``task`` to end, through any further cancellation of this caller."""
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((task,))


def _start(
    loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]
) -> asyncio.Task[Any]:
    if _EAGER:
        return asyncio.Task(coroutine, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coroutine)


async def share(name: Hashable, start: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Await the computation of ``name`` in this loop, starting it with ``start()`` if none.

    Example:
        >>> import asyncio
        >>> runs = []
        >>> async def compute():
        ...     runs.append(1)
        ...     await asyncio.sleep(0)
        ...     return 42
        >>> async def main():
        ...     return await asyncio.gather(*(share("k", compute) for _ in range(3)))
        >>> asyncio.run(main()), len(runs)
        ([42, 42, 42], 1)
    """
    loop = asyncio.get_running_loop()
    table = _tables.get(loop)
    if table is None:
        table = _tables[loop] = {}
    flight = table.get(name)
    if flight is None:
        flight = table[name] = _Flight()
        task = flight.task = _start(loop, _lead(table, name, flight, start))
        if task.done():  # started eagerly, and finished without suspending
            return task.result()
        task.add_done_callback(_retrieved)
    assert flight.task is not None
    waiter = loop.create_future()
    waiter.add_done_callback(_retrieved_waiter)
    flight.waiters.append(waiter)
    try:
        return await waiter
    except asyncio.CancelledError:
        task = flight.task
        if not task.done() and flight.joined() == 0:
            # The last joiner left: stop the work, and let the next caller start anew
            # rather than join a computation on its way out. Its clean-up (releasing the
            # claim) ends before this caller sees its cancellation, as without a flight.
            _forget(table, name, flight)
            task.cancel()
            await _settled(task)
        raise


def joined(name: Hashable) -> int:
    """How many awaits share the computation of ``name`` in the running loop now.

    Example:
        >>> import asyncio
        >>> async def main():
        ...     return joined("k")
        >>> asyncio.run(main())
        0
    """
    table = _tables.get(asyncio.get_running_loop(), {})
    flight = table.get(name)
    return 0 if flight is None else flight.joined()
