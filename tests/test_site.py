"""The documentation site builds with ``--strict`` and the CI workflows are valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_mkdocs_site_builds_strictly(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [_tool("mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text(encoding="utf-8")
    # The API reference is generated from docstrings, not left empty.
    assert "set_default_params" in reference
    assert "precache_value" in reference


def test_every_doc_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    missing = [page for page in pages if page not in nav]
    assert not missing, f"add these pages to mkdocs.yml's nav: {missing}"


def test_github_workflows_match_the_workflow_schema() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run(
        [
            _tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, workflows),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _local_runner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "test-local.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_local_runner_usage_and_argument_errors() -> None:
    helped = _local_runner("--help")
    assert helped.returncode == 0
    assert "BACKEND" in helped.stdout and "-w N" in helped.stdout
    wrong = _local_runner("cassandra")
    assert wrong.returncode == 2
    assert "unknown backend" in wrong.stderr
    assert _local_runner().returncode == 2  # no backend named
