"""The Redis core's invalidation and batches: ``delete``, ``get_many``, ``set_many`` and
the tag versions, each one round trip.

:class:`RedisInvalidation` is mixed into :class:`~.core.RedisCore` (its ``async def``
twins are :class:`~.async_invalidation.RedisAsyncInvalidation`). Tag versions belong to
the key prefix, not to one function: one string key per tag, every one under the hash
tag ``{<prefix>:#tags}`` (:func:`~.keys.tags_tag`), so on a Redis Cluster they share one
slot and one ``MGET`` reads any of them; no function's keys carry that hash tag, so
listing, counting, clearing and purging a function never meet them. An ``INCR`` of a
missing key starts it at 1, so a tag never invalidated needs no key (version 0).

Example (keys under the prefix ``app``)::

    core.bump_tags(["user:7"])          # EVALSHA: INCR {app:#tags}:user:7
    core.get_tagged("k", ["user:7"])    # GET {app:pkg.f}:v:k, the version kept (tracking.py)
                                        # (else MGET {app:pkg.f}:v:k {app:#tags}:user:7)
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Hashable, Sequence
from typing import Any

from ...entry import Entry
from ...tagging import Expected, expected
from ..base import Core
from ..shared import storage_name
from . import scripts as lua
from .async_ops import Held
from .keys import HEADER, HEADER_SIZE, MAGIC, WAKE_MS, tag_key
from .link import Link
from .wire import Parts

#: Tag sets whose keys a core keeps made (a bound, not an LRU).
MAX_TAG_KEY_SETS = 4096
#: A store ready to send: the command, and the claim it ends (None: a plain ``SET``).
Store = tuple[tuple[Any, ...], Held | None]


def versions(replies: Sequence[bytes | None]) -> tuple[int, ...]:
    """Tag versions from ``GET``/``MGET`` replies (a missing key is version 0).

    Example:
        >>> versions([b"3", None])
        (3, 0)
    """
    return tuple(0 if reply is None else int(reply) for reply in replies)


class RedisInvalidation(Core):
    """``delete``, ``get_many``, ``set_many``, ``tag_versions``, ``bump_tags`` and
    ``get_tagged`` on a sync client."""

    _v: str
    _c: str
    _w: str
    _t: str  # the prefix of tag-version keys: ``{<quoted prefix>:#tags}:``
    _ttl: str
    _px: tuple[str, str] | tuple[()]
    _held: dict[str, Held]
    #: The keys of tag sets this core read, by tags (see :meth:`_tag_keys`).
    _tag_keys_made: dict[tuple[str, ...], tuple[str, ...]]

    @abc.abstractmethod
    def _link(self) -> Link:
        """The connection to the server (resolved on first use)."""

    @abc.abstractmethod
    def _offset(self) -> float:
        """The server's time minus this process's: entries are stamped in the server's."""

    @abc.abstractmethod
    def _decode(self, suffix: str, data: bytes, offset: float) -> Entry | None:
        """The entry ``data`` holds (None: damaged, after a warning), its time made local."""

    def _store(self, suffix: str, entry: Entry, offset: float, holder: object) -> Store | None:
        """The command storing ``entry`` (None: over the size limit).

        From the claim's ``holder`` (a thread's ident, or the task whose flow claimed) it
        is the script that stores and ends the claim, waking its waiters; else a ``SET``.
        """
        stamp = entry.timestamp + offset
        payload = self.encode_entry(entry, suffix, stamp)
        if payload is None:
            return None
        data = Parts((HEADER.pack(MAGIC, stamp), payload))  # no copy of the payload
        held = self._held.get(suffix)
        if held is not None and not held.stored and held.holder == holder:
            wake = f"{self._w}{suffix}:{held.token}"
            keys = (self._v + suffix, self._c + suffix, wake)
            return (lua.STORE_RELEASE, 3, *keys, data, self._ttl, held.token, WAKE_MS), held
        return ("SET", self._v + suffix, data, *self._px), None

    def _stores(
        self, items: Sequence[tuple[Hashable, Entry]], offset: float, holder: object
    ) -> tuple[list[tuple[Any, ...]], list[Held], list[bool]]:
        """The commands of :meth:`set_many`, the claims they end, and what is stored."""
        commands, ended, stored = [], [], []
        for key, entry in items:
            store = self._store(storage_name(key), entry, offset, holder)
            stored.append(store is not None)
            if store is not None:
                commands.append(store[0])
                if store[1] is not None:
                    ended.append(store[1])
        return commands, ended, stored

    def _forget_snapshot(self, suffix: str) -> None:
        """A claim's snapshot of a deleted entry must not answer the re-check."""
        held = self._held.get(suffix)
        if held is not None:
            held.snapshot = None

    def _tag_keys(self, tags: Sequence[str]) -> tuple[str, ...]:
        """The keys of ``tags``' versions (quoting costs more than a hit's lookup here)."""
        made = self._tag_keys_made
        tags = tags if type(tags) is tuple else tuple(tags)
        found = made.get(tags)
        if found is None:
            found = tuple(tag_key(self._t, tag) for tag in tags)
            if len(made) >= MAX_TAG_KEY_SETS:
                made.clear()
            made[tags] = found
        return found

    def _tagged_commands(self, suffix: str, tags: Sequence[str], cluster: bool) -> tuple[Any, ...]:
        """One ``MGET`` of the entry and the tags; on a cluster, two commands (two slots)."""
        if cluster:
            return (("GET", self._v + suffix), ("MGET", *self._tag_keys(tags)))
        return (("MGET", self._v + suffix, *self._tag_keys(tags)),)

    def delete(self, key: Hashable) -> bool:
        """``UNLINK`` the entry of ``key`` (a claim on it stays); whether there was one."""
        suffix = storage_name(key)
        if self._held:
            self._forget_snapshot(suffix)
        return bool(self._link().call("UNLINK", self._v + suffix))

    def get_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """One ``MGET`` of the entries (one function's keys share a slot, also on a cluster)."""
        if not keys:
            return []
        suffixes = [storage_name(key) for key in keys]
        replies = self._link().call("MGET", *(self._v + suffix for suffix in suffixes))
        offset = self._offset()
        return [
            None if data is None else self._decode(suffix, data, offset)
            for suffix, data in zip(suffixes, replies, strict=True)
        ]

    def set_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """One pipeline of the stores :meth:`set` makes: a claim held by this thread ends
        with its store, and its waiters wake, as they do after ``set``."""
        link = self._link()
        commands, ended, stored = self._stores(items, self._offset(), threading.get_ident())
        if commands:
            link.batch(*commands)
            for held in ended:
                held.stored = True  # the policy's release() that follows has nothing to do
        return stored

    def tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """One ``MGET`` of the tags' keys (all in one slot); a missing key is version 0."""
        if not tags:
            return ()
        return versions(self._link().call("MGET", *self._tag_keys(tags)))

    def bump_tags(self, tags: Sequence[str]) -> None:
        """``INCR`` every tag's key in one script: atomic, one round trip."""
        if tags:
            self._link().script(lua.BUMP_TAGS, self._tag_keys(tags))

    def get_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """The entry and its tags' versions (a :class:`~...tagging.Expected`): one ``GET``
        where the private connection keeps the versions current (:mod:`.tracking`),
        else one ``MGET`` of the entry and the tags.

        On a Redis Cluster the entry's slot is not the tags': a ``GET`` and an ``MGET``
        in one pipeline (at most two nodes). Always read from the server, also by a
        claim's holder; its claim snapshot then answers no later read.
        """
        if not tags:
            return self.get(key), ()
        suffix, link = storage_name(key), self._link()
        if self._held:
            self._forget_read(suffix, threading.get_ident())
        tags = tags if type(tags) is tuple else tuple(tags)
        if link.cluster:
            data, found = link.pipeline(*self._tagged_commands(suffix, tags, True))
        else:
            data, found = link.read_tagged(self._v + suffix, self._tag_keys(tags))
        current = expected(tags, found if type(found) is tuple else versions(found))
        if data is None:
            return None, current
        return self._decode_tagged(suffix, data, current), current

    def _decode_tagged(self, suffix: str, data: bytes, current: Expected) -> Entry | None:
        """:meth:`_decode`, fast for an entry ``current`` describes (see
        :meth:`~..base.Core.decode_current`)."""
        if len(data) < HEADER_SIZE or data[:4] != MAGIC:
            self.warn_damaged(self._v + suffix, "bad header")
            return None
        stamp = HEADER.unpack_from(data)[1]  # in the server's time
        return self.decode_current(
            data,
            HEADER_SIZE,
            current,
            self._v + suffix,
            name=suffix,
            timestamp=stamp,
            shown=stamp - self._offset(),
        )

    def _forget_read(self, suffix: str, holder: object) -> None:
        """The holder's read supersedes the claim's snapshot (no later read returns it)."""
        held = self._held.get(suffix)
        if held is not None and held.holder == holder:
            held.unread = False
