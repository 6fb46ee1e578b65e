"""The benchmark's sections, in run and print order, and what a section module provides.

To add a section (Redis, SQL, Mongo, ...): write a module next to ``memory_core.py``
that provides everything ``SectionModule`` lists, and add it to ``SECTIONS``. mypy
checks each listed module against the protocol. Share ``peers`` (``Impl``,
``timed_row``, optional imports) and ``report`` (``section_rows``, ``print_table``,
``target_from_row``) rather than re-implementing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from . import (
    async_memory,
    invalidation,
    key_cost,
    memory_core,
    pickle_core,
    redis_async,
    redis_core,
    sql_async,
    sql_core,
)
from .measure import Settings
from .report import Report, Target


class SectionModule(Protocol):
    """One section of the benchmark, implemented by a module."""

    #: ``Row.section`` of this section's rows (and its key in the JSON results).
    NAME: str
    #: Shown while it runs: ``running: {TITLE}...``.
    TITLE: str
    #: The row that ``ratio_to_baseline`` divides by in the JSON (None: no baseline).
    BASELINE: str | None

    def run(self, report: Report, settings: Settings, workdir: Path) -> None:
        """Append this section's rows; ``workdir`` is a temporary directory for files."""

    def print_tables(self, report: Report, settings: Settings) -> None:
        """Print this section's tables (each preceded by a blank line)."""

    def targets(self, report: Report, settings: Settings) -> list[Target]:
        """This section's targets from the project's issue, checked on this run."""


SECTIONS: tuple[SectionModule, ...] = (
    memory_core,
    async_memory,
    pickle_core,
    key_cost,
    redis_core,
    redis_async,
    sql_core,
    sql_async,
    invalidation,
)
