"""In-process core: a dict guarded by a condition variable, with optional LRU bound."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any

from ..entry import Entry
from ..serialize import DEFAULT_SERIALIZER, Serializer
from .base import Core, CoreStats, EntryInfo

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

    Example:
        >>> core = MemoryCore("demo")
        >>> core.set("k", Entry(1, 0.0))
        True
        >>> core.get("k").value
        1
    """

    stable_keys = False
    blocking = False

    def __init__(
        self,
        namespace: str,
        *,
        max_entries: int | None = None,
        serializer: Serializer = DEFAULT_SERIALIZER,
    ) -> None:
        super().__init__(namespace, serializer=serializer)
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._max_entries = max_entries
        self._data: OrderedDict[Hashable, Entry] | dict[Hashable, Entry] = (
            OrderedDict() if max_entries is not None else {}
        )
        self._cond = threading.Condition(threading.Lock())
        # Claims need no lease here: they live and die with this process, and the
        # call path releases them in a ``finally``.
        self._claims: set[Hashable] = set()
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

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Store ``entry`` (skipped when its pickled size exceeds the size limit)."""
        limit = self.size_limit
        if limit is not None and len(self.serializer.dumps(entry.value)) > limit:
            return False  # measured only when there is a limit: entries stay unpickled
        with self._cond:
            self._data[key] = entry
            if self._max_entries is not None:
                data: OrderedDict[Hashable, Entry] = self._data  # type: ignore[assignment]
                data.move_to_end(key)
                while len(data) > self._max_entries:
                    data.popitem(last=False)
            self._cond.notify_all()
        return True

    def clear(self) -> int:
        """Remove every entry."""
        with self._cond:
            count = len(self._data)
            self._data.clear()
            return count

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
            for key in old:
                del self._data[key]
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
