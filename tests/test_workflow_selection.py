"""Every test of the suite runs in some job of the GitHub workflow.

The jobs select tests by marker (``-m``) and keyword (``-k``); a test no job selects
would never run on GitHub. The suite is collected once, and pytest's own matchers say
which jobs select each test (``tests/helpers/selection_dump.py``).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"

# pytest options that do not change which tests are selected, and whether they take a value.
_NEUTRAL = {
    "-n": True,
    "-q": False,
    "-v": False,
    "-x": False,
    "-ra": False,
    "--strict-markers": False,
}


@dataclass(frozen=True)
class Selection:
    """What one pytest command of the workflow selects."""

    name: str
    m: str | None
    k: str | None
    paths: tuple[str, ...]


def _parse_pytest(name: str, args: list[str]) -> Selection:
    m = k = None
    paths: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg in ("-m", "-k"):
            value = next(rest)
            if arg == "-m":
                m = value
            else:
                k = value
        elif arg in _NEUTRAL:
            if _NEUTRAL[arg]:
                next(rest)
        elif arg.startswith("-"):
            raise AssertionError(
                f"{name}: teach tests/test_workflow_selection.py what pytest {arg} selects"
            )
        else:
            paths.append(arg.rstrip("/"))
    return Selection(name, m, k, tuple(paths))


def workflow_selections(workflow: dict[str, Any]) -> list[Selection]:
    """Every pytest command in the workflow's jobs, with what it selects."""
    selections = []
    for job_id, job in workflow["jobs"].items():
        for number, step in enumerate(job.get("steps", [])):
            for line in str(step.get("run", "")).splitlines():
                words = shlex.split(line)
                if "pytest" not in words:
                    continue
                assert "${{" not in line, f"{job_id}: a pytest command built from an expression"
                args = words[words.index("pytest") + 1 :]
                selections.append(_parse_pytest(f"{job_id}#{number}", args))
    return selections


def _selected_by(selections: list[Selection], tmp_path: Path) -> dict[str, list[str]]:
    """Collect the suite once: for each test id, the selections whose -m and -k pick it."""
    jobs = tmp_path / "jobs.json"
    out = tmp_path / "selected.json"
    jobs.write_text(json.dumps([{"name": s.name, "m": s.m, "k": s.k} for s in selections]))
    env = dict(
        os.environ,
        CACHIER_LIKE_SELECTION_JOBS=str(jobs),
        CACHIER_LIKE_SELECTION_OUT=str(out),
    )
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "-p", "tests.helpers.selection_dump"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    selected: dict[str, list[str]] = json.loads(out.read_text())
    by_path = {s.name: s.paths for s in selections}
    return {
        test: [
            name
            for name in names
            if not by_path[name]
            or any(test == p or test.startswith((f"{p}/", f"{p}::")) for p in by_path[name])
        ]
        for test, names in selected.items()
    }


@pytest.fixture(scope="module")
def coverage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Test id -> the workflow jobs that run it, plus the probes below."""
    selections = workflow_selections(yaml.safe_load(WORKFLOW.read_text(encoding="utf-8")))
    assert selections, "no pytest command found in the workflow"
    # The workflow as it was before every test had a job: the check must see the gap.
    probes = [
        Selection("probe:old-local", "memory or pickle", None, ()),
        Selection("probe:old-redis", "redis", None, ()),
        Selection("probe:old-mongo", "mongo", None, ()),
        Selection("probe:old-sql", "sql", None, ()),
    ]
    return _selected_by(selections + probes, tmp_path_factory.mktemp("selection"))


def _unselected(coverage: dict[str, list[str]], probes: bool) -> list[str]:
    return sorted(
        test
        for test, names in coverage.items()
        if not [name for name in names if name.startswith("probe:") == probes]
    )


def test_every_collected_test_runs_in_some_workflow_job(coverage: dict[str, list[str]]) -> None:
    assert len(coverage) > 100
    missing = _unselected(coverage, probes=False)
    assert not missing, f"{len(missing)} test(s) no job of ci.yml selects: {missing[:20]}"


def test_the_check_sees_tests_that_marker_only_jobs_leave_out(
    coverage: dict[str, list[str]],
) -> None:
    missing = _unselected(coverage, probes=True)
    assert (
        "tests/test_workflow_selection.py::test_every_collected_test_runs_in_some_workflow_job"
        in missing
    )
    assert any(test.startswith("tests/test_decorator_api.py::") for test in missing)
    assert any("::" in test and test.startswith("cachier_like/") for test in missing)  # doctests
    # And the probes do select what their markers say.
    assert any(test.startswith("tests/test_memory_core.py::") for test in coverage)
    assert all(
        "probe:old-local" in coverage[test]
        for test in coverage
        if test.startswith("tests/test_memory_core.py::")
    )


def test_pytest_commands_are_parsed_with_their_selection() -> None:
    workflow = {
        "jobs": {
            "a": {
                "steps": [{"run": "pip install -e ."}, {"run": 'pytest -n auto -m "redis or sql"'}]
            },
            "b": {"steps": [{"run": "python -m pytest -q -k 'not mariadb' tests/test_x.py"}]},
        }
    }
    assert workflow_selections(workflow) == [
        Selection("a#1", "redis or sql", None, ()),
        Selection("b#0", None, "not mariadb", ("tests/test_x.py",)),
    ]
    with pytest.raises(AssertionError, match="--deselect"):
        workflow_selections({"jobs": {"c": {"steps": [{"run": "pytest --deselect x"}]}}})


def test_the_local_ci_entry_point_runs_the_whole_suite() -> None:
    command = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    words = shlex.split(command.rsplit("&&", 1)[-1])
    assert words[0] == "pytest"
    assert _parse_pytest(".ci/run", words[1:]) == Selection(".ci/run", None, None, ())
