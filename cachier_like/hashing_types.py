"""The hashing of everything without an exact-type encoder in :mod:`cachier_like.hashing`.

Enums, classes, dataclasses, paths, numpy and pandas objects, subclasses of the
builtin containers and scalars, functions (with their code and closure when nested),
other callables, and any other object by what ``__reduce_ex__`` (or, failing that,
its pickle) says rebuilds it.
"""

from __future__ import annotations

import dataclasses
import enum
import pickle
import sys
import types
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from .hashing import (
    _ENCODERS,
    Chunk,
    Path,
    UnhashableValueError,
    _encode,
    _encode_bytes,
    _encode_items,
    _encode_mapping,
    _encode_set,
    _encode_tagged_text,
    _enter,
    _type_name,
)


def _encode_numpy(obj: Any, out: list[Chunk], path: Path) -> bool:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return False
    if isinstance(obj, numpy.ndarray):
        if obj.dtype.hasobject:
            out.append(b"A" + obj.dtype.str.encode() + repr(obj.shape).encode())
            _encode(obj.tolist(), out, path)
            return True
        # Hash the raw buffer: no pickling, no copy when already C-contiguous.
        data = numpy.ascontiguousarray(obj)
        header = f"{data.dtype.str}|{data.shape}".encode()
        out.append(b"A%d:" % len(header) + header)
        out.append(b"%d:" % data.nbytes)
        out.append(data.data.cast("B") if data.nbytes else b"")
        return True
    if isinstance(obj, numpy.generic):
        _encode_tagged_text(b"g" + obj.dtype.str.encode(), repr(obj.item()), out)
        return True
    return False


def _encode_pandas(obj: Any, out: list[Chunk], path: Path) -> bool:
    pandas = sys.modules.get("pandas")
    if pandas is None or not isinstance(obj, (pandas.DataFrame, pandas.Series, pandas.Index)):
        return False
    if isinstance(obj, pandas.Index):
        out.append(b"PI")
        _encode(obj.to_numpy(), out, path)
        _encode(str(obj.dtype), out, path)
        _encode(obj.name, out, path)
        return True
    # Row hashes cover values and index; dtypes, names and shape are added so that
    # frames differing only in those never collide.
    row_hashes = pandas.util.hash_pandas_object(obj, index=True).to_numpy()
    if isinstance(obj, pandas.DataFrame):
        out.append(b"PD")
        _encode(obj.columns, out, path)  # an Index: labels keep their types
        _encode([str(t) for t in obj.dtypes], out, path)
    else:
        out.append(b"PS")
        _encode(obj.name, out, path)
        _encode(str(obj.dtype), out, path)
    _encode(obj.shape, out, path)
    _encode(row_hashes, out, path)
    return True


def _encode_other(obj: Any, out: list[Chunk], path: Path) -> None:
    cls = type(obj)
    if isinstance(obj, enum.Enum):
        out.append(b"E" + _type_name(cls) + b".")
        _encode(obj.name, out, path)
    elif isinstance(obj, type):
        _encode_tagged_text(b"C", f"{obj.__module__}.{obj.__qualname__}", out)
    elif dataclasses.is_dataclass(obj):
        if _enter(obj, out, path):
            out.append(b"K" + _type_name(cls) + b"{")
            for field in dataclasses.fields(obj):
                _encode(field.name, out, path)
                _encode(getattr(obj, field.name), out, path)
            out.append(b"}")
            path.pop()
    elif isinstance(obj, PurePath):
        _encode_tagged_text(b"p" + _type_name(cls), obj.as_posix(), out)
    elif _encode_numpy(obj, out, path) or _encode_pandas(obj, out, path):
        pass
    elif isinstance(obj, Mapping):
        _encode_mapping(obj, out, path, tag=b"M" + _type_name(cls))
    elif isinstance(obj, (set, frozenset)):
        out.append(b"X" + _type_name(cls))
        _encode_set(obj, out, path)
    elif isinstance(obj, (tuple, list)):
        # Subclasses (namedtuples, ...) keep their type in the key.
        out.append(b"Q" + _type_name(cls))
        if _enter(obj, out, path):
            _encode_items(b"(", obj, out, path)
            path.pop()
    elif isinstance(obj, (str, int, float, bytes)):
        out.append(b"V" + _type_name(cls))
        base = next(b for b in (str, bool, int, float, bytes) if isinstance(obj, b))
        _ENCODERS[base](obj, out, path)
    elif isinstance(obj, types.FunctionType):
        _encode_function(obj, out, path)
    elif callable(obj) and hasattr(obj, "__qualname__"):
        _encode_tagged_text(b"c", f"{getattr(obj, '__module__', '')}.{obj.__qualname__}", out)
    else:
        _encode_reduced(obj, out, path)


def _encode_code(code: types.CodeType, out: list[Chunk], path: Path) -> None:
    out.append(b"k%d:" % len(code.co_code) + code.co_code)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _encode_code(const, out, path)
        else:
            _encode(const, out, path)


def _encode_function(func: types.FunctionType, out: list[Chunk], path: Path) -> None:
    """A module-level function is its name; a lambda or nested one also its code.

    Two lambdas of one scope share a qualified name, so their bytecode, constants
    and closure values tell them apart. A nested function that calls itself holds
    itself in its closure: that is a back-reference.
    """
    _encode_tagged_text(b"c", f"{func.__module__}.{func.__qualname__}", out)
    if "<" in func.__qualname__ and _enter(func, out, path):
        _encode_code(func.__code__, out, path)
        for cell in func.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                out.append(b"-")
            else:
                _encode(contents, out, path)
        path.pop()


def _encode_reduced(obj: Any, out: list[Chunk], path: Path) -> None:
    """Encode an arbitrary object by what ``__reduce_ex__`` says rebuilds it.

    The parts (constructor, arguments, state) go through the same content encoding, so
    a set or dict held by the object hashes by content, not by iteration order. An
    object that cannot be reduced that way is encoded by its pickle; one that cannot
    be pickled either has no content to hash.
    """
    out.append(b"O" + _type_name(type(obj)))
    if not _enter(obj, out, path):
        return
    depth = len(path)
    parts: list[Chunk] = []
    try:
        reduced = obj.__reduce_ex__(4)
        if isinstance(reduced, str):  # a global singleton, named
            _encode(reduced, parts, path)
        else:
            items = [
                list(part) if index >= 3 and part is not None else part
                for index, part in enumerate(reduced)
            ]
            _encode(items, parts, path)
    except Exception as error:  # exotic state (too deep, or a reduce that raises)
        del path[depth:]
        try:
            parts = []
            _encode_bytes(pickle.dumps(obj, protocol=4), parts, path)
        except Exception as pickle_error:
            if isinstance(error, UnhashableValueError):
                raise error from None  # the innermost culprit names the better type
            raise UnhashableValueError(type(obj), pickle_error) from pickle_error
    path.pop()
    out.extend(parts)
