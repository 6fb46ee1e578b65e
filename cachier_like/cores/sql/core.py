"""SQL core: entries and calculation claims in one table, through SQLAlchemy Core.

Works with SQLite, PostgreSQL (psycopg) and MySQL/MariaDB (PyMySQL), and through an
``AsyncEngine`` (:mod:`.native_ops`: an async function's calls stay on its event loop).
One row per (namespace, key) holds the pickled value, its calculation time and the claim
columns; see ``docs/cores/sql.md`` for the schema, the guarantees and the limits.

Nothing connects until the first cache operation, so decorating needs no server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections.abc import Hashable, Iterator
from typing import Any, NamedTuple

import sqlalchemy as sa

from ... import forks
from ...entry import Entry
from ...errors import AsyncOnlyError
from ...serialize import DEFAULT_SERIALIZER, Serializer
from ..base import Backoff, CoreStats, EntryInfo
from ..clocks import StoreClock
from ..shared import storage_name
from . import notify
from .async_engines import is_async_engine, namespaces_async
from .async_native import Native, native_capable
from .engines import SQL_URL_ENV, AnyEngine, adopt, engine_source, set_up, sync_side
from .native_invalidation import NativeInvalidationOps
from .notify import Listener, Watch, channel_name, listener_for
from .runner import Runner
from .schema import DEFAULT_TABLE, make_table, namespace_text
from .statements import Statements

__all__ = ["SQL_URL_ENV", "SQLCore"]

logger = logging.getLogger(__name__)

_WAIT_MIN_S = 0.002
_WAIT_MAX_S = 0.1


class _Ready(NamedTuple):
    runner: Runner
    statements: Statements


class SQLCore(NativeInvalidationOps):
    """Entries as rows of one table; claims as (token, expiry) columns on the same row.

    Example:
        >>> core = SQLCore("demo.f", sql_engine="sqlite://")
        >>> core.set("k", Entry([1, 2], 0.0))
        True
        >>> core.get("k").value
        [1, 2]
    """

    leases = True

    def __init__(
        self,
        namespace: str,
        *,
        sql_engine: object = None,
        table_name: str = DEFAULT_TABLE,
        serializer: Serializer = DEFAULT_SERIALIZER,
    ) -> None:
        super().__init__(namespace, serializer=serializer)
        self.table = make_table(table_name)
        self._where = f"in table {self.table.name}"  # where damaged entries are reported
        self._source = engine_source(sql_engine)
        self._pid = os.getpid()
        given = self._source.obj
        self._by_env = sql_engine is None
        self._engine = None if given is None else adopt(given, inherited=False)
        self._user_engine = given if is_async_engine(given) else None
        user = self._user_engine
        self.native_async = user is not None and native_capable(user.url)
        self._native: Native | None = None
        self._native_task: asyncio.Task[Native] | None = None
        #: Whether the decorated function is a sync one (None: no function told us).
        self._sync_caller = None
        self._ns = namespace_text(namespace)
        #: The PostgreSQL NOTIFY channel of this namespace's waiters (see :mod:`.notify`).
        self._channel = channel_name(self.table, self._ns)
        #: The database's clock against this process's: entries are stamped in its time.
        self.clock = StoreClock()
        self._ready: _Ready | None = None
        self._setup_lock = threading.Lock()
        self._engine_lock = threading.Lock()
        # key text -> token of a claim this process holds, or None once a store by the
        # holder has ended it (the release then has nothing left to do).
        self._held: dict[str, str | None] = {}
        forks.reset_in_child(self._after_fork)

    # -- connection and schema, on first use ------------------------------------------

    def _setup(self) -> _Ready:
        engine = self._engine or self._resolve()
        with self._setup_lock:
            if self._ready is None:
                self._ready = _Ready(*set_up(engine, self.table))
            return self._ready

    def _resolve(self) -> AnyEngine:
        """The engine the sync operations use, resolved once (connecting nothing)."""
        with self._engine_lock:
            if self._engine is None:
                inherited = self._pid != os.getpid()
                engine = self._source.resolve()
                if self._sync_caller and is_async_engine(engine):
                    raise AsyncOnlyError(self._sync_caller_advice(self._source.by_url))
                if is_async_engine(engine) and not self._source.by_url:
                    self._user_engine = engine  # a callable's: awaited on the caller's loop
                self._engine = adopt(engine, inherited)
                self.native_async = is_async_engine(engine) and native_capable(engine.url)
            return self._engine

    def _after_fork(self) -> None:
        """In a forked child (its engines already disposed): no claims, free locks."""
        self._held.clear()
        self._setup_lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self._native = self._native_task = None
        if self._ready is not None and self._ready.runner.memory:
            self._ready = None  # the child's in-memory database starts empty

    # -- entries -------------------------------------------------------------------

    def _entry(
        self, name: str, value: bytes | None, timestamp: float | None, offset: float
    ) -> Entry | None:
        if value is None:
            return None  # a row that only holds a claim
        stamp = float(timestamp or 0.0)  # in the database's time
        return self.decode_entry(value, self._where, name, stamp, stamp - offset)

    def _database_time(self) -> float:
        runner, statements = self._ready or self._setup()
        return float(runner.run(statements.now, {})[0][0])

    def _offset(self) -> float:
        """The database's time minus this process's (see :mod:`..clocks`)."""
        return self.clock.offset_from(self._database_time)

    def get(self, key: Hashable) -> Entry | None:
        """One indexed SELECT by primary key."""
        runner, statements = self._ready or self._setup()
        name = storage_name(key)
        offset = self._offset()  # measured with the first read, not within a miss
        rows = runner.run(statements.get, {"ns": self._ns, "k": name})
        return self._entry(name, rows[0][0], rows[0][1], offset) if rows else None

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Upsert the entry; a store by this process's claim holder also ends the claim."""
        k, stamp = storage_name(key), entry.timestamp + self._offset()
        payload = self.encode_entry(entry, k, stamp)
        if payload is None:
            return False
        runner, statements = self._ready or self._setup()
        token = self._held.get(k)
        params = {"ns": self._ns, "k": k, "v": payload, "ts": stamp, "tok": token}
        params["chan"] = self._channel
        runner.run(statements.set, params)
        if token is not None and self._held.get(k) == token:
            self._held[k] = None
        return True

    def clear(self) -> int:
        """Remove this namespace's entries; claims in progress stay."""
        runner, statements = self._ready or self._setup()
        params = {"ns": self._ns}
        removed: int = runner.run(statements.clear_free, params)
        return removed + int(runner.run(statements.clear_claimed, params))

    # -- claims --------------------------------------------------------------------

    def claim(self, key: Hashable, lease_s: float) -> bool:
        """Insert the row with a claim, or claim an existing row with no live claim."""
        runner, statements = self._ready or self._setup()
        k = storage_name(key)
        token = secrets.token_hex(16)
        params = {"ns": self._ns, "k": k, "tok": token, "lease": float(lease_s)}
        if statements.takeover is None:  # PostgreSQL, SQLite: one upsert ... RETURNING
            won = bool(runner.run(statements.claim, params))
        else:  # MySQL: INSERT IGNORE, then a conditional UPDATE if the row existed
            won = (
                runner.run(statements.claim, params) == 1
                or runner.run(statements.takeover, params) == 1
            )
        if won:
            self._held[k] = token
        return won

    def renew(self, key: Hashable, lease_s: float) -> bool:
        """Extend this process's claim; False if it was lost (expired and taken)."""
        k = storage_name(key)
        if k not in self._held:
            return False
        token = self._held.get(k)
        if token is None:
            return True  # ended by our own store; the release is on its way
        runner, statements = self._ready or self._setup()
        params = {"ns": self._ns, "k": k, "tok": token, "lease": float(lease_s)}
        return bool(runner.run(statements.renew, params) == 1)

    def release(self, key: Hashable) -> None:
        """End this process's claim: drop a row holding no value, else clear the claim."""
        token = self._held.pop(storage_name(key), None)
        if token is None:
            return
        runner, statements = self._ready or self._setup()
        params = {"ns": self._ns, "k": storage_name(key), "tok": token, "chan": self._channel}
        if runner.run(statements.release_empty, params) == 0:
            runner.run(statements.release, params)

    def is_claimed(self, key: Hashable) -> bool:
        """Whether any caller holds a live claim on ``key``."""
        runner, statements = self._ready or self._setup()
        return bool(runner.run(statements.is_claimed, {"ns": self._ns, "k": storage_name(key)}))

    def _watch(self, key: str) -> Watch:
        """One SELECT: whether ``key`` is claimed, its entry, and the lease's seconds left."""
        runner, statements = self._ready or self._setup()
        rows = runner.run(statements.poll, {"ns": self._ns, "k": key})
        if not rows:
            return False, None, None
        value, timestamp, live, left = rows[0]
        entry = self._entry(key, value, timestamp, self._offset())
        return bool(live), entry, None if left is None else float(left)

    def _poll(self, key: str) -> tuple[bool, Entry | None]:
        """One SELECT: whether ``key`` is claimed, and its entry."""
        claimed, entry, _ = self._watch(key)
        return claimed, entry

    def _listener(self) -> Listener | None:
        """This database's LISTEN connection (PostgreSQL with psycopg), else None."""
        self._ready or self._setup()
        assert self._engine is not None
        return listener_for(sync_side(self._engine))

    async def _alistener(self) -> Listener | None:
        """:meth:`_listener` without blocking the loop: a native core's engine is known
        without connecting (the listener's thread connects); another is set up in a thread."""
        if self.native_async:
            engine = self._engine
            return None if engine is None else listener_for(sync_side(engine))
        if self._ready is None:
            await asyncio.to_thread(self._setup)  # it connects: not on the loop
        return self._listener()

    def wait(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Until the claim ends: woken by NOTIFY on PostgreSQL (see :mod:`.notify`), else
        polling the row with back-off (2 ms doubling to 100 ms)."""
        k = storage_name(key)
        listener = self._listener()
        if listener is not None:
            return notify.wait(listener, self._channel, k, self._watch, timeout_s)
        backoff = Backoff(timeout_s, _WAIT_MIN_S, _WAIT_MAX_S)
        while True:
            claimed, entry = self._poll(k)
            delay = None if not claimed else backoff.next_delay()
            if delay is None:
                return entry
            time.sleep(delay)

    async def wait_async(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """:meth:`wait` for event loops: on PostgreSQL woken by NOTIFY, reads on the
        listener's thread; else each poll on the loop (natively) or in a thread."""
        k = storage_name(key)
        listener = await self._alistener()
        if listener is not None:
            return await notify.wait_async(listener, self._channel, k, self._watch, timeout_s)
        backoff = Backoff(timeout_s, _WAIT_MIN_S, _WAIT_MAX_S)
        while True:
            claimed, entry = await self._apoll(k)
            delay = None if not claimed else backoff.next_delay()
            if delay is None:
                return entry
            await asyncio.sleep(delay)

    def clear_claims(self) -> int:
        """Drop every live claim of this namespace; return how many there were."""
        runner, statements = self._ready or self._setup()
        params = {"ns": self._ns, "chan": self._channel}
        cleared: int = runner.run(statements.clear_claims, params)
        runner.run(statements.drop_claim_rows, params)
        return cleared

    # -- maintenance ---------------------------------------------------------------

    def purge_stale(self, older_than_s: float, now: float) -> int:
        """One DELETE: entries older than ``older_than_s`` and lapsed claim-only rows.

        Rows under a live claim stay (their calculation replaces them anyway).
        """
        runner, statements = self._ready or self._setup()
        cutoff = now + self._offset() - older_than_s  # the rows hold the database's time
        return int(runner.run(statements.purge, {"ns": self._ns, "cutoff": cutoff}))

    def entries(self) -> Iterator[EntryInfo]:
        """Every entry of this namespace: key, calculation time and payload bytes."""
        runner, statements = self._ready or self._setup()
        offset = self._offset()
        for key, timestamp, size in runner.run(statements.entries, {"ns": self._ns}):
            yield EntryInfo(key=key, timestamp=float(timestamp) - offset, size=int(size))

    @classmethod
    def namespaces(cls, **options: Any) -> list[str]:
        """The namespaces with rows in the table ``options`` name (never creating it).

        A namespace longer than the column is listed as stored: a prefix and a digest.
        """
        table = make_table(options.get("table_name") or DEFAULT_TABLE)
        engine = adopt(engine_source(options.get("sql_engine")).resolve(), inherited=False)
        if not isinstance(engine, sa.Engine):
            return namespaces_async(engine, table)
        if not sa.inspect(engine).has_table(table.name, schema=table.schema):
            return []
        query = sa.select(table.c.namespace).distinct().order_by(table.c.namespace)
        with engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def stats(self) -> CoreStats:
        """Count this namespace's entries, their bytes and times, and live claims."""
        runner, statements = self._ready or self._setup()
        entries, size, oldest, newest, claims = runner.run(statements.stats, {"ns": self._ns})[0]
        offset = self._offset()
        return CoreStats(
            entries=int(entries),
            total_bytes=int(size or 0),
            oldest=None if oldest is None else float(oldest) - offset,
            newest=None if newest is None else float(newest) - offset,
            claims=int(claims or 0),
        )
