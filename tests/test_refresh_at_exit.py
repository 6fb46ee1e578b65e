"""``next_time`` refreshes still pending when a program ends finish before it exits.

Each test runs a real script in a fresh interpreter: it is served a stale entry, its
refresh is left running in the background, and the script returns. A second run of
the same script then reads what the first one left in the shared cache directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.pickle

#: ``job.py FLAVOUR MODE COMPUTE_S EXIT_TIMEOUT``: MODE "stale" stores an entry
#: calculated an hour ago, is served it and exits at once; MODE "read" prints the entry.
SCRIPT = """
import asyncio, json, sys, time
from cachier_like import Entry, cached, set_default_params
from cachier_like.keys import KeyMaker

flavour, mode, compute_s, exit_timeout = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
set_default_params(refresh_exit_timeout=exit_timeout)

@cached(next_time=True, stale_after=60)
def sync_f(x):
    time.sleep(compute_s)
    return "fresh"

@cached(next_time=True, stale_after=60)
async def async_f(x):
    await asyncio.sleep(compute_s)
    return "fresh"

f = sync_f if flavour == "sync" else async_f
if mode == "stale":
    f.core.set(KeyMaker(f.__wrapped__).key((1,), {}), Entry("stale", time.time() - 3600))
    served = f(1) if flavour == "sync" else asyncio.run(f(1))
    print(json.dumps({"served": served}))
else:
    print(json.dumps({"value": f.cached_entry(1).value}))
"""


def _run(script: Path, *args: object) -> tuple[dict[str, str], str, float]:
    """Run the script; return its JSON line, its standard error and how long it took."""
    root = str(Path(__file__).resolve().parents[1])
    cache = script.parent / "cache"
    env = {**os.environ, "CACHIER_LIKE_CACHE_DIR": str(cache), "PYTHONPATH": root}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result, done.stderr, took


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_pending_refresh_is_stored_before_the_program_exits(script: Path, flavour: str) -> None:
    served, _, _ = _run(script, flavour, "stale", 0.3, 30)
    assert served["served"] == "stale"  # served at once; the refresh ran after
    read, _, _ = _run(script, flavour, "read", 0, 30)
    assert read["value"] == "fresh"


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_wait_at_exit_is_bounded_by_refresh_exit_timeout(script: Path, flavour: str) -> None:
    served, stderr, took = _run(script, flavour, "stale", 600, 0.5)
    assert served["served"] == "stale"
    assert took < 60  # not the refresh's 600 s
    assert "did not finish within refresh_exit_timeout" in stderr
    read, _, _ = _run(script, flavour, "read", 0, 30)
    assert read["value"] == "stale"  # the unfinished refresh stored nothing
