"""The steps a flow asks for, and the sync and async drivers that run them.

A *flow* (see :mod:`cachier_like.policy`) is a generator that yields steps and receives
their results, so the policy is written once for both worlds:

* :class:`Compute` — call the user's function;
* :class:`CoreOp` — one core operation (``core.get``, ``core.claim``, ...);
* :class:`Wait` — wait for another caller's claim on a key to end.

``drive_sync`` runs the steps in the calling thread; ``drive_async`` awaits the function,
awaits a core's native coroutines (or runs a blocking core's operations in a thread) and
waits through ``Core.wait_async``. An
error from a core step comes back into the flow as :class:`CoreFailure`, so the flow
alone decides how to fail open; the user's own exceptions, and a
``ConfigurationError`` (a mistake to fix), pass straight through.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .cores.base import Core

T = TypeVar("T")

__all__ = [
    "Compute",
    "CoreFailure",
    "CoreOp",
    "Flow",
    "Step",
    "Wait",
    "calling_task",
    "drive_async",
    "drive_sync",
]

#: In a task drive_async starts for a core step: the task driving the flow.
_DRIVER: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar(
    "cachier_like_driver", default=None
)


def calling_task() -> asyncio.Task[Any] | None:
    """The task whose flow asked for the core operation running now.

    ``drive_async`` runs a native core step (other than a read) in a task of its own,
    so it finishes through cancellation; a core that keys what a caller holds by task
    (the Redis core's claim snapshots) asks this rather than ``asyncio.current_task()``.

    Example:
        >>> import asyncio
        >>> async def main() -> bool:
        ...     return calling_task() is asyncio.current_task()
        >>> asyncio.run(main())
        True
    """
    return _DRIVER.get() or asyncio.current_task()


# Plain slotted classes: a miss yields about five steps, and a frozen dataclass costs
# three times as much to build.
@dataclass(slots=True)
class Compute:
    """Call the user's function with these arguments."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(slots=True)
class CoreOp:
    """Run one core operation, ``core.<name>(*args)``; its error comes back as CoreFailure.

    Named rather than bound, so the async driver can run the core's native coroutine
    (``core.a<name>``) instead when the core has one (``Core.native_async``).
    """

    core: Core
    name: str  # "get", "set", "claim", "release", ... (the keys of _NATIVE)
    args: tuple[Any, ...]


@dataclass(slots=True)
class Wait:
    """Wait until the claim on ``key`` ends (or ``timeout_s`` passes); receive the entry."""

    core: Core
    key: Hashable
    timeout_s: float | None


Step = Compute | CoreOp | Wait
Flow = Generator[Step, Any, Any]


class CoreFailure(Exception):  # noqa: N818 - a signal, not an error to users
    """A core operation raised; carries the original error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


def _failure(step: Step, error: Exception) -> Exception:
    """What a step's error becomes inside the flow."""
    if type(step) is Compute or isinstance(error, ConfigurationError):
        return error  # the user's own error, or a mistake to fix: never failed open
    return CoreFailure(error)


def drive_sync(flow: Flow) -> Any:
    """Run a flow's steps in this thread; return its result or raise its error."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(send) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        error = send = None
        try:
            if type(step) is CoreOp:
                send = getattr(step.core, step.name)(*step.args)
            elif type(step) is Compute:
                send = step.func(*step.args, **step.kwargs)
            else:
                assert type(step) is Wait
                send = step.core.wait(step.key, step.timeout_s)
        except Exception as exc:
            error = _failure(step, exc)
        except BaseException as exc:
            error = exc


# How drive_async runs a core's operations.
_INLINE, _THREAD, _NATIVE_MODE = 0, 1, 2
#: The native coroutine of each core operation a flow names.
_NATIVE = {
    "get": "aget",
    "set": "aset",
    "claim": "aclaim",
    "release": "arelease",
    "get_tagged": "aget_tagged",
    "tag_versions": "atag_versions",
    "get_many": "aget_many",
    "set_many": "aset_many",
    "delete": "adelete",
    "bump_tags": "abump_tags",
}
#: The operations that only read: awaited in the caller's task (nothing to clean up).
_READS = frozenset({"get", "get_tagged", "tag_versions", "get_many"})


async def _finish(
    future: asyncio.Future[Any],
) -> tuple[asyncio.Future[Any], asyncio.CancelledError | None]:
    """Wait for ``future`` to end, even through cancellation.

    An operation that takes something (a claim, a stored entry) must not be abandoned
    half-way: a claim it takes after the caller was cancelled would leak. So it always
    finishes, and the cancellation it outlived is returned for the driver to deliver to
    the flow once the flow knows the result.
    """
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait((future,))  # never cancels the future itself
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    return future, cancelled


async def _run_op(step: CoreOp, mode: int) -> tuple[Any, asyncio.CancelledError | None]:
    """Run one core step off the flow: natively or in a thread, through cancellation."""
    if mode == _NATIVE_MODE:
        coroutine = getattr(step.core, _NATIVE[step.name])(*step.args)
        if step.name in _READS or step.core.cancel_safe_async:
            # A read takes nothing, and a cancel-safe core cleans up after itself: awaited
            # here, a task of its own would cost two loop turns.
            return await coroutine, None
        caller = asyncio.current_task()
        future: asyncio.Future[Any] = asyncio.ensure_future(_on_behalf(caller, coroutine))
    else:
        op = getattr(step.core, step.name)
        future = asyncio.get_running_loop().run_in_executor(None, op, *step.args)
    done, cancelled = await _finish(future)
    return done.result(), cancelled


async def _on_behalf(caller: asyncio.Task[Any] | None, coroutine: Coroutine[Any, Any, T]) -> T:
    _DRIVER.set(caller)  # in this task's own copy of the context: see calling_task()
    return await coroutine


def _mode(core: Core) -> int:
    if core.native_async:
        return _NATIVE_MODE
    return _THREAD if core.blocking else _INLINE


async def drive_async(flow: Flow, core: Core) -> Any:
    """Run a flow in the event loop: await the function and ``core``'s native operations.

    A core with native coroutines (``core.native_async``) never leaves the loop; a
    blocking core without them runs each operation in a worker thread; the memory core
    runs inline.

    Cancellation is safe at any point: a core operation already running finishes and
    its result reaches the flow, which goes on through its core steps until it next
    asks for the function or a wait; the cancellation is thrown in there (or raised
    once the flow ends), so its ``finally`` clauses release what it took.
    """
    send: Any = None
    error: BaseException | None = None
    pending: asyncio.CancelledError | None = None  # to throw into the flow next
    unwinding = False  # a cancellation is in the flow: what it yields now is clean-up
    mode = _mode(core)
    while True:
        try:
            step = flow.send(send) if error is None else flow.throw(error)
        except StopIteration as stop:
            if pending is not None:
                raise pending from None
            return stop.value
        error = send = None
        if type(step) is not CoreOp and (pending is not None or unwinding):
            # Only the function and waits are cut short; core steps are bounded, and
            # one of them may be the release a ``finally`` needs.
            error, pending, unwinding = pending or asyncio.CancelledError(), None, True
            continue
        try:
            if type(step) is CoreOp:
                if mode == _INLINE:
                    send = getattr(step.core, step.name)(*step.args)
                else:
                    send, cancelled = await _run_op(step, mode)
                    if not unwinding:  # during clean-up, the first cancellation is enough
                        pending = pending or cancelled
            elif type(step) is Compute:
                send = await step.func(*step.args, **step.kwargs)
            else:
                assert type(step) is Wait
                send = await step.core.wait_async(step.key, step.timeout_s)
        except Exception as exc:
            error = _failure(step, exc)
        except BaseException as exc:
            error = exc
            unwinding = unwinding or isinstance(exc, asyncio.CancelledError)
