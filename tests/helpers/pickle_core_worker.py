"""Run by ``tests/test_pickle_core.py`` in a fresh interpreter (``sys.executable``).

Every mode prints one JSON line on stdout.

``compute X`` / ``hit X``
    Decorate ``triple_plus_one`` on the pickle core under ``--cache-dir`` and
    ``--namespace`` and call it with ``X``; print ``{"result": ..., "calls": N}``.
    In ``hit`` mode the body raises, so the call only succeeds when another process
    already stored the entry.
``claim KEY``
    Try to claim ``KEY`` on a ``PickleCore`` for that directory and namespace (then
    release it); print ``{"claimed": true|false}``. ``--file-locks`` selects the
    ``flock``-file claims instead of byte-range locks. A fresh interpreter has its own
    hash seed, so this checks that claims agree across processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from cachier_like import cached
from cachier_like.cores.pickle import PickleCore


def call(mode: str, x: int, cache_dir: str, namespace: str) -> dict[str, object]:
    """Make one decorated call and describe it."""
    calls: list[int] = []

    @cached(cache_dir=cache_dir, namespace=namespace)
    def triple_plus_one(x: int) -> dict[str, int]:
        if mode == "hit":
            raise RuntimeError("expected a cache hit, but the function ran")
        calls.append(x)
        return {"x": x, "value": 3 * x + 1, "pid": os.getpid()}

    result = triple_plus_one(x)
    return {"result": result, "calls": len(calls)}


def claim(key: str, cache_dir: str, namespace: str, file_locks: bool) -> dict[str, object]:
    """Try to claim ``key``; release it again if that worked."""
    core = PickleCore(namespace, cache_dir=cache_dir, prefer_range_locks=not file_locks)
    claimed = core.claim(key, 60.0)
    if claimed:
        core.release(key)
    return {"claimed": claimed}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, do the one thing asked, print its outcome."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["compute", "hit", "claim"])
    parser.add_argument("arg", help="the call's argument X, or the KEY to claim")
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument(
        "--file-locks", action="store_true", help="claim with flock files, not range locks"
    )
    args = parser.parse_args(argv)
    if args.mode == "claim":
        outcome = claim(args.arg, args.cache_dir, args.namespace, args.file_locks)
    else:
        outcome = call(args.mode, int(args.arg), args.cache_dir, args.namespace)
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
