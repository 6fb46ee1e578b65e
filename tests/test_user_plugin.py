"""The opt-in pytest plugin for users' test suites (``cachier_like.testing.plugin``).

Each case runs a small test suite in a pytest subprocess (``pytester``), with plugin
auto-loading off and the plugin named by ``-p``, as its ``pytest11`` entry point would
load it; a subprocess, so that the plugin's global changes stay in there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cachier_like import config

pytestmark = pytest.mark.pickle

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "cachier_like.testing.plugin"

# Two tests that call the same functions: on the pickle core (the default) and the
# memory core; each records what it saw. ``SHARED`` is whether the second test is
# expected to hit the first one's entries.
SUITE = """
import cachier_like
from cachier_like import cached

CALLS = []
PREFIXES = []

@cached()
def on_disk(x):
    CALLS.append(("disk", x))
    return x * 2

@cached(backend="memory")
def in_memory(x):
    CALLS.append(("memory", x))
    return x * 3

def test_first():
    PREFIXES.append(cachier_like.get_default_params()["key_prefix"])
    assert (on_disk(1), in_memory(1)) == (2, 3)
    assert CALLS == [("disk", 1), ("memory", 1)]

def test_second():
    PREFIXES.append(cachier_like.get_default_params()["key_prefix"])
    assert (on_disk(1), in_memory(1)) == (2, 3)
    if SHARED:
        assert CALLS == [("disk", 1), ("memory", 1)]
        assert PREFIXES == [None, None]
    else:
        assert CALLS == [("disk", 1), ("memory", 1)] * 2
        assert PREFIXES[0] != PREFIXES[1]
        assert all(p.startswith("test-") for p in PREFIXES)
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs load only the plugin, with a default cache dir of its own."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv(config.CACHE_DIR_ENV, str(pytester.path / "default-cache"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return pytester


def test_without_enabling_it_nothing_changes(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_suite="SHARED = True\n" + SUITE)
    suite.runpytest_subprocess("-p", PLUGIN).assert_outcomes(passed=2)
    # The entries went to the ordinary default directory.
    assert list((suite.path / "default-cache").iterdir())


@pytest.mark.parametrize(
    "switch", [["--cachier-like-isolate"], ["-o", "cachier_like_isolate=true"]], ids=["flag", "ini"]
)
def test_enabled_two_tests_do_not_see_each_others_entries(
    suite: pytest.Pytester, switch: list[str]
) -> None:
    suite.makepyfile(test_suite="SHARED = False\n" + SUITE)
    suite.runpytest_subprocess("-p", PLUGIN, *switch).assert_outcomes(passed=2)
    assert not (suite.path / "default-cache").exists()


def test_the_disable_marker_makes_calls_go_through(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_marked="""
        import pytest
        from cachier_like import cached

        CALLS = []

        @cached(backend="memory")
        def f(x):
            CALLS.append(x)
            return x + 1

        @pytest.mark.cachier_like_disabled
        def test_marked():
            assert [f(1), f(1)] == [2, 2]
            assert CALLS == [1, 1]
            assert f.cached_entry(1) is None  # nothing was written

        def test_after_it_caching_is_back():
            assert [f(1), f(1)] == [2, 2]
            assert CALLS == [1, 1, 1]
        """
    )
    result = suite.runpytest_subprocess("-p", PLUGIN, "--strict-markers")
    result.assert_outcomes(passed=2)


def test_the_isolation_fixture_may_be_requested_alone(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_fixture="""
        import cachier_like

        def test_it(cachier_like_isolation):
            defaults = cachier_like.get_default_params()
            assert defaults["cache_dir"] == cachier_like_isolation
            assert defaults["key_prefix"].startswith("test-")

        def test_others_keep_the_defaults():
            from cachier_like.default_dir import DefaultCacheDir

            assert isinstance(cachier_like.get_default_params()["cache_dir"], DefaultCacheDir)
        """
    )
    suite.runpytest_subprocess("-p", PLUGIN).assert_outcomes(passed=2)


def test_enabled_each_test_starts_with_every_tag_version_at_zero(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_tags="""
        from cachier_like import cached

        @cached(backend="memory", tags=["reports"])
        def report(x):
            return x

        def test_first():
            report(1)
            report.invalidate_tags("reports")
            assert report.core.tag_versions(["reports"]) == (1,)

        def test_second():
            assert report.core.tag_versions(["reports"]) == (0,)
        """
    )
    suite.runpytest_subprocess("-p", PLUGIN, "--cachier-like-isolate").assert_outcomes(passed=2)


def test_the_plugin_is_a_pytest11_entry_point_of_the_package() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is new in Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"cachier_like": PLUGIN}
    assert "cachier_like.testing" in project["tool"]["setuptools"]["packages"]
