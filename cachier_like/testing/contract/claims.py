"""Contract part: claims (exclusive, racing, renewed, lapsed, cleared) and waits on them."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable

import pytest

from ...cores.base import Core
from ...entry import Entry
from ..processes import DEADLINE_S
from ..processes import wait_until as _wait_until
from .base import KEYS, NAMESPACE, ContractBase, MakeCore, start, wait_started


class ClaimChecks(ContractBase):
    """Claims and waits, between handles and threads of one process."""

    @pytest.mark.parametrize("key", KEYS)
    def test_claims_are_exclusive_until_released(self, make_core: MakeCore, key: Hashable) -> None:
        first, second = make_core(NAMESPACE), make_core(NAMESPACE)
        assert first.claim(key, 30.0) is True
        try:
            assert second.claim(key, 30.0) is False
            assert first.claim(key, 30.0) is False  # not re-entrant either
            assert second.is_claimed(key)
            assert second.claim("other", 30.0) is True  # claims are per key
            second.release("other")
        finally:
            first.release(key)
        assert not second.is_claimed(key)
        assert second.claim(key, 30.0) is True
        second.release(key)
        second.release("never-claimed")  # harmless
        assert second.stats().claims == 0

    def test_renew_and_release_act_only_on_this_callers_claim(self, make_core: MakeCore) -> None:
        mine, theirs = make_core(NAMESPACE), make_core(NAMESPACE)
        if not mine.leases:
            pytest.skip("claims of this core are not leases")
        assert not mine.renew("k", 1.0)
        assert theirs.claim("k", 30.0)
        assert not mine.renew("k", 30.0)
        mine.release("k")
        assert theirs.is_claimed("k")
        assert theirs.renew("k", 30.0)
        theirs.release("k")

    def test_exactly_one_of_many_racing_threads_claims(self, make_core: MakeCore) -> None:
        cores = [make_core(NAMESPACE) for _ in range(self.race_threads)]
        cores[0].set("stored", Entry("old", 0.0))  # an existing entry, claimed by update
        for round_ in range(self.race_rounds):
            stored = round_ % 2 == 1
            if stored and not self.atomic_claims_on_entries:
                continue
            key = "stored" if stored else f"new{round_}"
            barrier = threading.Barrier(self.race_threads)
            won = [False] * self.race_threads

            def claim(
                index: int,
                key: str = key,
                barrier: threading.Barrier = barrier,
                won: list[bool] = won,
            ) -> None:
                barrier.wait(DEADLINE_S)
                won[index] = cores[index].claim(key, 30.0)

            threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(cores))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(DEADLINE_S)
            assert sorted(won) == [False] * (len(cores) - 1) + [True], key
            assert cores[0].is_claimed(key)
            cores[won.index(True)].release(key)
            assert not cores[0].is_claimed(key)
        assert cores[0].get("new0") is None  # a released claim leaves no entry
        stats = cores[0].stats()
        assert (stats.entries, stats.claims) == (1, 0)

    def test_clear_claims_frees_every_key_and_wakes_waiters(self, make_core: MakeCore) -> None:
        core, holder = make_core(NAMESPACE), make_core(NAMESPACE)
        for key in ("a", "b", "c"):
            assert holder.claim(key, 30.0)
        waiter, results = start(lambda: core.wait("a", None))
        wait_started(waiter, core)
        assert core.stats().claims == 3
        assert core.clear_claims() == 3
        waiter.join(DEADLINE_S)
        assert results == [None]
        assert core.stats().claims == 0
        for key in ("a", "b", "c"):
            assert core.claim(key, 30.0)
            core.release(key)
        assert make_core(NAMESPACE + ".never_used").clear_claims() == 0

    def test_a_claim_without_a_lease_lasts_as_long_as_its_holder(self, core: Core) -> None:
        if core.leases:
            pytest.skip("claims of this core are leases")
        assert core.claim("k", 0.01)
        try:
            assert core.wait("k", 0.3) is None  # time passes well beyond the lease ...
            assert core.claim("k", 0.01) is False  # ... and the claim still holds
        finally:
            core.release("k")
        assert core.claim("k", 0.01) is True
        core.release("k")

    def test_a_lapsed_lease_frees_the_key_and_its_release_is_harmless(
        self, make_core: MakeCore
    ) -> None:
        first, second = make_core(NAMESPACE), make_core(NAMESPACE)
        if not first.leases:
            pytest.skip("claims of this core are not leases")
        lease = 0.3
        began = time.monotonic()
        assert first.claim("k", lease)
        assert second.is_claimed("k")
        assert not second.claim("k", 30.0)
        _wait_until(lambda: not second.is_claimed("k"))
        assert time.monotonic() - began >= lease - 0.05, "the lease ended early"
        assert second.claim("k", 30.0)
        assert not first.renew("k", 30.0)
        first.release("k")  # too late: must not drop the new holder's claim
        assert second.is_claimed("k")
        second.release("k")

    # -- waiting ----------------------------------------------------------------------------

    def _wake_bound_s(self) -> float:
        return 0.5 if self.notifications else 5.0

    def test_wait_returns_the_stored_entry_promptly_after_release(
        self, make_core: MakeCore
    ) -> None:
        holder, core = make_core(NAMESPACE), make_core(NAMESPACE)
        assert holder.claim("k", 30.0)
        waiter, results = start(lambda: core.wait("k", DEADLINE_S))
        wait_started(waiter, core)
        holder.set("k", Entry("done", 5.0))
        holder.release("k")
        released = time.monotonic()
        waiter.join(DEADLINE_S)
        assert results == [Entry("done", 5.0)]
        assert time.monotonic() - released < self._wake_bound_s()

    def test_wait_returns_none_when_the_claim_ends_without_a_value(
        self, make_core: MakeCore
    ) -> None:
        holder, core = make_core(NAMESPACE), make_core(NAMESPACE)
        assert holder.claim("k", 30.0)
        waiter, results = start(lambda: core.wait("k", None))
        wait_started(waiter, core)
        holder.release("k")
        released = time.monotonic()
        waiter.join(DEADLINE_S)
        assert results == [None]
        assert time.monotonic() - released < self._wake_bound_s()

    def test_wait_gives_up_after_its_timeout(self, make_core: MakeCore) -> None:
        holder, core = make_core(NAMESPACE), make_core(NAMESPACE)
        core.set("k", Entry("old", 1.0))
        assert holder.claim("k", 30.0)
        try:
            began = time.monotonic()
            entry = core.wait("k", 0.3)
            elapsed = time.monotonic() - began
        finally:
            holder.release("k")
        assert entry == Entry("old", 1.0)  # whatever is stored when the wait ends
        assert 0.29 <= elapsed < 5
        began = time.monotonic()
        assert core.wait("unclaimed", None) is None  # no claim: no wait
        assert time.monotonic() - began < 5
