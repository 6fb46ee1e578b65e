"""Smoke test of ``scripts/bench.py --quick``: it runs, prints its targets, writes its JSON.

Run twice: with whatever peer libraries are installed, and with cachier, cachetools and
diskcache hidden (stub modules that raise ImportError, first on PYTHONPATH), as in CI,
which installs the ``test`` extra but not ``bench``. Assertions are about cachier_like's
rows and the baselines only; the peers' rows must merely exist or be marked skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("cachier", "cachetools", "diskcache")
#: Rows of the peer libraries (not cachier_like, which also starts with "cachier").
PEER_ROW = re.compile(r"^(cachier[ (]|cachetools|diskcache)")
LOCAL_SECTIONS = ("memory", "async", "pickle", "key")
SERVER_SECTIONS = {"redis", "sql"}
BASELINES = {
    "memory": ("bare call (no cache)", "functools.lru_cache(maxsize=None)"),
    "key": ("sha256(pickle.dumps(arg))",),
}


def run_bench(tmp_path: Path, *, hide_peers: bool) -> tuple[str, dict[str, Any]]:
    env = dict(os.environ)
    if hide_peers:
        stubs = tmp_path / "hidden_peers"
        stubs.mkdir()
        for name in PEERS:
            (stubs / f"{name}.py").write_text(
                f"raise ImportError('{name} hidden by test_bench_smoke')\n", encoding="utf-8"
            )
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(stubs), env.get("PYTHONPATH", "")) if p)
    out = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    payload: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result.stdout, payload


def timed(row: dict[str, Any]) -> bool:
    return not row["skipped"] and row["median_us"] > 0 and row["min_us"] > 0


@pytest.mark.pickle
@pytest.mark.parametrize("hide_peers", [False, True], ids=["installed-peers", "no-peers"])
def test_quick_run_reports_every_section(tmp_path: Path, hide_peers: bool) -> None:
    stdout, payload = run_bench(tmp_path, hide_peers=hide_peers)
    results: list[dict[str, Any]] = payload["results"]
    sizes = payload["meta"]["settings"]["sizes"]
    assert payload["meta"]["mode"] == "quick"

    def rows(section: str, impl: str) -> list[dict[str, Any]]:
        return [r for r in results if r["section"] == section and r["impl"] == impl]

    ours = [r for r in results if r["impl"].startswith("cachier_like")]
    local = [r for r in ours if r["section"] in LOCAL_SECTIONS]
    # memory: hit and miss; pickle: hit and miss per size; key: two cases, two ways.
    assert {(r["section"], r["case"], r["entries"]) for r in local} == {
        ("memory", "hit", None),
        ("memory", "miss", None),
        ("async", "hit", None),
        ("async", "miss", None),
        ("async", "flight", None),
        *(("pickle", case, n) for case in ("hit", "miss") for n in sizes),
        ("key", "1 MB bytes", None),
        ("key", "100k-int list", None),
    }
    assert len(local) == 2 + 3 + 2 * len(sizes) + 4
    untimed = [r for r in local if not timed(r)]
    assert not untimed, untimed
    # Server sections: timed when their server answers, otherwise marked skipped.
    server = [r for r in ours if r["section"] not in LOCAL_SECTIONS]
    assert {r["section"] for r in server} >= SERVER_SECTIONS
    unexplained = [r for r in server if not timed(r) and "skipped" not in r["note"]]
    assert not unexplained, unexplained

    for section, impls in BASELINES.items():
        for impl in impls:
            found = rows(section, impl)
            assert len(found) == 2, (section, impl)
            assert all(timed(r) for r in found), found

    peer_rows = [r for r in results if PEER_ROW.match(r["impl"])]
    assert {r["section"] for r in peer_rows} >= set(LOCAL_SECTIONS) - {"async"}
    if hide_peers:
        assert all(r["skipped"] and "not installed" in r["note"] for r in peer_rows), peer_rows

    assert "Targets (from the issue)" in stdout
    assert re.search(r"^target +median +RESULT +min +on min$", stdout, re.MULTILINE), stdout
    assert "memory hit <= 1.5 us" in stdout
    labels = [t["target"] for t in payload["targets"]]
    assert labels[0] == "memory hit <= 1.5 us"
    assert any(label.startswith("1 MB key") for label in labels), labels
    assert sum(label.startswith("pickle miss") for label in labels) == len(sizes), labels
    assert any(label.startswith("async memory hit") for label in labels), labels
    assert any(label.startswith("1000 awaits: 1 computation") for label in labels), labels
    assert any(label.startswith("redis hit") for label in labels), labels
    assert any(label.startswith("sql postgres hit") for label in labels), labels
    verdicts = {t["verdict"] for t in payload["targets"]}
    assert verdicts <= {"PASS", "MISS", "n/a"}, payload["targets"]


def test_only_runs_the_named_sections(tmp_path: Path) -> None:
    out = tmp_path / "only.json"
    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--quick", "--only", "async", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert {r["section"] for r in payload["results"]} == {"async"}
    flight = [r for r in payload["results"] if r["case"] == "flight"]
    assert len(flight) == 1 and "1 computation(s)" in flight[0]["note"], flight
    assert "running: async functions, memory core..." in result.stdout
    assert "running: memory core" not in result.stdout
