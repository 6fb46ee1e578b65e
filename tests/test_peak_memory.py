"""Storing and reading back a large value holds at most one more copy of it at the peak.

Measured by ``scripts/peak_memory.py`` in fresh interpreters (peak resident set size).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "peak_memory.py"
#: One more copy of the value, plus allocator slack.
LIMIT = 2.3


@pytest.mark.pickle
def test_the_pickle_core_stores_and_reads_a_large_value_with_one_extra_copy() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cores", "pickle", "--size-mb", "64"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    row = re.search(r"^pickle\s+([\d.]+)x\s+([\d.]+)x$", done.stdout, re.MULTILINE)
    assert row is not None, done.stdout
    store, read = float(row[1]), float(row[2])
    assert store <= LIMIT, f"storing peaked at {store}x the value"
    assert read <= LIMIT, f"reading back peaked at {read}x the value"
