"""Shared fixtures: per-test cache directories and the cores the behaviour suite runs on."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cachier_like
from cachier_like import config


@pytest.fixture(autouse=True, scope="session")
def _worker_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Give each xdist worker its own default cache directory."""
    directory = tmp_path_factory.mktemp("default-cache")
    previous = os.environ.get(config.CACHE_DIR_ENV)
    os.environ[config.CACHE_DIR_ENV] = str(directory)
    yield
    if previous is None:
        os.environ.pop(config.CACHE_DIR_ENV, None)
    else:
        os.environ[config.CACHE_DIR_ENV] = previous


@pytest.fixture(autouse=True)
def _fresh_defaults() -> Iterator[None]:
    """Every test starts and ends with the built-in global defaults."""
    cachier_like.reset_default_params()
    yield
    cachier_like.reset_default_params()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A cache directory of this test's own."""
    path = tmp_path / "cache"
    path.mkdir()
    return path


CoreOptions = Callable[..., dict[str, Any]]

# Each core of the shared behaviour suite, with the pytest marker that selects it.
BEHAVIOUR_CORES = [
    pytest.param("memory", marks=pytest.mark.memory, id="memory"),
    pytest.param("pickle", marks=pytest.mark.pickle, id="pickle"),
]


@pytest.fixture(params=BEHAVIOUR_CORES)
def core_options(request: pytest.FixtureRequest, tmp_path: Path) -> CoreOptions:
    """Return a function giving ``@cached`` keyword arguments for the core under test.

    Usage: ``@cached(**core_options(stale_after=...))``.
    """
    backend: str = request.param

    def options(**extra: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"backend": backend}
        if backend == "pickle":
            base["cache_dir"] = tmp_path / "behaviour-cache"
        base.update(extra)
        return base

    return options
