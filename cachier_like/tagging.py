"""Tags: the versions an entry records, and their place in a stored payload.

A tag names a group of entries (``"user:7"``) that one call can invalidate across
functions sharing a store: the store keeps a version per tag (an atomic increment per
invalidation), a call reads the versions of its tags before computing, and the entry
records them. An entry whose recorded versions differ from the store's is stale.

Serializing cores keep the recorded versions inside the stored payload, ahead of the
serialized value and under its signature (:func:`frame`, :func:`unframe`), so no core
needs a column or a header field of its own for them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, cast

from .errors import ConfigurationError

__all__ = [
    "FRAME",
    "MAX_TAG_BYTES",
    "Expected",
    "TagVersions",
    "TagsOption",
    "check_tags",
    "expected",
    "frame",
    "recorded",
    "tags_option",
    "unframe",
]

#: What an entry records: each tag of its call with the version read before computing.
TagVersions = tuple[tuple[str, int], ...]

#: Leads a payload that carries tag versions; a pickle starts with 0x80, JSON with text.
FRAME = b"\x00clt\x01"
#: The longest tag name, in UTF-8 bytes.
MAX_TAG_BYTES = 512
_HEAD = len(FRAME)
_LENGTH = struct.Struct(">I")
#: The frame's head: FRAME, then the length of the record that follows it.
_FRAME_HEAD = struct.Struct(f">{_HEAD}sI")
_RECORD_AT = _FRAME_HEAD.size
_COUNT = struct.Struct(">H")
#: Tag records read, by their bytes (at most _MAX_RECORDS kept).
_RECORDS: dict[bytes, TagVersions] = {}
_MAX_RECORDS = 4096
_NAME = struct.Struct(">H")
_VERSION = struct.Struct(">q")


def check_tags(tags: Iterable[object], where: str = "tags") -> tuple[str, ...]:
    """``tags`` as a tuple of distinct non-empty strings, in the order first given.

    Raises ``ConfigurationError`` (a ``ValueError``) naming the fix for anything else.

    Example:
        >>> check_tags(["user:7", "team:2", "user:7"])
        ('user:7', 'team:2')
    """
    if isinstance(tags, (str, bytes)):
        raise ConfigurationError(
            f"{where} must be a sequence of strings, not one {type(tags).__name__}: "
            f"write [{tags!r}]"
        )
    try:
        items = list(tags)
    except TypeError:
        raise ConfigurationError(
            f"{where} must be a sequence of strings, not {type(tags).__name__}"
        ) from None
    seen: dict[str, None] = {}
    for tag in items:
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(f"{where}: every tag must be a non-empty str, not {tag!r}")
        if len(tag.encode("utf-8", "surrogatepass")) > MAX_TAG_BYTES:
            raise ConfigurationError(f"{where}: tag {tag[:40]!r}... is over {MAX_TAG_BYTES} bytes")
        seen[tag] = None
    return tuple(seen)


def recorded(tags: tuple[str, ...], versions: tuple[int, ...]) -> TagVersions:
    """The record an entry keeps: each tag beside the version read for it.

    Example:
        >>> recorded(("a", "b"), (3, 0))
        (('a', 3), ('b', 0))
    """
    return tuple(zip(tags, versions, strict=True))


class Expected(tuple[int, ...]):
    """Tag versions (a tuple of them, as :meth:`Core.tag_versions` returns), with what an
    entry computed under them records.

    ``record`` is what :attr:`~cachier_like.entry.Entry.tags` holds, ``head`` the frame
    its payload starts with (:func:`frame` of ``record``, without the value): a core
    comparing the payload's first bytes with ``head`` knows the entry is current
    without parsing its frame. A core's ``get_tagged`` may return one as the versions;
    a caller then compares the entry's tags with ``record`` without building it.

    Example:
        >>> found = expected(("user:7",), (2,))
        >>> found == (2,), found.record
        (True, (('user:7', 2),))
    """

    record: TagVersions
    head: bytes

    def __new__(cls, versions: tuple[int, ...], record: TagVersions, head: bytes) -> Expected:
        made = super().__new__(cls, versions)
        made.record, made.head = record, head
        return made


#: Expectations made, by (tags, versions) (at most _MAX_RECORDS kept).
_EXPECTED: dict[tuple[tuple[str, ...], tuple[int, ...]], Expected] = {}


def expected(tags: tuple[str, ...], versions: tuple[int, ...]) -> Expected:
    """The :class:`Expected` of an entry of ``tags`` current at ``versions`` (memoized:
    a tagged hit asks it for the same tags and versions until an invalidation).

    Example:
        >>> found = expected(("user:7",), (2,))
        >>> found.record, unframe(found.head + b"value")
        ((('user:7', 2),), ((('user:7', 2),), b'value'))
    """
    slot = (tags, versions)
    found = _EXPECTED.get(slot)
    if found is None:
        record = recorded(tags, versions)
        head = frame(record, b"")
        # The record parsed from such an entry is this very tuple (a cheap comparison).
        record = _RECORDS.setdefault(head[_RECORD_AT:], record)
        found = Expected(versions, record, head)
        if len(_EXPECTED) >= _MAX_RECORDS:
            _EXPECTED.clear()  # a bound, not an LRU, as for _RECORDS
        _EXPECTED[slot] = found
    return found


def frame(tags: TagVersions, payload: bytes) -> bytes:
    """``payload`` led by the tag versions it was computed under (nothing when none).

    The frame: :data:`FRAME`, the length of the record, the record (a count, then each
    tag's name and version); reads look a record up by its bytes (:func:`unframe`).

    Example:
        >>> unframe(frame((("user:7", 2),), b"value"))
        ((('user:7', 2),), b'value')
    """
    if not tags:
        return payload
    parts = [_COUNT.pack(len(tags))]
    for name, version in tags:
        data = name.encode("utf-8", "surrogatepass")
        parts += (_NAME.pack(len(data)), data, _VERSION.pack(version))
    record = b"".join(parts)
    return b"".join((FRAME, _LENGTH.pack(len(record)), record, payload))


def unframe(payload: Any) -> tuple[TagVersions, Any] | None:
    """The tag versions and the serialized value of a payload; None when the frame is cut.

    ``payload`` is bytes or a memoryview (its value part is a slice of it: no copy). A
    payload without the frame carries no tags: ``((), payload)``. Records already read
    are looked up by their bytes: entries of one tag set share few distinct records.
    """
    try:
        head, size = _FRAME_HEAD.unpack_from(payload)
    except struct.error:  # shorter than a frame's head: a cut frame, or no frame
        start = bytes(payload[:_HEAD])
        return None if FRAME.startswith(start) else ((), payload)
    if head != FRAME:
        return (), payload
    end = _RECORD_AT + size
    record = payload[_RECORD_AT:end]
    if len(record) != size:
        return None
    if type(record) is not bytes:
        record = bytes(record)
    tags = _RECORDS.get(record)
    if tags is None:
        tags = _parse(record)
        if tags is None:
            return None
        if len(_RECORDS) >= _MAX_RECORDS:
            _RECORDS.clear()  # a bound, not an LRU: records are cheap to parse again
        _RECORDS[record] = tags
    return tags, payload[end:]


def _parse(record: bytes) -> TagVersions | None:
    try:
        (count,) = _COUNT.unpack_from(record, 0)
        at = _COUNT.size
        tags = []
        for _ in range(count):
            (size,) = _NAME.unpack_from(record, at)
            at += _NAME.size
            if at + size > len(record):
                return None
            name = record[at : at + size].decode("utf-8", "surrogatepass")
            at += size
            (version,) = _VERSION.unpack_from(record, at)
            at += _VERSION.size
            tags.append((name, version))
    except (struct.error, UnicodeDecodeError):
        return None
    return tuple(tags) if at == len(record) else None


#: ``tags=``: fixed tags, or a callable of the call's arguments returning them.
TagsOption = tuple[str, ...] | Callable[..., Iterable[str]] | None


def tags_option(value: Any, name: str = "tags") -> TagsOption:
    """``tags=`` checked: a sequence of tag names, a callable, or None (no tags).

    Example:
        >>> tags_option(["reports", "reports"])
        ('reports',)
        >>> callable(tags_option(lambda user_id, **_: [f"user:{user_id}"]))
        True
    """
    if value is None:
        return None
    if callable(value):
        return cast(Callable[..., Iterable[str]], value)
    checked = check_tags(value, name)
    return checked or None
