"""The count an ``async def`` wrapper's ``clear_cache()`` returns: an int one may await."""

from __future__ import annotations

from collections.abc import Generator

__all__ = ["AwaitableCount"]


class AwaitableCount(int):
    """An ``int`` that ``await`` also accepts, giving the same int back.

    An async wrapper's ``clear_cache()`` does its work at once and returns one, so code
    written for cachier's async wrappers (``await f.clear_cache()``) and code that reads
    the count (``n = f.clear_cache()``) both work.

    Example:
        >>> import asyncio
        >>> count = AwaitableCount(3)
        >>> count + 1, count
        (4, 3)
        >>> async def main() -> int:
        ...     return await count
        >>> asyncio.run(main())
        3
    """

    __slots__ = ()

    def __await__(self) -> Generator[None, None, int]:
        return int(self)
        yield  # unreachable: makes this a generator that finishes at once
