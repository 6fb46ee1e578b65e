"""The migration guide's cachier program runs unchanged under cachier and cachier_like.

The block under "A cachier program, unchanged" in docs/migrating.md imports from
``cachier_like``; run again with its import line pointed at cachier (4.x, from the test
extra), both runs must succeed and print the same lines.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support import run_code

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "migrating.md"
IMPORT = re.compile(r"^from cachier_like import ", re.MULTILINE)


def program() -> str:
    """The guide's program block, as written (importing cachier_like)."""
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## A cachier program, unchanged", 1)[1]
    match = re.search(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, "the guide lost its program block"
    return match.group(1)


def run(code: str, tmp_path: Path) -> str:
    env = dict(os.environ, CACHIER_LIKE_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path))
    result = run_code(code, env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.pickle
def test_the_guides_program_prints_the_same_under_cachier_and_cachier_like(
    tmp_path: Path,
) -> None:
    pytest.importorskip("cachier", reason="the test extra installs cachier 4.x")
    ours = program()
    assert len(IMPORT.findall(ours)) == 1, "the program must have exactly one import line to swap"
    theirs = IMPORT.sub("from cachier import ", ours)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    expected = run(theirs, tmp_path / "a")
    assert expected.strip(), "cachier's run printed nothing to compare"
    assert run(ours, tmp_path / "b") == expected
