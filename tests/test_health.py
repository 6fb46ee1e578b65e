"""Health checks (``f.health()``, ``f.ahealth()``, ``cachier-like health``) on every core.

A probe writes, reads back and deletes one entry: on a healthy store it reports the
time that took and leaves nothing behind; on a failing one it says in one line what is
wrong and never raises. The console script runs in subprocesses, as in ``test_cli.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis

from cachier_like import Entry, Health, cached
from tests.test_behaviour import CoreOptions
from tests.test_cli import Project, make_project


def stored(f: Any) -> int:
    """How many entries the function's store holds for it."""
    return int(f.core.stats().entries)


def test_a_healthy_store_reports_its_latency_and_keeps_nothing(
    core_options: CoreOptions,
) -> None:
    @cached(**core_options())
    def f(x: int) -> int:
        return x

    f(1)
    report = f.health()
    assert isinstance(report, Health)
    assert report.ok and report.problem is None
    assert report.latency_s is not None and 0 < report.latency_s < 30
    assert report.namespace == f.namespace
    assert "ok, write+read+delete in" in str(report)
    assert stored(f) == 1  # the call's entry; the probe's is gone
    assert f(1) == 1 and f.cached_entry(1) is not None


def test_ahealth_probes_through_the_async_methods(core_options: CoreOptions) -> None:
    @cached(**core_options())
    async def f(x: int) -> int:
        return x

    report = asyncio.run(f.ahealth())
    assert report.ok and report.latency_s is not None
    assert stored(f) == 0


@pytest.mark.redis
def test_an_unreachable_redis_is_one_line_and_no_exception() -> None:
    client = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)

    @cached(backend="redis", redis_client=client, key_prefix="health-down")
    def f(x: int) -> int:
        return x

    report = f.health()
    assert not report.ok and report.latency_s is None
    assert report.problem is not None and report.problem.startswith("cannot write a probe entry")
    assert "\n" not in str(report) and "Connection refused" in str(report)


@pytest.mark.pickle
def test_an_unwritable_cache_directory_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")

    @cached(backend="pickle", cache_dir=blocker / "cache")
    def f(x: int) -> int:
        return x

    report = f.health()
    assert not report.ok and report.latency_s is None
    assert "cannot write a probe entry" in str(report.problem)
    assert "NotADirectoryError" in str(report.problem) or "Not a directory" in str(report)


@pytest.mark.memory
@pytest.mark.parametrize(
    ("breakage", "said"),
    [
        ("refuses", "refused the probe entry"),
        ("loses", "reads back as missing"),
        ("garbles", "reads back as another value"),
        ("keeps", "could not be deleted"),
    ],
)
def test_a_store_that_misbehaves_is_named(
    breakage: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @cached(backend="memory")
    def f(x: int) -> int:
        return x

    core = f.core
    broken = {
        "refuses": ("set", lambda key, entry: False),
        "loses": ("get", lambda key: None),
        "garbles": ("get", lambda key: Entry("something else", 0.0)),
        "keeps": ("delete", lambda key: False),
    }
    name, replacement = broken[breakage]
    monkeypatch.setattr(core, name, replacement)
    report = f.health()
    assert not report.ok and report.latency_s is None
    assert said in str(report.problem)


# -- the console script -------------------------------------------------------------------

MODULE = "health_mod"
SOURCE = """
from pathlib import Path
from cachier_like import cached

CACHE = Path(__file__).resolve().parent / "cache"


@cached(cache_dir=CACHE)
def price(item: str) -> str:
    return item


@cached(cache_dir=CACHE)
async def aprice(item: str) -> str:
    return item
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, MODULE, SOURCE)


@pytest.mark.pickle
def test_cli_health_of_a_function_and_of_a_store(project: Project) -> None:
    for target in (f"{MODULE}:price", f"{MODULE}:aprice"):
        out = project.cli_json("health", target)
        assert out["ok"] is True and out["backend"] == "pickle", out
        assert out["function"] == target.replace(":", ".") and out["latency_ms"] > 0
    result = project.cli("health", "--cache-dir", str(project.cache))
    result.assert_ok()
    header, rows = result.table()
    assert header == ["function", "backend", "ok", "latency_ms"]
    assert rows[0][:3] == ["cachier_like.cli.health", "pickle", "yes"]
    listing = project.cli_json("ls", "--cache-dir", str(project.cache))
    assert listing["functions"]  # the probes' namespaces...
    assert all(row["entries"] == 0 for row in listing["functions"])  # ...hold no entry


@pytest.mark.redis
def test_cli_health_of_an_unreachable_store_exits_1_with_one_line(project: Project) -> None:
    result = project.cli("health", "--backend", "redis", "--url", "redis://127.0.0.1:1/0")
    error = result.assert_one_line_error()
    assert "cannot write a probe entry" in error and "Connection refused" in error
