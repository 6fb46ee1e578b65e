"""``get_many``: many calls of one cached function with one batched read and one write.

The flow (:func:`many_flow`, a generator of :mod:`~cachier_like.steps` like the
single-call flows, so it runs sync and async alike):

1. one batched read of every distinct key (``Core.get_many``; a tagged function also
   reads its tags' versions, once for all calls);
2. fresh entries are served; stale ones too while refreshing, with ``next_time``;
3. the missing keys are claimed one by one in sorted key order (two batches that
   overlap take their common keys in the same order, so neither waits on the other
   while holding what the other needs);
4. the won keys are read once more (another caller may have stored them meanwhile),
   then computed: by the function's batch function with all of them at once when one
   is declared (:meth:`BatchMethods.batch_function`), else one call each;
5. one batched write (``Core.set_many``), then every claim is released;
6. a key claimed by another caller is waited for as a single call would (its own flow).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .entry import Entry
from .options import Options
from .policy import Job, fresh, hold_claim, landed, miss_flow, release_claim
from .steps import Compute, CoreFailure, CoreOp, Flow, drive_async, drive_sync

__all__ = ["Args", "BatchMethods", "many_flow"]


class Args:
    """One call's arguments for :meth:`~BatchMethods.get_many` when it needs keywords.

    Example:
        >>> Args(1, 2, scale=3)
        Args(1, 2, scale=3)
    """

    __slots__ = ("args", "kwargs")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        shown = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Args({', '.join(shown)})"


def split_call(call: object) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` of one item of ``get_many``: a tuple of positional arguments,
    or an :class:`Args`; anything else is a ``TypeError`` saying how to write it."""
    if type(call) is tuple:
        return call, {}
    if isinstance(call, Args):
        return call.args, call.kwargs
    raise TypeError(
        f"get_many takes each call as a tuple of its positional arguments, or as "
        f"Args(*args, **kwargs) for keywords, not {type(call).__name__}: write ({call!r},)"
    )


def many_flow(
    jobs: list[Job],
    batch: Callable[..., Any] | None,
    start_refresh: Callable[[Job, Entry], None],
) -> Flow:
    """Serve every job (one per distinct key, in the caller's order) as described above;
    return their values in the same order."""
    opts = jobs[0].opts
    core = opts.core
    keys = [job.key for job in jobs]
    try:
        entries: list[Entry | None] = yield CoreOp(core, "get_many", (keys,))
        yield from _read_versions(jobs)
    except CoreFailure as failure:
        jobs[0].report("read", failure)
        return (yield from _compute_all(jobs, batch))
    values: dict[int, Any] = {}
    missing: list[int] = []
    now = time.time()
    for index, (job, entry) in enumerate(zip(jobs, entries, strict=True)):
        if fresh(entry, job.allow_none, opts.stale_after, now) and job.current(entry):
            assert entry is not None
            values[index] = entry.value
        elif opts.next_time and fresh(entry, job.allow_none, None, 0.0):
            assert entry is not None
            start_refresh(job, entry)
            values[index] = entry.value
        else:
            missing.append(index)
    won: list[int] = []
    lost: list[int] = []
    leases: dict[int, int | None] = {}  # a won claim's renewal, on cores with leases
    try:
        for index in sorted(missing, key=lambda i: str(keys[i])):
            claimed = yield CoreOp(core, "claim", (keys[index], opts.lease))
            if claimed:
                won.append(index)
                leases[index] = hold_claim(jobs[index])
            else:
                lost.append(index)
        if won:
            yield from _serve_won(jobs, entries, won, batch, values)
    except CoreFailure as failure:
        jobs[0].report("claim", failure)
        rest = [i for i in missing if i not in values and i not in lost]
        computed = yield from _compute_all([jobs[i] for i in rest], batch)
        for index, value in zip(rest, computed, strict=True):
            values[index] = value
    finally:
        for index in won:
            yield from release_claim(jobs[index], leases[index])
    for index in lost:  # another caller is computing it: wait as one call would
        values[index] = yield from miss_flow(jobs[index], entries[index])
    return [values[index] for index in range(len(jobs))]


def _read_versions(jobs: list[Job]) -> Flow:
    """Read the versions of every tag the calls carry, once, into each tagged job."""
    names = list(dict.fromkeys(tag for job in jobs for tag in job.tags))
    if not names:
        return
    versions = yield CoreOp(jobs[0].opts.core, "tag_versions", (names,))
    by_name = dict(zip(names, versions, strict=True))
    for job in jobs:
        if job.tags:
            job.tag_versions = tuple(by_name[tag] for tag in job.tags)


def _serve_won(
    jobs: list[Job],
    seen: list[Entry | None],
    won: list[int],
    batch: Callable[..., Any] | None,
    values: dict[int, Any],
) -> Flow:
    """The claimed keys: read once more, compute what is still missing, store it all."""
    core = jobs[0].opts.core
    try:
        latest: list[Entry | None] = yield CoreOp(core, "get_many", ([jobs[i].key for i in won],))
        yield from _read_versions([jobs[i] for i in won])
    except CoreFailure:
        latest = [None] * len(won)  # re-checking is an optimisation; compute regardless
    todo = []
    for index, entry in zip(won, latest, strict=True):
        job = jobs[index]
        if landed(entry, seen[index], job.allow_none) and job.current(entry):
            assert entry is not None
            values[index] = entry.value
        else:
            todo.append(index)
    computed = yield from _compute_all([jobs[i] for i in todo], batch)
    items = []
    for index, value in zip(todo, computed, strict=True):
        values[index] = value
        job = jobs[index]
        if value is not None or job.allow_none:
            items.append((job.key, job.stamped(value)))
    if items:
        try:
            yield CoreOp(core, "set_many", (items,))
        except CoreFailure as failure:
            jobs[0].report("store", failure)


def _compute_all(jobs: list[Job], batch: Callable[..., Any] | None) -> Flow:
    """The values of ``jobs``: one call of the batch function, or one call each."""
    if not jobs:
        return []
    if batch is None:
        results = []
        for job in jobs:
            results.append((yield job.compute()))
        return results
    calls = [_as_item(job) for job in jobs]
    results = yield Compute(batch, (calls,), {})
    results = list(results)
    if len(results) != len(calls):
        raise ValueError(
            f"{jobs[0].reporter.name}: the batch function returned {len(results)} values "
            f"for {len(calls)} calls; it must return one per call, in order"
        )
    return results


def _as_item(job: Job) -> tuple[Any, ...] | Args:
    _, args, kwargs = job.call
    return Args(*args, **kwargs) if kwargs else args


class BatchMethods(abc.ABC):
    """``get_many``, ``aget_many`` and ``batch_function``, mixed into cached functions."""

    _func: Callable[..., Any]
    _batch: Callable[..., Any] | None = None

    @abc.abstractmethod
    def _current(self) -> Options:
        """The options in force now."""

    @abc.abstractmethod
    def _many_jobs(
        self, opts: Options, calls: Sequence[object]
    ) -> tuple[list[Job], dict[int, int], dict[int, tuple[tuple[Any, ...], dict[str, Any]]]]:
        """Jobs per distinct key, each call's job index, and the calls with no key."""

    @abc.abstractmethod
    def _start_refresh(self, job: Job, seen: Entry) -> None:
        """Refresh ``job.key`` in the background."""

    def batch_function(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Declare ``func`` the way to compute many calls at once, for :meth:`get_many`.

        ``func`` receives the missing calls as a list (each a tuple of positional
        arguments, or an :class:`Args` when it had keywords) and returns one value per
        call, in order. Usable as a decorator; returns ``func``.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def square(x: int) -> int:
            ...     return x * x
            >>> @square.batch_function
            ... def squares(calls: list[tuple[int]]) -> list[int]:
            ...     return [x * x for (x,) in calls]
            >>> square.get_many([(2,), (3,)])
            [4, 9]
        """
        if not callable(func):
            raise TypeError(f"batch_function needs a callable, not {type(func).__name__}")
        self._batch = func
        return func

    def get_many(self, calls: Iterable[object]) -> list[Any]:
        """The results of many calls, in order, as if each were called (see the module).

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def double(x: int) -> int:
            ...     return 2 * x
            >>> double(1), double.get_many([(1,), (2,), (1,)])
            (2, [2, 4, 2])
        """
        calls = list(calls)
        opts = self._current()
        if not calls:
            return []
        if not opts.enabled:
            return [self._func(*args, **kwargs) for args, kwargs in map(split_call, calls)]
        jobs, where, unkeyed = self._many_jobs(opts, calls)
        values = drive_sync(many_flow(jobs, self._batch, self._start_refresh)) if jobs else []
        return [
            self._func(*unkeyed[i][0], **unkeyed[i][1]) if i in unkeyed else values[where[i]]
            for i in range(len(calls))
        ]

    async def aget_many(self, calls: Iterable[object]) -> list[Any]:
        """:meth:`get_many` for ``async def`` functions (the batch function is async too).

        Example:
            >>> import asyncio
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... async def double(x: int) -> int:
            ...     return 2 * x
            >>> asyncio.run(double.aget_many([(1,), (2,)]))
            [2, 4]
        """
        calls = list(calls)
        opts = self._current()
        if not calls:
            return []
        if not opts.enabled:
            return [await self._func(*a, **k) for a, k in map(split_call, calls)]
        jobs, where, unkeyed = self._many_jobs(opts, calls)
        flow = many_flow(jobs, self._batch, self._start_refresh)
        values = await drive_async(flow, opts.core) if jobs else []
        results = []
        for i in range(len(calls)):
            if i in unkeyed:
                results.append(await self._func(*unkeyed[i][0], **unkeyed[i][1]))
            else:
                results.append(values[where[i]])
        return results
