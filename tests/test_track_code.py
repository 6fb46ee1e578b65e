"""``track_code=True`` end to end: a real module edited between processes.

Each step runs a fresh interpreter that imports the module and calls the cached
function once; the function appends to a log each time it really computes. So the log
says which edits meant recomputing (body or helper changes) and which meant a hit
(comments, docstrings, blank lines).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.pickle

TEMPLATE = """
from pathlib import Path

from cachier_like import cached

HERE = Path(__file__).resolve().parent


@cached(cache_dir=HERE / "cache", track_code=True)
def total(x):
    {doc}
    (HERE / "computed.log").open("a").write("computed\\n")
    return scale(x) + {offset}


def scale(x):
    {comment}
    return x * {factor}
"""


def write(root: Path, doc: str = "", offset: int = 1, comment: str = "", factor: int = 2) -> None:
    source = TEMPLATE.format(doc=doc, offset=offset, comment=comment, factor=factor)
    (root / "tracked_mod.py").write_text(source, encoding="utf-8")


def call(root: Path, seed: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), *sys.path]), PYTHONHASHSEED=seed)
    done = subprocess.run(
        [sys.executable, "-B", "-c", "import tracked_mod as m; print(m.total(5))"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def computed(root: Path) -> int:
    log = root / "computed.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_edits_between_processes_recompute_only_when_the_code_changes(tmp_path: Path) -> None:
    write(tmp_path)
    assert call(tmp_path, "1") == "11" and computed(tmp_path) == 1
    assert call(tmp_path, "2") == "11" and computed(tmp_path) == 1  # another hash seed: a hit
    write(tmp_path, doc='"""Totals."""', comment="# a comment\n\n    # and a blank line")
    assert call(tmp_path, "3") == "11" and computed(tmp_path) == 1  # cosmetic: a hit
    write(tmp_path, factor=3)  # the helper's body
    assert call(tmp_path, "4") == "16" and computed(tmp_path) == 2
    write(tmp_path, factor=3, offset=2)  # the function's own body
    assert call(tmp_path, "5") == "17" and computed(tmp_path) == 3
    write(tmp_path, factor=3)  # back to a fingerprint seen before: its entries are there
    assert call(tmp_path, "6") == "16" and computed(tmp_path) == 3
