"""The SQL core's statements for one entry's removal and for reads of many keys.

``delete`` is one ``DELETE`` of the row when no live claim is on it; a claimed row
keeps its claim and loses only its value (a second statement, only then), as
``clear()`` does for a whole namespace. ``get_many`` is one ``SELECT ... WHERE
cache_key IN (...)`` per :data:`CHUNK` keys, compiled once per power-of-two size (the
last key repeated to fill it), so a table has at most ten such statements.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from .prepared import Params, Prepared, prepare
from .schema import database_now

__all__ = ["CHUNK", "BatchStatements", "numbered", "padded"]

#: The most keys one ``IN`` list holds (a power of two).
CHUNK = 512


def padded(names: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """The distinct ``names`` in chunks of at most :data:`CHUNK`, each filled up to a
    power of two by repeating its last name: ``(size, chunk)``.

    Example:
        >>> list(padded(["a", "b", "c", "a"]))
        [(4, ['a', 'b', 'c', 'c'])]
    """
    distinct = list(dict.fromkeys(names))
    for start in range(0, len(distinct), CHUNK):
        chunk = distinct[start : start + CHUNK]
        size = 1 << (len(chunk) - 1).bit_length()
        yield size, chunk + [chunk[-1]] * (size - len(chunk))


def numbered(prefix: str, values: Sequence[object], into: dict[str, object]) -> Params:
    """``into`` with ``values`` bound as ``<prefix>_0``, ``<prefix>_1``, ...

    Example:
        >>> numbered("k", ["x", "y"], {"ns": "f"})
        {'ns': 'f', 'k_0': 'x', 'k_1': 'y'}
    """
    for index, value in enumerate(values):
        into[f"{prefix}_{index}"] = value
    return into


class BatchStatements:
    """``delete`` and the ``get_many`` reads of one entries table on one dialect."""

    def __init__(self, table: sa.Table, dialect: sa.engine.Dialect) -> None:
        c = table.c
        self._table = table
        self._dialect = dialect
        self._lock = threading.Lock()
        self._reads: dict[int, Prepared] = {}
        now = database_now(dialect.name)
        row = sa.and_(
            c.namespace == sa.bindparam("ns", type_=sa.String()),
            c.cache_key == sa.bindparam("k", type_=sa.String()),
        )
        free = sa.or_(c.claim_expires.is_(None), c.claim_expires < now)
        has_value = c.value.is_not(None)
        #: The row of an unclaimed entry: gone (rowcount 1), else try :attr:`delete_value`.
        self.delete = prepare(
            sa.delete(table).where(row, has_value, free), dialect, write=True, returns_rows=False
        )
        #: A claimed row's value (its claim stays, for its holder's store).
        self.delete_value = prepare(
            sa.update(table).where(row, has_value).values(value=sa.null(), calculated_at=sa.null()),
            dialect,
            write=True,
            returns_rows=False,
        )

    def read(self, size: int) -> Prepared:
        """``SELECT cache_key, value, calculated_at`` of ``size`` keys (``k_0``...) of ``ns``."""
        prepared = self._reads.get(size)
        if prepared is None:
            c = self._table.c
            keys = [sa.bindparam(f"k_{i}", type_=sa.String()) for i in range(size)]
            statement = sa.select(c.cache_key, c.value, c.calculated_at).where(
                c.namespace == sa.bindparam("ns", type_=sa.String()), c.cache_key.in_(keys)
            )
            prepared = prepare(statement, self._dialect, write=False, returns_rows=True)
            with self._lock:
                prepared = self._reads.setdefault(size, prepared)
        return prepared
