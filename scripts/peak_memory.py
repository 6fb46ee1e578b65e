"""Peak memory of storing and reading back one large value, per core.

Each measurement runs in a fresh interpreter so that the peak resident set size
(``ru_maxrss``) belongs to it alone: the child builds a ``bytes`` value of ``--size-mb``
megabytes, then either stores it (``f.precache_value``) or, from an entry stored
beforehand, reads it back (``f.cached_entry``). The figure is the growth of the peak
over the resident size just before the operation, plus the value itself, divided by the
value's size: 2.0x means the operation held one more copy of the value at its peak.

Usage::

    python scripts/peak_memory.py                          # pickle, 300 MB
    python scripts/peak_memory.py --cores pickle redis sql_postgres --size-mb 100

Redis, PostgreSQL and MariaDB are reached at the local default URLs (override with
``$CACHIER_LIKE_TEST_REDIS_URL``, ``$CACHIER_LIKE_TEST_POSTGRES_URL`` and
``$CACHIER_LIKE_TEST_MYSQL_URL``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence

CHILD = r"""
import json, os, resource, sys, tempfile
from cachier_like import cached

core, size_mb, phase, cache_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
options = {
    "pickle": {"backend": "pickle", "cache_dir": cache_dir},
    "redis": {"backend": "redis", "redis_client": os.environ.get(
        "CACHIER_LIKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), "key_prefix": "peakmem"},
    "sql_sqlite": {"backend": "sql", "sql_engine": f"sqlite:///{cache_dir}/peak.db"},
    "sql_postgres": {"backend": "sql", "sql_engine": os.environ.get(
        "CACHIER_LIKE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        "table_name": "peak_memory"},
}[core]

@cached(namespace="peak_memory.f", **options)
def f(x):
    raise AssertionError("never called")

def rss_kb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

size = size_mb * 1024 * 1024
if phase == "store":
    value = os.urandom(1024) * (size // 1024)
    before = rss_kb() - size // 1024  # the value is counted in the figure below
    f.precache_value(1, value_to_cache=value)
else:
    before = rss_kb()
    value = f.cached_entry(1).value
    assert len(value) == size
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if phase == "read":
    f.clear_cache()  # leave nothing behind in the server
print(json.dumps({"ratio": (peak - before) / (size / 1024)}))
"""


def measure(core: str, size_mb: int, phase: str, cache_dir: str) -> float:
    """Run one measurement in a fresh interpreter; return its peak ratio."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, core, str(size_mb), phase, cache_dir],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{core} {phase} failed:\n{done.stderr}")
    ratio: float = json.loads(done.stdout)["ratio"]
    return ratio


def main(argv: Sequence[str] | None = None) -> int:
    """Print the store and read-back peaks of each core asked for."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", nargs="+", default=["pickle"])
    parser.add_argument("--size-mb", type=int, default=300)
    args = parser.parse_args(argv)
    print(f"peak memory / value size, {args.size_mb} MB bytes value")
    print(f"{'core':<14}{'store':>8}{'read':>8}")
    with tempfile.TemporaryDirectory() as cache_dir:
        for core in args.cores:
            store = measure(core, args.size_mb, "store", cache_dir)
            read = measure(core, args.size_mb, "read", cache_dir)
            print(f"{core:<14}{store:>7.2f}x{read:>7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
