"""The normalized code of a function or class, and the global names it refers to.

The source comes from the function's file (through :mod:`linecache`, as
:func:`inspect.getsource` does), parsed once per file per process. A node's
normalized form is its syntax tree without positions, comments, formatting,
docstrings (its own and nested ones) and decorators that are cachier_like's own; a
function with no source is represented by its code object instead.
"""

from __future__ import annotations

import ast
import dis
import linecache
import threading
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Normalized",
    "class_nodes",
    "code_form",
    "function_node",
    "global_names",
    "normalize",
]

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
_WITH_DOCSTRING = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
#: Fields that are no code: comments, and how a string literal was spelled.
_SKIPPED_FIELDS = frozenset({"type_comment", "kind"})
#: Annotations are part of the normalized form, but the names in them are not
#: followed: a type hint does not change what a function computes.
_ANNOTATION_FIELDS = frozenset({"annotation", "returns"})


@dataclass
class _ModuleSource:
    text: str
    #: Function and lambda nodes by each line a code object may start on.
    by_line: dict[int, list[FunctionNode]] = field(default_factory=lambda: defaultdict(list))
    #: Class nodes by qualified name (``Outer.Inner``, ``f.<locals>.Local``).
    classes: dict[str, list[ast.ClassDef]] = field(default_factory=lambda: defaultdict(list))


class _Indexer(ast.NodeVisitor):
    def __init__(self, source: _ModuleSource) -> None:
        self.source = source
        self.scope: list[str] = []

    def _visit_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        # A decorated function's code starts on its first decorator's line.
        for line in {node.lineno, *(d.lineno for d in node.decorator_list[:1])}:
            self.source.by_line[line].append(node)
        self.scope += [node.name, "<locals>"]
        self.generic_visit(node)
        del self.scope[-2:]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_def(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_def(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.source.by_line[node.lineno].append(node)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.source.classes[".".join([*self.scope, node.name])].append(node)
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()


_sources: dict[str, _ModuleSource] = {}
_sources_lock = threading.Lock()


def _module_source(filename: str, module_globals: dict[str, Any] | None) -> _ModuleSource | None:
    lines = linecache.getlines(filename, module_globals)
    if not lines:
        return None
    text = "".join(lines)
    with _sources_lock:
        known = _sources.get(filename)
    if known is not None and known.text == text:
        return known
    try:
        tree = ast.parse(text, filename)
    except (SyntaxError, ValueError):
        return None
    source = _ModuleSource(text)
    _Indexer(source).visit(tree)
    with _sources_lock:
        _sources[filename] = source
    return source


def _starts_inside(node: ast.AST, code: types.CodeType) -> bool:
    """Whether ``code``'s first located instruction on its first line lies in ``node``."""
    # co_positions is Python 3.11+; function_node only asks when it exists.
    for line, _, start, end in getattr(code, "co_positions")():  # noqa: B009
        if line == code.co_firstlineno and start is not None and end is not None and end > start:
            node_start = getattr(node, "col_offset", 0)
            node_end = getattr(node, "end_col_offset", None)
            on_end_line = getattr(node, "end_lineno", None) == line
            return node_start <= start and (not on_end_line or node_end is None or end <= node_end)
    return False


def function_node(func: types.FunctionType) -> FunctionNode | None:
    """The ``def`` or ``lambda`` node ``func`` was compiled from, or None if not found.

    Example:
        >>> function_node(function_node).name
        'function_node'
    """
    code = func.__code__
    source = _module_source(code.co_filename, func.__globals__)
    if source is None:
        return None
    found: list[FunctionNode] = []
    for node in source.by_line.get(code.co_firstlineno, ()):
        if node in found:
            continue  # a def indexed under its def line and its decorator's
        lambda_match = code.co_name == "<lambda>" and isinstance(node, ast.Lambda)
        if lambda_match or (isinstance(node, _DEFS) and node.name == code.co_name):
            found.append(node)
    if len(found) > 1 and hasattr(code, "co_positions"):
        found = [node for node in found if _starts_inside(node, code)]
    return found[0] if len(found) == 1 else None


def class_nodes(cls: type, module_globals: dict[str, Any]) -> list[ast.ClassDef]:
    """The ``class`` statements named ``cls.__qualname__`` in its module (several if
    the module defines it conditionally), or none if the source is not available."""
    filename = module_globals.get("__file__")
    source = _module_source(filename, module_globals) if isinstance(filename, str) else None
    return list(source.classes.get(cls.__qualname__, ())) if source else []


@dataclass
class Normalized:
    """A node's normalized form, and the dotted names it reads (``("np", "mean")``)."""

    form: str
    names: set[tuple[str, ...]] = field(default_factory=set)
    #: The names read by the node's own decorators: evaluated where it is defined.
    decorator_names: set[tuple[str, ...]] = field(default_factory=set)


def _dotted(node: ast.Attribute) -> tuple[str, ...] | None:
    parts = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    parts.append(current.id)
    return tuple(reversed(parts))


class _Normalizer:
    def __init__(self, root: ast.AST, keep_decorator: Callable[[ast.expr], bool]) -> None:
        self.root = root
        self.keep_decorator = keep_decorator
        self.parts: list[str] = []
        self.decorator_names: set[tuple[str, ...]] = set()

    def dump(self, node: Any, names: set[tuple[str, ...]] | None) -> None:
        """Append ``node``'s form; add the names it reads to ``names`` (None: don't)."""
        if isinstance(node, list):
            self.parts.append("[")
            for item in node:
                self.dump(item, names)
                self.parts.append(",")
            self.parts.append("]")
            return
        if not isinstance(node, ast.AST):
            self.parts.append(repr(node))  # an identifier, a constant, an operator flag
            return
        if names is not None:
            if isinstance(node, ast.Name):
                names.add((node.id,))
            elif isinstance(node, ast.Attribute) and (dotted := _dotted(node)):
                names.add(dotted)
                names = None  # its inner parts are prefixes of the same name
        self.parts.append(type(node).__name__ + "(")
        for name, value in self._fields(node):
            self.parts.append(name + "=")
            if name in _ANNOTATION_FIELDS:
                self.dump(value, None)
            elif name == "decorator_list" and node is self.root:
                # The node's own decorators run where it is defined, not in its body.
                self.dump(value, self.decorator_names)
            else:
                self.dump(value, names)
        self.parts.append(")")

    def _fields(self, node: ast.AST) -> Iterator[tuple[str, Any]]:
        for name, value in ast.iter_fields(node):
            if name in _SKIPPED_FIELDS or value is None or (isinstance(value, list) and not value):
                continue  # absent fields: a field a newer Python adds empty changes nothing
            if name == "body" and isinstance(node, _WITH_DOCSTRING) and _is_docstring(value[0]):
                yield name, value[1:]
            elif name == "decorator_list":
                yield name, [d for d in value if self.keep_decorator(d)]
            else:
                yield name, value


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def normalize(node: ast.AST, keep_decorator: Callable[[ast.expr], bool]) -> Normalized:
    """The normalized form of ``node`` and the names it reads.

    Example:
        >>> one = ast.parse("def f(x):\\n    '''Doc.'''\\n    return g(x)  # why\\n").body[0]
        >>> two = ast.parse("def f(x):\\n\\n    return (g(x))\\n").body[0]
        >>> a, b = normalize(one, bool), normalize(two, bool)
        >>> a.form == b.form, sorted(a.names)
        (True, [('g',), ('x',)])
    """
    normalizer = _Normalizer(node, keep_decorator)
    names: set[tuple[str, ...]] = set()
    normalizer.dump(node, names)
    return Normalized("".join(normalizer.parts), names, normalizer.decorator_names)


def global_names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it load (the bytecode's view).

    Example:
        >>> def f(x):
        ...     return [len(y) for y in x] + helper(x)
        >>> sorted(global_names(f.__code__))
        ['helper', 'len']
    """
    names: set[str] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        for instruction in dis.get_instructions(current):
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                names.add(instruction.argval)
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return names


def attribute_names(code: types.CodeType) -> set[str]:
    """Every name in ``code``'s and its nested code's ``co_names`` (globals and attributes)."""
    names: set[str] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        names.update(current.co_names)
        pending.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return names


def code_form(code: types.CodeType, doc: str | None = None) -> tuple[Any, ...]:
    """A function's code object as hashable data, for functions with no source.

    The docstring (``doc``, when it is the first constant) is left out; the result is
    the same in every process of one Python version.
    """
    consts: list[Any] = list(code.co_consts)
    if doc is not None and consts and consts[0] == doc:
        consts = consts[1:]
    return (
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_code,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        tuple(_const_form(const) for const in consts),
    )


def _const_form(const: Any) -> Any:
    if isinstance(const, types.CodeType):
        return ("code", code_form(const))
    if isinstance(const, tuple):
        return tuple(_const_form(item) for item in const)
    if const is Ellipsis:
        return ("...",)
    return const  # str, bytes, numbers, None, frozenset: stable_hash encodes them by value
