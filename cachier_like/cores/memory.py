"""In-process core: a dict guarded by a condition variable, with optional LRU bound.

Tag versions belong to the process: one set shared by every memory core
(:mod:`.memory_tags`; :func:`reset_tag_versions` for test harnesses). An entry never
outlives its tags' versions here: a bump drops the entries carrying the tag from every
memory core (each keeps an index of its tagged keys), and an entry recorded under
versions already behind is not stored. So a tagged hit is a plain read
(``tags_current_on_read``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

from ..alerts import RateLimitedLog
from ..entry import Entry
from ..option_table import check_on_evict
from ..serialize import DEFAULT_SERIALIZER, Serializer
from . import memory_tags as process_tags
from .base import Core, CoreStats, EntryInfo
from .memory_tags import reset_tag_versions

__all__ = ["MemoryCore", "live_cores", "reset_tag_versions"]

logger = logging.getLogger(__name__)

#: Every live memory core, so a test harness can empty them all (``live_cores``).
_LIVE: weakref.WeakSet[MemoryCore] = weakref.WeakSet()


def live_cores() -> list[MemoryCore]:
    """Every memory core still referenced in this process.

    Example:
        >>> core = MemoryCore("demo.live")
        >>> core in live_cores()
        True
    """
    return list(_LIVE)


class MemoryCore(Core):
    """Entries live in this process only; thread-safe.

    ``max_entries`` bounds the store, evicting the least recently used entry.
    ``on_evict`` is called with each value whose entry leaves the store: evicted by
    ``max_entries``, replaced by a new value (as an expired entry is on its recompute),
    deleted, purged or cleared. It runs after the core's lock is released, in the
    thread that removed the entry; an exception from it is logged (rate-limited) and
    otherwise ignored. One removal of many (``clear``, ``purge_stale``,
    ``set_many``) passes each distinct value object once.

    Example:
        >>> core = MemoryCore("demo", max_entries=1, on_evict=lambda value: print("bye", value))
        >>> core.set("k", Entry(1, 0.0))
        True
        >>> core.get("k").value
        1
        >>> core.set("j", Entry(2, 0.0))
        bye 1
        True
    """

    stable_keys = False
    blocking = False
    tags_current_on_read = True

    def __init__(
        self,
        namespace: str,
        *,
        max_entries: int | None = None,
        on_evict: Callable[[Any], object] | None = None,
        serializer: Serializer = DEFAULT_SERIALIZER,
    ) -> None:
        super().__init__(namespace, serializer=serializer)
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._max_entries = max_entries
        self._on_evict = check_on_evict(on_evict, "on_evict")
        self._evict_log = RateLimitedLog(logger)
        self._data: OrderedDict[Hashable, Entry] | dict[Hashable, Entry] = (
            OrderedDict() if max_entries is not None else {}
        )
        self._cond = threading.Condition(threading.Lock())
        # Claims need no lease here: they live and die with this process, and the
        # call path releases them in a ``finally``.
        self._claims: set[Hashable] = set()
        #: tag -> the keys whose entries carry it (kept with the entries, under the lock)
        self._tagged: dict[str, set[Hashable]] = {}
        if max_entries is None:
            # Unbounded: a dict read is atomic under the GIL, no lock needed on a hit.
            self.get = self._data.get  # type: ignore[method-assign, assignment]
        _LIVE.add(self)

    def get(self, key: Hashable) -> Entry | None:
        """Return the entry for ``key`` and mark it recently used."""
        with self._cond:
            entry = self._data.get(key)
            if entry is not None:
                self._data.move_to_end(key)  # type: ignore[union-attr]
            return entry

    def _too_large(self, entry: Entry) -> bool:
        limit = self.size_limit
        # Measured only when there is a limit: entries stay unpickled.
        return limit is not None and len(self.serializer.dumps(entry.value)) > limit

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Store ``entry`` (skipped when its pickled size exceeds the size limit)."""
        if self.size_limit is not None and self._too_large(entry):
            return False
        if self._on_evict is not None or entry.tags:
            self._evicted(self._store([(key, entry)]))
            return True
        with self._cond:
            self._data[key] = entry
            if self._max_entries is not None:
                data: OrderedDict[Hashable, Entry] = self._data  # type: ignore[assignment]
                data.move_to_end(key)
                while len(data) > self._max_entries:
                    data.popitem(last=False)
            self._cond.notify_all()
        return True

    def _store(self, items: Sequence[tuple[Hashable, Entry]]) -> list[Any]:
        """Store ``items`` under the lock; return the values that left the store."""
        gone: list[Any] = []
        with self._cond:
            data = self._data
            for key, entry in items:
                if entry.tags:
                    if not process_tags.current(entry.tags):
                        continue  # computed before one of its tags was invalidated
                    for tag, _ in entry.tags:
                        self._tagged.setdefault(tag, set()).add(key)
                old = data.get(key)
                data[key] = entry
                if old is not None:
                    self._unindex(key, old, entry)
                    if old.value is not entry.value:
                        gone.append(old.value)
                if self._max_entries is not None:
                    ordered: OrderedDict[Hashable, Entry] = data  # type: ignore[assignment]
                    ordered.move_to_end(key)
                    while len(ordered) > self._max_entries:
                        evicted_key, evicted = ordered.popitem(last=False)
                        self._unindex(evicted_key, evicted)
                        gone.append(evicted.value)
            self._cond.notify_all()
        return gone

    def _unindex(self, key: Hashable, entry: Entry, kept: Entry | None = None) -> None:
        """Forget that ``key`` carries ``entry``'s tags (those ``kept`` still carries stay)."""
        for tag, _ in entry.tags:
            if kept is not None and any(tag == name for name, _ in kept.tags):
                continue
            keys = self._tagged.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tagged[tag]

    def _drop_tagged(self, tags: Sequence[str]) -> None:
        """Remove every entry carrying one of ``tags`` (their versions were just bumped)."""
        gone: list[Any] = []
        with self._cond:
            for tag in tags:
                for key in self._tagged.pop(tag, ()):
                    entry = self._data.pop(key, None)
                    if entry is not None:
                        self._unindex(key, entry)
                        gone.append(entry.value)
        self._evicted(gone)

    def _evicted(self, values: list[Any]) -> None:
        """Pass each value (each distinct object once) to ``on_evict``, outside the lock."""
        callback = self._on_evict
        if callback is None or not values:
            return
        seen: set[int] = set()
        for value in values:
            if id(value) in seen:
                continue
            seen.add(id(value))
            try:
                callback(value)
            except Exception as exc:  # the value has left all the same
                self._evict_log.warn(
                    type(exc),
                    "%s: on_evict raised %r for an evicted value; the entry is gone all the same",
                    self.namespace,
                    exc,
                )

    def set_many(self, items: Sequence[tuple[Hashable, Entry]]) -> list[bool]:
        """Store each ``(key, entry)`` under one lock; skipped where over the size limit."""
        stored = [self.size_limit is None or not self._too_large(e) for _, e in items]
        kept = [item for item, ok in zip(items, stored, strict=True) if ok]
        if kept:
            self._evicted(self._store(kept))
        return stored

    def get_many(self, keys: Sequence[Hashable]) -> list[Entry | None]:
        """The entries of ``keys`` in order, each marked recently used."""
        if self._max_entries is None:
            read = self._data.get
            return [read(key) for key in keys]
        with self._cond:
            data: OrderedDict[Hashable, Entry] = self._data  # type: ignore[assignment]
            found = [data.get(key) for key in keys]
            for key, entry in zip(keys, found, strict=True):
                if entry is not None:
                    data.move_to_end(key)
            return found

    def delete(self, key: Hashable) -> bool:
        """Remove the entry of ``key`` (its claim, if any, stays)."""
        with self._cond:
            entry = self._data.pop(key, None)
            if entry is not None and entry.tags:
                self._unindex(key, entry)
        if entry is None:
            return False
        self._evicted([entry.value])
        return True

    # -- tag versions: the process's --------------------------------------------------

    def tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """This process's version of each tag (0 for one never bumped)."""
        return process_tags.versions(tags)

    def bump_tags(self, tags: Sequence[str]) -> None:
        """Advance each tag's version by one for every memory core of the process, and
        drop the entries carrying them (after the increment: a store racing with it
        either sees the new version and is refused, or is dropped here)."""
        process_tags.bump(tags)
        for core in live_cores():
            if core._tagged:
                core._drop_tagged(tags)

    def clear(self) -> int:
        """Remove every entry."""
        with self._cond:
            values = [entry.value for entry in self._data.values()]
            self._data.clear()
            self._tagged.clear()
        self._evicted(values)
        return len(values)

    def claim(self, key: Hashable, lease_s: float) -> bool:
        """Claim ``key`` unless another caller holds it."""
        with self._cond:
            if key in self._claims:
                return False
            self._claims.add(key)
            return True

    def release(self, key: Hashable) -> None:
        """End the claim and wake waiters."""
        with self._cond:
            self._claims.discard(key)
            self._cond.notify_all()

    def wait(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Sleep on the condition until the claim ends or the timeout passes."""
        with self._cond:
            self._cond.wait_for(lambda: key not in self._claims, timeout_s)
            return self._data.get(key)

    def is_claimed(self, key: Hashable) -> bool:
        """Whether a thread is calculating ``key``."""
        return key in self._claims

    def clear_claims(self) -> int:
        """Drop every claim and wake waiters."""
        with self._cond:
            count = len(self._claims)
            self._claims.clear()
            self._cond.notify_all()
            return count

    def purge_stale(self, older_than_s: float, now: float) -> int:
        """Remove entries older than ``older_than_s``."""
        with self._cond:
            old = [k for k, e in self._data.items() if now - e.timestamp > older_than_s]
            values = []
            for key in old:
                entry = self._data.pop(key)
                self._unindex(key, entry)
                values.append(entry.value)
        self._evicted(values)
        return len(old)

    def entries(self) -> Iterator[EntryInfo]:
        """This process's entries (sizes are not measured in memory)."""
        with self._cond:
            items = list(self._data.items())
        for key, entry in items:
            yield EntryInfo(key=str(key), timestamp=entry.timestamp, size=None)

    @classmethod
    def namespaces(cls, **options: Any) -> list[str]:
        """Nothing: a memory cache lives and dies with its process."""
        return []

    def stats(self) -> CoreStats:
        """Count entries (sizes are not measured in memory)."""
        with self._cond:
            stamps = [e.timestamp for e in self._data.values()]
            return CoreStats(
                entries=len(stamps),
                total_bytes=None,
                oldest=min(stamps, default=None),
                newest=max(stamps, default=None),
                claims=len(self._claims),
            )
