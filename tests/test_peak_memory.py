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


def _peaks(core: str, size_mb: int = 64) -> tuple[float, float]:
    """The store and read-back peaks of ``core`` for a ``size_mb`` value."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--cores", core, "--size-mb", str(size_mb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    row = re.search(rf"^{core}\s+([\d.]+)x\s+([\d.]+)x$", done.stdout, re.MULTILINE)
    assert row is not None, done.stdout
    return float(row[1]), float(row[2])


@pytest.mark.pickle
def test_the_pickle_core_stores_and_reads_a_large_value_with_one_extra_copy() -> None:
    store, read = _peaks("pickle")
    assert store <= LIMIT, f"storing peaked at {store}x the value"
    assert read <= LIMIT, f"reading back peaked at {read}x the value"


@pytest.mark.redis
def test_the_redis_core_stores_a_large_value_with_one_extra_copy() -> None:
    # 300 MB: more than a socket timeout of 0.5 s lets one sendall write; the payload
    # goes out in slices, each with the whole timeout.
    store, read = _peaks("redis", 300)
    assert store <= LIMIT, f"storing peaked at {store}x the value"
    # Reading back: redis-py buffers the reply before handing over its bytes.
    assert read <= 3.3, f"reading back peaked at {read}x the value"


@pytest.mark.sql
def test_the_postgresql_core_reads_a_large_value_in_binary() -> None:
    store, read = _peaks("sql_postgres")
    # psycopg holds the reply, then its bytes, then the value: three copies, where the
    # text form of bytea (hex) made it six.
    assert read <= 3.3, f"reading back peaked at {read}x the value"
    assert store <= 4.3, f"storing peaked at {store}x the value"
