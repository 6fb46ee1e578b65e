"""Shared fixtures: per-test cache directories and the cores the behaviour suite runs on."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cachier_like
from cachier_like import config

# The backend modules are imported here (for their PARAMS) before pytest loads them
# as plugins, and they import the shipped contract: register both for rewriting first.
# Installed with its pytest11 entry point, the package is already imported (and
# rewritten, as every module of a plugin's distribution is) by the time this runs.
pytest.register_assert_rewrite("tests.backends")
if "cachier_like.testing" not in sys.modules:
    pytest.register_assert_rewrite("cachier_like.testing")

from tests.backends import core_modules  # noqa: E402
from tests.backends.types import CoreOptions  # noqa: E402

__all__ = ["CoreOptions"]


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


CORE_MODULES = core_modules()
pytest_plugins = ["pytester", *(module.__name__ for module in CORE_MODULES)]

# Every core of the shared behaviour suite, each with the marker that selects it.
BEHAVIOUR_CORES = [param for module in CORE_MODULES for param in module.PARAMS]


def _cross_process_params(module: ModuleType) -> list[Any]:
    """The entries of ``module.PARAMS`` its ``CROSS_PROCESS`` names (a typo fails here)."""
    ids = {param.id for param in module.PARAMS}
    unknown = sorted(set(module.CROSS_PROCESS) - ids)
    if unknown:
        raise ValueError(f"{module.__name__}.CROSS_PROCESS names no entry of PARAMS: {unknown}")
    return [param for param in module.PARAMS if param.id in module.CROSS_PROCESS]


# The cores whose store forked processes share, for the cross-process section.
CROSS_PROCESS_CORES = [param for module in CORE_MODULES for param in _cross_process_params(module)]


@pytest.fixture(params=BEHAVIOUR_CORES)
def core_options(request: pytest.FixtureRequest) -> CoreOptions:
    """Return a function giving ``@cached`` keyword arguments for the core under test.

    Usage: ``@cached(**core_options(stale_after=...))``. Each backend module provides
    a ``<param>_core_options`` fixture that isolates and cleans up its storage.
    """
    options: CoreOptions = request.getfixturevalue(f"{request.param}_core_options")
    return options


@pytest.fixture(params=CROSS_PROCESS_CORES)
def cross_process_core_options(request: pytest.FixtureRequest) -> CoreOptions:
    """``core_options`` for the cores whose store forked processes share.

    The cores are those each backend module lists in its ``CROSS_PROCESS``.
    """
    options: CoreOptions = request.getfixturevalue(f"{request.param}_core_options")
    return options
