"""Storage cores and the registry that builds them by backend name.

Each core module is imported only when its backend is asked for, so
``import cachier_like`` never imports a database driver.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigurationError, MissingDriverError
from ..option_table import options_of
from .base import Core, CoreStats

__all__ = ["BACKENDS", "BACKEND_OPTIONS", "Core", "CoreStats", "core_class"]

# backend name -> (module, class, pip extra that installs its driver, driver module)
BACKENDS: dict[str, tuple[str, str, str | None, str | None]] = {
    "memory": ("cachier_like.cores.memory", "MemoryCore", None, None),
    "pickle": ("cachier_like.cores.pickle", "PickleCore", None, None),
    "redis": ("cachier_like.cores.redis", "RedisCore", "redis", "redis"),
    "sql": ("cachier_like.cores.sql", "SQLCore", "sql", "sqlalchemy"),
    "mongo": ("cachier_like.cores.mongo", "MongoCore", "mongo", "pymongo"),
}

# backend name -> the decorator options its core takes (besides namespace and serializer),
# from the option table's ``backends`` column.
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {backend: options_of(backend) for backend in BACKENDS}


def core_class(backend: str) -> type[Core]:
    """Import and return the core class registered under ``backend``.

    Example:
        >>> core_class("memory").__name__
        'MemoryCore'
    """
    try:
        module_name, class_name, extra, driver = BACKENDS[backend]
    except KeyError:
        valid = ", ".join(repr(name) for name in BACKENDS)
        # cachier's wording, which programs match on; then how to fix it.
        raise ConfigurationError(
            f"specified an invalid core: {backend} (valid backends: {valid})"
        ) from None
    if driver is not None:
        try:
            importlib.import_module(driver)
        except ImportError as exc:
            raise MissingDriverError(
                f"backend {backend!r} needs the {driver!r} package: "
                f"pip install 'cachier_like[{extra}]'"
            ) from exc
    cls: type[Core] = getattr(importlib.import_module(module_name), class_name)
    return cls
