"""The methods a cached function offers besides being called: per-call variants and upkeep."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .batches import BatchMethods
from .counts import AwaitableCount
from .entry import Entry
from .health import Health, aprobe, probe
from .invalidating import InvalidationMethods
from .options import Options
from .tagging import recorded
from .warming import WarmingMethods

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
#: What an ``async def`` function returns; its wrapper's upkeep counts may be awaited.
AsyncResult = Coroutine[Any, Any, Any]


class CacheMethods(InvalidationMethods, BatchMethods, WarmingMethods, Generic[P, R]):
    """``refresh``, ``uncached``, ``cached_entry``, ``precache_value``, ``clear_cache``, ...

    Mixed into :class:`~cachier_like.wrapper.CachedFunction`, which provides the call
    itself, the wrapped function and the current options.
    """

    _func: Callable[P, R]
    _is_async: bool

    @abc.abstractmethod
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call through the cache."""

    @abc.abstractmethod
    def _current(self) -> Options:
        """The options in force now."""

    @abc.abstractmethod
    def _tags_of(
        self, opts: Options, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, ...]:
        """The tags of one call."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute the value for these arguments and store it, ignoring any entry.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def now_ish(x: int) -> int:
            ...     return x
            >>> now_ish.refresh(1)
            1
        """
        return self(*args, cachier__overwrite_cache=True, **kwargs)  # type: ignore[arg-type]

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly: no read, no write.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x + 1
            >>> f.uncached(1), f.cached_entry(1)
            (2, None)
        """
        return self._func(*args, **kwargs)

    def cached_entry(self, *args: P.args, **kwargs: P.kwargs) -> Entry | None:
        """Return the stored :class:`Entry` for these arguments, fresh or not, or None.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f(5); f.cached_entry(5).value
            5
            5
        """
        opts = self._current()
        return opts.core.get(opts.keys.key(args, kwargs))

    def precache_value(self, *args: Any, value_to_cache: Any, **kwargs: Any) -> Any:
        """Store ``value_to_cache`` as the result for these arguments; return it.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     raise RuntimeError("not called")
            >>> f.precache_value(1, value_to_cache=10)
            10
            >>> f(1)
            10
        """
        opts = self._current()
        key = opts.keys.key(args, kwargs)
        tags = self._tags_of(opts, args, kwargs) if opts.tags is not None else ()
        recorded_tags = recorded(tags, opts.core.tag_versions(tags)) if tags else ()
        opts.core.set(key, Entry(value_to_cache, time.time(), recorded_tags))
        return value_to_cache

    @overload
    def clear_cache(self: CacheMethods[Q, AsyncResult]) -> AwaitableCount: ...
    @overload
    def clear_cache(self) -> int: ...
    def clear_cache(self) -> int:
        """Remove every entry of this function (no other function's); return how many.

        On an ``async def`` function the count is an :class:`~cachier_like.counts.AwaitableCount`:
        the entries are removed at once, and ``await f.clear_cache()`` works too (as with
        cachier). :meth:`aclear_cache` does the same without blocking the event loop.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f(1); f(2); f.clear_cache()
            1
            2
            2
        """
        return self._count(self._current().core.clear())

    @overload
    def clear_being_calculated(self: CacheMethods[Q, AsyncResult]) -> AwaitableCount: ...
    @overload
    def clear_being_calculated(self) -> int: ...
    def clear_being_calculated(self) -> int:
        """Drop every in-progress calculation claim of this function (a reset); return how many.

        On an ``async def`` function the count may be awaited too, as with
        :meth:`clear_cache`; :meth:`aclear_being_calculated` does not block the event loop.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f.clear_being_calculated()
            0
        """
        return self._count(self._current().core.clear_claims())

    async def aclear_cache(self) -> int:
        """:meth:`clear_cache` for event loops: a blocking core's work runs in a worker thread.

        Example:
            >>> import asyncio
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... async def f(x: int) -> int:
            ...     return x
            >>> async def main() -> int:
            ...     await f(1)
            ...     return await f.aclear_cache()
            >>> asyncio.run(main())
            1
        """
        return await self._current().core.aclear()

    async def aclear_being_calculated(self) -> int:
        """:meth:`clear_being_calculated` for event loops, without blocking them.

        Example:
            >>> import asyncio
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... async def f(x: int) -> int:
            ...     return x
            >>> asyncio.run(f.aclear_being_calculated())
            0
        """
        return await self._current().core.aclear_claims()

    def _count(self, count: int) -> int:
        """What the sync upkeep methods return: the count, awaitable on an async function."""
        return AwaitableCount(count) if self._is_async else count

    def cache_dpath(self) -> str | None:
        """The pickle core's ``cache_dir``, ``~`` expanded, as a str; else None.

        As in cachier, this is the directory given: each function's entries live in
        a subdirectory of it named after the function (``f.core.directory``).

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f.cache_dpath() is None
            True
        """
        return self._current().core.location()

    def health(self) -> Health:
        """Write, read back and delete a probe entry in this function's store; report the
        time it took, or in one line what is wrong (never raises for the store).

        For an ``async def`` function use :meth:`ahealth`: its core may have only an
        async client.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f.health().ok
            True
        """
        return probe(self._current().core)

    async def ahealth(self) -> Health:
        """:meth:`health` through the core's ``async`` methods.

        Example:
            >>> import asyncio
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... async def f(x: int) -> int:
            ...     return x
            >>> asyncio.run(f.ahealth()).ok
            True
        """
        return await aprobe(self._current().core)

    @property
    def core(self) -> Any:
        """The storage core currently serving this function."""
        return self._current().core
