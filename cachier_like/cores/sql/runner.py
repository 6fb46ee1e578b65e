"""Running the SQL core's prepared statements: one pooled connection per operation.

The fast path checks a DBAPI connection out of the engine's pool and runs the
pre-compiled SQL on its cursor, skipping SQLAlchemy's per-statement machinery. When
the engine has statement-level event listeners or ``echo`` on, statements go through
``Connection.execute`` instead, so that instrumentation still sees every statement.

Either way a connection the server dropped is invalidated (with the rest of its pool
generation) and the statement retried once on a fresh one, so the cache resumes by
itself when the database comes back; deadlocks are retried too. Every other error
propagates, and the decorator fails open.

A runner is also a circuit breaker (:mod:`.._breaker`): when the server cannot be
reached or does not answer, calls fail at once while a background thread probes it
with ``SELECT 1``. A :class:`~.watchdog.Watchdog` unblocks statements on a server
that hangs, which no timeout of libpq bounds (SQLite, a local file, has neither).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import sqlalchemy as sa

from ...errors import BackendError
from .._breaker import Breaker
from .prepared import Params, Prepared
from .watchdog import Watchdog

#: Attempts at a statement whose connection dropped, or that deadlocked.
ATTEMPTS = 3
#: Deadlock and serialization failures (PostgreSQL SQLSTATEs, MySQL error numbers).
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
_TRANSIENT_MYSQL_ERRORS = frozenset({1205, 1213})
_DBAPI_UNREACHABLE = ("OperationalError", "InterfaceError")


class Retry(Exception):  # noqa: N818 - a signal, not an error to users
    """Raised by one attempt at a statement: the error may pass with another attempt."""

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


class Runner(Breaker):
    """Runs prepared statements on one engine; returns rows or a row count."""

    #: Whether a :class:`~.watchdog.Watchdog` unblocks statements on a hung server.
    watched = True

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        dbapi = dialect.loaded_dbapi
        self._dbapi_error: type[Exception] = dbapi.Error
        #: Errors meaning the server is unreachable or not answering (the breaker trips);
        #: not the pool's TimeoutError: a busy pool is the application's, not an outage.
        self._unreachable: tuple[type[Exception], ...] = (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            *(getattr(dbapi, name) for name in _DBAPI_UNREACHABLE if hasattr(dbapi, name)),
        )
        self._is_disconnect = dialect.is_disconnect
        # psycopg switches autocommit client-side (no round trip): one statement per
        # operation needs no BEGIN/COMMIT pair, so use it and switch back afterwards.
        self._toggle_autocommit = dialect.driver in ("psycopg", "psycopg2")
        # psycopg 3 reads bytea in binary: the text form is hex, which a large value
        # holds twice over (as received, then as decoded) before it is unpickled.
        self._execute_options: dict[str, Any] = (
            {"binary": True} if dialect.driver == "psycopg" else {}
        )
        #: In-memory SQLite shares one connection between threads: one at a time.
        self.memory = is_memory_sqlite(engine.url)
        self._lock = threading.Lock() if self.memory else None
        self._init_breaker(f"the {dialect.name} database")
        # SQLite is a local file: its errors ("database is locked") are no outage.
        self._networked = dialect.name != "sqlite"
        self._watchdog = Watchdog(engine, self.trip) if self._networked and self.watched else None
        #: Whether a batch is one execute per parameter set (see :meth:`run_many`).
        self.loops_batches = dialect.name in ("mysql", "mariadb")

    def after_fork(self) -> None:
        """Drop a lock another thread of the parent may have held."""
        if self._lock is not None:
            self._lock = threading.Lock()

    def run(self, prepared: Prepared, params: Params) -> Any:
        """Run one statement: its rows (a list) if it returns rows, else its row count."""
        if self.down:
            raise self.refusal()
        attempt = 1
        while True:
            try:
                if self._lock is None:
                    return self._once(prepared, params)
                with self._lock:
                    return self._once(prepared, params)
            except Retry as retry:
                pause = self.retry_pause(retry, attempt)
                if pause is not None:
                    time.sleep(pause)
                attempt += 1
            except Exception as exc:
                self.raise_failure(exc)

    def run_many(self, prepared: Prepared, batch: Sequence[Params]) -> None:
        """Run one write statement once per parameter set, on one connection.

        ``executemany`` where the driver sends each set's parameters whole (PyMySQL's
        rewrite into one multi-row INSERT drops those of ``ON DUPLICATE KEY UPDATE``,
        so MySQL runs one execute per set); committed once at the end, unless the
        connection is in autocommit. Retried as :meth:`run` is: the statements the
        core batches are upserts, which may run twice.
        """
        if not batch:
            return
        if self.down:
            raise self.refusal()
        attempt = 1
        while True:
            try:
                if self._lock is None:
                    return self._many(prepared, batch)
                with self._lock:
                    return self._many(prepared, batch)
            except Retry as retry:
                pause = self.retry_pause(retry, attempt)
                if pause is not None:
                    time.sleep(pause)
                attempt += 1
            except Exception as exc:
                self.raise_failure(exc)

    def retry_pause(self, retry: Retry, attempt: int) -> float | None:
        """After failed attempt number ``attempt``: raise what the caller is to see, or
        return the pause before the next attempt (None: try again at once).

        Shared by the sync loop above and the native async one, which sleeps on the loop.
        """
        if attempt >= ATTEMPTS or self.down:
            outage = self.failed(retry.error)
            if outage is None:
                raise retry.error from None
            raise outage from retry.error
        return random.uniform(0.0, 0.002 * attempt) if is_transient(retry.error) else None

    def raise_failure(self, error: Exception) -> NoReturn:
        """Raise ``error``, or the outage it means (see :meth:`failed`) from it."""
        outage = self.failed(error)
        if outage is None:
            raise error
        raise outage from error

    def failed(self, error: BaseException) -> BackendError | None:
        """If ``error`` says the server cannot be reached: open the breaker, and return
        the ``BackendError`` to raise instead (one error type per outage, so the
        warnings about it are rate-limited together)."""
        if not self._networked or not isinstance(error, self._unreachable):
            return None
        if is_transient(getattr(error, "orig", None) or error):
            return None
        self.trip(error)
        return BackendError(f"{self._breaker_name}: {type(error).__name__}: {error}")

    def probe(self) -> None:
        """``SELECT 1`` past the breaker (watched, like every statement)."""
        fairy: Any = self.engine.raw_connection()
        connection = fairy.dbapi_connection
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.enter(connection)
        try:
            cursor = fairy.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
        except Exception as exc:
            fairy.invalidate(exc)
            raise
        finally:
            if watchdog is not None:
                watchdog.leave(connection)
            fairy.close()

    def _once(self, prepared: Prepared, params: Params) -> Any:
        engine = self.engine
        if engine._has_events or engine.echo:
            return self._via_connection(prepared, params)
        return self._via_driver(prepared, params)

    def _many(self, prepared: Prepared, batch: Sequence[Params]) -> None:
        engine = self.engine
        if engine._has_events or engine.echo:
            self._via_connection(prepared, {}, batch)
        else:
            self._via_driver(prepared, {}, batch)

    def _via_connection(
        self, prepared: Prepared, params: Params, batch: Sequence[Params] | None = None
    ) -> Any:
        try:
            with self.engine.connect() as connection:
                dbapi_connection = connection.connection.dbapi_connection
                watchdog = self._watchdog
                if watchdog is not None:
                    watchdog.enter(dbapi_connection)
                try:
                    out: Any
                    if batch is None:
                        result = connection.execute(prepared.statement, dict(params))
                        out = result.fetchall() if prepared.returns_rows else result.rowcount
                    else:
                        execute_batch(connection, prepared, batch, self.loops_batches)
                        out = None
                    if prepared.write:
                        connection.commit()
                    return out
                except sa.exc.DBAPIError as exc:
                    if watchdog is not None and watchdog.was_cut(dbapi_connection):
                        raise _hung(exc) from exc
                    raise
                finally:
                    if watchdog is not None:
                        watchdog.leave(dbapi_connection)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated or is_transient(exc.orig):
                raise Retry(exc) from exc
            raise

    def _via_driver(
        self, prepared: Prepared, params: Params, batch: Sequence[Params] | None = None
    ) -> Any:
        fairy = self.engine.raw_connection()
        connection: Any = fairy.dbapi_connection
        cursor: Any = None
        toggled = invalidated = False
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.enter(connection)
        try:
            if (
                self._toggle_autocommit
                and not connection.autocommit
                and connection.info.transaction_status == 0  # idle: no transaction open
            ):
                connection.autocommit = toggled = True
            cursor = fairy.cursor()
            if batch is None:
                cursor.execute(
                    prepared.sql, prepared.driver_params(params), **self._execute_options
                )
                out = cursor.fetchall() if prepared.returns_rows else cursor.rowcount
            else:
                out = None
                rows = [prepared.driver_params(each) for each in batch]
                if self.loops_batches:
                    for row in rows:
                        cursor.execute(prepared.sql, row)
                else:
                    cursor.executemany(prepared.sql, rows)
            cursor.close()
            if prepared.write and _needs_commit(connection):
                connection.commit()
            return out
        except self._dbapi_error as exc:
            if watchdog is not None and watchdog.was_cut(connection):
                invalidated = True
                fairy.invalidate(exc)
                raise _hung(exc) from exc  # no retry: the server hangs, it did not restart
            if self._is_disconnect(exc, connection, cursor):  # type: ignore[arg-type]
                invalidated = True
                # Invalidate this connection's whole generation: its siblings are dead too.
                self.engine.pool._invalidate(fairy, exc)
                raise Retry(exc) from exc
            if is_transient(exc):
                raise Retry(exc) from exc
            raise
        finally:
            if watchdog is not None:
                watchdog.leave(connection)
            if not invalidated:
                _restore(fairy, connection, toggled)


def execute_batch(
    connection: sa.Connection, prepared: Prepared, batch: Sequence[Params], loop: bool
) -> None:
    """``prepared`` once per parameter set of ``batch`` on ``connection`` (uncommitted):
    one ``executemany``, or with ``loop`` (MySQL, see :meth:`Runner.run_many`) one
    execute per set."""
    if loop:
        for params in batch:
            connection.execute(prepared.statement, dict(params))
    else:
        connection.execute(prepared.statement, [dict(params) for params in batch])


def _hung(error: BaseException) -> BackendError:
    return BackendError(f"the database stopped answering; statement cut ({error!r})")


def _restore(fairy: Any, connection: Any, toggled: bool) -> None:
    """Give the connection back to the pool as it was lent (or drop it if broken)."""
    if toggled:
        try:
            connection.autocommit = False
        except Exception as exc:
            fairy.invalidate(exc)
            return
    fairy.close()
