"""Section: what invalidation costs a hit — ``tags=`` with ``track_code=True`` against a plain hit.

For the memory, pickle and Redis cores, ``f(1, 2)`` once stored: a plain ``@cached``
function (the baseline of its core) and the same function with ``tags=["bench"]`` and
``track_code=True``. The two are measured in the same run, in turns, so their ratio
compares figures taken under the same load; the target is a ratio of at most 1.1 on
each core. The fingerprint itself is computed once per function per process, never
per call: its one-time cost is shown in the notes.

Redis is ``$CACHIER_LIKE_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); its rows
are skipped when it cannot be reached.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachier_like import cached

from .measure import Settings
from .peers import Counter, Impl, make_add, optional_module, timed_row
from .report import (
    OURS,
    Report,
    Row,
    Target,
    fmt_ratio,
    fmt_us,
    print_table,
    ratio,
    target_from_row,
)

NAME: str = "invalidation"
TITLE: str = "tagged hits (tags= and track_code=True) against plain hits"
BASELINE: str | None = None
CORES = ("memory", "pickle", "redis")
TARGET_RATIO = 1.1
URL_ENV = "CACHIER_LIKE_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"


def _plain(core: str) -> str:
    return f"{OURS} {core}: plain hit"


def _tagged(core: str) -> str:
    return f"{OURS} {core}: tags + track_code hit"


def _options(core: str, workdir: Path, redis_client: Any, prefix: str) -> dict[str, Any] | None:
    if core == "memory":
        return {"backend": "memory"}
    if core == "pickle":
        return {"backend": "pickle", "cache_dir": workdir / "invalidation"}
    if redis_client is None:
        return None
    return {"backend": "redis", "redis_client": redis_client, "key_prefix": prefix}


def _redis_client() -> tuple[Any, str]:
    redis = optional_module("redis")
    if redis is None:
        return None, "skipped: redis-py not installed"
    url = os.environ.get(URL_ENV) or DEFAULT_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    try:
        client.ping()
    except Exception as exc:
        return None, f"skipped: no Redis at {url} ({exc.__class__.__name__})"
    return client, ""


def run(report: Report, settings: Settings, workdir: Path) -> None:
    """Measure the plain and the tagged hit of each core, in turns."""
    client, redis_note = _redis_client()
    prefix = f"clbench-inv-{uuid.uuid4().hex[:12]}"
    cleanups: list[Callable[[], object]] = []
    try:
        for core in CORES:
            options = _options(core, workdir, client, prefix)
            if options is None:
                for row in (_plain(core), _tagged(core)):
                    report.rows.append(Row(NAME, "hit", row, note=redis_note))
                continue
            plain_counter, tagged_counter = Counter(), Counter()
            plain = cached(namespace=f"bench.plain.{core}", **options)(make_add(plain_counter))
            started = time.perf_counter()
            tagged = cached(
                namespace=f"bench.tagged.{core}", tags=["bench"], track_code=True, **options
            )(make_add(tagged_counter))
            tagged(1, 2)  # the first call computes the fingerprint
            first_us = (time.perf_counter() - started) * 1e6
            plain(1, 2)
            cleanups += [plain.clear_cache, tagged.clear_cache]
            impls = [
                Impl(_plain(core), plain_counter, plain),
                Impl(_tagged(core), tagged_counter, tagged, note=f"first call {first_us:.0f} us"),
            ]
            report.rows += _in_turns(settings, impls)
    finally:
        for cleanup in cleanups:
            cleanup()


def _in_turns(settings: Settings, impls: list[Impl], turns: int = 3) -> list[Row]:
    """Each impl's hit measured in turns with the others; its best turn's row (a ratio
    of two figures then never hangs on one impl's noisy moment)."""
    best: dict[str, Row] = {}
    for _ in range(turns):
        for impl in impls:
            scratch = Report()
            timed_row(
                scratch,
                settings,
                impl,
                (NAME, "hit", None),
                stmt="f(1, 2)",
                namespace={"f": impl.func},
                computes=False,
            )
            row = scratch.rows[0]
            kept = best.get(impl.name)
            if (
                kept is None
                or kept.timing is None
                or (row.timing is not None and row.timing.median_us < kept.timing.median_us)
            ):
                best[impl.name] = row
    return [best[impl.name] for impl in impls]


def print_tables(report: Report, settings: Settings) -> None:
    print()
    print("Invalidation: a tagged hit against a plain hit  [us per call; x = median / plain]")
    rows = []
    for core in CORES:
        plain = report.find(NAME, "hit", _plain(core))
        for name in (_plain(core), _tagged(core)):
            row = report.find(NAME, "hit", name)
            timing = row.timing if row is not None else None
            rows.append(
                [
                    name,
                    fmt_us(timing.median_us if timing else None),
                    fmt_us(timing.min_us if timing else None),
                    fmt_ratio(ratio(row, plain)),
                    row.note if row is not None else "",
                ]
            )
    print_table(["implementation", "hit med", "hit min", "/plain", "notes"], rows)


def targets(report: Report, settings: Settings) -> list[Target]:
    """Each core's tagged hit at most 1.1x its plain hit (medians, best of the turns)."""
    found = []
    for core in CORES:
        plain = report.find(NAME, "hit", _plain(core))
        tagged = report.find(NAME, "hit", _tagged(core))
        if plain is None or tagged is None or plain.timing is None:
            continue
        limit = TARGET_RATIO * plain.timing.median_us
        found.append(target_from_row(f"{core}: tagged hit <= 1.1x plain hit", tagged, limit))
    return found
