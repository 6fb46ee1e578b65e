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
#: How long a wake element outlives the release that pushed it (no waiter needs more).
WAKE_MS = 2000

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


def tags_tag(prefix: str) -> str:
    """The hash tag of the tag-version keys under ``prefix``: one slot, shared by every function.

    ``#`` is quoted in every function's :func:`key_tag`, so no function's keys share it.

    Example:
        >>> tags_tag("app:v2")
        '{app:v2:#tags}'
    """
    return key_tag(prefix, "")[:-1] + "#tags}"


def tag_key(tags_prefix: str, tag: str) -> str:
    """The key holding ``tag``'s version; the tag is quoted, so the key is glob- and brace-free.

    Example:
        >>> tag_key("{app:#tags}:", "user:7 {x}*")
        '{app:#tags}:user:7%20%7Bx%7D%2A'
    """
    return tags_prefix + quote(tag, safe=":/@", errors="surrogatepass")


def header_stamp(header: bytes) -> float | None:
    """The calculation time in an entry's first bytes (None: not an entry header)."""
    ok = len(header) == HEADER_SIZE and header[:4] == MAGIC
    return float(HEADER.unpack(header)[1]) if ok else None


def ms(seconds: float) -> int:
    """Whole milliseconds, at least one."""
    return max(1, round(seconds * 1000))
