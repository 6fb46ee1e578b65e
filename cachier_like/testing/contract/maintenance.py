"""Contract part: clearing, purging, counting and listing what a store holds."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ...cores.base import Core
from ...entry import Entry
from .base import NAMESPACE, NEIGHBOURS, ContractBase, MakeCore


class MaintenanceChecks(ContractBase):
    """Maintenance: ``clear``, ``purge_stale``, ``stats``, ``entries``, ``namespaces``."""

    def test_clear_removes_only_this_namespaces_entries(self, make_core: MakeCore) -> None:
        core = make_core("pkg.f")
        others = [make_core(name) for name in NEIGHBOURS]
        for x in range(3):
            for each in (core, *others):
                assert each.set(x, Entry(x, 1.0))
        assert core.claim("in-progress", 30.0)
        try:
            assert core.clear() == 3
            assert core.is_claimed("in-progress"), "clearing entries dropped a claim"
        finally:
            core.release("in-progress")
        assert [core.get(x) for x in range(3)] == [None] * 3
        for other in others:
            assert [other.get(x) for x in range(3)] == [Entry(x, 1.0) for x in range(3)]
        assert core.clear() == 0

    def test_purge_stale_removes_old_entries_of_this_namespace_only(
        self, core: Core, make_core: MakeCore
    ) -> None:
        neighbour = make_core(NAMESPACE + "2")
        now = time.time()
        core.set("old", Entry("old", now - 100))
        core.set("new", Entry("new", now - 1))
        neighbour.set("old", Entry("old", now - 100))
        assert core.purge_stale(50, now) == 1
        assert core.get("old") is None
        assert core.get("new") == Entry("new", now - 1)
        assert neighbour.get("old") == Entry("old", now - 100)
        assert core.purge_stale(50, now) == 0

    def test_stats_count_entries_bytes_times_and_claims(
        self, core: Core, make_core: MakeCore
    ) -> None:
        empty = core.stats()
        assert (empty.entries, empty.oldest, empty.newest, empty.claims) == (0, None, None, 0)
        values = {"a": ("a", 10.0), "b": (b"b" * 1000, 30.0), "c": ([1, 2, 3], 20.0)}
        for key, (value, stamp) in values.items():
            core.set(key, Entry(value, stamp))
        holder = make_core(NAMESPACE)
        assert holder.claim("a", 30.0)  # an entry being recalculated
        assert holder.claim("d", 30.0)  # a first calculation: a claim, not an entry
        try:
            stats = core.stats()
        finally:
            holder.release("a")
            holder.release("d")
        assert (stats.entries, stats.oldest, stats.newest, stats.claims) == (3, 10.0, 30.0, 2)
        if self.serializes:
            payload = sum(len(core.serializer.dumps(v)) for v, _ in values.values())
            assert stats.total_bytes is not None
            assert stats.total_bytes == payload, (stats.total_bytes, payload)
        assert core.stats().claims == 0  # a released claim is not a claim

    def test_entries_list_times_and_sizes(self, core: Core, make_core: MakeCore) -> None:
        if not self.lists_entries:
            pytest.skip("this core does not list its entries")
        core.set("a", Entry(b"x" * 1000, 10.0))
        core.set("b", Entry(None, 20.0))
        assert make_core(NAMESPACE).claim("claimed-only", 30.0)
        listed = sorted(core.entries(), key=lambda info: info.timestamp)
        assert [info.timestamp for info in listed] == [10.0, 20.0]
        if self.serializes:
            assert 1000 < (listed[0].size or 0) < 1100

    def test_namespaces_lists_each_namespace_with_entries(
        self, make_core: MakeCore, request: pytest.FixtureRequest
    ) -> None:
        if not self.lists_namespaces:
            pytest.skip("this core's store does not outlive its core objects")
        options: dict[str, Any] = request.getfixturevalue("store_options")
        core = make_core("pkg.f")
        listed = type(core).namespaces
        assert listed(**options) == []  # the test's store starts empty
        names = ["pkg.f", *NEIGHBOURS]
        for name in names:
            assert make_core(name).set("k", Entry(name, 1.0))
        assert listed(**options) == sorted(names)
        assert make_core("pkg.f").get("k") == Entry("pkg.f", 1.0)  # listing changes nothing
        # Not checked: whether a namespace holding only a claim is listed (the cores
        # differ: Redis does not list it, the pickle, Mongo and SQL cores do).
