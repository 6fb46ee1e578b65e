"""The in-process and file cores of the behaviour suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.backends.types import CoreOptions

PARAMS = [
    pytest.param("memory", marks=pytest.mark.memory, id="memory"),
    pytest.param("pickle", marks=pytest.mark.pickle, id="pickle"),
]


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
