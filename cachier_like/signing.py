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
_BLOCK = 64  # SHA-256's block size
_STAMP = struct.Struct(">d")


class _Key:
    """One secret's HMAC-SHA256 (RFC 2104) with its padded-key states hashed once.

    ``hmac.digest`` sets up a context for every call; copying two ready hash states
    costs half as much, which is most of what signing adds to a hit.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        if len(secret) > _BLOCK:
            secret = hashlib.sha256(secret).digest()
        padded = secret.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def tag(self, head: bytes, payload: bytes | memoryview) -> bytes:
        inner = self._inner.copy()
        inner.update(head)
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


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

    __slots__ = ("_keys", "_namespace")

    def __init__(self, secrets: Sequence[bytes]) -> None:
        self._keys = tuple(_Key(secret) for secret in secrets)
        self._namespace: tuple[str, bytes] = ("", b"")  # the last namespace, encoded

    def _head(self, namespace: str, name: str, timestamp: float) -> bytes:
        # Length-prefixed fields: no namespace/name split can collide with another.
        if self._namespace[0] != namespace or not self._namespace[1]:
            ns = namespace.encode("utf-8", "surrogatepass")
            self._namespace = (namespace, _LENGTH.pack(len(ns)) + ns)
        nm = name.encode("utf-8", "surrogatepass")
        return b"".join((self._namespace[1], _LENGTH.pack(len(nm)), nm, _STAMP.pack(timestamp)))

    def sign(self, namespace: str, name: str, timestamp: float, payload: bytes) -> bytes:
        """``MAGIC + tag + payload``, the tag made with the first secret."""
        head = self._head(namespace, name, timestamp)
        return MAGIC + self._keys[0].tag(head, payload) + payload

    def open(
        self, namespace: str, name: str, timestamp: float, stored: bytes | memoryview
    ) -> memoryview | None:
        """The payload of a signed ``stored`` value, or None when its tag does not verify."""
        view = memoryview(stored)
        if len(view) < _HEAD or view[: len(MAGIC)] != MAGIC:
            return None
        tag, payload = view[len(MAGIC) : _HEAD], view[_HEAD:]
        head = self._head(namespace, name, timestamp)
        valid = False
        for key in self._keys:  # every secret is tried: the time does not tell which
            valid |= hmac.compare_digest(tag, key.tag(head, payload))
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
