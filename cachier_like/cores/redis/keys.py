"""Key names, the entry header and claim tokens of the Redis core.

Imported only by :mod:`cachier_like.cores.redis`.
"""

from __future__ import annotations

import itertools
import os
import secrets
import struct
from urllib.parse import quote

from ... import forks

DEFAULT_PREFIX = "cachier_like"
MAGIC = b"CLR\x01"
HEADER = struct.Struct("<4sd")  # magic, calculation time (seconds since the epoch)
HEADER_SIZE = HEADER.size

_tokens = itertools.count()
_token_prefix = ""


def _new_process() -> None:
    # pid and randomness: unique across machines, and again in a forked child.
    global _token_prefix
    _token_prefix = f"{os.getpid()}-{secrets.token_hex(4)}-"


_new_process()
forks.reset_in_child(_new_process)


def new_token() -> str:
    """A token no other claim (in any process, on any machine) has.

    Example:
        >>> new_token() != new_token()
        True
    """
    return _token_prefix + str(next(_tokens))


def key_tag(prefix: str, namespace: str) -> str:
    """The hash tag that starts every key of one function; injective, glob-free.

    Example:
        >>> key_tag("cachier_like", "pkg.mod.f.<locals>.g")
        '{cachier_like:pkg.mod.f.<locals>.g}'
        >>> key_tag("app:v2", "a*b}c:d")
        '{app:v2:a%2Ab%7Dc%3Ad}'
    """
    # ':' stays readable in the prefix only, so the last ':' splits prefix and namespace.
    return "{" + quote(prefix, safe=":._-/@") + ":" + quote(namespace, safe="._-<>/@") + "}"


def header_stamp(header: bytes) -> float | None:
    """The calculation time in an entry's first bytes (None: not an entry header)."""
    ok = len(header) == HEADER_SIZE and header[:4] == MAGIC
    return float(HEADER.unpack(header)[1]) if ok else None


def ms(seconds: float) -> int:
    """Whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))
