"""Running the SQL core's prepared statements: one pooled connection per operation.

The fast path checks a DBAPI connection out of the engine's pool and runs the
pre-compiled SQL on its cursor, skipping SQLAlchemy's per-statement machinery. When
the engine has statement-level event listeners or ``echo`` on, statements go through
``Connection.execute`` instead, so that instrumentation still sees every statement.

Either way a connection the server dropped is invalidated (with the rest of its pool
generation) and the statement retried once on a fresh one, so the cache resumes by
itself when the database comes back; deadlocks are retried too. Every other error
propagates, and the decorator fails open.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import sqlalchemy as sa

from ._sql_statements import Params, Prepared

_ATTEMPTS = 3
#: Deadlock and serialization failures (PostgreSQL SQLSTATEs, MySQL error numbers).
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
_TRANSIENT_MYSQL_ERRORS = frozenset({1205, 1213})


class _Retry(Exception):  # noqa: N818 - a signal, not an error to users
    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


def is_transient(error: BaseException | None) -> bool:
    """Whether ``error`` is a deadlock or serialization failure worth one more try."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if sqlstate in _TRANSIENT_SQLSTATES:
        return True
    args: tuple[Any, ...] = getattr(error, "args", ())
    return bool(args) and args[0] in _TRANSIENT_MYSQL_ERRORS


def is_memory_sqlite(url: sa.URL) -> bool:
    """Whether ``url`` names an in-memory SQLite database."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:")
        or "mode=memory" in database
        or url.query.get("mode") == "memory"
    )


def _needs_commit(connection: Any) -> bool:
    """Whether a write on this DBAPI connection left a transaction to commit."""
    in_transaction = getattr(connection, "in_transaction", None)  # sqlite3
    if isinstance(in_transaction, bool):
        return in_transaction
    get_autocommit = getattr(connection, "get_autocommit", None)  # PyMySQL, mysqlclient
    if get_autocommit is not None:
        return not get_autocommit()
    autocommit = getattr(connection, "autocommit", None)  # psycopg
    return not autocommit if isinstance(autocommit, bool) else True


class Runner:
    """Runs prepared statements on one engine; returns rows or a row count."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        self._is_disconnect = dialect.is_disconnect
        # psycopg switches autocommit client-side (no round trip): one statement per
        # operation needs no BEGIN/COMMIT pair, so use it and switch back afterwards.
        self._toggle_autocommit = dialect.driver in ("psycopg", "psycopg2")
        #: In-memory SQLite shares one connection between threads: one at a time.
        self.memory = is_memory_sqlite(engine.url)
        self._lock = threading.Lock() if self.memory else None

    def after_fork(self) -> None:
        """Drop a lock another thread of the parent may have held."""
        if self._lock is not None:
            self._lock = threading.Lock()

    def run(self, prepared: Prepared, params: Params) -> Any:
        """Run one statement: its rows (a list) if it returns rows, else its row count."""
        attempt = 1
        while True:
            try:
                if self._lock is None:
                    return self._once(prepared, params)
                with self._lock:
                    return self._once(prepared, params)
            except _Retry as retry:
                if attempt >= _ATTEMPTS:
                    raise retry.error from None
                if is_transient(retry.error):
                    time.sleep(random.uniform(0.0, 0.002 * attempt))
                attempt += 1

    def _once(self, prepared: Prepared, params: Params) -> Any:
        engine = self.engine
        if engine._has_events or engine.echo:
            return self._via_connection(prepared, params)
        return self._via_driver(prepared, params)

    def _via_connection(self, prepared: Prepared, params: Params) -> Any:
        try:
            with self.engine.connect() as connection:
                result = connection.execute(prepared.statement, dict(params))
                out = result.fetchall() if prepared.returns_rows else result.rowcount
                if prepared.write:
                    connection.commit()
                return out
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated or is_transient(exc.orig):
                raise _Retry(exc) from exc
            raise

    def _via_driver(self, prepared: Prepared, params: Params) -> Any:
        fairy = self.engine.raw_connection()
        connection: Any = fairy.dbapi_connection
        cursor: Any = None
        toggled = invalidated = False
        try:
            if (
                self._toggle_autocommit
                and not connection.autocommit
                and connection.info.transaction_status == 0  # idle: no transaction open
            ):
                connection.autocommit = toggled = True
            cursor = fairy.cursor()
            cursor.execute(prepared.sql, prepared.driver_params(params))
            out = cursor.fetchall() if prepared.returns_rows else cursor.rowcount
            cursor.close()
            if prepared.write and _needs_commit(connection):
                connection.commit()
            return out
        except self._dbapi_error as exc:
            if self._is_disconnect(exc, connection, cursor):  # type: ignore[arg-type]
                invalidated = True
                # Invalidate this connection's whole generation: its siblings are dead too.
                self.engine.pool._invalidate(fairy, exc)
                raise _Retry(exc) from exc
            if is_transient(exc):
                raise _Retry(exc) from exc
            raise
        finally:
            if not invalidated:
                _restore(fairy, connection, toggled)


def _restore(fairy: Any, connection: Any, toggled: bool) -> None:
    """Give the connection back to the pool as it was lent (or drop it if broken)."""
    if toggled:
        try:
            connection.autocommit = False
        except Exception as exc:
            fairy.invalidate(exc)
            return
    fairy.close()
