"""The shipped core contract (:mod:`cachier_like.testing`), run on every core.

The contract classes come from the fixture modules in ``tests/backends/``: one
``CoreContract`` subclass per core (each SQL database is a core of its own here), so a
new core's module adds it here as it adds it to the behaviour suite.
"""

from __future__ import annotations

import pytest

from cachier_like.testing import CoreContract
from tests.conftest import CORE_MODULES

_CONTRACTS = [cls for module in CORE_MODULES for cls in module.CONTRACTS]

for _contract in _CONTRACTS:
    globals()[f"Test{_contract.__name__}"] = _contract


@pytest.mark.memory
def test_every_core_of_the_behaviour_suite_runs_the_contract() -> None:
    names = {cls.__name__ for cls in _CONTRACTS}
    assert names == {
        "MemoryContract",
        "PickleContract",
        "RedisContract",
        "SQLiteContract",
        "PostgresContract",
        "MariaDBContract",
        "MongoContract",
    }


@pytest.mark.memory
@pytest.mark.parametrize("contract", _CONTRACTS, ids=lambda cls: cls.__name__)
def test_every_contract_defines_the_optional_fixtures_its_core_needs(
    contract: type[CoreContract],
) -> None:
    # Without them the raw-damage and namespace checks would skip, unnoticed.
    def defines(name: str) -> bool:
        owner = next(cls for cls in contract.__mro__ if name in vars(cls))
        return not issubclass(CoreContract, owner)  # not the contract's default

    assert defines("damage") == contract.serializes
    assert defines("store_options") == contract.lists_namespaces
