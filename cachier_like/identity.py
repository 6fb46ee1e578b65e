"""A cached function's identity (its namespace): module and qualified name.

Functions of an importable module are ``module.qualname``. Functions defined in a
script run as ``python path/to/run.py`` live in the module ``__main__`` (and, in a
child started with ``spawn`` or ``forkserver``, in ``__mp_main__``), so two scripts
would share one namespace; theirs is derived from the script itself instead:

* run as ``python -m pkg.mod``: ``pkg.mod.qualname``, as if it had been imported;
* run as ``python path/to/run.py``: ``/resolved/path/to/run.py:qualname``.

Both are the same in every run of the script and in its spawned children, and the
CLI can name a script's function by its path without running it
(``cachier-like ls path/to/run.py:featurize``). Code with no file (the REPL,
``python -c``, a notebook) keeps ``__main__.qualname``: pass ``namespace=`` there.

A ``functools.partial`` is the function it wraps, with some arguments given
(:func:`unwrap_partial`): it has that function's namespace, and its calls the keys of
that function's calls.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "SCRIPT_MODULES",
    "function_namespace",
    "is_version_of",
    "labelled_namespace",
    "script_namespace",
    "unwrap_partial",
]

#: The module names a script's code runs under (``__mp_main__``: a spawned child).
SCRIPT_MODULES = frozenset({"__main__", "__mp_main__"})


def unwrap_partial(
    func: Callable[..., Any],
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """``(function, args, keywords)``: what calling ``func`` (maybe a partial) amounts to.

    Nested partials merge as Python applies them: inner positional arguments first,
    outer keywords over inner ones. A plain function comes back with no arguments.

    Example:
        >>> import functools
        >>> def f(a, b, c=0): ...
        >>> inner = functools.partial(f, 1, c=5)
        >>> unwrap_partial(functools.partial(inner, 2, c=7))[1:]
        ((1, 2), {'c': 7})
    """
    args: tuple[Any, ...] = ()
    keywords: dict[str, Any] = {}
    while isinstance(func, functools.partial):
        args = func.args + args
        keywords = {**func.keywords, **keywords}
        func = func.func
    return func, args, keywords


def script_namespace(path: str | os.PathLike[str], qualname: str) -> str:
    """The namespace of the function ``qualname`` defined in the script at ``path``.

    Example:
        >>> script_namespace("/srv/jobs/train/run.py", "featurize")
        '/srv/jobs/train/run.py:featurize'
    """
    return f"{Path(path).resolve()}:{qualname}"


def _script_identity(module_name: str) -> tuple[str, str] | None:
    """``(module name, "")`` under ``-m``, ``("", script path)`` for a file, else None."""
    module: Any = sys.modules.get(module_name)
    if module is None:
        return None
    spec = getattr(module, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name not in SCRIPT_MODULES:
        return name, ""  # python -m pkg.mod (and its spawned children)
    path = getattr(module, "__file__", None)
    if isinstance(path, str) and path:
        return "", path
    return None


def function_namespace(func: Callable[..., Any]) -> str:
    """The namespace ``@cached`` gives ``func`` when no ``namespace=`` is passed.

    A partial has the namespace of the function it wraps.

    Example:
        >>> import functools, json
        >>> function_namespace(json.dumps), function_namespace(functools.partial(json.dumps))
        ('json.dumps', 'json.dumps')
    """
    func = unwrap_partial(func)[0]
    module_name = getattr(func, "__module__", None) or "__main__"
    qualname = str(getattr(func, "__qualname__", None) or getattr(func, "__name__", "function"))
    if module_name in SCRIPT_MODULES:
        found = _script_identity(module_name)
        if found is not None:
            name, path = found
            return f"{name}.{qualname}" if name else script_namespace(path, qualname)
        module_name = "__main__"  # interactive: the same in a spawned child
    return f"{module_name}.{qualname}"


#: Separates a function's namespace from its version label in the stored namespace.
VERSION_MARK = "@"


def labelled_namespace(namespace: str, version: str | None, fingerprint: str | None) -> str:
    """The namespace entries are stored under: ``namespace``, plus ``version=`` and the
    ``track_code`` fingerprint when given, so entries of another version are never read.

    Example:
        >>> labelled_namespace("pkg.f", None, None), labelled_namespace("pkg.f", "2", None)
        ('pkg.f', 'pkg.f@v2')
        >>> labelled_namespace("pkg.f", "2", "0123abcd")
        'pkg.f@v2+code-0123abcd'
    """
    parts = []
    if version is not None:
        parts.append(f"v{version}")
    if fingerprint is not None:
        parts.append(f"code-{fingerprint}")
    return f"{namespace}{VERSION_MARK}{'+'.join(parts)}" if parts else namespace


def is_version_of(stored: str, namespace: str) -> bool:
    """Whether the stored namespace ``stored`` holds some version of ``namespace``'s entries.

    Example:
        >>> is_version_of("pkg.f@v1", "pkg.f"), is_version_of("pkg.f", "pkg.f")
        (True, True)
        >>> is_version_of("pkg.f2@v1", "pkg.f")
        False
    """
    return stored == namespace or stored.startswith(namespace + VERSION_MARK)
