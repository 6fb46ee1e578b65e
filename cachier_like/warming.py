"""Warming: compute ahead of time what a set of calls would miss.

``f.warm(calls, workers=N)`` reads each distinct call's entry and computes those that
are missing, stale by age or behind their tags, each under the key's claim as a call
would (so processes warming the same keys compute each once, the others wait), with
``N`` threads. It returns how many it computed, found fresh, and failed on (a call
whose function raised, or whose arguments give no key). On a terminal a progress
line is drawn on stderr; elsewhere it is quiet. ``await f.awarm(calls, concurrency=N)``
is the ``async def`` twin.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .entry import Entry
from .options import Options
from .policy import Job, fresh, miss_flow, read
from .steps import Flow, drive_async, drive_sync

__all__ = ["WarmReport", "WarmingMethods"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmReport:
    """What :meth:`WarmingMethods.warm` did, one count per distinct call.

    Example:
        >>> WarmReport(computed=2, fresh=1, failed=0).total
        3
    """

    computed: int
    fresh: int
    failed: int

    @property
    def total(self) -> int:
        """Every distinct call warmed (or tried)."""
        return self.computed + self.fresh + self.failed


def _warm_flow(job: Job) -> Flow:
    """True when ``job`` was computed (or stored meanwhile by another caller), False
    when its entry was fresh; the function's error propagates."""
    entry: Entry | None = yield from read(job)
    opts = job.opts
    if fresh(entry, job.allow_none, opts.stale_after, time.time()) and job.current(entry):
        return False
    yield from miss_flow(job, entry)
    return True


class _Progress:
    """``warming <function>: done/total`` on a terminal's stderr; nothing elsewhere."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total, self.done = name, total, 0
        self.shown = total > 0 and sys.stderr.isatty()
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self.done += 1
            if self.shown:
                sys.stderr.write(f"\rwarming {self.name}: {self.done}/{self.total}")
                if self.done == self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()


class WarmingMethods(abc.ABC):
    """``warm`` and ``awarm``, mixed into cached functions."""

    namespace: str

    @abc.abstractmethod
    def _current(self) -> Options:
        """The options in force now."""

    @abc.abstractmethod
    def _many_jobs(
        self, opts: Options, calls: Sequence[object]
    ) -> tuple[list[Job], dict[int, int], dict[int, tuple[tuple[Any, ...], dict[str, Any]]]]:
        """Jobs per distinct key, each call's job index, and the calls with no key."""

    def _warm_jobs(self, calls: Iterable[object]) -> tuple[list[Job], int] | None:
        opts = self._current()
        if not opts.enabled:
            logger.info("%s: caching is disabled: nothing to warm", self.namespace)
            return None
        jobs, _, unkeyed = self._many_jobs(opts, list(calls))
        return jobs, len(unkeyed)

    def _failed(self, job: Job, error: BaseException) -> None:
        logger.warning(
            "%s: warming %r failed: %s: %s",
            self.namespace,
            job.key,
            type(error).__name__,
            error,
        )

    def warm(self, calls: Iterable[object], *, workers: int = 1) -> WarmReport:
        """Compute what ``calls`` (as for :meth:`get_many`: tuples, or ``Args``) would
        miss, with ``workers`` threads; return the counts (see the module).

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def square(x: int) -> int:
            ...     return x * x
            >>> square(2), square.warm([(1,), (2,), (3,), (1,)])
            (4, WarmReport(computed=2, fresh=1, failed=0))
        """
        _check_positive("workers", workers)
        made = self._warm_jobs(calls)
        if made is None:
            return WarmReport(0, 0, 0)
        jobs, unkeyed = made
        progress = _Progress(self.namespace, len(jobs))

        def one(job: Job) -> bool | None:
            try:
                return bool(drive_sync(_warm_flow(job)))
            except Exception as error:  # one failure never stops the others
                self._failed(job, error)
                return None
            finally:
                progress.step()

        if workers == 1 or len(jobs) <= 1:
            outcomes = [one(job) for job in jobs]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="cachier_like-warm") as pool:
                outcomes = list(pool.map(one, jobs))
        return _counted(outcomes, unkeyed)

    async def awarm(self, calls: Iterable[object], *, concurrency: int = 1) -> WarmReport:
        """:meth:`warm` for ``async def`` functions: at most ``concurrency`` calls at once.

        Example:
            >>> import asyncio
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... async def square(x: int) -> int:
            ...     return x * x
            >>> asyncio.run(square.awarm([(1,), (2,)], concurrency=2))
            WarmReport(computed=2, fresh=0, failed=0)
        """
        _check_positive("concurrency", concurrency)
        made = self._warm_jobs(calls)
        if made is None:
            return WarmReport(0, 0, 0)
        jobs, unkeyed = made
        progress = _Progress(self.namespace, len(jobs))
        gate = asyncio.Semaphore(concurrency)

        async def one(job: Job) -> bool | None:
            async with gate:
                try:
                    return bool(await drive_async(_warm_flow(job), job.opts.core))
                except Exception as error:  # one failure never stops the others
                    self._failed(job, error)
                    return None
                finally:
                    progress.step()

        outcomes = await asyncio.gather(*(one(job) for job in jobs))
        return _counted(list(outcomes), unkeyed)


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")


def _counted(outcomes: list[bool | None], unkeyed: int) -> WarmReport:
    computed = sum(1 for outcome in outcomes if outcome is True)
    fresh_count = sum(1 for outcome in outcomes if outcome is False)
    failed = unkeyed + sum(1 for outcome in outcomes if outcome is None)
    return WarmReport(computed, fresh_count, failed)
