"""Contract part: storing and reading entries, the size limit, damaged entries."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import pytest

from ...cores.base import Core
from ...entry import Entry
from ..processes import library_warnings
from .base import KEYS, NAMESPACE, ContractBase, MakeCore, UnreadableSerializer

#: The ``damage(core, key)`` hook (see :meth:`ContractBase.damage`).
Damage = Callable[[Core, Hashable], None]


class StorageChecks(ContractBase):
    """Entries: get and set, the size limit, reads under a claim, damaged entries."""

    def test_get_and_set(self, core: Core, make_core: MakeCore) -> None:
        assert core.get("k") is None
        assert core.set("k", Entry({"a": [1, 2]}, 123.5)) is True
        assert core.get("k") == Entry({"a": [1, 2]}, 123.5)
        assert core.set("k", Entry("new", 124.0)) is True
        assert core.get("k") == Entry("new", 124.0)
        for index, key in enumerate(KEYS[1:]):
            assert core.set(key, Entry(index, 1.0)) is True
        assert [core.get(key) for key in KEYS[1:]] == [Entry(i, 1.0) for i in range(6)]
        assert core.set(("tuple", None), Entry(None, 1.0)) is True
        assert core.get(("tuple", None)) == Entry(None, 1.0)
        assert make_core(NAMESPACE).get("k") == Entry("new", 124.0)  # another handle

    def test_set_skips_values_over_the_size_limit(self, core: Core) -> None:
        core.size_limit = 100
        assert core.set("small", Entry(b"x" * 10, 1.0)) is True
        assert core.set("big", Entry(b"x" * 1000, 1.0)) is False
        assert core.get("big") is None
        assert core.get("small") == Entry(b"x" * 10, 1.0)

    def test_an_entry_stays_readable_while_its_key_is_claimed(
        self, core: Core, make_core: MakeCore
    ) -> None:
        refresher = make_core(NAMESPACE)
        core.set("k", Entry("old", 1.0))
        assert refresher.claim("k", 30.0)
        assert core.get("k") == Entry("old", 1.0)
        assert core.is_claimed("k")
        refresher.set("k", Entry("new", 2.0))
        refresher.release("k")
        assert core.get("k") == Entry("new", 2.0)
        assert not core.is_claimed("k")

    def test_a_damaged_payload_is_a_miss_with_a_warning_and_is_replaced(
        self, core: Core, make_core: MakeCore
    ) -> None:
        if not self.serializes:
            pytest.skip("this core keeps objects, so no payload can be damaged")
        writer = make_core(NAMESPACE, serializer=UnreadableSerializer())
        assert writer.set("k", Entry([1, 2], 5.0))
        self._assert_one_damage_warning_then_replaced(core)

    def test_a_damaged_stored_entry_is_a_miss_with_a_warning_and_is_replaced(
        self, core: Core, request: pytest.FixtureRequest
    ) -> None:
        if not self.serializes:
            pytest.skip("this core keeps objects, so no stored bytes can be damaged")
        damage: Damage = request.getfixturevalue("damage")
        assert core.set("k", Entry([1, 2], 5.0))
        damage(core, "k")
        self._assert_one_damage_warning_then_replaced(core)

    def _assert_one_damage_warning_then_replaced(self, core: Core) -> None:
        with library_warnings() as warned:
            assert core.get("k") is None
        damaged = [w for w in warned if "damaged cache entry" in w]
        assert len(damaged) == 1, warned
        assert NAMESPACE in damaged[0]
        assert core.set("k", Entry([1, 2], 6.0))
        with library_warnings() as warned:
            assert core.get("k") == Entry([1, 2], 6.0)
        assert warned == []
