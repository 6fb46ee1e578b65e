"""Every Python code block in README.md and docs/ runs, so the docs stay true to the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.backends import redis_backend
from tests.support import run_code

ROOT = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A block's first line may name the optional modules it needs: "# needs: greenlet, aiosqlite".
_NEEDS = re.compile(r"\A# needs: (.+)\n")


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for index, match in enumerate(_BLOCK.finditer(page.read_text(encoding="utf-8"))):
            found.append((str(page.relative_to(ROOT)), index, match.group(1)))
    return found


BLOCKS = _blocks()

# A core's page is tested with that core's marker (so a CI job without Redis does not
# run the Redis examples); every other page runs on the default pickle core.
_PAGE_MARKERS = {f"docs/cores/{name}.md": name for name in ("memory", "redis", "sql", "mongo")}


def _param(page: str, index: int, code: str) -> Any:
    mark = getattr(pytest.mark, _PAGE_MARKERS.get(page, "pickle"))
    return pytest.param(page, index, code, marks=mark, id=f"{page}#{index}")


@pytest.mark.pickle
def test_docs_have_code_blocks() -> None:
    # Guards the extraction itself: a broken pattern would silently test nothing.
    assert len(BLOCKS) >= 10
    assert {page for page, _, _ in BLOCKS} >= {"README.md", "docs/decorator.md", "docs/keys.md"}


@pytest.mark.parametrize(("page", "index", "code"), [_param(*block) for block in BLOCKS])
def test_code_block_runs(
    page: str, index: int, code: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    needs = _NEEDS.match(code)
    for module in needs.group(1).split(",") if needs else ():
        pytest.importorskip(module.strip())
    env = dict(os.environ, CACHIER_LIKE_CACHE_DIR=str(tmp_path / "cache"))
    if _PAGE_MARKERS.get(page) == "redis":
        request.getfixturevalue("redis_test_client")  # skips (fails under CI) when down
        env["CACHIER_LIKE_REDIS_URL"] = redis_backend.redis_url()
    result = run_code(code, env, cwd=tmp_path)
    assert result.returncode == 0, f"{page} block {index} failed:\n{result.stderr}"


@pytest.mark.pickle
def test_quickstart_script_runs(tmp_path: Path) -> None:
    env = dict(os.environ, CACHIER_LIKE_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "quickstart.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "second call (cached):   144" in result.stderr
    assert str(tmp_path / "cache") in result.stderr
