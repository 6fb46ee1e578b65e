"""The caching policy of one call, written once for the sync and async wrappers.

Every decision lives here: whether an entry is served fresh, served stale while a
background refresh runs (``next_time``), or recomputed; who computes a missing key and
who waits; how a failing store is failed open. The decisions are *flows*: generators
that yield :mod:`~cachier_like.steps` (call the function, run a core operation, wait)
and receive their results, so the same code runs under ``drive_sync`` and
``drive_async``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from .alerts import FailureReporter
from .controls import CallControls
from .entry import Entry
from .leases import KEEPER
from .options import Options
from .steps import Compute, CoreFailure, CoreOp, Flow, Wait
from .tagging import recorded
from .verbose import tell

logger = logging.getLogger(__name__)

Call = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
#: ``start_refresh(job, seen)``: refresh ``job.key`` in the background (one per key).
RefreshStarter = Callable[["Job", Entry], None]

_now = time.time


def fresh(entry: Entry | None, allow_none: bool, bound: float | None, now: float) -> bool:
    """Whether ``entry`` may be served: it holds a value, calculated within ``bound`` s.

    The one freshness test; the wrapper's hit fast path inlines the same expression.

    Example:
        >>> fresh(Entry(1, timestamp=100.0), False, bound=60.0, now=150.0)
        True
        >>> fresh(Entry(None, timestamp=100.0), False, bound=None, now=150.0)
        False
    """
    return (
        entry is not None
        and (entry.value is not None or allow_none)
        and (bound is None or now - entry.timestamp <= bound)
    )


def landed(latest: Entry | None, seen: Entry | None, allow_none: bool) -> bool:
    """Whether ``latest`` is a value stored after the caller saw ``seen`` (or nothing)."""
    if latest is None or (latest.value is None and not allow_none):
        return False
    return seen is None or latest.timestamp != seen.timestamp


@dataclass(slots=True)
class Job:
    """One call's work: which function, which key, under which options."""

    reporter: FailureReporter
    opts: Options
    key: Hashable
    call: Call
    allow_none: bool
    verbose: bool = False  #: ``cachier__verbose``: say what happens on stdout
    #: The call's tags (``tags=``), and the versions the store held for them when this
    #: call read them (None: not read yet); the value computed is recorded under those.
    tags: tuple[str, ...] = ()
    tag_versions: tuple[int, ...] | None = None

    def say(self, what: str) -> None:
        """Tell a verbose caller what happened (one line on stdout); else nothing."""
        if self.verbose:
            tell(self.reporter.name, what, self.key)

    def compute(self) -> Compute:
        """The step that calls the user's function."""
        func, args, kwargs = self.call
        return Compute(func, args, kwargs)

    def current(self, entry: Entry | None) -> bool:
        """Whether ``entry`` was computed under the tag versions this call read (an
        untagged call takes any entry): an entry behind them was invalidated."""
        if not self.tags:
            return True
        versions = self.tag_versions
        return (
            entry is not None
            and versions is not None
            and entry.tags == recorded(self.tags, versions)
        )

    def stamped(self, value: Any) -> Entry:
        """The entry to store for ``value``: now, under the tag versions read before."""
        versions = self.tag_versions
        tags = recorded(self.tags, versions) if self.tags and versions is not None else ()
        return Entry(value, time.time(), tags)

    def report(self, operation: str, failure: CoreFailure) -> None:
        """Log (or raise, with ``raise_on_error``) a failed core operation."""
        self.reporter.report(operation, failure.error, self.opts.raise_on_error)


def call_flow(
    job: Job,
    controls: CallControls,
    entry: Entry | None,
    have_entry: bool,
    start_refresh: RefreshStarter,
) -> Flow:
    """Read (unless already read), then serve, serve stale and refresh, or compute.

    ``max_age`` tightens ``stale_after`` for this call only; with ``next_time`` an entry
    stale by either bound is served and refreshed in the background, as in cachier.
    """
    opts = job.opts
    if not have_entry:
        try:
            entry = yield from read(job)
        except CoreFailure as failure:
            job.report("read", failure)
            return (yield job.compute())
    max_age = controls.max_age
    bound = opts.stale_after
    if max_age is not None:
        bound = max_age if bound is None else min(bound, max_age)
    if fresh(entry, job.allow_none, bound, _now()) and job.current(entry):
        assert entry is not None
        if job.verbose:  # checked here: a hit pays no call for it
            job.say("cache hit")
        return entry.value
    # Stale by age or by an invalidated tag: with next_time, served while refreshing.
    if opts.next_time and fresh(entry, job.allow_none, None, 0.0):  # stale, holds a value
        assert entry is not None
        job.say("stale entry served; refreshing in the background")
        start_refresh(job, entry)
        return entry.value
    job.say("stale entry; calculating" if entry is not None else "cache miss; calculating")
    return (yield from miss_flow(job, entry))


def read(job: Job) -> Flow:
    """Read the call's entry; a tagged call reads its tags' versions in the same trip."""
    core = job.opts.core
    if not job.tags:
        return (yield CoreOp(core, "get", (job.key,)))
    entry, job.tag_versions = yield CoreOp(core, "get_tagged", (job.key, job.tags))
    return entry


def store(job: Job, value: Any) -> Flow:
    """Store ``value`` unless it is a disallowed None; a failure is reported, not raised."""
    if value is None and not job.allow_none:
        return
    try:
        stored = yield CoreOp(job.opts.core, "set", (job.key, job.stamped(value)))
    except CoreFailure as failure:
        job.report("store", failure)
        return
    if not stored:
        logger.debug("%s: result not cached: larger than entry_size_limit", job.reporter.name)
        job.say("result not cached: larger than entry_size_limit")


def compute_and_store(job: Job) -> Flow:
    """Call the function and store its result (``refresh`` and timed-out waiters).

    A tagged call's versions are read before computing, if not yet: a tag invalidated
    while the function runs then leaves the stored value stale, never current.
    """
    if job.tags and job.tag_versions is None:
        try:
            job.tag_versions = yield CoreOp(job.opts.core, "tag_versions", (job.tags,))
        except CoreFailure as failure:
            job.report("read", failure)
            return (yield job.compute())  # no versions to record it under: not stored
    value = yield job.compute()
    yield from store(job, value)
    return value


def hold_claim(job: Job) -> int | None:
    """Keep a won claim alive while computing, on cores whose claims are leases."""
    core = job.opts.core
    return KEEPER.hold(core, job.key, job.opts.lease) if core.leases else None


def release_claim(job: Job, lease: int | None) -> Flow:
    if lease is not None:
        KEEPER.drop(lease)
    try:
        yield CoreOp(job.opts.core, "release", (job.key,))
    except CoreFailure as failure:
        job.report("release", failure)


def _recheck(job: Job) -> Flow:
    """Read the entry again after winning a claim (it may have landed meanwhile)."""
    try:
        return (yield from read(job))
    except CoreFailure:
        return None  # re-checking is an optimisation; compute regardless


def miss_flow(job: Job, seen: Entry | None) -> Flow:
    """Missing or stale: claim and compute, or wait for whoever holds the claim."""
    core, opts = job.opts.core, job.opts
    deadline = None if opts.wait_timeout is None else time.monotonic() + opts.wait_timeout
    while True:
        try:
            claimed = yield CoreOp(core, "claim", (job.key, opts.lease))
        except CoreFailure as failure:
            job.report("claim", failure)
            return (yield job.compute())
        if claimed:
            lease = hold_claim(job)
            try:
                latest = yield from _recheck(job)
                if landed(latest, seen, job.allow_none) and job.current(latest):
                    assert latest is not None
                    job.say("another caller stored the value meanwhile")
                    return latest.value  # stored while we were claiming
                return (yield from compute_and_store(job))
            finally:
                yield from release_claim(job, lease)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            if job.verbose:
                job.say("waited past wait_for_calc_timeout; calculating")
            else:
                logger.info("%s: waited past wait_for_calc_timeout; computing", job.reporter.name)
            return (yield from compute_and_store(job))
        job.say("another caller is calculating; waiting")
        try:
            latest = yield Wait(core, job.key, remaining)
        except CoreFailure as failure:
            job.report("wait", failure)
            return (yield job.compute())
        if landed(latest, seen, job.allow_none) and job.current(latest):
            assert latest is not None
            job.say("got the value another caller calculated")
            return latest.value
        # The claim ended with no new value (the calculation failed or its lease
        # lapsed), or the timeout passed: go round and try to take over.


def background_refresh_flow(job: Job, seen: Entry) -> Flow:
    """``next_time``: refresh a stale entry unless another caller already is."""
    try:
        claimed = yield CoreOp(job.opts.core, "claim", (job.key, job.opts.lease))
    except CoreFailure as failure:
        job.report("claim", failure)
        return
    if not claimed:
        return
    lease = hold_claim(job)
    try:
        latest = yield from _recheck(job)
        if not (landed(latest, seen, job.allow_none) and job.current(latest)):
            yield from compute_and_store(job)
    finally:
        yield from release_claim(job, lease)
