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
from typing import Any

from .alerts import FailureReporter
from .entry import Entry
from .options import Options

logger = logging.getLogger("cachier_like")

COMPUTE = 0
CORE = 1
WAIT = 2

Step = tuple[int, Callable[..., Any], tuple[Any, ...]]
Flow = Generator[Step, Any, Any]
Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class CoreFailure(Exception):
    """A core operation raised; carries the original error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


def _compute(call: Call) -> Step:
    func, args, kwargs = call
    return (COMPUTE, func, (args, kwargs))


def landed(latest: Entry | None, seen: Entry | None, allow_none: bool) -> bool:
    """Whether ``latest`` is a value stored after the caller saw ``seen`` (or nothing)."""
    if latest is None or (latest.value is None and not allow_none):
        return False
    return seen is None or latest.timestamp != seen.timestamp


def store(
    reporter: FailureReporter, opts: Options, key: Hashable, value: Any, allow_none: bool
) -> Flow:
    """Store ``value`` unless it is a disallowed None; a failure is reported, not raised."""
    if value is None and not allow_none:
        return
    try:
        stored = yield (CORE, opts.core.set, (key, Entry(value, time.time())))
    except CoreFailure as failure:
        reporter.report("store", failure.error, opts.raise_on_error)
        return
    if not stored:
        logger.debug("%s: result not cached: larger than entry_size_limit", reporter.name)


def compute_and_store(
    reporter: FailureReporter, opts: Options, key: Hashable, call: Call, allow_none: bool
) -> Flow:
    """Call the function and store its result (``refresh`` and timed-out waiters)."""
    value = yield _compute(call)
    yield from store(reporter, opts, key, value, allow_none)
    return value


def miss_flow(
    reporter: FailureReporter,
    opts: Options,
    key: Hashable,
    call: Call,
    seen: Entry | None,
    allow_none: bool,
) -> Flow:
    """Missing or stale: claim and compute, or wait for whoever holds the claim."""
    core = opts.core
    deadline = None if opts.wait_timeout is None else time.monotonic() + opts.wait_timeout
    while True:
        try:
            claimed = yield (CORE, core.claim, (key, opts.lease))
        except CoreFailure as failure:
            reporter.report("claim", failure.error, opts.raise_on_error)
            return (yield _compute(call))
        if claimed:
            try:
                try:
                    latest = yield (CORE, core.get, (key,))
                except CoreFailure:
                    latest = None  # re-checking is an optimisation; compute regardless
                if landed(latest, seen, allow_none):
                    assert latest is not None
                    return latest.value  # stored while we were claiming
                return (yield from compute_and_store(reporter, opts, key, call, allow_none))
            finally:
                try:
                    yield (CORE, core.release, (key,))
                except CoreFailure as failure:
                    reporter.report("release", failure.error, opts.raise_on_error)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            logger.info("%s: waited past wait_for_calc_timeout; computing", reporter.name)
            return (yield from compute_and_store(reporter, opts, key, call, allow_none))
        try:
            latest = yield (WAIT, core.wait, (key, remaining))
        except CoreFailure as failure:
            reporter.report("wait", failure.error, opts.raise_on_error)
            return (yield _compute(call))
        if landed(latest, seen, allow_none):
            assert latest is not None
            return latest.value
        # The claim ended with no new value (the calculation failed or its lease
        # lapsed), or the timeout passed: go round and try to take over.


def background_refresh_flow(
    reporter: FailureReporter,
    opts: Options,
    key: Hashable,
    call: Call,
    seen: Entry,
    allow_none: bool,
) -> Flow:
    """``next_time``: refresh a stale entry unless another caller already is."""
    core = opts.core
    try:
        claimed = yield (CORE, core.claim, (key, opts.lease))
    except CoreFailure as failure:
        reporter.report("claim", failure.error, opts.raise_on_error)
        return
    if not claimed:
        return
    try:
        try:
            latest = yield (CORE, core.get, (key,))
        except CoreFailure:
            latest = None
        if not landed(latest, seen, allow_none):
            yield from compute_and_store(reporter, opts, key, call, allow_none)
    finally:
        try:
            yield (CORE, core.release, (key,))
        except CoreFailure as failure:
            reporter.report("release", failure.error, opts.raise_on_error)


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
            send = fn(*args[0], **args[1]) if kind == COMPUTE else fn(*args)
        except Exception as exc:
            error = exc if kind == COMPUTE else CoreFailure(exc)
        except BaseException as exc:
            error = exc


async def drive_async(flow: Flow, blocking: bool) -> Any:
    """Run a flow in the event loop: await the function, thread off blocking core work."""
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
                send = await fn(*args[0], **args[1])
            elif kind == WAIT or blocking:
                send = await asyncio.to_thread(fn, *args)
            else:
                send = fn(*args)
        except Exception as exc:
            error = exc if kind == COMPUTE else CoreFailure(exc)
        except BaseException as exc:
            error = exc
