"""An opt-in pytest plugin for test suites of code that uses ``cachier_like``.

Installed as the ``cachier_like`` ``pytest11`` entry point, it does nothing until it is
enabled with ``pytest --cachier-like-isolate`` or ``cachier_like_isolate = true`` in the
ini file. Enabled, every test gets caches of its own:

- the pickle core's default cache directory is a temporary directory of the test's own
  (the ``cache_dir`` default);
- memory-core entries made before the test are cleared as it starts, and the memory
  core's tag versions start again from 0;
- Redis keys go under a key prefix of the test's own (the ``key_prefix`` default);

and the global defaults are restored after each test. Options a function passes
explicitly to ``@cached`` win over these defaults, as always.

Marking a test ``@pytest.mark.cachier_like_disabled`` (enabled or not) makes every
cached call in it go straight through, reading and writing nothing.

Example:
    >>> isolation_prefix().startswith("test-")
    True
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .. import config
from ..cores.memory import live_cores
from ..cores.memory_tags import reset_tag_versions

OPTION = "--cachier-like-isolate"
INI = "cachier_like_isolate"
MARKER = "cachier_like_disabled"


def isolation_prefix() -> str:
    """A Redis key prefix no other test (or run) uses."""
    return f"test-{uuid.uuid4().hex[:16]}"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the switch and its ini form."""
    group = parser.getgroup("cachier_like")
    group.addoption(
        OPTION,
        action="store_true",
        default=False,
        help="give every test caches of its own (cachier_like)",
    )
    parser.addini(INI, "give every test caches of its own (cachier_like)", type="bool")


def enabled(config_: pytest.Config) -> bool:
    """Whether isolation was switched on, by option or ini."""
    try:
        return bool(config_.getoption(OPTION) or config_.getini(INI))
    except ValueError:  # not loaded as a plugin: this module's doctest sees its fixtures
        return False


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line("markers", f"{MARKER}: cached calls in this test run uncached")


@pytest.fixture
def cachier_like_isolation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Caches of this test's own; yields its default cache directory.

    Used by every test when the plugin is enabled; a test may also request it alone.
    """
    saved = dict(config.get_default_params())
    for core in live_cores():
        core.clear()
        core.clear_claims()
    reset_tag_versions()  # only now: no entry is left to look current under a reused one
    directory = tmp_path_factory.mktemp("cachier-like-cache")
    prefix = isolation_prefix()
    config.set_default_params(cache_dir=directory, key_prefix=prefix)
    yield directory
    config.reset_default_params()
    config.set_default_params(**saved)


@pytest.fixture(autouse=True)
def _cachier_like_autouse(request: pytest.FixtureRequest) -> Iterator[None]:
    """Isolate when enabled; switch caching off for a marked test."""
    if enabled(request.config):
        request.getfixturevalue("cachier_like_isolation")
    if request.node.get_closest_marker(MARKER) is None:
        yield
        return
    was_enabled = bool(config.get_default_params()["caching_enabled"])
    config.disable_caching()
    try:
        yield
    finally:
        if was_enabled:
            config.enable_caching()
