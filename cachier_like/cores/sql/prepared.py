"""One statement of the SQL core, compiled once for one dialect, and how to bind it.

The core runs its statements on the DBAPI cursor (see :mod:`.runner`), so each is
compiled once and only ever takes the core's own named parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

__all__ = ["Params", "Prepared", "prepare"]

Params = Mapping[str, Any]
_PARAM_NAMES = frozenset({"ns", "k", "tok", "lease", "v", "ts", "cutoff", "chan"})
#: The numbered parameters of the batched statements: keys, tag keys, tag names.
_NUMBERED = re.compile(r"[ktn]_[0-9]+")


@dataclass(frozen=True, slots=True)
class Prepared:
    """One statement, compiled for one dialect, with how to bind and read it."""

    statement: sa.Executable
    sql: str
    #: Parameter names in placeholder order (positional paramstyles), else None.
    positional: tuple[str, ...] | None
    write: bool
    returns_rows: bool

    def driver_params(self, params: Params) -> Sequence[Any] | Params:
        """The parameters in the form the DBAPI driver takes for :attr:`sql`."""
        if self.positional is None:
            return params
        return tuple(params[name] for name in self.positional)


def prepare(
    statement: sa.Executable, dialect: sa.engine.Dialect, *, write: bool, returns_rows: bool
) -> Prepared:
    """Compile ``statement`` once; it may only use the core's own named parameters."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    names = set(compiled.bind_names.values())
    unexpected = {name for name in names - _PARAM_NAMES if not _NUMBERED.fullmatch(name)}
    if unexpected or compiled.literal_execute_params:
        raise AssertionError(f"statement has unexpected parameters: {sorted(names)}")
    positional = tuple(compiled.positiontup or ()) if compiled.positional else None
    return Prepared(statement, compiled.string, positional, write, returns_rows)
