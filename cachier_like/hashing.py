"""Stable content hashing: a type-tagged encoding of values, hashed with XXH3-128.

``1``, ``1.0``, ``True`` and ``"1"`` encode differently; dicts and sets encode by
content, whatever their order; numpy and pandas objects by dtype, shape and data.
Nothing depends on ``PYTHONHASHSEED`` or the process, so digests agree across runs
and machines. A container met again inside itself (``a = []; a.append(a)``) is encoded
as a back-reference to it, so self-referential values hash by structure. Types with
no exact-type encoder here are encoded by :mod:`cachier_like.hashing_types`.
"""

from __future__ import annotations

import struct
import sys
import uuid
from array import array
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import xxhash

from .errors import CachierLikeError

#: A piece of an encoding: bytes, or a view of a buffer that is hashed without a copy.
Chunk = bytes | memoryview
#: The ids of the mutable containers and objects enclosing the value being encoded,
#: outermost first. Only those can close a cycle (an immutable tuple cannot contain
#: itself except through one of them), so tuples and sets are not recorded.
Path = list[int]
Encoder = Callable[[Any, list[Chunk], Path], None]

_pack_double = struct.Struct("<d").pack


class UnhashableValueError(CachierLikeError, TypeError):
    """A value with no content to hash: it has no encoder, and neither reduces nor pickles.

    A generator, a lock, a socket, an object whose ``__reduce__`` raises. ``value_type``
    is the type of that value (which may sit deep inside the argument).

    Example:
        >>> import threading
        >>> try:
        ...     stable_hash([1, threading.Lock()])
        ... except UnhashableValueError as error:
        ...     print(error.value_type.__name__)
        lock
    """

    def __init__(self, value_type: type, cause: BaseException) -> None:
        super().__init__(f"cannot hash a {type_label(value_type)!r} object: {cause}")
        self.value_type = value_type


def type_label(cls: type) -> str:
    """``cls``'s qualified name, with its module unless it is a builtin.

    Example:
        >>> import threading
        >>> type_label(list), type_label(type(threading.Lock()))
        ('list', '_thread.lock')
    """
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"


def _enter(obj: Any, out: list[Chunk], path: Path) -> bool:
    """Record ``obj`` on the path; if it already is, encode a back-reference and say so.

    The back-reference counts enclosing containers, so it is the same in every process.
    """
    ident = id(obj)
    if ident in path:
        out.append(b"^%d;" % (len(path) - path.index(ident)))
        return False
    path.append(ident)
    return True


def _encode_str(obj: str, out: list[Chunk], path: Path) -> None:
    data = obj.encode("utf-8", "surrogatepass")
    out.append(b"s%d:" % len(data))
    out.append(data)


def _encode_bytes(obj: bytes | bytearray | memoryview, out: list[Chunk], path: Path) -> None:
    data = bytes(obj) if not isinstance(obj, bytes) else obj
    out.append(b"b%d:" % len(data))
    out.append(data)


def _encode_int(obj: int, out: list[Chunk], path: Path) -> None:
    out.append(b"i%d;" % obj)


def _encode_float(obj: float, out: list[Chunk], path: Path) -> None:
    out.append(b"f" + _pack_double(obj))


def _encode_bool(obj: bool, out: list[Chunk], path: Path) -> None:
    out.append(b"T" if obj else b"F")


def _encode_none(obj: None, out: list[Chunk], path: Path) -> None:
    out.append(b"N")


def _encode_complex(obj: complex, out: list[Chunk], path: Path) -> None:
    out.append(b"c" + _pack_double(obj.real) + _pack_double(obj.imag))


def _little_endian(values: array[Any]) -> memoryview:
    # A view, not a copy: the hasher reads the buffer directly.
    if sys.byteorder == "big":
        values.byteswap()
    return memoryview(values).cast("B")


def _encode_homogeneous(obj: Any, out: list[Chunk]) -> bool:
    """Encode a long list of one exact scalar type in bulk, without a call per item."""
    kind = type(obj[0])
    if list(map(type, obj)).count(kind) != len(obj):  # faster than a set of the types
        return False
    packed: Chunk
    if kind is int:
        try:
            packed = _little_endian(array("q", obj))
        except OverflowError:
            return False
        out.append(b"hi")
    elif kind is float:
        packed = _little_endian(array("d", obj))
        out.append(b"hf")
    elif kind is str:
        # Character lengths split the joined text back unambiguously.
        out.append(b"hs" + _little_endian(array("q", map(len, obj))))
        packed = "".join(obj).encode("utf-8", "surrogatepass")
    elif kind is bytes:
        out.append(b"hb" + _little_endian(array("q", map(len, obj))))
        packed = b"".join(obj)
    else:
        return False
    out.append(b"%d:" % len(packed))
    out.append(packed)
    return True


_BULK_THRESHOLD = 16


def _encode_items(tag: bytes, obj: Any, out: list[Chunk], path: Path) -> None:
    out.append(tag + b"%d[" % len(obj))
    if len(obj) < _BULK_THRESHOLD or not _encode_homogeneous(obj, out):
        for item in obj:
            _encode(item, out, path)
    out.append(b"]")


# Tuples and lists are the most common arguments: their encoders inline _encode_items
# (and lists _enter), a measurable share of a small key's cost.


def _encode_tuple(obj: tuple[Any, ...], out: list[Chunk], path: Path) -> None:
    out.append(b"(%d[" % len(obj))
    if len(obj) < _BULK_THRESHOLD or not _encode_homogeneous(obj, out):
        for item in obj:
            _encode(item, out, path)
    out.append(b"]")


def _encode_list(obj: list[Any], out: list[Chunk], path: Path) -> None:
    ident = id(obj)
    if ident in path:
        out.append(b"^%d;" % (len(path) - path.index(ident)))
        return
    path.append(ident)
    out.append(b"L%d[" % len(obj))
    if len(obj) < _BULK_THRESHOLD or not _encode_homogeneous(obj, out):
        for item in obj:
            _encode(item, out, path)
    out.append(b"]")
    path.pop()


def _encoded(obj: Any, path: Path) -> bytes:
    parts: list[Chunk] = []
    _encode(obj, parts, path)
    return b"".join(parts)


def _encode_mapping(
    obj: Mapping[Any, Any], out: list[Chunk], path: Path, tag: bytes = b"d"
) -> None:
    ident = id(obj)
    if ident in path:
        out.append(b"^%d;" % (len(path) - path.index(ident)))
        return
    path.append(ident)
    # Order-free: sort the encoded pairs, so insertion order never matters.
    pairs = [_encoded(k, path) + _encoded(v, path) for k, v in obj.items()]
    pairs.sort()  # a list sorted in place: cheaper than sorted() of a generator
    path.pop()
    out.append(tag + b"%d{" % len(pairs))
    out.extend(pairs)
    out.append(b"}")


def _encode_set(obj: set[Any] | frozenset[Any], out: list[Chunk], path: Path) -> None:
    items = [_encoded(item, path) for item in obj]
    items.sort()
    out.append((b"S" if isinstance(obj, set) else b"Z") + b"%d{" % len(items))
    out.extend(items)
    out.append(b"}")


def _type_name(cls: type) -> bytes:
    return f"{cls.__module__}.{cls.__qualname__}".encode()


def _encode_tagged_text(tag: bytes, text: str, out: list[Chunk]) -> None:
    data = text.encode("utf-8", "surrogatepass")
    out.append(tag + b"%d:" % len(data))
    out.append(data)


def _encode_datetime(obj: datetime | date | time, out: list[Chunk], path: Path) -> None:
    # isoformat keeps the UTC offset, so equal wall times in different zones differ.
    _encode_tagged_text(b"D" + _type_name(type(obj)), obj.isoformat(), out)


def _encode_timedelta(obj: timedelta, out: list[Chunk], path: Path) -> None:
    out.append(b"t%d,%d,%d;" % (obj.days, obj.seconds, obj.microseconds))


def _encode_decimal(obj: Decimal, out: list[Chunk], path: Path) -> None:
    _encode_tagged_text(b"m", str(obj), out)


def _encode_uuid(obj: uuid.UUID, out: list[Chunk], path: Path) -> None:
    out.append(b"u" + obj.bytes)


_ENCODERS: dict[type, Encoder] = {
    str: _encode_str,
    int: _encode_int,
    float: _encode_float,
    bool: _encode_bool,
    type(None): _encode_none,
    bytes: _encode_bytes,
    bytearray: _encode_bytes,
    memoryview: _encode_bytes,
    complex: _encode_complex,
    tuple: _encode_tuple,
    list: _encode_list,
    dict: _encode_mapping,
    set: _encode_set,
    frozenset: _encode_set,
    datetime: _encode_datetime,
    date: _encode_datetime,
    time: _encode_datetime,
    timedelta: _encode_timedelta,
    Decimal: _encode_decimal,
    uuid.UUID: _encode_uuid,
}


def _encode(obj: Any, out: list[Chunk], path: Path) -> None:
    encoder = _ENCODERS.get(type(obj))
    if encoder is not None:
        encoder(obj, out, path)
    else:
        _encode_other(obj, out, path)


def stable_hash(obj: Any) -> str:
    """Return the 32-hex-digit content hash of ``obj``, identical in every process.

    Raises :class:`UnhashableValueError` (a ``TypeError``) for a value with no content
    to hash, such as a generator or a lock.

    Example:
        >>> stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
        True
        >>> stable_hash(1) == stable_hash(1.0) or stable_hash(1) == stable_hash(True)
        False
        >>> loop = [1]; loop.append(loop)
        >>> again = [1]; again.append(again)
        >>> stable_hash(loop) == stable_hash(again)
        True
    """
    parts: list[Chunk] = []
    _encode(obj, parts, [])
    hasher = xxhash.xxh3_128()
    for part in parts:
        hasher.update(part)
    return str(hasher.hexdigest())


# The type-specific encoders recurse through _encode, so they import this module's
# names: imported last, once those exist.
from .hashing_types import _encode_other  # noqa: E402
