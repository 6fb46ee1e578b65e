"""Every statement the SQL core runs, built and compiled once per table and dialect.

Each operation is one statement (two for a few rare ones), so a hit is one indexed
SELECT and a claim, a store or a release is one round trip each. Writes are upserts
in the dialect's own syntax: ``INSERT ... ON CONFLICT DO UPDATE`` on PostgreSQL and
SQLite, ``INSERT ... ON DUPLICATE KEY UPDATE`` / ``INSERT IGNORE`` on MySQL/MariaDB.

On PostgreSQL the statements that end a claim (the holder's store, the releases,
``clear_claims``) also wake its waiters: ``RETURNING pg_notify(:chan, cache_key)``,
delivered as the statement commits (see :mod:`.notify`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .batches import BatchStatements
from .prepared import Params, Prepared, prepare
from .schema import database_now
from .tags import TagStatements

__all__ = ["Params", "Prepared", "Statements", "prepare"]


@dataclass(frozen=True)
class _Terms:
    """The parameters and conditions the statements share."""

    table: sa.Table
    ns: sa.BindParameter[str]
    key: sa.BindParameter[str]
    token: sa.BindParameter[str]
    expires: sa.ColumnElement[float]  # now + lease
    row: sa.ColumnElement[bool]  # this namespace and key
    mine: sa.ColumnElement[bool]  # the claim carries our token
    free: sa.ColumnElement[bool]  # no live claim


def _upserts(
    terms: _Terms, dialect_name: str
) -> tuple[sa.Executable, sa.Executable, sa.Executable | None]:
    """The store, claim and (MySQL only) takeover statements in the dialect's syntax."""
    table, c, mine = terms.table, terms.table.c, terms.mine
    entry = {
        "namespace": terms.ns,
        "cache_key": terms.key,
        "value": sa.bindparam("v", type_=sa.LargeBinary()),
        "calculated_at": sa.bindparam("ts", type_=sa.Double()),
    }
    claim = {
        "namespace": terms.ns,
        "cache_key": terms.key,
        "claim_token": terms.token,
        "claim_expires": terms.expires,
    }
    # A store by the claim's holder also ends the claim (saving the release's round
    # trip); any other store leaves a claim alone.
    unclaim = [
        ("claim_expires", sa.case((mine, sa.null()), else_=c.claim_expires)),
        ("claim_token", sa.case((mine, sa.null()), else_=c.claim_token)),
    ]
    takeable = sa.or_(terms.free, mine)
    if dialect_name in ("mysql", "mariadb"):
        ins = mysql.insert(table).values(entry)
        # Assignments run left to right on MySQL: claim_expires reads the old token.
        stored = [("value", ins.inserted.value), ("calculated_at", ins.inserted.calculated_at)]
        # rowcount 1: a new row with our claim; else take over a lapsed claim.
        takeover = (
            sa.update(table)
            .where(terms.row, takeable)
            .values(claim_token=terms.token, claim_expires=terms.expires)
        )
        return (
            ins.on_duplicate_key_update([*stored, *unclaim]),
            mysql.insert(table).prefix_with("IGNORE").values(claim),
            takeover,
        )
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    index = [c.namespace, c.cache_key]
    ins_entry = insert(table).values(entry)
    store = ins_entry.on_conflict_do_update(
        index_elements=index,
        set_={
            "value": ins_entry.excluded.value,
            "calculated_at": ins_entry.excluded.calculated_at,
            **dict(unclaim),
        },
    )
    # A row comes back only to the one caller whose insert or update happened.
    ins_claim = insert(table).values(claim)
    take = ins_claim.on_conflict_do_update(
        index_elements=index,
        set_={
            "claim_token": ins_claim.excluded.claim_token,
            "claim_expires": ins_claim.excluded.claim_expires,
        },
        where=takeable,
    ).returning(c.claim_token)
    return store, take, None


class Statements:
    """The prepared statements of one table on one dialect.

    A claim is a (token, expiry) pair on the key's row, inserted with the row or set
    on it when no live claim is there; expiry is by the database clock.
    """

    def __init__(self, table: sa.Table, dialect: sa.engine.Dialect, *, notify: bool = True) -> None:
        c = table.c
        now = database_now(dialect.name)
        ns = sa.bindparam("ns", type_=sa.String())
        token = sa.bindparam("tok", type_=sa.String())
        key = sa.bindparam("k", type_=sa.String())
        this_ns = c.namespace == ns
        terms = _Terms(
            table=table,
            ns=ns,
            key=key,
            token=token,
            expires=now + sa.bindparam("lease", type_=sa.Double()),
            row=sa.and_(this_ns, c.cache_key == key),
            mine=c.claim_token == token,
            free=sa.or_(c.claim_expires.is_(None), c.claim_expires < now),
        )
        row, mine, free = terms.row, terms.mine, terms.free
        live = c.claim_expires >= now
        #: Whether the statements that end a claim notify its waiters (PostgreSQL).
        self.notifies = notify and dialect.name == "postgresql"
        channel: sa.BindParameter[str] = sa.bindparam("chan", type_=sa.String())
        wake = sa.func.pg_notify(channel, c.cache_key)

        def waking(statement: Any, when: sa.ColumnElement[bool] | None = None) -> Any:
            """``statement`` that notifies the waiters of each row it ends a claim on."""
            if not self.notifies:
                return statement
            return statement.returning(wake if when is None else sa.case((when, wake)))

        one: sa.ColumnElement[int] = sa.literal_column("1")
        zero: sa.ColumnElement[int] = sa.literal_column("0")

        def read(statement: sa.Executable) -> Prepared:
            return prepare(statement, dialect, write=False, returns_rows=True)

        def write(statement: sa.Executable, returns_rows: bool = False) -> Prepared:
            return prepare(statement, dialect, write=True, returns_rows=returns_rows)

        self.get = read(sa.select(c.value, c.calculated_at).where(row))
        #: The database's clock, which entries are stamped in (see :mod:`..clocks`).
        self.now = read(sa.select(now))
        # The value, whether a claim is live, and the seconds its lease has left.
        self.poll = read(
            sa.select(
                c.value, c.calculated_at, sa.case((live, one), else_=zero), c.claim_expires - now
            ).where(row)
        )
        self.is_claimed = read(sa.select(one).where(row, live))
        self.stats = read(
            sa.select(
                sa.func.count(c.value),
                sa.func.sum(sa.func.length(c.value)),
                sa.func.min(c.calculated_at),
                sa.func.max(c.calculated_at),
                sa.func.sum(sa.case((live, one), else_=zero)),
            ).where(this_ns)
        )
        self.entries = read(
            sa.select(c.cache_key, c.calculated_at, sa.func.length(c.value)).where(
                this_ns, c.value.is_not(None)
            )
        )
        store, claim, takeover = _upserts(terms, dialect.name)
        # A store by a claim holder (tok given) that leaves no claim on the row ended it.
        ended = sa.and_(sa.cast(token, sa.String()).is_not(None), c.claim_token.is_(None))
        self.set = write(waking(store, ended))
        # PostgreSQL, SQLite: one upsert RETURNING a row to the winner. MySQL: INSERT
        # IGNORE (rowcount 1 wins), then the conditional UPDATE ``takeover``.
        self.claim = write(claim, returns_rows=takeover is None)
        self.takeover = None if takeover is None else write(takeover)

        unclaimed = {"claim_token": sa.null(), "claim_expires": sa.null()}
        no_value = {"value": sa.null(), "calculated_at": sa.null()}
        self.renew = write(sa.update(table).where(row, mine).values(claim_expires=terms.expires))
        self.release_empty = write(waking(sa.delete(table).where(row, mine, c.value.is_(None))))
        self.release = write(waking(sa.update(table).where(row, mine).values(unclaimed)))
        self.clear_free = write(sa.delete(table).where(this_ns, c.value.is_not(None), free))
        self.clear_claimed = write(
            sa.update(table).where(this_ns, c.value.is_not(None)).values(no_value)
        )
        self.clear_claims = write(waking(sa.update(table).where(this_ns, live).values(unclaimed)))
        self.drop_claim_rows = write(sa.delete(table).where(this_ns, c.value.is_(None), free))
        #: ``delete`` and ``get_many`` (:mod:`.batches`); the tag versions (:mod:`.tags`).
        self.batches = BatchStatements(table, dialect)
        self.tags = TagStatements(table, dialect)
        cutoff: sa.BindParameter[float] = sa.bindparam("cutoff", type_=sa.Double())
        self.purge = write(
            sa.delete(table).where(
                this_ns, free, sa.or_(c.value.is_(None), c.calculated_at < cutoff)
            )
        )
