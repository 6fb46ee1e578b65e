"""The in-process and file cores of the behaviour suite and the core contract."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from cachier_like.cores.base import Core
from cachier_like.cores.memory import MemoryCore, reset_tag_versions
from cachier_like.cores.pickle import HEADER_SIZE, PickleCore
from cachier_like.cores.shared import storage_name
from cachier_like.testing import CoreContract, MakeCore
from tests.backends.types import CoreOptions

PARAMS = [
    pytest.param("memory", marks=pytest.mark.memory, id="memory"),
    pytest.param("pickle", marks=pytest.mark.pickle, id="pickle"),
]
#: The ids of PARAMS whose store forked processes share (memory lives in one process).
CROSS_PROCESS = frozenset({"pickle"})


@pytest.fixture
def memory_core_options() -> CoreOptions:
    """``@cached`` options for the memory core."""

    def options(**extra: Any) -> dict[str, Any]:
        return {"backend": "memory", **extra}

    return options


@pytest.fixture
def pickle_core_options(tmp_path: Path) -> CoreOptions:
    """``@cached`` options for the pickle core, in this test's own directory."""

    def options(**extra: Any) -> dict[str, Any]:
        return {"backend": "pickle", "cache_dir": tmp_path / "behaviour-cache", **extra}

    return options


class MemoryContract(CoreContract):
    """The contract on the memory core: one process, objects kept as they are."""

    pytestmark = pytest.mark.memory
    cross_process = False
    serializes = False
    lists_namespaces = False  # the store lives and dies with the core objects
    notifications = True
    race_rounds = 50

    @pytest.fixture
    def make_core(self) -> MakeCore:
        # The store is the core object: one namespace gives one object, as one
        # decorated function does. Tag versions belong to the process: each test
        # starts them afresh.
        reset_tag_versions()
        cores: dict[str, Core] = {}

        def make(namespace: str, **options: Any) -> Core:
            if options:
                return MemoryCore(namespace, **options)
            return cores.setdefault(namespace, MemoryCore(namespace))

        return make


class PickleContract(CoreContract):
    """The contract on the pickle core, with each claim implementation."""

    pytestmark = pytest.mark.pickle
    notifications = True

    @pytest.fixture(params=["range_locks", "file_locks"])
    def make_core(self, request: pytest.FixtureRequest, tmp_path: Path) -> MakeCore:
        """Byte-range OFD locks (the Linux default) or one ``flock`` file per key."""
        directory = tmp_path / "contract-cache"

        def make(namespace: str, **options: Any) -> Core:
            ranges = request.param == "range_locks"
            return PickleCore(namespace, cache_dir=directory, prefer_range_locks=ranges, **options)

        return make

    @pytest.fixture
    def store_options(self, tmp_path: Path) -> dict[str, Any]:
        return {"cache_dir": tmp_path / "contract-cache"}

    @pytest.fixture
    def damage(self) -> Callable[[Core, Hashable], None]:
        def garble(core: Core, key: Hashable) -> None:
            assert isinstance(core, PickleCore)
            entry_file = core.directory / (storage_name(key) + ".entry")
            assert entry_file.exists()
            entry_file.write_bytes(b"garbage, not an entry file")

        return garble

    @pytest.fixture
    def tamper(self) -> Callable[[Core, Hashable, bytes], None]:
        def replace(core: Core, key: Hashable, payload: bytes) -> None:
            assert isinstance(core, PickleCore)
            entry_file = core.directory / (storage_name(key) + ".entry")
            entry_file.write_bytes(entry_file.read_bytes()[:HEADER_SIZE] + payload)

        return replace


CONTRACTS = [MemoryContract, PickleContract]
