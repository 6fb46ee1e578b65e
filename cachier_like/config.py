"""Global defaults shared by every decorated function.

Defaults are read when a call needs them, so ``set_default_params`` changes every
decorated function that did not set that option itself, as in cachier. The defaults
are one live :class:`Params` object (``get_global_params()``, cachier's name): assigning
one of its attributes changes that default too.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .default_dir import CACHE_DIR_ENV, default_cache_dir
from .option_table import DEFAULTS, OPTION
from .parsers import as_seconds

if TYPE_CHECKING:
    from .keys import HashFunc

__all__ = [
    "CACHE_DIR_ENV",
    "Params",
    "as_seconds",  # from .parsers, for the cores and the wrapper
    "current",
    "default_cache_dir",
    "disable_caching",
    "enable_caching",
    "get_default_params",
    "get_global_params",
    "reset_default_params",
    "set_default_params",
    "set_global_params",
    "version",
]

_lock = threading.RLock()
# Bumped on every change so decorated functions re-resolve their options lazily.
_version = 0


def _bump() -> None:
    global _version
    _version += 1


@dataclass
class Params:
    """The global defaults: cachier's fields first, then cachier_like's own.

    The defaults come from the option table (:mod:`cachier_like.option_table`); a test
    checks that this class lists the same names. Item access (``params["backend"]``)
    works as well as attribute access.

    Example:
        >>> params = get_global_params()
        >>> params.allow_none = True          # changes the default, as in cachier
        >>> get_default_params()["allow_none"]
        True
        >>> reset_default_params()
    """

    caching_enabled: bool = DEFAULTS["caching_enabled"]
    hash_func: HashFunc | None = DEFAULTS["hash_func"]
    backend: str = DEFAULTS["backend"]
    mongetter: Any = DEFAULTS["mongetter"]
    stale_after: timedelta | float | None = DEFAULTS["stale_after"]
    next_time: bool = DEFAULTS["next_time"]
    cache_dir: str | os.PathLike[str] = DEFAULTS["cache_dir"]
    pickle_reload: bool = DEFAULTS["pickle_reload"]
    separate_files: bool = DEFAULTS["separate_files"]
    wait_for_calc_timeout: timedelta | float = DEFAULTS["wait_for_calc_timeout"]
    allow_none: bool = DEFAULTS["allow_none"]
    cleanup_stale: bool = DEFAULTS["cleanup_stale"]
    cleanup_interval: timedelta | float = DEFAULTS["cleanup_interval"]
    entry_size_limit: int | str | None = DEFAULTS["entry_size_limit"]
    allow_non_static_methods: bool = DEFAULTS["allow_non_static_methods"]
    max_entries: int | None = DEFAULTS["max_entries"]
    track_code: bool = DEFAULTS["track_code"]
    on_evict: Callable[[Any], object] | None = DEFAULTS["on_evict"]
    secret: str | bytes | Sequence[str | bytes] | None = DEFAULTS["secret"]
    file_mode: int = DEFAULTS["file_mode"]
    raise_on_error: bool = DEFAULTS["raise_on_error"]
    lease: timedelta | float = DEFAULTS["lease"]
    redis_client: Any = DEFAULTS["redis_client"]
    key_prefix: str | None = DEFAULTS["key_prefix"]
    server_ttl: timedelta | float | None = DEFAULTS["server_ttl"]
    sql_engine: Any = DEFAULTS["sql_engine"]
    table_name: str | None = DEFAULTS["table_name"]
    backend_options: Mapping[str, Any] | None = DEFAULTS["backend_options"]
    refresh_exit_timeout: timedelta | float = DEFAULTS["refresh_exit_timeout"]

    if not TYPE_CHECKING:  # type checkers keep flagging a misspelt attribute

        def __setattr__(self, name: str, value: Any) -> None:
            if name not in DEFAULTS:
                _warn_unknown([name])
                return
            with _lock:
                object.__setattr__(self, name, value)
                _bump()

    def __getitem__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise KeyError(name)
        return getattr(self, name)

    def keys(self) -> list[str]:
        """The setting names, so ``dict(params)`` is a plain snapshot."""
        return [field.name for field in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


# The one live object; reset_default_params restores its fields in place, so a
# reference a program keeps stays the defaults.
_params = Params()


def _warn_unknown(unknown: list[str]) -> None:
    valid = ", ".join(sorted(DEFAULTS))
    local = [name for name in unknown if name in OPTION]
    hint = f" ({', '.join(local)}: set per function, in @cached(...))" if local else ""
    warnings.warn(
        f"ignored unknown default parameter(s) {', '.join(sorted(unknown))}{hint}; "
        f"valid names are: {valid}",
        UserWarning,
        stacklevel=3,
    )


def set_default_params(**params: Any) -> None:
    """Change global defaults for every decorated function that did not set them.

    An unknown name is ignored with a warning that lists the valid names, so a
    setting cachier accepted never stops a migrating program.

    Example:
        >>> from datetime import timedelta
        >>> set_default_params(stale_after=timedelta(hours=1))
        >>> get_default_params()["stale_after"]
        datetime.timedelta(seconds=3600)
        >>> reset_default_params()
    """
    unknown = [name for name in params if name not in DEFAULTS]
    if unknown:
        _warn_unknown(unknown)
    with _lock:
        for name, value in params.items():
            if name in DEFAULTS:
                object.__setattr__(_params, name, value)
        _bump()


def get_default_params() -> Params:
    """Return the live global defaults (the same object as :func:`get_global_params`).

    Example:
        >>> get_default_params()["backend"]
        'pickle'
        >>> get_default_params().backend
        'pickle'
    """
    return _params


def current() -> dict[str, Any]:
    """A consistent snapshot of the global defaults, by name.

    Example:
        >>> current()["backend"]
        'pickle'
    """
    with _lock:
        return dict(vars(_params))


#: cachier's names for the same two functions.
set_global_params = set_default_params
get_global_params = get_default_params


def reset_default_params() -> None:
    """Restore every global default to its built-in value.

    Example:
        >>> set_default_params(allow_none=True)
        >>> reset_default_params()
        >>> get_default_params()["allow_none"]
        False
    """
    with _lock:
        for name, value in DEFAULTS.items():
            object.__setattr__(_params, name, value)
        _bump()


def enable_caching() -> None:
    """Turn caching back on globally (see :func:`disable_caching`).

    Example:
        >>> disable_caching(); enable_caching()
        >>> get_default_params()["caching_enabled"]
        True
    """
    set_default_params(caching_enabled=True)


def disable_caching() -> None:
    """Make every decorated function call straight through, reading and writing nothing.

    Example:
        >>> disable_caching()
        >>> get_default_params()["caching_enabled"]
        False
        >>> enable_caching()
    """
    set_default_params(caching_enabled=False)


def version() -> int:
    """A counter that changes whenever a default changes."""
    return _version
