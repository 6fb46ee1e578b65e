"""The pickle core's default cache directory, as a lazily resolved path.

The global ``cache_dir`` default is never ``None`` (cachier programs read it as a
path): it is :data:`DEFAULT_CACHE_DIR`, a path-like that names the directory in effect
each time it is used, so a later change of ``$CACHIER_LIKE_CACHE_DIR`` still applies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_DIR_ENV = "CACHIER_LIKE_CACHE_DIR"
"""Environment variable that moves the pickle core's default cache directory."""


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


class DefaultCacheDir(os.PathLike[str]):
    """A path-like naming :func:`default_cache_dir` at the moment it is used.

    All instances are equal: each stands for "the default", not for one directory.

    Example:
        >>> saved = os.environ.get(CACHE_DIR_ENV)
        >>> os.environ[CACHE_DIR_ENV] = "/srv/a"
        >>> os.fspath(DEFAULT_CACHE_DIR)
        '/srv/a'
        >>> os.environ[CACHE_DIR_ENV] = "/srv/b"
        >>> str(DEFAULT_CACHE_DIR)
        '/srv/b'
        >>> if saved is None: del os.environ[CACHE_DIR_ENV]
        ... else: os.environ[CACHE_DIR_ENV] = saved
    """

    __slots__ = ()

    def __fspath__(self) -> str:
        return str(default_cache_dir())

    def __str__(self) -> str:
        return self.__fspath__()

    def __repr__(self) -> str:
        return f"DefaultCacheDir({self.__fspath__()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DefaultCacheDir)

    def __hash__(self) -> int:
        return hash(DefaultCacheDir)


DEFAULT_CACHE_DIR = DefaultCacheDir()
"""The global ``cache_dir`` default."""


def cache_dir_path(value: str | os.PathLike[str] | None) -> Path:
    """The directory ``value`` names now: the default for ``None`` or :data:`DEFAULT_CACHE_DIR`.

    Example:
        >>> cache_dir_path("~/x") == Path.home() / "x"
        True
    """
    if value is None or isinstance(value, DefaultCacheDir):
        return default_cache_dir()
    return Path(value).expanduser()
