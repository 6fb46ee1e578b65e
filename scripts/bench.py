"""Benchmark cachier_like against a bare call, functools, cachier, cachetools and diskcache.

Everything is measured in one run, so the ratios compare figures taken under the same
machine load. Times are microseconds per call from ``timeit.repeat``: the table shows the
median and the minimum of the repeats (targets are judged on the median).

Sections:

1. memory core, ``f(1, 2)``: hit, and miss with ever-new arguments (state cleared
   before every repeat, so every miss is a real miss);
2. pickle core with 100, 1,000 and 10,000 entries pre-populated in a fresh temporary
   directory per size: hit (cycling over the stored keys) and miss (new key, compute and
   store; at most as many misses as there are entries, so the store holds n..2n entries).
   Peers: cachier's pickle core (default single file, and ``separate_files=True``),
   ``diskcache.Cache.memoize``; plus a bare file-per-key "floor" for this file system.
   cachier's default core rereads/rewrites one file holding every entry, so its figures
   at 10,000 entries come from a handful of calls (shown in the "repeats x calls" column);
3. key cost for a 1 MB ``bytes`` argument and a 100,000-element list of ints.

Usage::

    python scripts/bench.py            # full run (about a minute, < 5 minutes)
    python scripts/bench.py --quick    # smoke run (< 20 s)
    python scripts/bench.py --json results.json
    python scripts/bench.py --quick --only sql   # one section (see --help for the names)

The code lives in the ``benchmarks`` package next to this script, one module per
section; ``benchmarks/sections.py`` says how to add one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# Run as a file, this script's directory is normally sys.path[0] already; not so under
# ``python -P`` / PYTHONSAFEPATH, or when the script is run through runpy.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from benchmarks.measure import FULL, QUICK  # noqa: E402
from benchmarks.runner import run  # noqa: E402
from benchmarks.sections import SECTIONS  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark cachier_like's memory core, pickle core and key hashing against a "
            "bare call, functools.lru_cache, cachier, cachetools and diskcache, in one run."
        )
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: fewer iterations, sizes 100 and 1,000"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--only",
        action="append",
        choices=[section.NAME for section in SECTIONS],
        metavar="SECTION",
        help="run only this section (repeatable): "
        + ", ".join(section.NAME for section in SECTIONS),
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run(QUICK if args.quick else FULL, args.json, args.only)


if __name__ == "__main__":
    raise SystemExit(main())
