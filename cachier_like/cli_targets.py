"""What a CLI command acts on: an imported cached function, a script's function, or a store.

Three kinds of target:

* ``package.module:function`` imports the module and uses the function's own options;
* ``path/to/run.py:function`` (a path ending in ``.py``) names a function of a script
  run as ``python path/to/run.py``, on the store the store flags name; the script is
  read, never run;
* no target: every function of the store the store flags name
  (:mod:`cachier_like.cli_stores`).
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cores import Core
from .identity import script_namespace
from .wrapper import CachedFunction

if TYPE_CHECKING:
    from .cli_stores import Store


class TargetError(Exception):
    """A target that cannot be resolved; the message says what and how to fix it."""


@dataclass(frozen=True)
class Target:
    """One function's storage, and its staleness bound when known (imported functions)."""

    namespace: str
    core: Core
    stale_after: float | None
    #: Cores of the function's other versions on its store (imported functions only).
    retired: tuple[Core, ...] = ()


_SCRIPT_SUFFIXES = (".py", ".pyw")


def flag(dest: str) -> str:
    """The command-line spelling of an ``argparse`` dest.

    Example:
        >>> flag("cache_dir")
        '--cache-dir'
    """
    return "--" + dest.replace("_", "-")


def is_script_target(text: str) -> bool:
    """Whether ``text`` names a script's function by path (``path/to/run.py:function``).

    Example:
        >>> is_script_target("jobs/run.py:featurize"), is_script_target("jobs.run:featurize")
        (True, False)
    """
    path, sep, _ = text.rpartition(":")
    return bool(sep) and path.endswith(_SCRIPT_SUFFIXES)


# -- imported functions ---------------------------------------------------------------


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
        raise TargetError(
            f"{path!r} is not of the form package.module:function (or path/to/script.py:function)"
        )
    if "/" in module_name or os.sep in module_name:
        raise TargetError(
            f"{module_name!r} is not a module name: name a script by its path ending in "
            f".py ({module_name}.py:{attribute}), a module as package.module:{attribute}"
        )
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
    retired = tuple(func._resolver.retired_cores(opts.core))
    return Target(func.namespace, opts.core, opts.stale_after, retired)


# -- a script's functions ---------------------------------------------------------------


def _defined_names(tree: ast.AST) -> list[str]:
    """The qualified names of the functions and classes a module's code defines."""
    found: list[str] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                found.append(name)
                walk(child, name + ("." if isinstance(child, ast.ClassDef) else ".<locals>."))
            else:
                walk(child, prefix)

    walk(tree, "")
    return found


def _check_script_defines(path: Path, qualname: str, namespace: str) -> None:
    """Fail when nothing is stored for ``namespace`` and the script cannot define it."""
    try:
        source = path.read_bytes()
    except FileNotFoundError:
        raise TargetError(
            f"no script {path}, and nothing stored for {namespace} in that store "
            "(check the path, and the store flags)"
        ) from None
    except OSError as exc:
        raise TargetError(f"cannot read the script {path}: {exc}") from None
    try:
        names = _defined_names(ast.parse(source, filename=str(path)))
    except (SyntaxError, ValueError):
        return  # cannot tell: an empty answer is honest enough
    if qualname not in names:
        listed = ", ".join(name for name in names if "<locals>" not in name)
        raise TargetError(
            f"{path} defines no function {qualname!r} and nothing is stored for it "
            f"(it defines: {listed or 'no functions'})"
        )


def script_target(text: str, store: Store) -> Target:
    """``path/to/run.py:function`` on ``store``, without running the script.

    The namespace is the one ``@cached`` gives the function when the script runs as
    ``python path/to/run.py`` (:func:`cachier_like.identity.script_namespace`).
    """
    path_text, _, qualname = text.rpartition(":")
    if not qualname:
        raise TargetError(f"{text!r}: name the function after the colon ({path_text}:function)")
    path = Path(path_text).expanduser()
    namespace = script_namespace(path, qualname)
    if namespace not in store.namespaces():
        _check_script_defines(path, qualname, namespace)
    return store.target(namespace)
