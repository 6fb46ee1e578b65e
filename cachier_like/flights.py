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
import weakref
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

__all__ = ["joined", "share"]


class _Flight:
    __slots__ = ("joined", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.joined = 0


# loop -> {(core, key): flight}; a loop that is closed and dropped takes its table along.
_tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Flight]] = (
    weakref.WeakKeyDictionary()
)


def _forget(table: dict[Hashable, _Flight], name: Hashable, flight: _Flight) -> None:
    if table.get(name) is flight:
        del table[name]


def _retrieved(task: asyncio.Task[Any]) -> None:
    # Joiners that all left before it failed must not leave "exception never retrieved".
    if not task.cancelled():
        task.exception()


async def _settled(task: asyncio.Task[Any]) -> None:
    """Wait for ``task`` to end, through any further cancellation of this caller."""
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((task,))


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
        flight = _Flight(loop.create_task(start()))
        table[name] = flight
        flight.task.add_done_callback(lambda _task: _forget(table, name, flight))
        flight.task.add_done_callback(_retrieved)
    flight.joined += 1
    try:
        return await asyncio.shield(flight.task)
    except asyncio.CancelledError:
        if flight.joined == 1 and not flight.task.done():
            # The last joiner left: stop the work, and let the next caller start anew
            # rather than join a computation on its way out. Its clean-up (releasing the
            # claim) ends before this caller sees its cancellation, as without a flight.
            _forget(table, name, flight)
            flight.task.cancel()
            await _settled(flight.task)
        raise
    finally:
        flight.joined -= 1


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
    return 0 if flight is None else flight.joined
