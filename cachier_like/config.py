"""Global defaults shared by every decorated function.

Defaults are read when a call needs them, so ``set_default_params`` changes every
decorated function that did not set that option itself, as in cachier.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigurationError
from .option_table import DEFAULTS, OPTION
from .parsers import as_seconds

__all__ = [
    "CACHE_DIR_ENV",
    "as_seconds",  # from .parsers, for the cores and the wrapper
    "default_cache_dir",
    "disable_caching",
    "enable_caching",
    "get_default_params",
    "reset_default_params",
    "set_default_params",
    "version",
]

CACHE_DIR_ENV = "CACHIER_LIKE_CACHE_DIR"
"""Environment variable that moves the pickle core's default cache directory."""

_lock = threading.Lock()
# The built-in defaults come from the option table (cachier_like.option_table).
_current: dict[str, Any] = dict(DEFAULTS)
# Bumped on every change so decorated functions re-resolve their options lazily.
_version = 0


def _check_names(params: Mapping[str, Any]) -> None:
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        valid = ", ".join(sorted(DEFAULTS))
        local = [name for name in unknown if name in OPTION]
        hint = f" ({', '.join(local)}: set per function, in @cached(...))" if local else ""
        raise ConfigurationError(
            f"unknown default parameter(s) {', '.join(unknown)}{hint}; valid names are: {valid}"
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
        _current.update(DEFAULTS)
        _version += 1


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
