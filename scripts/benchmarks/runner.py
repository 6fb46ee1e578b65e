"""One benchmark run: header, every section, the tables, the targets and the JSON file."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cachier_like

from .measure import Settings
from .peers import DISTRIBUTIONS, version_of
from .report import Report, Target, print_targets, write_json
from .sections import SECTIONS


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {dist: version_of(dist) for dist in DISTRIBUTIONS},
    }


@contextmanager
def defaults_guard(report: Report) -> Iterator[None]:
    """Make sure the run leaves cachier_like's global defaults as it found them."""
    before = dict(cachier_like.get_default_params())
    try:
        yield
    finally:
        after = dict(cachier_like.get_default_params())
        if after != before:
            changed = sorted(k for k in before if before[k] != after.get(k))
            cachier_like.set_default_params(**before)
            report.notes.append(f"WARNING: global defaults changed ({changed}); restored")


def print_header(env: dict[str, Any], settings: Settings) -> None:
    versions = ", ".join(f"{k} {v or 'not installed'}" for k, v in env["versions"].items())
    print(f"cachier_like benchmark ({'quick' if settings.quick else 'full'} run)")
    print(f"Python {env['python']} on {env['platform']}, {env['cpus']} CPUs; {versions}")
    if env["load_average"] is not None:
        load = ", ".join(f"{x:.2f}" for x in env["load_average"])
        print(f"load average at start: {load} (other work on the machine adds noise)")
    print(
        f"Each figure: median and min of up to {settings.repeats} timeit repeats of "
        f"~{settings.per_repeat_s * 1000:g} ms (slow peers capped at ~{settings.cap_s:g} s "
        "per figure, then marked 'limited'); GC off inside timed loops (timeit default)."
    )
    print(
        "Pickle misses: at most n misses per figure (store holds n..2n entries); "
        "hits cycle over the n stored keys."
    )


def run(
    settings: Settings, json_path: Path | None = None, only: Sequence[str] | None = None
) -> int:
    """Run every section (or those named in ``only``), print the results, optionally
    write JSON; the exit status."""
    sections = [s for s in SECTIONS if not only or s.NAME in only]
    report = Report()
    env = environment()
    started = time.perf_counter()
    print_header(env, settings)
    with (
        defaults_guard(report),
        tempfile.TemporaryDirectory(prefix="cachier_like_bench_") as base,
    ):
        for section in sections:
            print(f"running: {section.TITLE}...", flush=True)
            section.run(report, settings, Path(base))
    for section in sections:
        section.print_tables(report, settings)
    targets: list[Target] = []
    for section in sections:
        targets += section.targets(report, settings)
    print_targets(targets, settings)
    report.notes.append(
        "global cachier_like defaults unchanged"
        if not any(n.startswith("WARNING: global") for n in report.notes)
        else "see warning about global defaults"
    )
    elapsed = time.perf_counter() - started
    for note in report.notes:
        print(f"note: {note}")
    print(f"total time: {elapsed:.1f} s")
    if json_path is not None:
        meta = {
            **env,
            "mode": "quick" if settings.quick else "full",
            "settings": dataclasses.asdict(settings),
            "statistic": "median and min of timeit repeats, microseconds per call",
            "elapsed_s": elapsed,
        }
        baselines = {section.NAME: section.BASELINE for section in sections}
        write_json(json_path, report, targets, meta, baselines)
        print(f"wrote {json_path}")
    return 0
