"""Invalidation methods of a cached function: one call's entry, or every entry of a tag."""

from __future__ import annotations

import abc
from typing import Any, ParamSpec, TypeVar

from .options import Options
from .tagging import check_tags

P = ParamSpec("P")
R = TypeVar("R")


class InvalidationMethods(abc.ABC):
    """``invalidate``, ``invalidate_tags`` and their async twins.

    Mixed into :class:`~cachier_like.wrapper.CachedFunction` (through
    :class:`~cachier_like.methods.CacheMethods`).
    """

    namespace: str

    @abc.abstractmethod
    def _current(self) -> Options:
        """The options in force now."""

    def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Remove the entry of this one call (the same key rules as calling); return
        whether there was one. A calculation in progress for it is left to finish.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def square(x: int) -> int:
            ...     return x * x
            >>> square(3), square.invalidate(3), square.invalidate(3)
            (9, True, False)
        """
        opts = self._current()
        return opts.core.delete(opts.keys.key(args, kwargs))

    async def ainvalidate(self, *args: Any, **kwargs: Any) -> bool:
        """:meth:`invalidate` for event loops (a blocking core's work runs in a thread).

        Example:
            >>> import asyncio
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... async def double(x: int) -> int:
            ...     return 2 * x
            >>> async def main() -> tuple[int, bool]:
            ...     return await double(4), await double.ainvalidate(4)
            >>> asyncio.run(main())
            (8, True)
        """
        opts = self._current()
        return await opts.core.adelete(opts.keys.key(args, kwargs))

    def invalidate_tags(self, *tags: str) -> None:
        """Make every entry carrying one of ``tags`` stale, for every function on this
        function's store (one atomic increment per tag; no entry is read or written).

        A stale entry is recomputed on its next call, or served once more while it is
        refreshed in the background with ``next_time=True``.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory", tags=lambda user_id: [f"user:{user_id}"])
            ... def greeting(user_id: int) -> str:
            ...     return f"hello {user_id}"
            >>> greeting(1); greeting.invalidate_tags("user:1"); greeting.cached_entry(1)
            'hello 1'
        """
        names = check_tags(tags, "invalidate_tags()")
        if names:
            self._current().core.bump_tags(names)

    async def ainvalidate_tags(self, *tags: str) -> None:
        """:meth:`invalidate_tags` for event loops.

        Example:
            >>> import asyncio
            >>> from cachier_like import cached
            >>> @cached(backend="memory", tags=["reports"])
            ... async def report() -> str:
            ...     return "monthly"
            >>> asyncio.run(report.ainvalidate_tags("reports"))
        """
        names = check_tags(tags, "ainvalidate_tags()")
        if names:
            await self._current().core.abump_tags(names)
