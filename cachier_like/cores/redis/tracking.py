"""Tag versions kept on a private connection, current by the server's invalidations.

Imported only by :mod:`.link`. A tagged hit needs the entry and its tags' versions; the
versions change only when a tag is invalidated, so a thread's private connection keeps
those it read and asks Redis to say when one changes (server-assisted client-side
caching: ``CLIENT TRACKING ON OPTIN``, then ``CLIENT CACHING YES`` before the ``MGET``
of tag keys, so only tag keys are tracked, never entries). A tagged hit is then one
``GET``, as a plain hit is.

Why this is never stale: on RESP3 the server sends its invalidation of a key on the
connection that read it, ahead of every reply to a command it runs after the change.
Versions are therefore looked up only once the entry's reply is read (invalidations
read on the way have dropped theirs): they are the versions as of the moment the server
ran the ``GET``, the same snapshot one ``MGET`` of the entry and the tags would give. A
connection that is lost or remade forgets every version (the server forgot what it
tracked), and so does a flush (an invalidation naming no key).

Where this cannot hold (RESP2, which sends invalidations elsewhere; a parser without
push handlers; a server refusing ``CLIENT TRACKING``), the versions are read with the
entry in one ``MGET`` on every hit instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from .wire import _exchange, _Slot

logger = logging.getLogger(__name__)

#: Versions kept per connection; past this many the connection forgets them all (a
#: bound, not an LRU: they are read again in one round trip).
MAX_VERSIONS = 10_000
_TRACK = ("CLIENT", "TRACKING", "ON", "OPTIN")
_CACHE_NEXT = ("CLIENT", "CACHING", "YES")


class TrackedVersions:
    """The tag versions one private connection has read, dropped as Redis invalidates
    them.

    Example (what a connection's tagged read sends)::

        first hit:   GET e; CLIENT TRACKING ON OPTIN; CLIENT CACHING YES; MGET t1 t2
        later hits:  GET e          (t1, t2 answered here)
    """

    __slots__ = ("__weakref__", "sets", "versions")

    def __init__(self, conn: Any) -> None:
        #: By tag key: its version as last read.
        self.versions: dict[str, int] = {}
        #: By tuple of tag keys: their versions (a hit's one lookup; any invalidation
        #: empties it, as rare as the invalidations themselves).
        self.sets: dict[tuple[str, ...], tuple[int, ...]] = {}
        # Both hooks are kept as weak references by redis-py: the slot holds this object.
        conn.register_connect_callback(self.reconnected)
        conn._parser.set_invalidation_push_handler(self.invalidated)

    def reconnected(self, conn: Any) -> None:
        """A new connection tracks nothing yet: forget what the old one was told."""
        self.versions.clear()
        self.sets.clear()

    def invalidated(self, message: Sequence[Any]) -> None:
        """``["invalidate", keys]`` from the server; ``keys`` is None after a flush."""
        self.sets.clear()
        keys = message[1] if len(message) > 1 else None
        if keys is None:
            self.versions.clear()
            return
        pop = self.versions.pop
        for key in keys:
            pop(key.decode() if type(key) is bytes else key, None)

    def keep(self, tag_keys: tuple[str, ...], replies: Sequence[bytes | None]) -> tuple[int, ...]:
        """The versions in ``replies`` (an ``MGET`` of ``tag_keys``), kept."""
        found = tuple(0 if reply is None else int(reply) for reply in replies)
        versions, sets = self.versions, self.sets
        if len(versions) + len(tag_keys) > MAX_VERSIONS or len(sets) >= MAX_VERSIONS:
            versions.clear()
            sets.clear()
        versions.update(zip(tag_keys, found, strict=True))
        return found

    def known(self, tag_keys: tuple[str, ...]) -> tuple[int, ...] | None:
        """The versions of ``tag_keys`` if every one is kept (then kept as a set too)."""
        found = self.sets.get(tag_keys)
        if found is None:
            versions = self.versions
            for tag in tag_keys:
                if tag not in versions:
                    return None
            found = self.sets[tag_keys] = tuple([versions[tag] for tag in tag_keys])
        return found


def tracks(conn: Any) -> bool:
    """Whether invalidations reach ``conn`` ahead of its replies (RESP3, push handlers)."""
    try:
        resp3 = int(conn.protocol) == 3
    except (TypeError, ValueError):
        return False
    return resp3 and hasattr(getattr(conn, "_parser", None), "set_invalidation_push_handler")


def read_tracked(
    slot: _Slot, key: str, tag_keys: tuple[str, ...]
) -> tuple[bytes | None, tuple[int, ...]] | None:
    """The entry at ``key`` and the versions of ``tag_keys``, current as of its ``GET``;
    None when this server refuses tracking (the caller reads them with ``MGET``)."""
    kept = slot.tracked
    if kept is None:
        kept = slot.tracked = TrackedVersions(slot.conn)
    if kept.known(tag_keys) is not None:
        (data,) = _exchange(slot, (("GET", key),))
        found = kept.known(tag_keys)  # after the reply: see the module docstring
        if found is not None:
            return data, found
        # Invalidated on the way: read them again.
        replies = _exchange(slot, (_TRACK, _CACHE_NEXT, ("MGET", *tag_keys)))
        return data, kept.keep(tag_keys, replies[2])
    try:
        replies = _exchange(slot, (("GET", key), _TRACK, _CACHE_NEXT, ("MGET", *tag_keys)))
    except ResponseError as exc:  # e.g. an ACL without CLIENT, a server before 6.0
        slot.tracks = False
        logger.info("Redis refused CLIENT TRACKING (%s): tag versions are read per hit", exc)
        return None
    return replies[0], kept.keep(tag_keys, replies[3])
