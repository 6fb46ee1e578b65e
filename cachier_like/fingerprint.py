"""Code fingerprints for ``track_code=True``: a digest that changes when the code does.

:func:`code_fingerprint` digests a function's normalized syntax tree (comments,
docstrings, formatting and cachier_like's own decorators left out; see
:mod:`cachier_like.code_source`) together with what it refers to:

* functions and classes of the user's own code it reads as globals, through modules
  (``helpers.scale``), closures and default values: their normalized code, followed
  transitively (``_MAX_DEPTH`` levels, at most ``_MAX_OBJECTS`` objects);
* library code (:mod:`cachier_like.code_origin`): its distribution's name and version
  only (``xxhash==3.5.0``, ``python==3.11`` for the standard library);
* simple constants (numbers, strings, bytes, ``None`` and tuples of them): their value;
  any other object: its type's name only, and its class's code if that is the user's.

A method also covers its class (calls through ``self`` are resolved at run time). A
function with no source (made by ``exec``, or in a REPL without a file) is read from
its code object instead. Nothing depends on ``PYTHONHASHSEED``, object ids or memory
addresses, so the fingerprint is the same in every process running the same code on
the same Python minor version.

It is computed once per function per process (a few milliseconds for a function with
a few helpers, see docs/invalidation.md) and memoized, never per call.
"""

from __future__ import annotations

import ast
import builtins
import functools
import logging
import sys
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any

from .code_origin import library_label
from .code_source import (
    attribute_names,
    class_nodes,
    code_form,
    function_node,
    global_names,
    normalize,
)
from .hashing import stable_hash, type_label

__all__ = ["code_fingerprint"]

logger = logging.getLogger(__name__)

_FORMAT = "cachier_like.code_fingerprint/1"
_MAX_DEPTH = 8
_MAX_OBJECTS = 200
_DIGITS = 16
_OWN_PACKAGE = __name__.partition(".")[0]
_CONSTANT_TYPES = (int, float, complex, str, bytes, bool, type(None))
_MISSING = object()

_memo: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_memo_lock = threading.Lock()


def code_fingerprint(func: Callable[..., Any]) -> str:
    """A 16-hex-digit digest of ``func``'s code and the user code it calls.

    Memoized per function per process; thread-safe.

    Example:
        >>> def area(r):
        ...     '''The area of a disc.'''
        ...     return 3.14159 * r * r  # close enough
        >>> def area_again(r):
        ...     return 3.14159 * r * r
        >>> area_again.__qualname__ = area.__qualname__
        >>> len(code_fingerprint(area)), code_fingerprint(area) == code_fingerprint(area_again)
        (16, True)
    """
    target = _target(func)
    try:
        with _memo_lock:
            known = _memo.get(target)
    except TypeError:  # not weakly referenceable (a builtin): cheap to recompute
        return _compute(target)
    if known is not None:
        return known
    digest = _compute(target)
    with _memo_lock:
        _memo[target] = digest
    return digest


def _target(obj: Any) -> Any:
    """The function behind partials, bound methods and wrappers exposing ``__wrapped__``.

    A partial's arguments are part of its calls' keys, not of its code.
    """
    for _ in range(100):  # a bound on wrapper chains (and on objects faking __wrapped__)
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif isinstance(obj, (types.MethodType, staticmethod, classmethod)):
            obj = obj.__func__
        else:
            try:
                wrapped = obj.__dict__.get("__wrapped__") if hasattr(obj, "__dict__") else None
            except Exception:  # a hostile __dict__: take the object as it is
                wrapped = None
            if wrapped is None or wrapped is obj:
                return obj
            obj = wrapped
    return obj


def _label(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    return f"{module}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


def _is_constant(value: Any) -> bool:
    if type(value) in (tuple, frozenset):
        return all(_is_constant(item) for item in value)
    return type(value) in _CONSTANT_TYPES


def _is_own(obj: Any) -> bool:
    """Whether ``obj`` is cachier_like's (its decorators are options, not code)."""
    module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", "")
    return isinstance(module, str) and module.partition(".")[0] == _OWN_PACKAGE


def _resolve(path: tuple[str, ...], scope: dict[str, Any]) -> tuple[tuple[str, ...], Any]:
    """Follow ``path`` from ``scope`` through the user's modules: the part of the path
    that names one object, and that object (``_MISSING`` if there is none)."""
    obj = scope.get(path[0], _MISSING)
    for depth, part in enumerate(path[1:], start=1):
        if not isinstance(obj, types.ModuleType) or _module_label(obj) is not None:
            return path[:depth], obj  # a non-module, or a library module: stop here
        # The module's dict, not getattr: a module __getattr__ may import or compute.
        inner = vars(obj).get(part, _MISSING)
        if inner is _MISSING:
            inner = sys.modules.get(f"{obj.__name__}.{part}", _MISSING)
        obj = inner
    return path, obj


def _module_label(module: types.ModuleType) -> str | None:
    filename = getattr(module, "__file__", None)
    if filename is None and getattr(module, "__path__", None):
        filename = next(iter(module.__path__), None)  # a namespace package
    return library_label(module.__name__, filename)


def _keeps_decorator(scope: dict[str, Any]) -> Callable[[ast.expr], bool]:
    """Whether a decorator is kept: all but those that resolve to cachier_like."""

    def keep(decorator: ast.expr) -> bool:
        expr = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(expr, ast.Name):
            path: tuple[str, ...] | None = (expr.id,)
        elif isinstance(expr, ast.Attribute):
            path = _dotted_expr(expr)
        else:
            return True
        if path is None:
            return True
        _, obj = _resolve(path, scope)
        if isinstance(obj, types.ModuleType) and len(path) > 1:
            obj = getattr(obj, path[-1], obj)  # cachier_like.cached through the module
        return obj is _MISSING or not _is_own(obj)

    return keep


def _dotted_expr(expr: ast.Attribute) -> tuple[str, ...] | None:
    parts: list[str] = []
    current: ast.expr = expr
    while isinstance(current, ast.Attribute):
        parts.insert(0, current.attr)
        current = current.value
    return (current.id, *parts) if isinstance(current, ast.Name) else None


def _describe(obj: Any) -> tuple[str, Any]:
    """What a referenced object contributes, and the user object to follow (or None)."""
    if obj is _MISSING:
        return "missing", None
    if isinstance(obj, types.ModuleType):
        label = _module_label(obj)
        return (f"library {label}" if label else f"module {obj.__name__}"), None
    if _is_constant(obj):
        return f"constant {stable_hash(obj)}", None
    target = _target(obj)
    if isinstance(target, types.FunctionType):
        label = library_label(target.__module__, target.__code__.co_filename)
        return (f"library {label}", None) if label else (f"code {_label(target)}", target)
    if isinstance(target, type):
        if target.__module__ == "builtins":
            return f"builtin {target.__qualname__}", None
        module = sys.modules.get(target.__module__)
        label = library_label(target.__module__, getattr(module, "__file__", None))
        return (f"library {label}", None) if label else (f"class {_label(target)}", target)
    if callable(target) and not hasattr(target, "__dict__"):
        # A C function or method: its module tells whose it is, its internals are unseen.
        name: str = getattr(target, "__module__", None) or type(target).__module__
        module = sys.modules.get(name)
        origin = library_label(name, getattr(module, "__file__", None)) or "user"
        return f"compiled {_label(target)} {origin}", None
    # An object's state is not seen (only its type), but its class's code is.
    cls = type(target)
    module = sys.modules.get(cls.__module__)
    lib = library_label(cls.__module__, getattr(module, "__file__", None))
    if lib is not None:
        return f"instance of {type_label(cls)} {lib}", None
    return f"instance of {type_label(cls)}", cls


class _Local:
    """One object's own contribution: its code and what it refers to, by name."""

    def __init__(self, obj: Any) -> None:
        self.label = _label(obj)
        self.parts: list[Any] = []
        self.follow: list[Any] = []
        if isinstance(obj, types.FunctionType):
            self._function(obj)
        elif isinstance(obj, type):
            self._class(obj)
        else:
            self._refer("object", obj)
        self.digest = stable_hash(tuple(self.parts))

    def _refer(self, key: str, obj: Any) -> None:
        description, follow = _describe(obj)
        self.parts.append((key, description))
        if follow is not None:
            self.follow.append(follow)

    def _refer_names(self, names: set[tuple[str, ...]], scope: dict[str, Any]) -> None:
        resolved: dict[tuple[str, ...], Any] = {}
        for path in names:
            key, obj = _resolve(path, scope)
            resolved[key] = obj
        for key in sorted(resolved):
            self._refer(".".join(key), resolved[key])

    def _function(self, func: types.FunctionType) -> None:
        code = func.__code__
        scope = func.__globals__
        loaded = global_names(code)
        node = function_node(func)
        normalized = normalize(node, _keeps_decorator(scope)) if node is not None else None
        if normalized is not None and loaded <= {path[0] for path in normalized.names}:
            self.parts.append(("ast", normalized.form))
            names = {path for path in normalized.names if path[0] in loaded}
            names |= normalized.decorator_names
        else:
            # No source, or a source that does not match the code (edited since import).
            logger.debug("no matching source for %s: fingerprinting its bytecode", self.label)
            self.parts.append(("bytecode", code_form(code, func.__doc__)))
            attributes = attribute_names(code)
            names = {(name,) for name in loaded}
            names |= {(name, attr) for name in loaded for attr in attributes}
        builtin_names = vars(builtins)
        names = {p for p in names if p[0] in scope or p[0] not in builtin_names}
        self._refer_names(names, scope)
        for index, default in enumerate(func.__defaults__ or ()):
            self._refer(f"default {index}", default)
        for name, default in sorted((func.__kwdefaults__ or {}).items()):
            self._refer(f"default {name}", default)
        for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=True):
            try:
                self._refer(f"closure {name}", cell.cell_contents)
            except ValueError:  # a cell not yet filled
                self.parts.append((f"closure {name}", "empty"))
        owner = _owner_class(func)
        if owner is not None:
            self._refer("class", owner)

    def _class(self, cls: type) -> None:
        module = sys.modules.get(cls.__module__)
        scope: dict[str, Any] = vars(module) if module is not None else {}
        nodes = class_nodes(cls, scope)
        if nodes:
            keep = _keeps_decorator(scope)
            names: set[tuple[str, ...]] = set()
            for node in nodes:
                normalized = normalize(node, keep)
                self.parts.append(("ast", normalized.form))
                names |= normalized.names | normalized.decorator_names
            self._refer_names({path for path in names if path[0] in scope}, scope)
        else:
            logger.debug("no source for class %s: fingerprinting its members", self.label)
            for name, member in sorted(vars(cls).items()):
                inner = _target(member)
                if isinstance(inner, types.FunctionType):
                    self.parts.append((f"member {name}", code_form(inner.__code__, inner.__doc__)))
                elif not name.startswith("__"):
                    self._refer(f"member {name}", member)
        for index, base in enumerate(cls.__bases__):
            if base is not object:
                self._refer(f"base {index}", base)


def _owner_class(func: types.FunctionType) -> type | None:
    """The class a method is defined in, when its module names it (``A.B.method``)."""
    path = func.__qualname__.split(".")[:-1]
    if not path or "<locals>" in path:
        return None
    obj: Any = func.__globals__.get(path[0])
    for part in path[1:]:
        obj = vars(obj).get(part) if isinstance(obj, type) else None
    return obj if isinstance(obj, type) else None


def _compute(target: Any) -> str:
    description, follow = _describe(target)
    if follow is None:  # library code, a builtin, a constant: what _describe says
        return stable_hash((_FORMAT, description))[:_DIGITS]
    seen = {id(follow): follow}  # ids only within this computation; they are never hashed
    level = [follow]
    records: list[tuple[str, str]] = []
    for _ in range(_MAX_DEPTH + 1):
        locals_ = sorted((_Local(obj) for obj in level), key=lambda x: (x.label, x.digest))
        level = []
        for local in locals_[: _MAX_OBJECTS - len(records)]:
            records.append((local.label, local.digest))
            for obj in local.follow:
                if id(obj) not in seen:
                    seen[id(obj)] = obj
                    level.append(obj)
        if not level or len(records) >= _MAX_OBJECTS:
            break
    if level:
        logger.debug("code fingerprint of %s stops after %d objects", description, len(records))
    records.sort()
    return stable_hash((_FORMAT, _label(follow), tuple(records)))[:_DIGITS]
