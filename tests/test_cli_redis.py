"""The real ``cachier-like`` console script against a Redis store, without importing code."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis

from cachier_like import cached
from tests.backends.redis_backend import redis_url

pytestmark = pytest.mark.redis

CLI = Path(sys.executable).parent / "cachier-like"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_ls_show_and_clear_a_redis_store(redis_test_client: redis.Redis, redis_prefix: str) -> None:
    url = redis_url()
    options: dict[str, Any] = {"backend": "redis", "redis_client": url, "key_prefix": redis_prefix}

    @cached(namespace="clidemo.f", **options)
    def f(x: int) -> int:
        return x * 2

    @cached(namespace="clidemo.f2", **options)
    def f2(x: int) -> int:
        return x

    for x in range(3):
        f(x)
    f2(1)
    store = ["--backend", "redis", "--url", url, "--prefix", redis_prefix]

    listed = run_cli("ls", *store, "--json")
    assert listed.returncode == 0, listed.stderr
    counts = {row["function"]: row["entries"] for row in json.loads(listed.stdout)["functions"]}
    assert counts == {"clidemo.f": 3, "clidemo.f2": 1}

    shown = run_cli("show", *store, "--function", "clidemo.f", "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["entries"]) == 3

    cleared = run_cli("clear", *store, "--function", "clidemo.f", "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["functions"] == [{"function": "clidemo.f", "removed": 3}]
    assert f.cached_entry(0) is None
    assert f2.cached_entry(1) is not None  # the other function is untouched

    refused = run_cli("clear", *store)  # the whole store, stdin not a terminal, no --yes
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "--yes" in refused.stderr
    assert f2.cached_entry(1) is not None


def test_a_scripts_function_on_a_redis_store(
    tmp_path: Path, redis_test_client: redis.Redis, redis_prefix: str
) -> None:
    """A script run as ``python job.py`` stores in Redis; the CLI names it by path."""
    url = redis_url()
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys

            from cachier_like import cached


            @cached(backend="redis", redis_client={url!r}, key_prefix={redis_prefix!r})
            def featurize(x: int) -> int:
                return x * 10


            print(featurize(int(sys.argv[1])))
            """
        ),
        encoding="utf-8",
    )
    for x in ("1", "2"):
        ran = subprocess.run(
            [sys.executable, "job.py", x],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
    target = f"{script}:featurize"
    store = ["--backend", "redis", "--url", url, "--prefix", redis_prefix]
    namespace = f"{script.resolve()}:featurize"
    values = f"*{redis_prefix}*:v:*"
    assert len(list(redis_test_client.scan_iter(values))) == 2

    listed = run_cli("ls", target, *store, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["functions"]
    assert [(row["function"], row["entries"]) for row in rows] == [(namespace, 2)]
    cleared = run_cli("clear", target, *store, "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["functions"] == [{"function": namespace, "removed": 2}]
    assert list(redis_test_client.scan_iter(values)) == []
