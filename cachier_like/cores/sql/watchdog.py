"""A watchdog for SQL statements on a server that stopped answering.

libpq (psycopg) has no client-side read timeout, and a ``statement_timeout`` is enforced
by the server, so a PostgreSQL server that hangs (a frozen host, a network partition, a
stopped process) would block a cache operation until it answers again; PyMySQL blocks
likewise without a ``read_timeout``. A read timeout would also cut legitimate slow
statements, such as a server storing a value of hundreds of megabytes.

So the :class:`Watchdog` of an engine looks at its statements in flight every
:data:`TICK_S`. When one has run for :data:`STALL_S`, it checks that the server answers
at all: a ``SELECT 1`` on a connection of its own, which must answer within
:data:`CHECK_S`. A server that answers is merely busy, and its statements go on. One
that does not is hung: the watchdog cuts the stalled statements' sockets (their callers
get an error at once, and fail open) and reports the hang, which opens the runner's
breaker. A statement on a hung server thus blocks its caller at most about
``STALL_S + TICK_S + CHECK_S`` (1 s).

The thread runs only while the engine is used: it ends after :data:`IDLE_S` without
statements, and the next statement starts it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ... import forks
from ...errors import BackendError

logger = logging.getLogger(__name__)

TICK_S = 0.25
STALL_S = 0.5
CHECK_S = 0.5
IDLE_S = 30.0


def socket_of(connection: Any) -> int | None:
    """The file descriptor of a DBAPI connection's socket, if the driver shows it."""
    try:
        fileno = getattr(connection, "fileno", None)  # psycopg, psycopg2
        if fileno is not None:
            return int(fileno())
        sock = getattr(connection, "_sock", None)  # PyMySQL
        return None if sock is None else int(sock.fileno())
    except Exception:
        return None  # closed meanwhile


def cut(connection: Any) -> bool:
    """Shut the connection's socket down, so a call blocked on it returns an error."""
    fd = socket_of(connection)
    if fd is None or fd < 0:
        return False
    try:
        # A duplicate keeps the socket itself: shutting it down cannot hit a socket that
        # took the same descriptor number after the driver closed this one.
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True


class Watchdog:
    """Watches one engine's statements; ``on_hang`` is told when its server hangs.

    Example:
        >>> import sqlalchemy as sa
        >>> watchdog = Watchdog(sa.create_engine("sqlite://"), on_hang=print)
        >>> watchdog.enter(connection := object()); watchdog.leave(connection)
        >>> watchdog.was_cut(connection)
        False
    """

    def __init__(self, engine: sa.Engine, on_hang: Callable[[BaseException], None]) -> None:
        self._engine = weakref.ref(engine)
        self._on_hang = on_hang
        self._reset()
        forks.reset_in_child(self._after_fork)

    def _reset(self) -> None:
        #: id(connection) -> (when its statement started, the DBAPI connection)
        self._inflight: dict[int, tuple[float, Any]] = {}
        self._cut: dict[int, Any] = {}
        self._cleared: set[tuple[int, float]] = set()  # statements a check found alive
        self._checker: threading.Thread | None = None
        self._check_pool: sa.pool.Pool | None = None
        self._lock = threading.Lock()
        self.running = False

    def enter(self, connection: Any) -> None:
        """A statement starts on ``connection``."""
        self._inflight[id(connection)] = (time.monotonic(), connection)
        if not self.running:
            self._start()

    def leave(self, connection: Any) -> None:
        """The statement on ``connection`` ended (or failed)."""
        self._inflight.pop(id(connection), None)

    def was_cut(self, connection: Any) -> bool:
        """Whether the watchdog cut ``connection`` (its error means a hung server)."""
        return self._cut.pop(id(connection), None) is connection

    def _start(self) -> None:
        with self._lock:
            if self.running:
                return
            self.running = True
        thread = threading.Thread(target=self._run, name="cachier_like-sql-watchdog", daemon=True)
        thread.start()

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            time.sleep(TICK_S)
            now = time.monotonic()
            inflight = self._inflight.copy()
            if inflight:
                idle_since = now
                self._inspect(inflight, now)
            elif now - idle_since > IDLE_S:
                with self._lock:
                    if not self._inflight:
                        self.running = False
                        return

    def _inspect(self, inflight: dict[int, tuple[float, Any]], now: float) -> None:
        stalled = [
            (key, started, connection)
            for key, (started, connection) in inflight.items()
            if now - started >= STALL_S and (key, started) not in self._cleared
        ]
        self._cleared &= {(key, started) for key, (started, _) in inflight.items()}
        if not stalled:
            return
        if self._answers():
            self._cleared |= {(key, started) for key, started, _ in stalled}
            return
        for key, started, connection in stalled:
            if self._inflight.get(key) == (started, connection):
                self._cut[key] = connection
                cut(connection)
        error = BackendError(
            f"the database did not answer for {now - min(s for _, s, _ in stalled):.1f} s, "
            f"nor a check within {CHECK_S:g} s"
        )
        logger.debug("%s", error)
        self._on_hang(error)

    def _answers(self) -> bool:
        """Whether the server answers ``SELECT 1`` on a connection of our own in time."""
        checker = self._checker
        if checker is not None and checker.is_alive():
            return False  # the previous check is still waiting for the server
        engine = self._engine()
        if engine is None:
            return True
        if self._check_pool is None:
            self._check_pool = engine.pool.recreate()
        done = threading.Event()
        holder: list[Any] = []
        self._checker = threading.Thread(
            target=_check, args=(self._check_pool, holder, done), daemon=True
        )
        self._checker.start()
        if done.wait(CHECK_S):
            return bool(holder) and holder[-1] is True
        if holder:
            cut(holder[0])  # unblock the check; the server is hung
        return False

    def _after_fork(self) -> None:
        pool = self._check_pool
        self._reset()
        if pool is not None:
            pool.dispose()  # pools reset by SQLAlchemy leave the parent's sockets alone


def _check(pool: sa.pool.Pool, holder: list[Any], done: threading.Event) -> None:
    fairy: Any = None
    try:
        fairy = pool.connect()
        holder.append(fairy.dbapi_connection)
        cursor = fairy.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        cursor.close()
        holder.append(True)
    except Exception as exc:
        holder.append(exc)
        if fairy is not None:
            fairy.invalidate(exc)
    finally:
        if fairy is not None:
            with contextlib.suppress(Exception):
                fairy.close()  # rolls back the check's transaction, if the driver opened one
        done.set()
