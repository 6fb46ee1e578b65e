"""``@cached``: the decorator and its options."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

from .errors import ConfigurationError
from .keys import HashFunc
from .option_table import DECORATOR_NAMES
from .serialize import Serializer
from .wrapper import CachedFunction

__all__ = ["CachedFunction", "Decorator", "cached", "cachier"]

P = ParamSpec("P")
R = TypeVar("R")


class Decorator:
    """What ``cached(...)`` returns: apply it to functions, each gets its own cache.

    Applying it again to the same function returns the same wrapper, so the two share
    one cache (a memory core's entries too), as in cachier.
    """

    def __init__(self, explicit: dict[str, Any], namespace: str | None) -> None:
        self._explicit = explicit
        self._namespace = namespace
        self._applied: weakref.WeakKeyDictionary[Any, CachedFunction[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self, func: Callable[P, R]) -> CachedFunction[P, R]:
        if isinstance(func, (staticmethod, classmethod)):
            raise TypeError(
                "apply @cached below @staticmethod/@classmethod, "
                "e.g. @staticmethod then @cached() then def"
            )
        if not callable(func):
            raise TypeError(f"@cached needs a function, not {type(func).__name__}")
        try:
            return self._applied[func]
        except (KeyError, TypeError):  # TypeError: not weakly referable or not hashable
            pass
        wrapper = CachedFunction(func, dict(self._explicit), self._namespace)
        with contextlib.suppress(TypeError):
            self._applied[func] = wrapper
        return wrapper


# The keywords that reach the option resolver. The signatures below list the option
# table's names with their types; tests/test_decorator_api.py checks that both list the
# same names.
_FORWARDED = tuple(name for name in DECORATOR_NAMES if name != "namespace")


@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    func: None = None,
    /,
    *,
    backend: str | None = ...,
    hash_func: HashFunc | None = ...,
    cache_dir: str | Any | None = ...,
    file_mode: int | None = ...,
    stale_after: timedelta | float | None = ...,
    next_time: bool | None = ...,
    wait_for_calc_timeout: timedelta | float | None = ...,
    allow_none: bool | None = ...,
    entry_size_limit: int | str | None = ...,
    cleanup_stale: bool | None = ...,
    cleanup_interval: timedelta | float | None = ...,
    allow_non_static_methods: bool | None = ...,
    namespace: str | None = ...,
    version: str | int | None = ...,
    track_code: bool | None = ...,
    ignore: str | Sequence[str] | None = ...,
    tags: Sequence[str] | Callable[..., Iterable[str]] | None = ...,
    max_entries: int | None = ...,
    on_evict: Callable[[Any], object] | None = ...,
    serializer: Serializer | str | None = ...,
    secret: str | bytes | Sequence[str | bytes] | None = ...,
    raise_on_error: bool | None = ...,
    lease: timedelta | float | None = ...,
    redis_client: Any = ...,
    key_prefix: str | None = ...,
    server_ttl: timedelta | float | None = ...,
    mongetter: Any = ...,
    sql_engine: Any = ...,
    table_name: str | None = ...,
    backend_options: Mapping[str, Any] | None = ...,
    pickle_reload: bool | None = ...,
    separate_files: bool | None = ...,
) -> Decorator: ...


def cached(
    func: Callable[P, R] | None = None,
    /,
    *,
    backend: str | None = None,
    hash_func: HashFunc | None = None,
    cache_dir: str | Any | None = None,
    file_mode: int | None = None,
    stale_after: timedelta | float | None = None,
    next_time: bool | None = None,
    wait_for_calc_timeout: timedelta | float | None = None,
    allow_none: bool | None = None,
    entry_size_limit: int | str | None = None,
    cleanup_stale: bool | None = None,
    cleanup_interval: timedelta | float | None = None,
    allow_non_static_methods: bool | None = None,
    namespace: str | None = None,
    version: str | int | None = None,
    track_code: bool | None = None,
    ignore: str | Sequence[str] | None = None,
    tags: Sequence[str] | Callable[..., Iterable[str]] | None = None,
    max_entries: int | None = None,
    on_evict: Callable[[Any], object] | None = None,
    serializer: Serializer | str | None = None,
    secret: str | bytes | Sequence[str | bytes] | None = None,
    raise_on_error: bool | None = None,
    lease: timedelta | float | None = None,
    redis_client: Any = None,
    key_prefix: str | None = None,
    server_ttl: timedelta | float | None = None,
    mongetter: Any = None,
    sql_engine: Any = None,
    table_name: str | None = None,
    backend_options: Mapping[str, Any] | None = None,
    pickle_reload: bool | None = None,
    separate_files: bool | None = None,
) -> CachedFunction[P, R] | Decorator:
    """Memoize a function in a storage core (pickle files by default).

    Options left out, or given as ``None``, follow the global defaults
    (:func:`set_default_params`), even when those change later. ``pickle_reload`` and
    ``separate_files`` are accepted for cachier compatibility and have no effect:
    entries are always one file each.

    Example:
        >>> import tempfile
        >>> from datetime import timedelta
        >>> from cachier_like import cached
        >>> @cached(cache_dir=tempfile.mkdtemp(), stale_after=timedelta(hours=1))
        ... def slow_add(a: int, b: int) -> int:
        ...     return a + b
        >>> slow_add(1, 2)
        3
        >>> slow_add.cached_entry(1, 2).value
        3
    """
    given = locals()  # first: exactly the arguments, by name
    # None means "the global default", as every cachier parameter defaults to None.
    explicit = {name: given[name] for name in _FORWARDED if given[name] is not None}
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ConfigurationError(f"namespace must be a non-empty string, not {namespace!r}")
    decorator = Decorator(explicit, namespace)
    if func is not None:
        return decorator(func)
    return decorator


#: cachier's name for :func:`cached`, for drop-in migration.
cachier = cached
