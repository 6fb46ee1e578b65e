"""The implementations under test: optional peer imports, versions, and ``Impl`` helpers.

Every section builds a list of ``Impl`` (ours, the peers, the baselines) around the same
counting ``add`` function, then measures each one into a ``Row`` with ``timed_row``.
A peer that is not installed becomes an ``Impl`` with ``func=None`` (a skipped row).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .measure import Settings, Timing, measure
from .report import Report, Row

#: Distributions whose versions head the output and the JSON metadata.
DISTRIBUTIONS = ("cachier_like", "cachier", "cachetools", "diskcache", "xxhash")


class Counter:
    """Counts real calls of a benchmarked function, to prove hits are hits."""

    def __init__(self) -> None:
        self.calls = 0


def make_add(counter: Counter) -> Callable[[int, int], int]:
    """A fresh ``add(a, b)`` that counts its calls (identical body for every row)."""

    def add(a: int, b: int) -> int:
        counter.calls += 1
        return a + b

    return add


def optional_module(name: str) -> ModuleType | None:
    """Import a peer library, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclasses.dataclass
class Impl:
    """One implementation under test for one section (``func`` None: skipped)."""

    name: str
    counter: Counter
    func: Callable[..., Any] | None
    reset: Callable[[], object] | None = None
    note: str = ""
    computes_on_hit: bool = False  # the bare baseline always computes


def check_calls(impl: Impl, before: int, expected: int, what: str) -> str:
    """A warning when the function ran a different number of times than expected."""
    got = impl.counter.calls - before
    if got != expected:
        return f"WARNING: {got} computations during {what} (expected {expected})"
    return ""


def verify_hits(impl: Impl, n: int) -> None:
    """Raise unless a sample of ``n`` pre-stored keys ``f(i, 2)`` hit (right value, no call)."""
    assert impl.func is not None
    before = impl.counter.calls
    for i in sorted({0, 1, n // 2, n - 1}):
        if impl.func(i, 2) != i + 2:
            raise RuntimeError(f"wrong value for key {i}")
    if impl.counter.calls != before:
        raise RuntimeError("pre-stored keys were recomputed (not hits)")


def join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def limit_note(timing: Timing) -> str:
    if not timing.limited_by:
        return ""
    return f"limited to {timing.repeats}x{timing.number} calls ({timing.limited_by})"


def timed_row(
    report: Report,
    settings: Settings,
    impl: Impl,
    where: tuple[str, str, int | None],
    *,
    stmt: str,
    namespace: dict[str, Any],
    computes: bool,
    reset: Callable[[], object] | None = None,
    max_calls: int | None = None,
    max_number: int | None = None,
) -> None:
    """Measure one figure into a row; check the function computed exactly as expected.

    A peer that raises is recorded as failed rather than stopping the run.
    """
    section, case, entries = where
    before = impl.counter.calls
    try:
        timing = measure(
            stmt, namespace, settings, reset=reset, max_calls=max_calls, max_number=max_number
        )
    except Exception as exc:
        note = join_notes(impl.note, f"{case} failed: {exc!r}")
        report.rows.append(Row(section, case, impl.name, entries, None, note))
        return
    warn = check_calls(impl, before, timing.calls if computes else 0, f"{case} timing")
    note = join_notes(impl.note, limit_note(timing), warn)
    report.rows.append(Row(section, case, impl.name, entries, timing, note))
