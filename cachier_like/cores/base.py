"""The interface every storage core implements.

Cores only store, claim and wait; every policy decision (freshness, who computes,
fail-open) is made once, in :mod:`cachier_like.policy`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..alerts import RateLimitedLog
from ..entry import Entry
from ..serialize import DEFAULT_SERIALIZER, Serializer
from ..signing import MAGIC as SIGNED_MAGIC
from ..signing import Signer
from ..tagging import Expected, TagVersions, frame, unframe

T = TypeVar("T")
logger = logging.getLogger(__name__)
_POLL_MIN_S = 0.001
_SIGNED_HEAD = len(SIGNED_MAGIC)
_POLL_MAX_S = 0.05


@dataclass(frozen=True)
class CoreStats:
    """What a core holds for one function, for the CLI and metrics."""

    entries: int
    total_bytes: int | None
    oldest: float | None
    newest: float | None
    claims: int  # calculations in progress


class Backoff:
    """The sleeps between polls: doubling from ``first_s`` to ``max_s``, never past a deadline.

    Example:
        >>> backoff = Backoff(None, first_s=0.001, max_s=0.004)
        >>> [backoff.next_delay() for _ in range(4)]
        [0.001, 0.002, 0.004, 0.004]
        >>> Backoff(0.0, first_s=0.001, max_s=0.004).next_delay() is None
        True
    """

    __slots__ = ("_delay", "_max_s", "deadline")

    def __init__(self, timeout_s: float | None, first_s: float, max_s: float) -> None:
        #: ``time.monotonic()`` at which the wait gives up (None: never).
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._delay = first_s
        self._max_s = max_s

    def next_delay(self) -> float | None:
        """How long to sleep before the next poll; None once the deadline has passed."""
        delay = self._delay
        self._delay = min(delay * 2, self._max_s)
        if self.deadline is None:
            return delay
        remaining = self.deadline - time.monotonic()
        return None if remaining <= 0 else min(delay, remaining)


@dataclass(frozen=True)
class EntryInfo:
    """One stored entry, as listed by ``cachier-like show``."""

    key: str
    timestamp: float
    size: int | None  # serialized bytes, when the core knows them


class Core(abc.ABC):
    """Storage for one decorated function's entries and calculation claims.

    The policy uses a won claim in one order, which cores may rely on: :meth:`claim`,
    then :meth:`get` (the re-check), then at most one :meth:`set` (if it computed a
    value), then :meth:`release`, always. The calls may come from different threads
    (the async driver runs each in a worker thread); a core's shortcuts hold either way.
    """

    #: Whether keys must be stable across processes (False lets the memory core use
    #: cheaper in-process keys).
    stable_keys: ClassVar[bool] = True
    #: Whether operations do I/O; the async wrapper runs blocking cores in a thread.
    blocking: ClassVar[bool] = True
    #: Whether claims expire after ``lease_s`` unless renewed (see :meth:`renew`).
    leases: ClassVar[bool] = False
    #: Whether the ``a``-prefixed coroutines (:meth:`aget`, :meth:`aset`, :meth:`aclaim`,
    #: :meth:`arelease`, :meth:`arenew`, :meth:`aclear`, :meth:`aclear_claims`) and
    #: :meth:`wait_async` run on the event loop through a native async client, never in
    #: a thread; cores set it per instance, once they know their client.
    native_async: bool = False
    #: Whether the native coroutines are safe to cancel: one cancelled half-way leaves
    #: nothing taken (a claim it may have taken is dropped, a release finishes in the
    #: background). ``drive_async`` then awaits them in the caller's task; otherwise it
    #: runs each in a task of its own and lets it finish through the cancellation.
    cancel_safe_async: bool = False
    #: Whether an entry this core returns is never behind its tags' versions (the memory
    #: core drops tagged entries as their tags are invalidated): a tagged hit then needs
    #: no versions read.
    tags_current_on_read: ClassVar[bool] = False

    def __init__(self, namespace: str, *, serializer: Serializer = DEFAULT_SERIALIZER) -> None:
        self.namespace = namespace
        self.serializer = serializer
        #: Largest serialized value stored, in bytes (None: no limit); set by the
        #: decorator, which may change it without rebuilding the core.
        self.size_limit: int | None = None
        #: Signs what :meth:`encode` returns and checks what :meth:`decode` reads (None:
        #: no secret); set by the decorator, like :attr:`size_limit`.
        self.signer: Signer | None = None
        #: Reads refused since the core was built: a missing, wrong or foreign signature.
        self.rejected = 0
        self._damage_log = RateLimitedLog(logger)

    def warn_damaged(self, where: str, problem: str, kind: object = None) -> None:
        """Warn that a stored entry cannot be read: rate-limited per function and ``kind``.

        An entry that is damaged for good is met by every call: one warning per
        interval says so, with the count of those held back. ``kind`` (the problem
        itself by default) tells damages apart, such as a bad header from a payload
        the serializer rejects.
        """
        self._damage_log.warn(
            problem if kind is None else kind,
            "%s: ignoring a damaged cache entry %s: %s",
            self.namespace,
            where,
            problem,
        )

    def encode(
        self, value: Any, name: str, timestamp: float, tags: TagVersions = ()
    ) -> bytes | None:
        """``value`` serialized (and signed, with a secret) for the entry stored as ``name``.

        ``tags`` (the entry's recorded tag versions) lead the serialized value, inside
        the signature. None when the serialized value is over :attr:`size_limit` (not
        to be stored).
        """
        payload = self.serializer.dumps(value)
        limit = self.size_limit
        if limit is not None and len(payload) > limit:
            return None
        if tags:
            payload = frame(tags, payload)
        signer = self.signer
        return payload if signer is None else signer.sign(self.namespace, name, timestamp, payload)

    def encode_entry(self, entry: Entry, name: str, timestamp: float) -> bytes | None:
        """:meth:`encode` of ``entry``'s value and tags (stamped ``timestamp``)."""
        return self.encode(entry.value, name, timestamp, entry.tags)

    def decode_entry(
        self, payload: Any, where: str, name: str, timestamp: float, shown: float | None = None
    ) -> Entry | None:
        """The entry a payload written by :meth:`encode` holds, or None when unreadable.

        ``timestamp`` is the stamp stored beside the payload (what the signature
        covers); ``shown`` the one the entry reports (the store's clock turned into
        this process's), ``timestamp`` by default.

        With a secret, the signature is checked before anything is deserialized: a
        missing, wrong or foreign one (another key's, another function's, another
        timestamp's) is refused.
        Without one, a signed entry is refused too (its secret is not configured).
        Either way a rate-limited warning says so, and the entry is a miss. Tag versions
        framed ahead of the value (:func:`~cachier_like.tagging.frame`) become the
        entry's :attr:`~cachier_like.entry.Entry.tags`.
        """
        signer = self.signer
        if signer is not None:
            opened = signer.open(self.namespace, name, timestamp, payload)
            if opened is None:
                self.rejected += 1
                self._damage_log.warn(
                    "signature",
                    "%s: refusing a cache entry %s whose signature is missing or does not "
                    "match the configured secret (tampered with, moved from another key, or "
                    "written without the secret); recomputing it",
                    self.namespace,
                    where,
                )
                return None
            payload = opened
        elif payload[:_SIGNED_HEAD] == SIGNED_MAGIC:  # inline: a call costs every read
            self.rejected += 1
            self._damage_log.warn(
                "signed",
                "%s: ignoring a signed cache entry %s: no secret is configured to check it "
                "(pass secret= or set $CACHIER_LIKE_SECRET)",
                self.namespace,
                where,
            )
            return None
        tags: TagVersions = ()
        if payload and payload[0] == 0:  # pickle starts with 0x80, JSON with text
            opened_tags = unframe(payload)
            if opened_tags is None:
                self.warn_damaged(where, "its tag versions are cut short", kind="tags")
                return None
            tags, payload = opened_tags
        try:
            value = self.serializer.loads(payload)
        except Exception as exc:
            self.warn_damaged(where, repr(exc), kind=type(exc))
            return None
        return Entry(value, timestamp if shown is None else shown, tags)

    def decode_current(
        self,
        data: bytes,
        at: int,
        current: Expected,
        where: str,
        *,
        name: str,
        timestamp: float,
        shown: float,
    ) -> Entry | None:
        """:meth:`decode_entry` of ``data[at:]``, fast for an entry whose tags are
        ``current``: a prefix comparison instead of parsing the frame (no secret set).

        For the tagged hits of cores that have the entry's bytes and the tags'
        versions in hand (``get_tagged``); any other payload takes :meth:`decode_entry`.
        """
        head = current.head
        if self.signer is None and data.startswith(head, at):
            view: Any = memoryview(data)[at + len(head) :]  # a bytes-like slice, no copy
            try:
                value = self.serializer.loads(view)
            except Exception as exc:
                self.warn_damaged(where, repr(exc), kind=type(exc))
                return None
            return Entry(value, shown, current.record)
        return self.decode_entry(memoryview(data)[at:], where, name, timestamp, shown)

    def check_caller(self, is_async: bool) -> None:  # noqa: B027 - optional, not abstract
        """Refuse, with a ``TypeError``, a decorated function this core cannot serve.

        Told once the core is built for a function whether it is ``async def``; every
        core serves both kinds unless it overrides this (the SQL core with an
        ``AsyncEngine`` serves only ``async def`` functions).
        """

    @abc.abstractmethod
    def get(self, key: Hashable) -> Entry | None:
        """Return the entry stored under ``key``, or None (missing or unreadable).

        The claiming thread's first read after a won claim may be served from what
        the claim itself read (Redis: the entry fetched in the claim's round trip), so
        the re-check costs no round trip; any other read asks the store.
        """

    @abc.abstractmethod
    def set(self, key: Hashable, entry: Entry) -> bool:
        """Store ``entry``; return False when it was not stored (too large, see :meth:`encode`).

        A store by the claim's holder may end the claim too, waking its waiters in the
        same round trip (Redis: one script; SQL: the upsert clears the claim when the
        token is this process's; MongoDB: the update matched on the claim's token);
        the :meth:`release` that follows then has nothing to do. Any other store leaves
        a claim alone.
        """

    @abc.abstractmethod
    def clear(self) -> int:
        """Remove every entry of this function; return how many were removed."""

    @abc.abstractmethod
    def claim(self, key: Hashable, lease_s: float) -> bool:
        """Atomically become the one caller calculating ``key``.

        True for exactly one caller while its claim holds. A claim must not outlive a
        dead calculator: it expires after ``lease_s`` or with the owning process.
        """

    def renew(self, key: Hashable, lease_s: float) -> bool:
        """Extend this caller's claim on ``key`` by ``lease_s``; False if it was lost.

        Only cores with ``leases = True`` are renewed (by :mod:`cachier_like.leases`).
        """
        return True

    @abc.abstractmethod
    def release(self, key: Hashable) -> None:
        """End this caller's claim on ``key`` and wake its waiters.

        Called once after every won claim, also after a :meth:`set` that ended it
        already (then a no-op). Never drops a claim another caller took over after
        this one's lease lapsed.
        """

    @abc.abstractmethod
    def wait(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Block until the claim on ``key`` ends or ``timeout_s`` passes (None: no limit).

        Returns the entry stored under ``key`` at that moment, or None.
        """

    @abc.abstractmethod
    def is_claimed(self, key: Hashable) -> bool:
        """Whether some caller (any thread or process) holds the claim on ``key``."""

    def poll_wait(
        self,
        key: Hashable,
        timeout_s: float | None,
        first_s: float = _POLL_MIN_S,
        max_s: float = _POLL_MAX_S,
    ) -> Entry | None:
        """A :meth:`wait` for cores without a notification: poll :meth:`is_claimed`."""
        backoff = Backoff(timeout_s, first_s, max_s)
        while self.is_claimed(key):
            delay = backoff.next_delay()
            if delay is None:
                break
            time.sleep(delay)
        return self.get(key)

    async def wait_async(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """:meth:`wait` for event loops: poll :meth:`is_claimed` with back-off.

        No thread is held while sleeping, so many waiters cannot starve the thread
        pool that the calculator's own store and release need. Cores with a
        notification channel may override this.
        """
        backoff = Backoff(timeout_s, _POLL_MIN_S, _POLL_MAX_S)
        while await self._run(self.is_claimed, key):
            delay = backoff.next_delay()
            if delay is None:
                break
            await asyncio.sleep(delay)
        return await self._run(self.get, key)

    # The async twins of the operations. These defaults run the sync operation (in a
    # worker thread when the core does I/O); cores with a native async client override
    # them and set ``native_async``.

    async def aget(self, key: Hashable) -> Entry | None:
        """:meth:`get` for event loops."""
        return await self._run(self.get, key)

    async def aset(self, key: Hashable, entry: Entry) -> bool:
        """:meth:`set` for event loops."""
        return await self._run(lambda k: self.set(k, entry), key)

    async def aclaim(self, key: Hashable, lease_s: float) -> bool:
        """:meth:`claim` for event loops."""
        return await self._run(lambda k: self.claim(k, lease_s), key)

    async def arelease(self, key: Hashable) -> None:
        """:meth:`release` for event loops."""
        await self._run(self.release, key)

    async def arenew(self, key: Hashable, lease_s: float) -> bool:
        """:meth:`renew` for event loops."""
        return await self._run(lambda k: self.renew(k, lease_s), key)

    async def aclear(self) -> int:
        """:meth:`clear` for event loops."""
        return await self._run(lambda _: self.clear(), None)

    async def aclear_claims(self) -> int:
        """:meth:`clear_claims` for event loops."""
        return await self._run(lambda _: self.clear_claims(), None)

    async def _run(self, func: Callable[[Hashable], T], key: Hashable) -> T:
        if self.blocking:
            return await asyncio.to_thread(func, key)
        return func(key)

    # -- invalidation and batches -------------------------------------------------
    # Every core of this package implements these; the defaults let a third-party core
    # written before them keep working (``delete`` and the tag operations then say what
    # is missing).

    def delete(self, key: Hashable) -> bool:
        """Remove the entry of ``key``; return whether there was one.

        A claim on ``key`` is left alone: its holder's store lands as usual.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete one entry")

    def get_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """The entries of ``keys``, in order (None where missing or unreadable).

        One batched read where the store has one (Redis ``MGET``, SQL ``IN``, MongoDB
        ``$in``); this default reads them one by one.
        """
        return [self.get(key) for key in keys]

    def set_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """Store each ``(key, entry)``, as :meth:`set` does each (a claim holder's store
        ends its claim); return, in order, whether each was stored."""
        return [self.set(key, entry) for key, entry in items]

    def tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """The store's current version of each tag (0 for one never invalidated).

        Tag versions belong to the store, not to one function: every core on the same
        store (directory, server, table, collection; this process for the memory core)
        reads the same versions.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no tag versions")

    def bump_tags(self, tags: Sequence[str]) -> None:
        """Advance the version of each tag by one, atomically: every entry recorded
        under an earlier version is stale from now on, for every function on the store."""
        raise NotImplementedError(f"{type(self).__name__} keeps no tag versions")

    def get_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """:meth:`get` and :meth:`tag_versions` together: one round trip where the store
        allows (Redis ``MGET``, one SQL statement, one MongoDB query)."""
        return self.get(key), self.tag_versions(tags)

    async def adelete(self, key: Hashable) -> bool:
        """:meth:`delete` for event loops."""
        return await self._run(self.delete, key)

    async def aget_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """:meth:`get_many` for event loops."""
        if self.native_async:
            return [await self.aget(key) for key in keys]
        return await self._run(lambda _: self.get_many(keys), None)

    async def aset_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """:meth:`set_many` for event loops."""
        if self.native_async:
            return [await self.aset(key, entry) for key, entry in items]
        return await self._run(lambda _: self.set_many(items), None)

    async def atag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """:meth:`tag_versions` for event loops."""
        return await self._run(lambda _: self.tag_versions(tags), None)

    async def abump_tags(self, tags: Sequence[str]) -> None:
        """:meth:`bump_tags` for event loops."""
        await self._run(lambda _: self.bump_tags(tags), None)

    async def aget_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """:meth:`get_tagged` for event loops."""
        if self.native_async:
            return await self.aget(key), await self.atag_versions(tags)
        return await self._run(lambda k: self.get_tagged(k, tags), key)

    @abc.abstractmethod
    def clear_claims(self) -> int:
        """Drop every calculation claim of this function; return how many."""

    @abc.abstractmethod
    def purge_stale(self, older_than_s: float, now: float) -> int:
        """Remove entries calculated more than ``older_than_s`` before ``now``."""

    @abc.abstractmethod
    def stats(self) -> CoreStats:
        """Summarise this function's entries."""

    def entries(self) -> Iterator[EntryInfo]:
        """Every stored entry of this function (for inspection, not the call path)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its entries")

    def stats_from_entries(self, claims: int) -> CoreStats:
        """:meth:`stats` by walking :meth:`entries`, for stores without an aggregate query."""
        stamps: list[float] = []
        total = 0
        for info in self.entries():
            stamps.append(info.timestamp)
            total += info.size or 0
        return CoreStats(
            entries=len(stamps),
            total_bytes=total,
            oldest=min(stamps, default=None),
            newest=max(stamps, default=None),
            claims=claims,
        )

    @classmethod
    def namespaces(cls, **options: Any) -> list[str]:
        """The namespaces (functions) that have entries in the store ``options`` name.

        ``options`` are the core's own constructor options (``cache_dir``,
        ``redis_client``, ...), so the CLI can inspect a store without importing the
        functions that wrote it.
        """
        raise NotImplementedError(f"{cls.__name__} cannot list the functions it stores")

    def location(self) -> str | None:
        """The directory the store was given, for ``cache_dpath()``; None if not on disk."""
        return None
