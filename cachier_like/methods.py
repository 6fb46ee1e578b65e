"""The methods a cached function offers besides being called: per-call variants and upkeep."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from .entry import Entry
from .options import Options

P = ParamSpec("P")
R = TypeVar("R")


class CacheMethods(abc.ABC, Generic[P, R]):
    """``refresh``, ``uncached``, ``cached_entry``, ``precache_value``, ``clear_cache``, ...

    Mixed into :class:`~cachier_like.wrapper.CachedFunction`, which provides the call
    itself, the wrapped function and the current options.
    """

    _func: Callable[P, R]

    @abc.abstractmethod
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call through the cache."""

    @abc.abstractmethod
    def _current(self) -> Options:
        """The options in force now."""

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
        opts.core.set(opts.keys.key(args, kwargs), Entry(value_to_cache, time.time()))
        return value_to_cache

    def clear_cache(self) -> int:
        """Remove every entry of this function (no other function's); return how many.

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
        return self._current().core.clear()

    def clear_being_calculated(self) -> int:
        """Drop every in-progress calculation claim of this function (a reset).

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f.clear_being_calculated()
            0
        """
        return self._current().core.clear_claims()

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

    @property
    def core(self) -> Any:
        """The storage core currently serving this function."""
        return self._current().core
