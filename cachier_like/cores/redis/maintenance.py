"""The Redis core's maintenance: clearing, purging, listing and counting by ``SCAN``.

None of this is on the call path; :class:`~.core.RedisCore` inherits it. Every
operation walks one function's keys (``SCAN MATCH {tag}:v:*``, or ``:c:*`` for
claims), so it touches one slot and never another function's keys.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from ..base import Core, CoreStats, EntryInfo
from . import scripts as lua
from .keys import HEADER_SIZE, header_stamp
from .link import Link


class RedisMaintenance(Core):
    """``clear``, ``purge_stale``, ``entries``, ``namespaces`` and ``stats`` for Redis."""

    #: ``{<quoted prefix>:<quoted namespace>}``: the hash tag of the function's keys.
    tag: str
    _v: str  # the prefix of entry keys
    _c: str  # the prefix of claim keys

    @abc.abstractmethod
    def _link(self) -> Link:
        """The connection to the server (resolved on first use)."""

    @abc.abstractmethod
    def _offset(self) -> float:
        """The server's time minus this process's: entries are stamped in the server's."""

    def clear(self) -> int:
        """``UNLINK`` this function's entries; return how many were removed."""
        link = self._link()
        return sum(int(link.call("UNLINK", *batch)) for batch in link.scan(self._v + "*"))

    def purge_stale(self, older_than_s: float, now: float) -> int:
        """Remove entries (and corrupted ones) calculated before ``now - older_than_s``.

        An entry rewritten between the read and the removal is kept (its header changed).
        """
        link, removed = self._link(), 0
        now += self._offset()  # the headers hold the server's time
        for batch in link.scan(self._v + "*"):
            old = []
            for key, header, size in link.headers(batch, HEADER_SIZE):
                stamp = header_stamp(header)
                if size and (stamp is None or now - stamp > older_than_s):
                    old.append((key, header))
            if old:
                keys, heads = [k for k, _ in old], [h for _, h in old]
                removed += int(link.script(lua.PURGE, keys, (HEADER_SIZE, *heads)))
        return removed

    def entries(self) -> Iterator[EntryInfo]:
        """Every readable entry: key, calculation time and payload bytes."""
        link, offset = self._link(), self._offset()
        for batch in link.scan(self._v + "*"):
            for key, header, size in link.headers(batch, HEADER_SIZE):
                stamp = header_stamp(header)
                if stamp is not None:
                    yield EntryInfo(key[len(self._v) :], stamp - offset, size - HEADER_SIZE)

    @classmethod
    def namespaces(cls, **options: Any) -> list[str]:
        """Functions with entries under ``key_prefix`` on the server ``redis_client`` names."""
        core = cls("", **options)
        inside = core.tag[1:-1]  # "<quoted prefix>:"
        found = set()
        for batch in core._link().scan("{" + inside + "*}:v:*"):
            for key in batch:
                prefix, _, name = key[1 : key.index("}")].rpartition(":")
                if prefix + ":" == inside:  # not a longer prefix that starts with this one
                    found.add(unquote(name))
        return sorted(found)

    def stats(self) -> CoreStats:
        """Count readable entries, their payload bytes (as ``entries``), and claims."""
        return self.stats_from_entries(
            claims=sum(len(batch) for batch in self._link().scan(self._c + "*"))
        )
