"""The core contract: what every storage core must do, as a pytest test class.

Subclass :class:`CoreContract` once per core, give it a ``make_core`` fixture and set
the capability flags that differ from the defaults; pytest then runs every contract
test on that core. ``make_core(namespace, **options)`` returns a new core object
(``options`` may include ``serializer``); two calls with one namespace must reach the
same stored entries and claims, as two processes would. Each test's store must start
empty (a fresh directory, key prefix, table, ...).

The claim tests read two flags from the core class itself: ``leases`` (claims expire
unless renewed, so a dead holder frees its keys within a lease) and ``stable_keys``.

Example (in a test module, with ``pytest.register_assert_rewrite("cachier_like.testing")``
in ``conftest.py``)::

    class TestMyCore(CoreContract):
        cross_process = False

        @pytest.fixture
        def make_core(self, tmp_path):
            return lambda namespace, **options: MyCore(namespace, root=tmp_path, **options)

Over 300 lines on purpose: one test class, the contract, read as a whole.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..cores.base import Core
from ..entry import Entry
from .processes import (
    DEADLINE_S,
    FORK,
    in_call,
    library_warnings,
    reap,
    record,
    records,
    run_forked,
)
from .processes import wait_until as _wait_until

#: ``make_core(namespace, **options)``: a new core object on the test's store.
MakeCore = Callable[..., Core]

NAMESPACE = "contract.f"
#: Keys of the shapes the call path makes (hex digests) and any other hashable.
KEYS: list[Hashable] = [
    "k",
    "user_profile_7",
    "userprofilekey1234",
    "user_profile_12345678",
    "0123456789abcdef0123456789abcdef",
    ("a", "tuple", 3),
    7,
]
#: Namespaces that prefix, pattern-match or case-fold into one another.
NEIGHBOURS = ["pkg.f2", "pkg.f_extra", "pkg.f*", "pkg.f}x", "pkg.f:v:x", "pkg.[f]", "Pkg.F"]


class UnreadableSerializer:
    """Writes payloads that no pickle-reading core can read back."""

    def dumps(self, value: Any) -> bytes:
        return b"not a pickle" + repr(value).encode()

    def loads(self, data: bytes) -> Any:
        raise ValueError("damaged payload")


def _start(target: Callable[[], object]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target()), daemon=True)
    thread.start()
    return thread, results


def _wait_started(thread: threading.Thread, core: Core) -> None:
    """Return once ``thread`` is inside ``core.wait``."""
    code = type(core).wait.__code__
    _wait_until(lambda: in_call(thread, code))


class CoreContract:
    """The tests every core passes; subclass with a ``make_core`` fixture."""

    #: The store is shared between processes (forked children use the inherited core).
    cross_process: ClassVar[bool] = True
    #: Values are stored serialized: a payload can be damaged, and sizes are counted.
    serializes: ClassVar[bool] = True
    #: :meth:`Core.entries` lists the stored entries.
    lists_entries: ClassVar[bool] = True
    #: A waiter is woken by a notification (bound 0.5 s), not by polling (bound 5 s).
    notifications: ClassVar[bool] = False
    #: Racing claims on a key that already has an entry are atomic (not so on mongomock).
    atomic_claims_on_entries: ClassVar[bool] = True
    #: How many threads race for one claim, and how many rounds.
    race_threads: ClassVar[int] = 16
    race_rounds: ClassVar[int] = 20
    #: The short lease of the killed-holder test (seconds).
    short_lease_s: ClassVar[float] = 1.0

    @pytest.fixture
    def make_core(self) -> MakeCore:
        """Override: return ``make_core(namespace, **options)`` for this core."""
        raise NotImplementedError("a CoreContract subclass must define a make_core fixture")

    @pytest.fixture
    def core(self, make_core: MakeCore) -> Core:
        """One core on the test's store."""
        return make_core(NAMESPACE)

    # -- entries ------------------------------------------------------------------------

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
        with library_warnings() as warned:
            assert core.get("k") is None
        damaged = [w for w in warned if "damaged cache entry" in w]
        assert len(damaged) == 1, warned
        assert NAMESPACE in damaged[0]
        assert core.set("k", Entry([1, 2], 6.0))
        with library_warnings() as warned:
            assert core.get("k") == Entry([1, 2], 6.0)
        assert warned == []

    # -- clearing and maintenance ---------------------------------------------------

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

    # -- claims ---------------------------------------------------------------------------

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
        waiter, results = _start(lambda: core.wait("a", None))
        _wait_started(waiter, core)
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
        waiter, results = _start(lambda: core.wait("k", DEADLINE_S))
        _wait_started(waiter, core)
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
        waiter, results = _start(lambda: core.wait("k", None))
        _wait_started(waiter, core)
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

    # -- processes ----------------------------------------------------------------------

    def _require_processes(self) -> None:
        if not self.cross_process:
            pytest.skip("this core's store is not shared between processes")

    def test_eight_processes_racing_one_key_compute_once(self, core: Core, tmp_path: Path) -> None:
        self._require_processes()
        calls, arrived = tmp_path / "calls", tmp_path / "arrived"
        workers = 8
        assert core.get("k") is None  # the parent has used the store before forking

        def work(index: int) -> Any:
            record(arrived, str(index))

            def compute() -> Any:
                record(calls, str(os.getpid()))
                # Hold the claim until every worker is in, so all of them contend.
                _wait_until(lambda: len(records(arrived)) >= workers)
                return {"pid": os.getpid()}

            return _get_or_compute(core, "k", compute).value

        results = run_forked(workers, work, start_together=True, forbid_warnings=True)
        assert len(records(calls)) == 1
        assert results == [results[0]] * workers
        entry = core.get("k")
        assert entry is not None and entry.value == results[0]
        stats = core.stats()
        assert (stats.entries, stats.claims) == (1, 0)

    def test_eight_processes_racing_many_keys_compute_each_once(
        self, core: Core, tmp_path: Path
    ) -> None:
        self._require_processes()
        calls = tmp_path / "calls"
        workers, size, step, key_space = 8, 40, 10, 80
        windows = [[(i * step + j) % key_space for j in range(size)] for i in range(workers)]

        def work(index: int) -> list[Any]:
            def compute(k: int) -> Callable[[], int]:
                def square() -> int:
                    record(calls, str(k))
                    return k * k + 7

                return square

            return [_get_or_compute(core, str(k), compute(k)).value for k in windows[index]]

        results = run_forked(workers, work, start_together=True, forbid_warnings=True)
        for index, values in enumerate(results):
            assert values == [k * k + 7 for k in windows[index]]
        assert Counter(records(calls)) == Counter({str(k): 1 for k in range(key_space)})
        stats = core.stats()
        assert (stats.entries, stats.claims) == (key_space, 0)

    def test_a_killed_claim_holder_frees_its_key(self, core: Core, make_core: MakeCore) -> None:
        self._require_processes()
        lease = self.short_lease_s
        claimed = FORK.Event()

        def holder() -> None:
            mine = make_core(NAMESPACE)
            assert mine.claim("k", lease)
            claimed.set()
            while True:  # renew like a live calculator's lease keeper, until killed
                time.sleep(lease / 4)
                mine.renew("k", lease)

        process = FORK.Process(target=holder, daemon=True)
        process.start()
        try:
            assert claimed.wait(DEADLINE_S), "the holder never claimed"
            assert core.is_claimed("k")
            waiter, results = _start(lambda: core.wait("k", DEADLINE_S))
            _wait_started(waiter, core)
            assert core.claim("k", 30.0) is False  # held while its holder lives
            process.kill()
            process.join(DEADLINE_S)
            killed = time.monotonic()
            waiter.join(DEADLINE_S)
            assert results == [None]
            assert not core.is_claimed("k")
            assert time.monotonic() - killed < lease + 9, "the key was not freed promptly"
        finally:
            reap(process)
        assert core.claim("k", 30.0) is True
        core.set("k", Entry("taken over", 1.0))
        core.release("k")
        assert core.get("k") == Entry("taken over", 1.0)
        assert core.stats().claims == 0


def _get_or_compute(core: Core, key: Hashable, compute: Callable[[], Any]) -> Entry:
    """The protocol the call path follows: read, claim, re-read, store, release; or wait."""
    while True:
        entry = core.get(key)
        if entry is not None:
            return entry
        if core.claim(key, 30.0):
            try:
                entry = core.get(key)
                if entry is None:
                    entry = Entry(compute(), time.time())
                    assert core.set(key, entry)
                return entry
            finally:
                core.release(key)
        entry = core.wait(key, DEADLINE_S)
        if entry is not None:
            return entry
