"""Contract part: deleting one entry, batched reads and writes, tag versions."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ...cores.base import Core
from ...entry import Entry
from ..processes import run_forked
from .base import KEYS, NAMESPACE, ContractBase, MakeCore

#: Tag names with the characters store key syntaxes treat specially.
TAGS = ["user:7", "team 2", "glob*[x]?", "brace{}", "ünïcode", "a" * 300]


class DeleteChecks(ContractBase):
    """``delete``: exactly one entry, of one namespace; claims are left alone."""

    def test_delete_removes_exactly_that_entry(self, core: Core, make_core: MakeCore) -> None:
        neighbour = make_core("contract.other")
        for key in KEYS:
            assert core.set(key, Entry(repr(key), 1.0))
        assert neighbour.set(KEYS[0], Entry("theirs", 1.0))
        assert core.delete(KEYS[0]) is True
        assert core.get(KEYS[0]) is None
        assert core.delete(KEYS[0]) is False  # gone already
        assert core.delete("never stored") is False
        assert [core.get(key) for key in KEYS[1:]] == [Entry(repr(k), 1.0) for k in KEYS[1:]]
        assert neighbour.get(KEYS[0]) == Entry("theirs", 1.0)
        for key in KEYS[1:]:
            assert make_core(NAMESPACE).delete(key) is True  # through another handle
        assert [core.get(key) for key in KEYS] == [None] * len(KEYS)

    def test_delete_leaves_a_claim_alone(self, core: Core, make_core: MakeCore) -> None:
        holder = make_core(NAMESPACE)
        assert core.set("k", Entry("old", 1.0))
        assert holder.claim("k", 30.0)
        assert core.delete("k") is True
        assert core.is_claimed("k")
        assert not core.claim("k", 30.0)
        assert holder.set("k", Entry("new", 2.0))
        holder.release("k")
        assert core.get("k") == Entry("new", 2.0)
        assert not core.is_claimed("k")

    def test_adelete(self, core: Core) -> None:
        assert core.set("k", Entry(1, 1.0))

        async def main() -> tuple[bool, bool]:  # one loop: an AsyncEngine's pool is its
            return await core.adelete("k"), await core.adelete("k")

        assert asyncio.run(main()) == (True, False)
        assert core.get("k") is None


class BatchChecks(ContractBase):
    """``get_many`` and ``set_many`` (and their async twins) agree with one-by-one calls."""

    def test_get_many_reads_each_key_in_order(self, core: Core) -> None:
        stored = KEYS[::2]
        for index, key in enumerate(stored):
            assert core.set(key, Entry(index, float(index)))
        asked = [*KEYS, "missing", KEYS[0]]
        assert core.get_many(asked) == [core.get(key) for key in asked]
        assert core.get_many(asked)[0] == Entry(0, 0.0)
        assert core.get_many([]) == []

    def test_set_many_stores_each_and_skips_what_is_over_the_size_limit(
        self, core: Core, make_core: MakeCore
    ) -> None:
        items = [(key, Entry([index], 2.0)) for index, key in enumerate(KEYS)]
        assert core.set_many(items) == [True] * len(KEYS)
        assert make_core(NAMESPACE).get_many(KEYS) == [entry for _, entry in items]
        assert core.set_many([]) == []
        core.size_limit = 100
        mixed = [("small", Entry(b"x", 3.0)), ("big", Entry(b"x" * 1000, 3.0))]
        assert core.set_many(mixed) == [True, False]
        assert core.get_many(["small", "big"]) == [Entry(b"x", 3.0), None]

    def test_set_many_by_the_claims_holder_lands_and_the_claims_end(
        self, core: Core, make_core: MakeCore
    ) -> None:
        holder = make_core(NAMESPACE)
        assert holder.claim("a", 30.0) and holder.claim("b", 30.0)
        assert holder.set_many([("a", Entry(1, 1.0)), ("b", Entry(2, 1.0))]) == [True, True]
        holder.release("a")
        holder.release("b")
        assert core.get_many(["a", "b"]) == [Entry(1, 1.0), Entry(2, 1.0)]
        assert not core.is_claimed("a") and not core.is_claimed("b")

    def test_async_batches(self, core: Core) -> None:
        async def main() -> list[Entry | None]:
            stored = await core.aset_many([("a", Entry("x", 1.0)), ("b", Entry("y", 1.0))])
            assert stored == [True, True]
            return await core.aget_many(["b", "missing", "a"])

        assert asyncio.run(main()) == [Entry("y", 1.0), None, Entry("x", 1.0)]


class TagChecks(ContractBase):
    """Tag versions: per store, atomic increments; entries keep the versions they record."""

    def test_an_entry_keeps_its_recorded_tag_versions(
        self, core: Core, make_core: MakeCore
    ) -> None:
        for index, tag in enumerate(TAGS):  # versions 0, 1, 2, ...: the ones recorded
            for _ in range(index):
                core.bump_tags([tag])
        tags = tuple((tag, index) for index, tag in enumerate(TAGS))
        entry = Entry({"v": 1}, 5.0, tags)
        assert core.set("k", entry)
        assert core.set_many([("k2", Entry(2, 6.0, tags[:1]))]) == [True]
        reader = make_core(NAMESPACE)
        assert reader.get("k") == entry
        assert reader.get_many(["k", "k2"]) == [entry, Entry(2, 6.0, tags[:1])]
        assert reader.get_tagged("k", TAGS[:2]) == (entry, (0, 1))
        assert asyncio.run(reader.aget("k")) == entry

    def test_an_entry_without_tags_records_none(self, core: Core) -> None:
        assert core.set("k", Entry(1, 1.0))
        assert core.get("k") == Entry(1, 1.0, ())

    def test_versions_start_at_zero_and_each_bump_advances_one(self, core: Core) -> None:
        assert core.tag_versions(TAGS) == (0,) * len(TAGS)
        core.bump_tags(TAGS[:1])
        assert core.tag_versions(TAGS[:2]) == (1, 0)
        core.bump_tags(TAGS)
        assert core.tag_versions(TAGS) == (2,) + (1,) * (len(TAGS) - 1)
        assert core.tag_versions([]) == ()
        core.bump_tags([])
        assert core.tag_versions(TAGS[:1]) == (2,)

    def test_versions_belong_to_the_store_not_to_one_function(
        self, core: Core, make_core: MakeCore
    ) -> None:
        other = make_core("contract.another_function")
        other.bump_tags(["shared"])
        assert core.tag_versions(["shared"]) == (1,)
        assert core.set("k", Entry("v", 1.0, (("shared", 1),)))
        core.bump_tags(["shared"])
        assert other.get_tagged("missing", ["shared"]) == (None, (2,))
        # Behind its tag now: returned for the caller to judge, or dropped by a core
        # whose entries are never behind (``tags_current_on_read``).
        behind = None if core.tags_current_on_read else Entry("v", 1.0, (("shared", 1),))
        assert core.get_tagged("k", ["shared"]) == (behind, (2,))

    def test_a_core_current_on_read_drops_and_refuses_entries_behind_their_tags(
        self, core: Core, make_core: MakeCore
    ) -> None:
        if not core.tags_current_on_read:
            pytest.skip("this core returns entries behind their tags; the caller judges them")
        other = make_core("contract.another_function")
        assert core.set("a", Entry(1, 1.0, (("t", 0),)))
        assert other.set("b", Entry(2, 1.0, (("t", 0), ("u", 0))))
        assert core.set("c", Entry(3, 1.0, (("u", 0),)))
        core.bump_tags(["t"])
        assert core.get_many(["a", "c"]) == [None, Entry(3, 1.0, (("u", 0),))]
        assert other.get("b") is None
        assert core.set("a", Entry(4, 2.0, (("t", 0),)))  # computed before the bump
        assert core.get("a") is None
        assert core.set("a", Entry(5, 3.0, (("t", 1),)))
        assert core.get("a") == Entry(5, 3.0, (("t", 1),))

    def test_bumps_from_racing_threads_are_all_counted(
        self, core: Core, make_core: MakeCore
    ) -> None:
        threads, rounds = 8, 25
        barrier = threading.Barrier(threads)
        handles = [make_core(NAMESPACE) for _ in range(threads)]
        for handle in handles:  # first use sets the store up; what races here is the bumps
            assert handle.tag_versions(["hot"]) == (0,)
        errors: list[BaseException] = []

        def bump(handle: Core) -> None:
            try:
                barrier.wait()
                for _ in range(rounds):
                    handle.bump_tags(["hot", "warm"])
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=bump, args=(h,), daemon=True) for h in handles]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert core.tag_versions(["hot", "warm"]) == (threads * rounds, threads * rounds)

    def test_bumps_in_other_processes_are_seen_and_counted(self, core: Core) -> None:
        if not self.cross_process:
            pytest.skip("this core's store is not shared between processes")
        assert core.tag_versions(["p"]) == (0,)  # used before forking
        rounds = 10

        def work(index: int) -> tuple[int, ...]:
            for _ in range(rounds):
                core.bump_tags(["p"])
            return core.tag_versions(["p"])

        seen = run_forked(4, work, start_together=True, forbid_warnings=True)
        assert all(rounds <= version[0] <= 4 * rounds for version in seen)
        assert core.tag_versions(["p"]) == (4 * rounds,)

    def test_async_tag_operations(self, core: Core) -> None:
        async def main() -> tuple[Entry | None, tuple[int, ...]]:
            assert await core.atag_versions(["a", "b"]) == (0, 0)
            await core.abump_tags(["b"])
            assert core.set("k", Entry(1, 1.0, (("b", 1),)))
            return await core.aget_tagged("k", ["a", "b"])

        assert asyncio.run(main()) == (Entry(1, 1.0, (("b", 1),)), (0, 1))
