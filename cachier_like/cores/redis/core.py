"""Redis core: one key per entry, claims as leased keys, waiters woken by a list push.

Keys of the function ``pkg.mod.f`` under the prefix ``cachier_like``::

    {cachier_like:pkg.mod.f}:v:<key>          entry: 12-byte header (magic, timestamp) + payload
    {cachier_like:pkg.mod.f}:c:<key>          claim: the calculator's token, PTTL = its lease
    {cachier_like:pkg.mod.f}:w:<key>:<token>  wake list of one claim, pushed as it ends
    {cachier_like:#tags}:<tag>                a tag's version (every function's), see .invalidation

The braces are a Redis Cluster hash tag: all of one function's keys live in one slot,
so every script touches one node. Prefix and namespace are percent-quoted, so a hash
tag holds no brace or glob character and ``SCAN MATCH {...}:*`` matches this function
only. A hit is one ``GET``. A miss claims with ``SET NX PX`` pipelined with the re-read (one
round trip), then stores and releases in one script. See ``docs/cores/redis.md``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Hashable
from datetime import timedelta
from typing import Any

from ... import config, forks
from ...entry import Entry
from ...errors import AsyncOnlyError, ConfigurationError
from ...serialize import DEFAULT_SERIALIZER, Serializer
from ..base import Backoff
from ..clocks import StoreClock
from ..shared import storage_name
from . import scripts as lua
from .async_clients import AsyncLinks
from .async_invalidation import RedisAsyncInvalidation
from .async_ops import Held
from .keys import (
    DEFAULT_PREFIX,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    WAKE_MS,
    key_tag,
    ms,
    new_token,
    tags_tag,
)
from .link import URL_ENV, Client, ClientSource, Link, is_async_client, link_for
from .maintenance import RedisMaintenance

__all__ = ["HEADER_SIZE", "MAGIC", "URL_ENV", "RedisCore", "key_tag"]

logger = logging.getLogger(__name__)


_ASYNC_SLICE_S = 0.05  # longest thread-held blocking read of an async waiter
_ASYNC_BLOCKERS = 2  # async waiters per core blocking in threads; the others poll
_POLL_MIN_S, _POLL_MAX_S = 0.001, 0.05


class RedisCore(RedisAsyncInvalidation, RedisMaintenance):
    """Entries, claims and wake-ups in Redis, shared by every process using the server.

    ``redis_client``: a ``redis.Redis``, a ``redis.cluster.RedisCluster``, a
    zero-argument callable returning one (called on first use), or a URL; when None,
    the URL in ``$CACHIER_LIKE_REDIS_URL``, read on first use. For ``async def``
    functions it may be a ``redis.asyncio`` client too (or a callable returning one,
    called once per event loop), and a URL gives each event loop a ``redis.asyncio``
    client of its own: their operations then never leave the loop
    (:class:`~.async_ops.RedisAsyncOps`). ``server_ttl`` gives
    entries a server-side expiry. Nothing connects until the first call. The
    maintenance operations (``clear``, ``purge_stale``, ``entries``, ``namespaces``,
    ``stats``) come from :class:`~.maintenance.RedisMaintenance`.

    Example:
        >>> import os
        >>> url = os.environ.get("CACHIER_LIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
        >>> core = RedisCore("demo.f", redis_client=url, key_prefix="doctest")
        >>> core.key_of("k")
        '{doctest:demo.f}:v:k'
    """

    leases = True

    def __init__(
        self,
        namespace: str,
        *,
        redis_client: Any = None,
        key_prefix: str | None = None,
        server_ttl: timedelta | float | None = None,
        serializer: Serializer = DEFAULT_SERIALIZER,
    ) -> None:
        super().__init__(namespace, serializer=serializer)
        self._source = ClientSource(redis_client)  # checked now, connected on first use
        self._alinks = AsyncLinks(redis_client)  # async def functions: a client per loop
        self._sync_caller: bool | None = None  # whether a sync function uses the core
        prefix = DEFAULT_PREFIX if key_prefix is None else key_prefix
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(f"key_prefix must be a non-empty string, not {prefix!r}")
        ttl = config.as_seconds(server_ttl, "server_ttl")
        if ttl is not None and ttl <= 0:
            raise ConfigurationError("server_ttl must be a positive duration")
        self._ttl = str(ms(ttl)) if ttl is not None else "0"  # for the script
        self._px = ("PX", self._ttl) if ttl is not None else ()  # for a plain SET
        self.tag = key_tag(prefix, namespace)
        self._v, self._c, self._w = self.tag + ":v:", self.tag + ":c:", self.tag + ":w:"
        self._t = tags_tag(prefix) + ":"  # tag versions: the prefix's, not this function's
        #: The server's clock against this process's: entries are stamped in its time.
        self.clock = StoreClock()
        self._client: Client | None = None
        self._linked: Link | None = None
        self._reset_process_state()
        forks.reset_in_child(self._reset_process_state)  # a child holds none of our claims

    def _reset_process_state(self) -> None:
        self._held: dict[str, Held] = {}
        self._tag_keys_made = {}
        self._lock = threading.Lock()
        self._blockers = threading.BoundedSemaphore(_ASYNC_BLOCKERS)

    def key_of(self, key: Hashable) -> str:
        """The Redis key holding ``key``'s entry."""
        return self._v + storage_name(key)

    def _link(self) -> Link:
        link = self._linked
        if link is None:
            with self._lock:
                if self._linked is None:
                    client = self._source.resolve()
                    if is_async_client(client):
                        raise AsyncOnlyError(self._sync_advice())
                    self._client = client
                    self._linked = link_for(client)
                link = self._linked
        return link

    # -- entries -------------------------------------------------------------------

    def _server_time(self) -> float:
        seconds, micros = self._link().call("TIME")
        return int(seconds) + int(micros) / 1e6

    def _offset(self) -> float:
        """The server's time minus this process's (see :mod:`..clocks`)."""
        return self.clock.offset_from(self._server_time)

    def _decode(self, suffix: str, data: bytes, offset: float) -> Entry | None:
        if len(data) < HEADER_SIZE or data[:4] != MAGIC:
            self.warn_damaged(self._v + suffix, "bad header")
            return None
        stamp = HEADER.unpack_from(data)[1]  # in the server's time
        view = memoryview(data)[HEADER_SIZE:]
        return self.decode_entry(view, self._v + suffix, suffix, stamp, stamp - offset)

    def get(self, key: Hashable) -> Entry | None:
        """One ``GET``; an unreadable entry is a miss and a warning.

        The claiming thread's first read after its claim is the entry read together with
        the claim (the same round trip), so re-checking after a claim costs nothing.
        """
        suffix = storage_name(key)
        if self._held:
            held = self._held.get(suffix)
            if held is not None and held.unread and held.holder == threading.get_ident():
                held.unread = False
                data = held.snapshot
                return None if data is None else self._decode(suffix, data, self._offset())
        data = (self._linked or self._link()).call("GET", self._v + suffix)
        return None if data is None else self._decode(suffix, data, self._offset())

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Store ``entry``; from the thread holding the key's claim, release it too."""
        link = self._link()
        store = self._store(storage_name(key), entry, self._offset(), threading.get_ident())
        if store is None:
            return False
        command, held = store
        link.batch(command)
        if held is not None:
            held.stored = True  # the policy's release() that follows has nothing to do
        return True

    # -- claims --------------------------------------------------------------------

    def claim(self, key: Hashable, lease_s: float) -> bool:
        """``SET claim token NX PX lease`` and ``GET entry``, in one round trip."""
        suffix, token = storage_name(key), new_token()
        claimed, snapshot = self._link().pipeline(
            ("SET", self._c + suffix, token, "NX", "PX", ms(lease_s)), ("GET", self._v + suffix)
        )
        if claimed:
            self._held[suffix] = Held(token, snapshot, threading.get_ident())
        return bool(claimed)

    def renew(self, key: Hashable, lease_s: float) -> bool:
        """Extend this process's claim on ``key`` if it still holds it."""
        suffix = storage_name(key)
        held = self._held.get(suffix)
        if held is None:
            return False  # cleared by clear_claims()
        if held.stored:
            return True
        return bool(self._link().script(lua.RENEW, (self._c + suffix,), (held.token, ms(lease_s))))

    def release(self, key: Hashable) -> None:
        """Drop the claim if it is still ours, and wake the waiters (one script)."""
        suffix = storage_name(key)
        held = self._held.pop(suffix, None)
        if held is not None and not held.stored:
            keys = (self._c + suffix, f"{self._w}{suffix}:{held.token}")
            self._link().script(lua.RELEASE, keys, (held.token, WAKE_MS))

    def is_claimed(self, key: Hashable) -> bool:
        """Whether any process holds the claim on ``key``."""
        return bool(self._link().call("EXISTS", self._c + storage_name(key)))

    def _wait_step(
        self, key: Hashable, deadline: float | None, most_s: float
    ) -> tuple[bool, Entry | None]:
        """Probe the claim; while it holds, block up to ``most_s`` on its wake list.

        ``(True, entry)`` once the claim ended or the deadline passed, else ``(False, None)``.
        No blocking read outlasts the lease, so a dead calculator is noticed as it lapses.
        """
        suffix, link = storage_name(key), self._link()
        reply = link.script(lua.PROBE, (self._c + suffix, self._v + suffix))
        ttl = int(reply[0])
        if ttl == -2:
            entry = None if reply[1] is None else self._decode(suffix, reply[1], self._offset())
            return True, entry
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True, self.get(key)
            most_s = min(most_s, remaining)
        if ttl >= 0:
            most_s = min(most_s, ttl / 1000 + 0.002)
        if most_s > 0:
            wake = f"{self._w}{suffix}:{reply[1].decode()}"
            link.call("BLMOVE", wake, wake, "LEFT", "LEFT", round(max(most_s, 0.001), 3))
        return False, None

    def wait(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Block on the key's wake list (in slices) until the claim ends or time is up."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        most_s = self._link().max_block
        while True:
            done, entry = self._wait_step(key, deadline, most_s)
            if done:
                return entry

    async def _thread_wait_async(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """``wait_async`` for a sync client: short slices in threads (two per core), else poll.

        No thread is held longer than a slice, and only two at a time per core, so many
        waiters cannot starve the thread pool the calculator needs to store its value.
        """
        backoff = Backoff(timeout_s, _POLL_MIN_S, _POLL_MAX_S)
        deadline = backoff.deadline
        while True:
            blocking = self._blockers.acquire(blocking=False)
            try:
                most_s = min(_ASYNC_SLICE_S, self._link().max_block) if blocking else 0.0
                done, entry = await asyncio.to_thread(self._wait_step, key, deadline, most_s)
            finally:
                if blocking:
                    self._blockers.release()
            if done:
                return entry
            if not blocking:
                await asyncio.sleep(backoff.next_delay() or 0.0)  # None: the next step ends it

    def clear_claims(self) -> int:
        """Drop every claim of this function and wake its waiters; return how many."""
        self._held.clear()
        link, dropped = self._link(), 0
        for batch in link.scan(self._c + "*"):
            keys, tokens, holders = [], [], link.pipeline(*(("GET", c) for c in batch))
            for claim, token in zip(batch, holders, strict=True):
                if token is not None:  # else it lapsed meanwhile
                    tokens.append(token.decode())
                    keys += [claim, f"{self._w}{claim[len(self._c) :]}:{tokens[-1]}"]
            if keys:
                dropped += int(link.script(lua.DROP_CLAIMS, keys, (WAKE_MS, *tokens)))
        return dropped
