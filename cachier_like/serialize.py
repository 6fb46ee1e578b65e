"""Serialization strategies: how a core turns a value into bytes and back.

``serializer=`` takes ``"pickle"`` (the default: any picklable value, but reading runs
code, so only read stores you trust or sign them with ``secret=``), ``"json"`` (no code
runs on read; JSON values only) or any object with ``dumps`` and ``loads``.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol

from .errors import ConfigurationError


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


class JsonSerializer:
    """JSON as UTF-8: reading an entry runs no code, whoever wrote it.

    Values must be JSON types: ``dict`` with string keys, ``list``, ``str``, ``int``,
    ``float``, ``bool`` and ``None``; a tuple comes back as a list. A value JSON cannot
    represent raises ``TypeError`` in ``dumps``, and the call returns it uncached.

    Example:
        >>> s = JsonSerializer()
        >>> s.loads(s.dumps({"a": [1, 2.5, None]}))
        {'a': [1, 2.5, None]}
    """

    __slots__ = ()

    def dumps(self, value: Any) -> bytes:
        """``value`` as compact JSON text, UTF-8 encoded."""
        return json.dumps(value, separators=(",", ":"), allow_nan=True).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        """The value ``data`` holds."""
        return json.loads(bytes(data))


DEFAULT_SERIALIZER = PickleSerializer()
JSON_SERIALIZER = JsonSerializer()
_NAMED: dict[str, Serializer] = {"pickle": DEFAULT_SERIALIZER, "json": JSON_SERIALIZER}


def serializer_option(value: Any, name: str = "serializer") -> Serializer:
    """The serializer ``serializer=`` names: ``"pickle"``, ``"json"`` or an object.

    Example:
        >>> serializer_option("json").dumps([1, 2])
        b'[1,2]'
    """
    if value is None:
        return DEFAULT_SERIALIZER
    if isinstance(value, str):
        if value in _NAMED:
            return _NAMED[value]
        raise ConfigurationError(
            f"{name} must be 'pickle', 'json' or an object with dumps and loads, not {value!r}"
        )
    if callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None)):
        return value  # type: ignore[no-any-return]
    raise ConfigurationError(
        f"{name} must be 'pickle', 'json' or an object with dumps(value) -> bytes and "
        f"loads(bytes), not {type(value).__name__}"
    )
