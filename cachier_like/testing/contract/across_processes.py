"""Contract part: processes sharing a store (eight racing, a claim holder killed)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from ...cores.base import Core
from ...entry import Entry
from ..processes import DEADLINE_S, FORK, reap, record, records, run_forked
from ..processes import wait_until as _wait_until
from .base import NAMESPACE, ContractBase, MakeCore, start, wait_started


class ProcessChecks(ContractBase):
    """Forked processes on one store: skipped unless ``cross_process``."""

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
            waiter, results = start(lambda: core.wait("k", DEADLINE_S))
            wait_started(waiter, core)
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
