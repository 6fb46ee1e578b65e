"""Serialization strategies: how a core turns a value into bytes and back."""

from __future__ import annotations

import pickle
from typing import Any, Protocol


class Serializer(Protocol):
    """What a core needs to persist values: ``dumps`` and ``loads``.

    ``loads`` may raise any exception on unreadable input; cores treat that as a
    miss and log a warning.
    """

    def dumps(self, value: Any) -> bytes:
        """Return the bytes that represent ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Return the value that ``data`` represents."""
        ...


class PickleSerializer:
    """The default strategy: the highest pickle protocol.

    Example:
        >>> s = PickleSerializer()
        >>> s.loads(s.dumps({"a": 1}))
        {'a': 1}
    """

    __slots__ = ("protocol",)

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle ``value``."""
        return pickle.dumps(value, protocol=self.protocol)

    def loads(self, data: bytes) -> Any:
        """Unpickle ``data`` (only ever read caches you trust: pickle runs code)."""
        return pickle.loads(data)


DEFAULT_SERIALIZER = PickleSerializer()
