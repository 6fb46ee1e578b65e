"""Section 3, key cost: a 1 MB ``bytes`` argument and a 100,000-element list of ints.

Ours (``KeyMaker.key`` and ``stable_hash``) against cachier's default hash function and
a ``sha256(pickle.dumps(arg))`` baseline.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachier_like import stable_hash
from cachier_like.keys import KeyMaker

from .measure import Settings, measure
from .peers import optional_module
from .report import OURS, Report, Row, Target, print_table, section_rows, target_from_row

NAME: str = "key"
TITLE: str = "key cost"
SHA256_ROW = "sha256(pickle.dumps(arg))"
BASELINE: str | None = SHA256_ROW
OURS_ROW = f"{OURS} KeyMaker(f).key((arg,), {{}})"
CASES = ("1 MB bytes", "100k-int list")

# Target from the project's issue (microseconds), judged on the median.
TARGET_KEY_1MB_US = 200.0


def key_arguments() -> list[tuple[str, Any]]:
    """The arguments to key, one per case (the same bytes every run)."""
    rng = random.Random(20240601)
    return [
        ("1 MB bytes", rng.randbytes(1 << 20)),
        ("100k-int list", [rng.randrange(1 << 31) for _ in range(100_000)]),
    ]


def one_arg(x: Any) -> Any:
    return x


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure every key-cost row (``workdir`` is unused: nothing touches disk)."""
    cachier_hash: Callable[..., Any] | None = None
    cachier_note = "skipped: cachier not installed"
    cachier_config = optional_module("cachier.config")
    if cachier_config is not None:
        cachier_hash = cachier_config.get_global_params().hash_func
        cachier_note = "hash_func((), {'x': arg}), as its wrapper calls it"
    key_maker = KeyMaker(one_arg)
    for case, arg in key_arguments():
        ns: dict[str, Any] = {
            "km": key_maker,
            "args": (arg,),
            "kw": {},
            "kw1": {"x": arg},
            "arg": arg,
            "stable_hash": stable_hash,
            "hf": cachier_hash,
            "sha256": hashlib.sha256,
            "dumps": pickle.dumps,
        }
        cases: list[tuple[str, str | None, str]] = [
            (OURS_ROW, "km.key(args, kw)", ""),
            (f"{OURS} stable_hash(arg)", "stable_hash(arg)", ""),
            ("cachier default hash_func", "hf((), kw1)" if cachier_hash else None, cachier_note),
            (SHA256_ROW, "sha256(dumps(arg)).hexdigest()", "baseline"),
        ]
        for impl, stmt, note in cases:
            if stmt is None:
                report.rows.append(Row(NAME, case, impl, note=note))
                continue
            try:
                timing = measure(stmt, ns, settings)
            except Exception as exc:  # a failing peer is recorded, not fatal
                report.rows.append(Row(NAME, case, impl, note=f"failed: {exc!r}"))
                continue
            report.rows.append(Row(NAME, case, impl, None, timing, note))


def print_tables(report: Report, settings: Settings) -> None:
    print()
    print("3. Key cost  [us per key]")
    headers = ["implementation"]
    for case in CASES:
        headers += [f"{case} med", "min", "/sha256", f"/{OURS}"]
    print_table(
        [*headers, "notes"],
        section_rows(report, NAME, CASES, lambda _case: SHA256_ROW),
    )


def targets(report: Report, settings: Settings) -> list[Target]:
    return [
        target_from_row(
            f"1 MB key <= {TARGET_KEY_1MB_US / 1000:g} ms (KeyMaker.key)",
            report.find(NAME, "1 MB bytes", OURS_ROW),
            TARGET_KEY_1MB_US,
        )
    ]
