"""An entry that cannot be read is a miss and a warning, rate-limited on every core."""

from __future__ import annotations

from typing import Any

import pytest

from cachier_like import cached
from tests.backends.types import CoreOptions
from tests.conftest import BEHAVIOUR_CORES
from tests.support import library_warnings


class UnreadableSerializer:
    """Writes pickles it can never read back: every stored entry stays damaged."""

    def dumps(self, value: Any) -> bytes:
        return b"not a pickle" + repr(value).encode()

    def loads(self, data: bytes) -> Any:
        raise ValueError("damaged payload")


@pytest.fixture(params=[p for p in BEHAVIOUR_CORES if p.id != "memory"])
def stored_core_options(request: pytest.FixtureRequest) -> CoreOptions:
    """The cores that serialize what they store (the memory core keeps objects)."""
    options: CoreOptions = request.getfixturevalue(f"{request.param}_core_options")
    return options


def test_a_damaged_entry_met_by_every_call_warns_once(stored_core_options: CoreOptions) -> None:
    computed = []

    @cached(**stored_core_options(serializer=UnreadableSerializer()))
    def f(x: int) -> int:
        computed.append(x)
        return x + 1

    f(1)  # stores an entry that no call can read
    with library_warnings() as warnings:
        assert [f(1) for _ in range(300)] == [2] * 300
    assert len(computed) == 301  # each call met the damaged entry and computed
    damaged = [w for w in warnings if "damaged cache entry" in w]
    assert len(damaged) == 1, warnings[:5]
    assert "damaged payload" in damaged[0]
    assert f.namespace in damaged[0]
