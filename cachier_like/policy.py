"""The caching policy of one call, written once for the sync and async wrappers.

A *flow* is a generator that yields the steps it needs (a core operation, a wait, or
the user's function) and receives their results. ``drive_sync`` runs the steps
directly; ``drive_async`` awaits the function and off-loads blocking core work to a
thread. Errors from core steps come back into the flow as :class:`CoreFailure`, so
the flow alone decides how to fail open; the user's own exceptions pass through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator, Hashable
from dataclasses import dataclass
from typing import Any

from .alerts import FailureReporter
from .entry import Entry
from .errors import ConfigurationError
from .leases import KEEPER
from .options import Options

logger = logging.getLogger("cachier_like")

COMPUTE = 0
CORE = 1
WAIT = 2

# (COMPUTE, function, (args, kwargs)) | (CORE, bound core method, args)
# | (WAIT, core, (key, timeout)): waiting differs between sync and async drivers.
Step = tuple[int, Any, tuple[Any, ...]]
Flow = Generator[Step, Any, Any]
Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class CoreFailure(Exception):  # noqa: N818 - a signal, not an error to users
    """A core operation raised; carries the original error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


def landed(latest: Entry | None, seen: Entry | None, allow_none: bool) -> bool:
    """Whether ``latest`` is a value stored after the caller saw ``seen`` (or nothing)."""
    if latest is None or (latest.value is None and not allow_none):
        return False
    return seen is None or latest.timestamp != seen.timestamp


@dataclass(frozen=True, slots=True)
class Job:
    """One call's work: which function, which key, under which options."""

    reporter: FailureReporter
    opts: Options
    key: Hashable
    call: Call
    allow_none: bool

    def compute(self) -> Step:
        """The step that calls the user's function."""
        func, args, kwargs = self.call
        return (COMPUTE, func, (args, kwargs))

    def report(self, operation: str, failure: CoreFailure) -> None:
        """Log (or raise, with ``raise_on_error``) a failed core operation."""
        self.reporter.report(operation, failure.error, self.opts.raise_on_error)


def store(job: Job, value: Any) -> Flow:
    """Store ``value`` unless it is a disallowed None; a failure is reported, not raised."""
    if value is None and not job.allow_none:
        return
    try:
        stored = yield (CORE, job.opts.core.set, (job.key, Entry(value, time.time())))
    except CoreFailure as failure:
        job.report("store", failure)
        return
    if not stored:
        logger.debug("%s: result not cached: larger than entry_size_limit", job.reporter.name)


def compute_and_store(job: Job) -> Flow:
    """Call the function and store its result (``refresh`` and timed-out waiters)."""
    value = yield job.compute()
    yield from store(job, value)
    return value


def _hold(job: Job) -> int | None:
    """Keep a won claim alive while computing, on cores whose claims are leases."""
    core = job.opts.core
    return KEEPER.hold(core, job.key, job.opts.lease) if core.leases else None


def _release(job: Job, lease: int | None) -> Flow:
    if lease is not None:
        KEEPER.drop(lease)
    try:
        yield (CORE, job.opts.core.release, (job.key,))
    except CoreFailure as failure:
        job.report("release", failure)


def _recheck(job: Job) -> Flow:
    """Read the entry again after winning a claim (it may have landed meanwhile)."""
    try:
        return (yield (CORE, job.opts.core.get, (job.key,)))
    except CoreFailure:
        return None  # re-checking is an optimisation; compute regardless


def miss_flow(job: Job, seen: Entry | None) -> Flow:
    """Missing or stale: claim and compute, or wait for whoever holds the claim."""
    core, opts = job.opts.core, job.opts
    deadline = None if opts.wait_timeout is None else time.monotonic() + opts.wait_timeout
    while True:
        try:
            claimed = yield (CORE, core.claim, (job.key, opts.lease))
        except CoreFailure as failure:
            job.report("claim", failure)
            return (yield job.compute())
        if claimed:
            lease = _hold(job)
            try:
                latest = yield from _recheck(job)
                if landed(latest, seen, job.allow_none):
                    assert latest is not None
                    return latest.value  # stored while we were claiming
                return (yield from compute_and_store(job))
            finally:
                yield from _release(job, lease)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            logger.info("%s: waited past wait_for_calc_timeout; computing", job.reporter.name)
            return (yield from compute_and_store(job))
        try:
            latest = yield (WAIT, core, (job.key, remaining))
        except CoreFailure as failure:
            job.report("wait", failure)
            return (yield job.compute())
        if landed(latest, seen, job.allow_none):
            assert latest is not None
            return latest.value
        # The claim ended with no new value (the calculation failed or its lease
        # lapsed), or the timeout passed: go round and try to take over.


def background_refresh_flow(job: Job, seen: Entry) -> Flow:
    """``next_time``: refresh a stale entry unless another caller already is."""
    try:
        claimed = yield (CORE, job.opts.core.claim, (job.key, job.opts.lease))
    except CoreFailure as failure:
        job.report("claim", failure)
        return
    if not claimed:
        return
    lease = _hold(job)
    try:
        latest = yield from _recheck(job)
        if not landed(latest, seen, job.allow_none):
            yield from compute_and_store(job)
    finally:
        yield from _release(job, lease)


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
        kind, fn, args = step
        try:
            if kind == COMPUTE:
                send = fn(*args[0], **args[1])
            elif kind == WAIT:
                send = fn.wait(*args)
            else:
                send = fn(*args)
        except ConfigurationError as exc:
            error = exc  # a mistake to fix, not a store failing: never failed open
        except Exception as exc:
            error = exc if kind == COMPUTE else CoreFailure(exc)
        except BaseException as exc:
            error = exc


async def _finish_in_thread(
    fn: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[asyncio.Future[Any], asyncio.CancelledError | None]:
    """Run ``fn(*args)`` in a thread and wait for it to end, even through cancellation.

    A thread cannot be stopped: a claim it takes after the caller was cancelled would
    leak. So the operation always finishes, and the cancellation it outlived is
    returned for the driver to deliver to the flow once the flow knows the result.
    """
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait((future,))  # never cancels the future itself
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    return future, cancelled


async def drive_async(flow: Flow, blocking: bool) -> Any:
    """Run a flow in the event loop: await the function, thread off blocking core work.

    Cancellation is safe at any point: a core operation already running finishes and
    its result reaches the flow, which goes on through its core steps until it next
    asks for the function or a wait; the cancellation is thrown in there (or raised
    once the flow ends), so its ``finally`` clauses release what it took.
    """
    send: Any = None
    error: BaseException | None = None
    pending: asyncio.CancelledError | None = None  # to throw into the flow next
    unwinding = False  # a cancellation is in the flow: what it yields now is clean-up
    while True:
        try:
            step = flow.send(send) if error is None else flow.throw(error)
        except StopIteration as stop:
            if pending is not None:
                raise pending from None
            return stop.value
        error = send = None
        kind, fn, args = step
        if kind != CORE and (pending is not None or unwinding):
            # Only the function and waits are cut short; core steps are bounded, and
            # one of them may be the release a ``finally`` needs.
            error, pending, unwinding = pending or asyncio.CancelledError(), None, True
            continue
        try:
            if kind == COMPUTE:
                send = await fn(*args[0], **args[1])
            elif kind == WAIT:
                send = await fn.wait_async(*args)
            elif blocking:
                future, cancelled = await _finish_in_thread(fn, args)
                if not unwinding:  # during clean-up, the first cancellation is enough
                    pending = pending or cancelled
                send = future.result()
            else:
                send = fn(*args)
        except ConfigurationError as exc:
            error = exc  # a mistake to fix, not a store failing: never failed open
        except Exception as exc:
            error = exc if kind == COMPUTE else CoreFailure(exc)
        except BaseException as exc:
            error = exc
            unwinding = unwinding or isinstance(exc, asyncio.CancelledError)
