"""Results and their output: rows, plain-text tables, targets, and the JSON file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .measure import Settings, Timing

OURS = "cachier_like"


@dataclasses.dataclass
class Row:
    """One implementation's figure for one case."""

    section: str  # "memory", "pickle", "key"
    case: str  # "hit", "miss", "1 MB bytes", "100k-int list"
    impl: str
    entries: int | None = None
    timing: Timing | None = None
    note: str = ""

    def as_json(self, ratios: dict[str, float | None]) -> dict[str, Any]:
        """A JSON-ready dict, with the ratios computed against this run's baselines."""
        out: dict[str, Any] = {
            "section": self.section,
            "case": self.case,
            "impl": self.impl,
            "entries": self.entries,
            "note": self.note,
            "skipped": self.timing is None,
        }
        if self.timing is not None:
            out.update(dataclasses.asdict(self.timing))
        out.update(ratios)
        return out


@dataclasses.dataclass
class Report:
    """Every row of the run, plus notes printed once."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def find(self, section: str, case: str, impl: str, entries: int | None = None) -> Row | None:
        for row in self.rows:
            if (row.section, row.case, row.impl, row.entries) == (section, case, impl, entries):
                return row
        return None

    def median(
        self, section: str, case: str, impl: str, entries: int | None = None
    ) -> float | None:
        row = self.find(section, case, impl, entries)
        return row.timing.median_us if row is not None and row.timing is not None else None


def fmt_us(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 10:
        return f"{value:,.3f}"
    if value < 1_000:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f}x" if value < 100 else f"{value:,.0f}x"


def ratio(row: Row | None, reference: Row | None) -> float | None:
    if row is None or reference is None or row.timing is None or reference.timing is None:
        return None
    return row.timing.median_us / reference.timing.median_us


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain-text table: first column left-aligned, the last (notes) too."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            left = i in (0, last)
            out.append(cell.ljust(widths[i]) if left else cell.rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def impl_names(report: Report, section: str, entries: int | None = None) -> list[str]:
    names: list[str] = []
    for row in report.rows:
        if row.section == section and row.entries == entries and row.impl not in names:
            names.append(row.impl)
    return names


def section_rows(
    report: Report,
    section: str,
    cases: Sequence[str],
    reference: Callable[[str], str | None],
    *,
    entries: int | None = None,
    show_calls: bool = False,
) -> list[list[str]]:
    """Per implementation: for each case median, min, / reference, / ours; then notes."""
    ours_name = next(n for n in impl_names(report, section, entries) if n.startswith(OURS))
    table: list[list[str]] = []
    for name in impl_names(report, section, entries):
        cells = [name]
        notes: list[list[str]] = []
        for case in cases:
            row = report.find(section, case, name, entries)
            ours = report.find(section, case, ours_name, entries)
            ref_name = reference(case)
            ref = report.find(section, case, ref_name, entries) if ref_name else None
            timing = row.timing if row is not None else None
            cells += [
                fmt_us(timing.median_us if timing else None),
                fmt_us(timing.min_us if timing else None),
            ]
            if ref_name is not None:
                cells.append(fmt_ratio(ratio(row, ref)))
            cells.append(fmt_ratio(ratio(row, ours)))
            if show_calls:
                cells.append(f"{timing.repeats}x{timing.number:,}" if timing else "n/a")
            notes.append(row.note.split("; ") if row is not None and row.note else [])
        cells.append(merge_notes(cases, notes))
        table.append(cells)
    return table


def merge_notes(cases: Sequence[str], notes: Sequence[list[str]]) -> str:
    """Notes shared by every case once, the others prefixed with their case."""
    shared = [n for n in notes[0] if all(n in other for other in notes[1:])]
    out = list(shared)
    for case, parts in zip(cases, notes, strict=True):
        out += [f"{case}: {n}" for n in parts if n not in shared]
    return "; ".join(out)


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "MISS")


@dataclasses.dataclass
class Target:
    """One target of the issue, checked on this run's median (and, for noise, its min)."""

    target: str
    median: str
    passed: bool | None  # None: not measured
    min: str
    passed_on_min: bool | None

    @property
    def verdict(self) -> str:
        return verdict(self.passed)


def row_figures(row: Row | None) -> tuple[float | None, float | None]:
    """A row's median and min, or ``(None, None)`` when it was not measured."""
    if row is None or row.timing is None:
        return None, None
    return row.timing.median_us, row.timing.min_us


def target_from_row(label: str, row: Row | None, limit: float) -> Target:
    """The target "median (and min) <= limit microseconds" checked on one row."""
    med, low = row_figures(row)
    return Target(
        label,
        f"{fmt_us(med)} us",
        None if med is None else med <= limit,
        f"{fmt_us(low)} us",
        None if low is None else low <= limit,
    )


def print_targets(targets: Sequence[Target], settings: Settings) -> None:
    print()
    print("Targets (from the issue). RESULT is judged on the median; the min column shows")
    print("whether the best repeat meets it (a hint when the machine is noisy).")
    rows = [[t.target, t.median, t.verdict, t.min, verdict(t.passed_on_min)] for t in targets]
    print_table(["target", "median", "RESULT", "min", "on min"], rows)
    if settings.quick:
        print("(quick run: pickle sizes stop at 1,000 entries; run without --quick for 10,000)")


def write_json(
    path: Path,
    report: Report,
    targets: Sequence[Target],
    meta: dict[str, Any],
    baselines: Mapping[str, str | None],
) -> None:
    """Write every row (with its ratios), the targets and the notes as JSON.

    ``baselines`` maps a section to the row its ``ratio_to_baseline`` divides by.
    """
    rows = []
    for row in report.rows:
        ref_name = baselines.get(row.section)
        ours = next(
            (
                r
                for r in report.rows
                if (r.section, r.case, r.entries) == (row.section, row.case, row.entries)
                and r.impl.startswith(OURS)
            ),
            None,
        )
        ref = report.find(row.section, row.case, ref_name, row.entries) if ref_name else None
        ratios = {"ratio_to_baseline": ratio(row, ref), "ratio_to_ours": ratio(row, ours)}
        rows.append(row.as_json(ratios))
    payload = {
        "meta": meta,
        "results": rows,
        "targets": [
            {
                **dataclasses.asdict(t),
                "verdict": t.verdict,
                "verdict_on_min": verdict(t.passed_on_min),
            }
            for t in targets
        ],
        "notes": report.notes,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
