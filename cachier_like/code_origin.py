"""Whose code is it: the user's own, or a library's (and then which version)?

A code fingerprint (:mod:`cachier_like.fingerprint`) reads the source of the user's
own code and only the name and version of a library's. Library code is:

* the standard library and built-in modules: ``python==3.X`` (the minor version);
* a module file under an install location (``site-packages``, ``dist-packages``, the
  user site, sysconfig's ``purelib``/``platlib``): its distribution's ``name==version``
  from :func:`importlib.metadata.packages_distributions`;
* cachier_like itself, wherever it is installed from.

Everything else is the user's: in particular a project installed in editable mode,
whose files stay in the project's directory, and a script's ``__main__``.
"""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig
from importlib import metadata

__all__ = ["STDLIB_LABEL", "distribution_label", "library_label"]

#: The label of standard-library code: its behaviour is the interpreter's minor version.
STDLIB_LABEL = f"python=={sys.version_info.major}.{sys.version_info.minor}"
_OWN_PACKAGE = __name__.partition(".")[0]


@functools.cache
def _install_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(site directories, standard-library directories)``, resolved, ending in a separator.

    Site directories come first in the checks: the base interpreter's ``site-packages``
    sits inside its standard-library directory.
    """
    paths = sysconfig.get_paths()
    sites = {paths["purelib"], paths["platlib"]}
    sites.update(getattr(site, "getsitepackages", list)())
    if hasattr(site, "getusersitepackages"):
        sites.add(site.getusersitepackages())
    sites.update(
        entry
        for entry in sys.path
        if os.path.basename(entry.rstrip(os.sep)) in ("site-packages", "dist-packages")
    )
    stdlib = {paths["stdlib"], paths["platstdlib"]}

    def resolved(dirs: set[str]) -> tuple[str, ...]:
        # Longest first, so the most specific directory claims a file.
        return tuple(
            sorted({os.path.join(os.path.realpath(d), "") for d in dirs}, key=len, reverse=True)
        )

    return resolved(sites), resolved(stdlib)


@functools.cache
def _packages() -> dict[str, tuple[str, ...]]:
    # Reading every installed distribution's metadata takes ~100 ms with a hundred of
    # them: once per process, and only for import names unlike their distribution's.
    return {
        name: tuple(sorted(set(dists))) for name, dists in metadata.packages_distributions().items()
    }


def _distributions(top_level: str, scan: bool = True) -> tuple[str, ...]:
    """The distributions providing the import name ``top_level`` (``scan``: look
    through all of them if none is named so)."""
    try:
        dist = metadata.distribution(top_level)  # most are named as they are imported
    except (metadata.PackageNotFoundError, ValueError):
        return _packages().get(top_level, ()) if scan else ()
    provided = dist.read_text("top_level.txt")
    if provided is not None and top_level not in provided.split():
        # A namesake that provides something else.
        return _packages().get(top_level, ()) if scan else ()
    return (dist.metadata["Name"],)


@functools.cache
def distribution_label(top_level: str) -> str:
    """``"dist==version"`` of the distribution(s) providing the import name ``top_level``.

    Example:
        >>> distribution_label("xxhash").startswith("xxhash==")
        True
        >>> distribution_label("no_such_module_here")
        'no_such_module_here==?'
    """
    dists = _distributions(top_level)
    if not dists:
        return f"{top_level}==?"
    labels = []
    for dist in dists:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "?"
        labels.append(f"{dist}=={version}")
    return ",".join(labels)


def library_label(module_name: str | None, filename: str | None) -> str | None:
    """The version label of library code, or None for the user's own code.

    ``module_name`` is the code's module (``func.__module__``), ``filename`` the file
    its code comes from (``co_filename``, a module's ``__file__``), when known.

    Example:
        >>> import json
        >>> library_label("json", json.__file__) == STDLIB_LABEL
        True
        >>> library_label("app.helpers", "/srv/project/app/helpers.py") is None
        True
    """
    top = (module_name or "").partition(".")[0]
    if top == _OWN_PACKAGE:
        return distribution_label(top)
    if filename and filename.startswith("<frozen"):
        return STDLIB_LABEL
    if filename and not filename.startswith("<"):
        path = os.path.realpath(filename)
        sites, stdlib = _install_dirs()
        for directory in sites:
            if path.startswith(directory):
                first = path[len(directory) :].split(os.sep, 1)[0]
                return distribution_label(first.split(".", 1)[0] or top)
        if any(path.startswith(directory) for directory in stdlib):
            return STDLIB_LABEL
        return None
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return STDLIB_LABEL
    if top and top not in ("__main__", "__mp_main__") and _distributions(top, scan=False):
        return distribution_label(top)
    return None  # no file and no distribution: code made at run time, seen by its bytecode
