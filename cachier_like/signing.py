"""Signed payloads: an HMAC-SHA256 over the namespace, the key, the timestamp and the value.

With a secret, every core stores ``MAGIC + tag + payload`` instead of the bare payload,
where ``tag`` is HMAC-SHA256 (the algorithm is fixed here, never read from a stored
entry) over the function's namespace, the entry's stored name, its timestamp (so an old
value cannot be made fresh again) and the serialized value. Reading
checks the tag in constant time **before** anything is deserialized, so a payload
written by someone without the secret is never unpickled; and because the namespace
and the key are inside the tag, a genuine entry copied to another key or another
function does not verify either. Several secrets may be given for rotation: the first
signs, every one verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from typing import Any

from .errors import ConfigurationError

__all__ = ["MAGIC", "SECRET_ENV", "TAG_SIZE", "Signer", "parse_secret"]

#: Environment variable holding the secret when none is configured (one secret).
SECRET_ENV = "CACHIER_LIKE_SECRET"
#: The first bytes of a signed payload: the format, and that it is signed.
MAGIC = b"CLS\x01"
TAG_SIZE = 32  # HMAC-SHA256
_HEAD = len(MAGIC) + TAG_SIZE
_MIN_SECRET_BYTES = 16
_LENGTH = struct.Struct(">I")
_ONE_SHOT_MAX = 1 << 14
_STAMP = struct.Struct(">d")


class Signer:
    """Signs and checks payloads with the first of ``secrets`` (all verify).

    Example:
        >>> signer = Signer([b"a secret of sixteen bytes or more"])
        >>> signed = signer.sign("pkg.f", "k1", 1700000000.0, b"payload")
        >>> bytes(signer.open("pkg.f", "k1", 1700000000.0, signed))
        b'payload'
        >>> signer.open("pkg.f", "k2", 1700000000.0, signed) is None  # moved to another key
        True
        >>> signer.open("pkg.f", "k1", 1800000000.0, signed) is None  # re-dated
        True
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self._keys = tuple(secrets)

    @staticmethod
    def _head(namespace: str, name: str, timestamp: float) -> bytes:
        # Length-prefixed fields: no namespace/name split can collide with another.
        ns, nm = namespace.encode("utf-8", "surrogatepass"), name.encode("utf-8", "surrogatepass")
        return b"".join(
            (_LENGTH.pack(len(ns)), ns, _LENGTH.pack(len(nm)), nm, _STAMP.pack(timestamp))
        )

    @staticmethod
    def _tag(secret: bytes, head: bytes, payload: bytes | memoryview) -> bytes:
        if len(payload) <= _ONE_SHOT_MAX:  # one C call; the copy of a small payload is free
            return hmac.digest(secret, head + payload, "sha256")
        mac = hmac.new(secret, head, hashlib.sha256)
        mac.update(payload)
        return mac.digest()

    def sign(self, namespace: str, name: str, timestamp: float, payload: bytes) -> bytes:
        """``MAGIC + tag + payload``, the tag made with the first secret."""
        head = self._head(namespace, name, timestamp)
        return MAGIC + self._tag(self._keys[0], head, payload) + payload

    def open(
        self, namespace: str, name: str, timestamp: float, stored: bytes | memoryview
    ) -> memoryview | None:
        """The payload of a signed ``stored`` value, or None when its tag does not verify."""
        view = memoryview(stored)
        if len(view) < _HEAD or view[: len(MAGIC)] != MAGIC:
            return None
        tag, payload = bytes(view[len(MAGIC) : _HEAD]), view[_HEAD:]
        head = self._head(namespace, name, timestamp)
        valid = False
        for secret in self._keys:  # every secret is tried: the time does not tell which
            valid |= hmac.compare_digest(tag, self._tag(secret, head, payload))
        return payload if valid else None


def _secret_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise ConfigurationError(
            f"{name} must be a str or bytes secret, or a sequence of them (the first signs, "
            f"all verify), not {type(value).__name__}"
        )
    if len(value) < _MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{name} is {len(value)} bytes long; use at least {_MIN_SECRET_BYTES} random "
            'bytes, e.g. python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return value


def parse_secret(value: Any, name: str = "secret") -> Signer | None:
    """The signer ``secret=`` configures; ``$CACHIER_LIKE_SECRET`` when it is None.

    Example:
        >>> parse_secret(None, "secret") is None or SECRET_ENV in os.environ
        True
        >>> isinstance(parse_secret(["new secret, 16+ bytes", b"old secret, 16+ bytes"]), Signer)
        True
    """
    if value is None:
        value = os.environ.get(SECRET_ENV) or None
        if value is None:
            return None
        name = f"${SECRET_ENV}"
    if isinstance(value, (str, bytes)):
        return Signer([_secret_bytes(value, name)])
    if isinstance(value, Sequence) and value:
        return Signer([_secret_bytes(item, f"{name}[{i}]") for i, item in enumerate(value)])
    raise ConfigurationError(
        f"{name} must be a str or bytes secret, or a non-empty sequence of them "
        f"(the first signs, all verify), not {value!r}"
    )
