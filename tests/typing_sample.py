"""What a type checker sees of a cached function; checked with ``mypy --strict``.

``tests/test_decorator_api.py`` runs mypy on this file and reads the revealed types.
It is not a test module (no ``test_`` prefix), and nothing here runs at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from typing_extensions import assert_type, reveal_type

from cachier_like import CachedFunction, Entry, cached, cachier
from cachier_like.counts import AwaitableCount


def sample() -> None:
    """Decorate and call; every expression's type is pinned with assert_type."""

    @cached(backend="memory")
    def scale(x: int, factor: float = 2.0) -> float:
        return x * factor

    @cached
    def greet(name: str, *, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    @cachier(backend="memory")
    async def fetch(key: str) -> bytes:
        return key.encode()

    as_callable: Callable[[int, float], float] = scale
    assert_type(as_callable(1, 2.0), float)
    assert isinstance(scale, CachedFunction)
    assert_type(scale(1), float)
    assert_type(scale(1, factor=3.0), float)
    assert_type(scale.refresh(1), float)
    assert_type(scale.uncached(2, 0.5), float)
    assert_type(scale.cached_entry(1), Entry | None)
    assert_type(greet("x", punctuation="?"), str)
    assert_type(greet.refresh("x"), str)
    assert_type(greet.uncached("x"), str)
    assert_type(greet.cached_entry("x"), Entry | None)
    pending: Coroutine[Any, Any, bytes] = fetch("k")
    pending.close()

    async def use() -> None:
        assert_type(await fetch("k"), bytes)
        assert_type(await fetch.refresh("k"), bytes)
        assert_type(await fetch.clear_cache(), int)
        assert_type(await fetch.aclear_cache(), int)
        assert_type(await scale.aclear_being_calculated(), int)

    assert_type(scale.clear_cache(), int)
    assert_type(scale.clear_being_calculated(), int)
    assert_type(fetch.clear_cache(), AwaitableCount)
    assert_type(fetch.clear_being_calculated(), AwaitableCount)

    reveal_type(scale(1))
    reveal_type(scale.refresh(1))
    reveal_type(scale.uncached(1))
    reveal_type(scale.cached_entry(1))
    entry = scale.cached_entry(1)
    if entry is not None:
        reveal_type(entry.value)
