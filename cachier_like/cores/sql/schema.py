"""The SQL core's table: its name rules, columns, DDL and the database clock.

Imported only by :mod:`cachier_like.cores.sql`, so ``import cachier_like`` never
imports SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ...errors import ConfigurationError
from ...hashing import stable_hash

DEFAULT_TABLE = "cachier_like_entries"

#: Lower-case SQL identifiers only (optionally ``schema.table``): no quoting needed in
#: hand-written SQL, the same spelling on every database, nothing to inject.
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Column lengths chosen so the primary key fits MySQL/MariaDB index limits with
#: utf8mb4 (191 * 4 + 64 bytes < 767 bytes per column, < 3072 per key).
NAMESPACE_LENGTH = 191
KEY_LENGTH = 64  # the longest storage_name() (cachier_like.cores.shared)
TOKEN_LENGTH = 32
#: The tags table's key: a 128-bit digest of the tag (hex), so that any tag of up to
#: 512 UTF-8 bytes fits MySQL's index limits; the readable name is a column beside it.
TAG_KEY_LENGTH = 32
TAG_NAME_LENGTH = 512
_TAGS_SUFFIX = "_tags"
_HASHED_NAMESPACE_PREFIX = NAMESPACE_LENGTH - 33  # prefix + "~" + 32 hex digits


def split_table_name(name: object) -> tuple[str | None, str]:
    """Validate a ``table_name`` option; return ``(schema, table)``.

    Example:
        >>> split_table_name("cache.entries")
        ('cache', 'entries')
        >>> split_table_name("entries; drop table users")
        Traceback (most recent call last):
        ...
        cachier_like.errors.ConfigurationError: table_name must be a lower-case SQL identifier ...
    """
    parts = name.split(".") if isinstance(name, str) else []
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(part) for part in parts):
        raise ConfigurationError(
            "table_name must be a lower-case SQL identifier (letters a-z, digits, "
            "underscores; at most 63 characters), optionally prefixed by 'schema.'; "
            f"got {name!r}"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def namespace_text(namespace: str) -> str:
    """The namespace column's value: the namespace itself when it fits, else a digest.

    Long, non-printable or space-ended namespaces (MySQL ignores trailing spaces when
    comparing) keep a readable prefix and end in a hash of the whole name.

    Example:
        >>> namespace_text("pkg.mod.f")
        'pkg.mod.f'
        >>> len(namespace_text("x" * 500))
        191
    """
    if len(namespace) <= NAMESPACE_LENGTH and namespace.isprintable() and namespace[-1:] != " ":
        return namespace
    prefix = "".join(ch if ch.isprintable() else "?" for ch in namespace[:_HASHED_NAMESPACE_PREFIX])
    return f"{prefix}~{stable_hash(namespace)}"


def _mysql_text(length: int, charset: str, collation: str) -> sa.types.TypeEngine[str]:
    # Binary collations: MySQL's default ones would make 'F' and 'f' the same key.
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset=charset, collation=collation), "mysql", "mariadb"
    )


def make_table(name: str) -> sa.Table:
    """The entries table: one row per (namespace, key); a claim row may hold no value."""
    schema, table = split_table_name(name)
    return sa.Table(
        table,
        sa.MetaData(),
        sa.Column(
            "namespace", _mysql_text(NAMESPACE_LENGTH, "utf8mb4", "utf8mb4_bin"), primary_key=True
        ),
        sa.Column("cache_key", _mysql_text(KEY_LENGTH, "ascii", "ascii_bin"), primary_key=True),
        # NULL: no entry (the row only holds a claim).
        sa.Column("value", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")),
        # Seconds since the epoch (UTC) when the value was calculated, by the caller's clock.
        sa.Column("calculated_at", sa.Double()),
        sa.Column("claim_token", _mysql_text(TOKEN_LENGTH, "ascii", "ascii_bin")),
        # Seconds since the epoch (UTC) by the database server's clock.
        sa.Column("claim_expires", sa.Double()),
        schema=schema,
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def tags_table_name(table: str) -> str:
    """The name of the tag versions table beside the entries table ``table``.

    ``<table>_tags``, shortened with a digest when that would pass 63 characters.

    Example:
        >>> tags_table_name("cachier_like_entries")
        'cachier_like_entries_tags'
        >>> len(tags_table_name("t" * 63))
        63
    """
    if len(table) + len(_TAGS_SUFFIX) <= 63:
        return table + _TAGS_SUFFIX
    digest = hashlib.blake2b(table.encode(), digest_size=4).hexdigest()
    return f"{table[: 63 - len(_TAGS_SUFFIX) - 9]}_{digest}{_TAGS_SUFFIX}"


def make_tags_table(table: sa.Table) -> sa.Table:
    """The tag versions table of the entries table ``table`` (one row per tag ever
    invalidated, shared by every function on ``table``), on ``table``'s metadata."""
    name = tags_table_name(table.name)
    known = table.metadata.tables.get(name if table.schema is None else f"{table.schema}.{name}")
    if known is not None:
        return known
    return sa.Table(
        name,
        table.metadata,
        sa.Column("tag_key", _mysql_text(TAG_KEY_LENGTH, "ascii", "ascii_bin"), primary_key=True),
        # The tag itself, for people reading the table (unprintable characters as '?').
        sa.Column("tag", _mysql_text(TAG_NAME_LENGTH, "utf8mb4", "utf8mb4_bin")),
        sa.Column("version", sa.BigInteger(), nullable=False),
        schema=table.schema,
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def database_now(dialect_name: str) -> sa.ColumnElement[float]:
    """The database clock in seconds since the epoch (UTC), as a SQL expression.

    Leases are timed by the database's clock, so client clocks that disagree cannot
    make a live claim look expired. SQLite runs on the client, so its clock is the
    client's.
    """
    if dialect_name == "postgresql":
        sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    elif dialect_name in ("mysql", "mariadb"):
        # Pure arithmetic on UTC: no session time zone or DST conversion involved.
        sql = "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) / 1e6)"
    elif dialect_name == "sqlite":
        sql = "((julianday('now') - 2440587.5) * 86400.0)"
    else:
        raise ConfigurationError(
            f"the sql backend supports SQLite, PostgreSQL and MySQL/MariaDB, not {dialect_name!r}"
        )
    return sa.literal_column(sql, sa.Double())
