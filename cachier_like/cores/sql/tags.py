"""The SQL core's tag versions: a table beside the entries table, and its statements.

One row per tag ever invalidated (``<table>_tags``, see :func:`~.schema.make_tags_table`),
keyed by a digest of the tag, so every function on the entries table reads the same
versions; ``clear()`` of a function leaves them alone, and the listings never see them.

* ``bump_tags``: one multi-row upsert incrementing each tag (``ON CONFLICT ... DO UPDATE
  SET version = version + 1``; MySQL ``ON DUPLICATE KEY UPDATE``), atomic in itself; the
  rows in digest order, so concurrent bumps lock them in one order;
* ``tag_versions``: one ``SELECT ... WHERE tag_key IN (...)`` (a missing row is 0);
* ``get_tagged``: one ``SELECT`` of the entry's row (left-joined to a one-row anchor, so
  the statement returns a row when the entry is missing) and a scalar subquery per tag.

Each is compiled once per number of tags (the ``IN`` list per power of two).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .batches import numbered, padded
from .prepared import Params, Prepared, prepare
from .schema import TAG_NAME_LENGTH, make_tags_table

__all__ = [
    "BUMP_CHUNK",
    "TAGGED_MAX",
    "TagStatements",
    "bump_batches",
    "tag_key",
    "tag_label",
    "version_batches",
    "versions_of",
]

#: The most tags one bump statement increments (two parameters each).
BUMP_CHUNK = 256
#: The most tags ``get_tagged`` reads in its one statement; more take two.
TAGGED_MAX = 64


def tag_key(tag: str) -> str:
    """The tags table's key of ``tag``: 32 hex digits of a digest of its UTF-8 bytes.

    Example:
        >>> len(tag_key("user:7")), tag_key("user:7") == tag_key("user:7")
        (32, True)
    """
    return hashlib.blake2b(tag.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def tag_label(tag: str) -> str:
    """``tag`` as the readable ``tag`` column shows it (unprintable characters as ``?``).

    Example:
        >>> tag_label("a\\x00b")
        'a?b'
    """
    if tag.isprintable():
        return tag[:TAG_NAME_LENGTH]
    return "".join(ch if ch.isprintable() else "?" for ch in tag)[:TAG_NAME_LENGTH]


class TagStatements:
    """The tag version statements of one entries table on one dialect."""

    def __init__(self, table: sa.Table, dialect: sa.engine.Dialect) -> None:
        self.table = make_tags_table(table)
        self._entries = table
        self._dialect = dialect
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, int], Prepared] = {}

    def _cached(self, kind: str, size: int, build: Callable[[int], Prepared]) -> Prepared:
        prepared = self._cache.get((kind, size))
        if prepared is None:
            prepared = build(size)
            with self._lock:
                prepared = self._cache.setdefault((kind, size), prepared)
        return prepared

    def versions(self, size: int) -> Prepared:
        """``SELECT tag_key, version`` of ``size`` tag keys (``t_0``...)."""
        return self._cached("versions", size, self._versions)

    def bump(self, size: int) -> Prepared:
        """The upsert incrementing ``size`` tags (keys ``t_i``, names ``n_i``)."""
        return self._cached("bump", size, self._bump)

    def tagged(self, size: int) -> Prepared:
        """The entry's ``value, calculated_at`` and ``size`` tags' versions (``t_i``)."""
        return self._cached("tagged", size, self._tagged)

    def _versions(self, size: int) -> Prepared:
        c = self.table.c
        keys = [sa.bindparam(f"t_{i}", type_=sa.String()) for i in range(size)]
        statement = sa.select(c.tag_key, c.version).where(c.tag_key.in_(keys))
        return prepare(statement, self._dialect, write=False, returns_rows=True)

    def _bump(self, size: int) -> Prepared:
        table, c = self.table, self.table.c
        one = sa.literal_column("1", sa.BigInteger())  # inline: no parameter of its own
        bumped = c.version + one
        rows = [
            {
                "tag_key": sa.bindparam(f"t_{i}", type_=sa.String()),
                "tag": sa.bindparam(f"n_{i}", type_=sa.String()),
                "version": one,
            }
            for i in range(size)
        ]
        statement: sa.Executable
        name = self._dialect.name
        if name in ("mysql", "mariadb"):
            statement = mysql.insert(table).values(rows).on_duplicate_key_update(version=bumped)
        else:
            insert = postgresql.insert if name == "postgresql" else sqlite.insert
            statement = (
                insert(table)
                .values(rows)
                .on_conflict_do_update(index_elements=[c.tag_key], set_={"version": bumped})
            )
        return prepare(statement, self._dialect, write=True, returns_rows=False)

    def _tagged(self, size: int) -> Prepared:
        entries, tags = self._entries, self.table
        c = entries.c
        versions = [
            sa.select(tags.c.version)
            .where(tags.c.tag_key == sa.bindparam(f"t_{i}", type_=sa.String()))
            .scalar_subquery()
            for i in range(size)
        ]
        anchor = sa.select(sa.literal_column("1").label("one")).subquery("anchor")
        row = sa.and_(
            c.namespace == sa.bindparam("ns", type_=sa.String()),
            c.cache_key == sa.bindparam("k", type_=sa.String()),
        )
        statement = sa.select(c.value, c.calculated_at, *versions).select_from(
            anchor.outerjoin(entries, row)
        )
        return prepare(statement, self._dialect, write=False, returns_rows=True)


def bump_batches(tags: Sequence[str]) -> list[tuple[int, dict[str, object]]]:
    """The ``(size, params)`` of each bump statement for ``tags``: distinct, in digest
    order (one lock order for every bump), :data:`BUMP_CHUNK` at most per statement.

    Example:
        >>> [(size, sorted(params)) for size, params in bump_batches(["a", "a"])]
        [(1, ['n_0', 't_0'])]
    """
    keyed = sorted({tag_key(tag): tag for tag in tags}.items())
    batches = []
    for start in range(0, len(keyed), BUMP_CHUNK):
        params: dict[str, object] = {}
        chunk = keyed[start : start + BUMP_CHUNK]
        for index, (key, tag) in enumerate(chunk):
            params[f"t_{index}"] = key
            params[f"n_{index}"] = tag_label(tag)
        batches.append((len(chunk), params))
    return batches


def version_batches(keys: Sequence[str]) -> list[tuple[int, Params]]:
    """The ``(size, params)`` of each ``tag_versions`` read of the tag keys ``keys``."""
    return [(size, numbered("t", chunk, {})) for size, chunk in padded(keys)]


def versions_of(keys: Sequence[str], found: dict[str, int]) -> tuple[int, ...]:
    """The version of each key in ``found`` (read from the tags table), 0 if missing."""
    return tuple(int(found.get(key, 0)) for key in keys)
