"""Global defaults shared by every decorated function.

Defaults are read when a call needs them, so ``set_default_params`` changes every
decorated function that did not set that option itself, as in cachier.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigurationError

CACHE_DIR_ENV = "CACHIER_LIKE_CACHE_DIR"
"""Environment variable that moves the pickle core's default cache directory."""

_DEFAULTS: dict[str, Any] = {
    "backend": "pickle",
    "hash_func": None,
    "cache_dir": None,  # None: $CACHIER_LIKE_CACHE_DIR, else the per-user cache directory
    "stale_after": None,  # None: never stale
    "next_time": False,
    "wait_for_calc_timeout": 0,  # 0: wait for the calculator as long as its claim holds
    "allow_none": False,
    "entry_size_limit": None,
    "cleanup_stale": False,
    "cleanup_interval": timedelta(days=1),
    "allow_non_static_methods": False,
    "raise_on_error": False,
    "lease": 10.0,  # renewed every third while computing; a dead calculator's key frees within it
    "caching_enabled": True,
    # Longest wait at exit for pending next_time refreshes, all together (seconds).
    "refresh_exit_timeout": 30.0,
    # Core-specific options; each core takes the ones listed in cores.BACKEND_OPTIONS.
    "max_entries": None,
    "redis_client": None,
    "key_prefix": None,
    "server_ttl": None,
    "mongetter": None,
    "sql_engine": None,
    "table_name": None,
    "backend_options": None,
}

_lock = threading.Lock()
_current: dict[str, Any] = dict(_DEFAULTS)
# Bumped on every change so decorated functions re-resolve their options lazily.
_version = 0


def _check_names(params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - set(_DEFAULTS))
    if unknown:
        valid = ", ".join(sorted(_DEFAULTS))
        raise ConfigurationError(
            f"unknown default parameter(s) {', '.join(unknown)}; valid names are: {valid}"
        )


def set_default_params(**params: Any) -> None:
    """Change global defaults for every decorated function that did not set them.

    Example:
        >>> from datetime import timedelta
        >>> set_default_params(stale_after=timedelta(hours=1))
        >>> get_default_params()["stale_after"]
        datetime.timedelta(seconds=3600)
        >>> reset_default_params()
    """
    _check_names(params)
    global _version
    with _lock:
        _current.update(params)
        _version += 1


def get_default_params() -> Mapping[str, Any]:
    """Return a read-only snapshot of the current global defaults.

    Example:
        >>> get_default_params()["backend"]
        'pickle'
    """
    with _lock:
        return MappingProxyType(dict(_current))


def reset_default_params() -> None:
    """Restore every global default to its built-in value.

    Example:
        >>> set_default_params(allow_none=True)
        >>> reset_default_params()
        >>> get_default_params()["allow_none"]
        False
    """
    global _version
    with _lock:
        _current.clear()
        _current.update(_DEFAULTS)
        _version += 1


def enable_caching() -> None:
    """Turn caching back on globally (see :func:`disable_caching`).

    Example:
        >>> disable_caching(); enable_caching()
        >>> caching_enabled()
        True
    """
    set_default_params(caching_enabled=True)


def disable_caching() -> None:
    """Make every decorated function call straight through, reading and writing nothing.

    Example:
        >>> disable_caching()
        >>> caching_enabled()
        False
        >>> enable_caching()
    """
    set_default_params(caching_enabled=False)


def caching_enabled() -> bool:
    """Whether caching is globally on."""
    return bool(_current["caching_enabled"])


def version() -> int:
    """A counter that changes whenever a default changes."""
    return _version


def default_cache_dir() -> Path:
    """Where the pickle core writes when no ``cache_dir`` is given.

    ``$CACHIER_LIKE_CACHE_DIR`` wins; otherwise the platform's per-user cache directory.

    Example:
        >>> saved = os.environ.get(CACHE_DIR_ENV)
        >>> os.environ[CACHE_DIR_ENV] = "/srv/cache"
        >>> default_cache_dir().as_posix()
        '/srv/cache'
        >>> if saved is None: del os.environ[CACHE_DIR_ENV]
        ... else: os.environ[CACHE_DIR_ENV] = saved
    """
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
        return base / "cachier_like" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "cachier_like"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "cachier_like"


def as_seconds(value: timedelta | float | int | None, name: str) -> float | None:
    """Normalise a duration option to seconds; ``None`` stays ``None``.

    Example:
        >>> as_seconds(timedelta(minutes=1), "stale_after")
        60.0
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        if value == timedelta.max:
            return None
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            f"{name} must be a timedelta or a number of seconds, not {type(value).__name__}"
        )
    if seconds < 0:
        raise ConfigurationError(f"{name} must not be negative (got {value!r})")
    return seconds


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_size(value: int | str | None) -> int | None:
    """Parse ``entry_size_limit``: bytes as an int, or a string like ``"10KB"``.

    Example:
        >>> parse_size("10KB"), parse_size("1.5 MB"), parse_size(500)
        (10240, 1572864, 500)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError("entry_size_limit must be bytes or a size string, not a bool")
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(f"entry_size_limit must not be negative (got {value})")
        return value
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        for unit in sorted(_SIZE_UNITS, key=len, reverse=True):
            if text.endswith(unit):
                number = text[: -len(unit)]
                try:
                    amount = float(number)
                except ValueError:
                    break
                if not math.isfinite(amount) or amount < 0:
                    break
                return int(amount * _SIZE_UNITS[unit])
        if text.isdigit():
            return int(text)
    raise ConfigurationError(
        f"entry_size_limit must be an int or a string like '10KB' or '200MB', not {value!r}"
    )
