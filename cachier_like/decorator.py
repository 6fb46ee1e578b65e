"""``@cached``: the decorator and its options."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    """What ``cached(...)`` returns: apply it to functions, each gets its own cache."""

    def __init__(self, explicit: dict[str, Any], namespace: str | None) -> None:
        self._explicit = explicit
        self._namespace = namespace

    def __call__(self, func: Callable[P, R]) -> CachedFunction[P, R]:
        if isinstance(func, (staticmethod, classmethod)):
            raise TypeError(
                "apply @cached below @staticmethod/@classmethod, "
                "e.g. @staticmethod then @cached() then def"
            )
        if not callable(func):
            raise TypeError(f"@cached needs a function, not {type(func).__name__}")
        return CachedFunction(func, dict(self._explicit), self._namespace)


_UNSET: Any = object()
# The keywords that reach the option resolver (which ignores pickle_reload and
# separate_files). The signatures below list the option table's names with their types;
# tests/test_decorator_api.py checks that both list the same names.
_FORWARDED = tuple(name for name in DECORATOR_NAMES if name != "namespace")


@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    func: None = None,
    /,
    *,
    backend: str = ...,
    hash_func: HashFunc | None = ...,
    cache_dir: str | Any | None = ...,
    stale_after: timedelta | float | None = ...,
    next_time: bool = ...,
    wait_for_calc_timeout: timedelta | float | None = ...,
    allow_none: bool = ...,
    entry_size_limit: int | str | None = ...,
    cleanup_stale: bool = ...,
    cleanup_interval: timedelta | float = ...,
    allow_non_static_methods: bool = ...,
    namespace: str | None = ...,
    max_entries: int | None = ...,
    serializer: Serializer = ...,
    raise_on_error: bool = ...,
    lease: timedelta | float = ...,
    redis_client: Any = ...,
    key_prefix: str = ...,
    server_ttl: timedelta | float | None = ...,
    mongetter: Any = ...,
    sql_engine: Any = ...,
    table_name: str = ...,
    backend_options: Mapping[str, Any] | None = ...,
    pickle_reload: bool = ...,
    separate_files: bool = ...,
) -> Decorator: ...


def cached(
    func: Callable[P, R] | None = None,
    /,
    *,
    backend: str = _UNSET,
    hash_func: HashFunc | None = _UNSET,
    cache_dir: str | Any | None = _UNSET,
    stale_after: timedelta | float | None = _UNSET,
    next_time: bool = _UNSET,
    wait_for_calc_timeout: timedelta | float | None = _UNSET,
    allow_none: bool = _UNSET,
    entry_size_limit: int | str | None = _UNSET,
    cleanup_stale: bool = _UNSET,
    cleanup_interval: timedelta | float = _UNSET,
    allow_non_static_methods: bool = _UNSET,
    namespace: str | None = None,
    max_entries: int | None = _UNSET,
    serializer: Serializer = _UNSET,
    raise_on_error: bool = _UNSET,
    lease: timedelta | float = _UNSET,
    redis_client: Any = _UNSET,
    key_prefix: str = _UNSET,
    server_ttl: timedelta | float | None = _UNSET,
    mongetter: Any = _UNSET,
    sql_engine: Any = _UNSET,
    table_name: str = _UNSET,
    backend_options: Mapping[str, Any] | None = _UNSET,
    pickle_reload: bool = _UNSET,
    separate_files: bool = _UNSET,
) -> CachedFunction[P, R] | Decorator:
    """Memoize a function in a storage core (pickle files by default).

    Options left out follow the global defaults (:func:`set_default_params`), even
    when those change later. ``pickle_reload`` and ``separate_files`` are accepted for
    cachier compatibility and ignored: entries are always one file each.

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
    explicit = {name: given[name] for name in _FORWARDED if given[name] is not _UNSET}
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ConfigurationError(f"namespace must be a non-empty string, not {namespace!r}")
    decorator = Decorator(explicit, namespace)
    if func is not None:
        return decorator(func)
    return decorator


#: cachier's name for :func:`cached`, for drop-in migration.
cachier = cached
