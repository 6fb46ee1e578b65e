"""What a CLI command acts on: an imported cached function, or a store's functions."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

from . import config
from .cores import BACKENDS, Core, core_class
from .wrapper import CachedFunction


class TargetError(Exception):
    """A target that cannot be resolved; the message says what and how to fix it."""


@dataclass(frozen=True)
class Target:
    """One function's storage, and its staleness bound when known."""

    namespace: str
    core: Core
    stale_after: float | None


def import_function(path: str) -> CachedFunction[Any, Any]:
    """Resolve ``package.module:function`` (or ``module:Class.method``).

    Example:
        >>> try:
        ...     import_function("json:dumps")
        ... except TargetError as exc:
        ...     print(exc)
        json:dumps is not a cached function (decorate it with @cached, or check the name)
    """
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise TargetError(f"{path!r} is not of the form package.module:function")
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the current directory's modules
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise TargetError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc} "
            "(run from the directory that contains it, or add it to PYTHONPATH)"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attribute!r}") from None
    obj = getattr(obj, "__func__", obj)  # a bound method or classmethod
    if not isinstance(obj, CachedFunction):
        raise TargetError(
            f"{path} is not a cached function (decorate it with @cached, or check the name)"
        )
    return obj


def function_target(path: str) -> Target:
    """The storage of an imported cached function."""
    func = import_function(path)
    opts = func._current()
    return Target(func.namespace, opts.core, opts.stale_after)


def store_options(backend: str, args: Any) -> dict[str, Any]:
    """Core options for ``backend`` from the CLI's connection flags."""
    if backend == "pickle":
        return {"cache_dir": args.cache_dir or config.default_cache_dir()}
    if backend == "redis":
        options: dict[str, Any] = {}
        if args.url:
            options["redis_client"] = args.url
        if args.prefix:
            options["key_prefix"] = args.prefix
        return options
    if backend == "sql":
        options = {"sql_engine": args.url} if args.url else {}
        if args.table:
            options["table_name"] = args.table
        return options
    if backend == "mongo":
        options = {"mongetter": args.url} if args.url else {}
        extra = {k: v for k, v in (("database", args.db), ("collection", args.collection)) if v}
        if extra:
            options["backend_options"] = extra
        return options
    valid = ", ".join(name for name in BACKENDS if name != "memory")
    raise TargetError(f"backend {backend!r} cannot be inspected from the CLI; use one of {valid}")


def store_targets(backend: str, args: Any) -> list[Target]:
    """Every function stored in the store the flags name (narrowed by ``--function``)."""
    options = store_options(backend, args)
    extra = options.pop("backend_options", {})
    cls = core_class(backend)
    names = cls.namespaces(**options, **extra)
    if args.function:
        names = [name for name in names if name == args.function]
        if not names:
            raise TargetError(f"no cached function named {args.function!r} in that store")
    return [Target(name, cls(name, **options, **extra), None) for name in names]
