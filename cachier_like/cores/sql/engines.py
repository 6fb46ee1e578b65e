"""Engines for the SQL core: resolved from ``sql_engine``, shared, fork-safe, set up once.

Per process and engine, the table is created (if missing) and its statements compiled
once, however many functions share them; functions given the same URL share one
engine, hence one connection pool. After ``fork()`` the child disposes every engine the
cores use (``dispose(close=False)``: the parent's connections are left alone).

What can be checked without a server is checked as the function is decorated (the
type of ``sql_engine``, a URL's syntax and dialect); ``$CACHIER_LIKE_SQL_URL``, the
driver and the connection options are checked on first use, and a mistake there is a
``ConfigurationError`` (``MissingDriverError`` for a driver) raised to the caller.

An ``AsyncEngine`` (for ``async def`` functions) is kept as it is given, and a URL naming
an async driver (``sqlite+aiosqlite``, ``postgresql+asyncpg``, ...) gives one; its pool
and set-up are keyed by its sync side. Its statements run as :mod:`.async_engines` (sync
operations) and :mod:`.async_native` (an async function's calls) say.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from ... import forks
from ...errors import ConfigurationError, MissingDriverError
from ..shared import StoreSource, StoreSpec
from .async_engines import (
    AsyncRunner,
    check_async_engine,
    create_table_async,
    create_tables,
    is_async_engine,
    own_engine,
    private_engine,
)
from .runner import Runner, is_memory_sqlite
from .statements import Statements

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

#: What the core runs statements through.
AnyEngine: TypeAlias = "sa.Engine | AsyncEngine"

SQL_URL_ENV = "CACHIER_LIKE_SQL_URL"
"""Environment variable with the database URL used when ``sql_engine`` is not given."""

#: Connection options of engines built from URLs, by driver (a URL query parameter of
#: the same name wins): a server that does not answer fails a new connection in 2 s
#: (libpq's least). PyMySQL's read/write timeouts only back the watchdog up: a longer
#: silence than any statement of the core needs.
URL_CONNECT_ARGS: dict[str, dict[str, Any]] = {
    "psycopg": {"connect_timeout": 2},
    "psycopg2": {"connect_timeout": 2},
    "pymysql": {"connect_timeout": 2, "read_timeout": 30, "write_timeout": 30},
    "mysqldb": {"connect_timeout": 2},
    # No watchdog for async drivers: asyncpg's command_timeout bounds a hung statement.
    "asyncpg": {"timeout": 2, "command_timeout": 30},
    "aiomysql": {"connect_timeout": 2},
}
#: The extra that installs each dialect's usual driver, and that driver's URL scheme.
_EXTRAS = {
    "postgresql": ("postgres", "postgresql+psycopg", "psycopg"),
    "mysql": ("mysql", "mysql+pymysql", "pymysql"),
    "mariadb": ("mysql", "mariadb+pymysql", "pymysql"),
}
#: The extra that installs each async driver.
_ASYNC_EXTRAS = {
    "asyncpg": "postgres-async",
    "aiosqlite": "sqlite-async",
    "aiomysql": "mysql-async",
}

_lock = threading.Lock()
_create_lock = threading.Lock()
#: URL (with password) -> the engine the core built for it.
_URL_ENGINES: dict[str, AnyEngine] = {}
#: engine -> the process whose connections its pool holds.
_POOL_OWNERS: weakref.WeakKeyDictionary[sa.Engine, int] = weakref.WeakKeyDictionary()
#: engine -> its runner, and the statements of each table set up on it.
_SETUPS: weakref.WeakKeyDictionary[sa.Engine, tuple[Runner, dict[str, Statements]]] = (
    weakref.WeakKeyDictionary()
)


def engine_from_url(url: sa.URL) -> AnyEngine:
    """A new engine for ``url`` as the core builds it: autocommit, one statement per operation.

    In autocommit mode a hit is a single round trip (no BEGIN, no ROLLBACK on return to
    the pool). An in-memory SQLite database lives in one connection, shared by every
    thread of this process. Connections get :data:`URL_CONNECT_ARGS`. A URL naming an
    async driver gives an ``AsyncEngine``.
    """
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}
    if is_memory_sqlite(url):
        options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        defaults = URL_CONNECT_ARGS.get(url.get_dialect().driver, {})
        connect_args = {k: v for k, v in defaults.items() if k not in url.query}
        if connect_args:
            options["connect_args"] = connect_args
    create: Any = sa.create_engine
    if url.get_dialect().is_async:
        from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415 (optional)

        create = create_async_engine
    try:
        try:
            engine = create(url, skip_autocommit_rollback=True, **options)
        except TypeError:  # SQLAlchemy before 2.0.43
            engine = create(url, **options)
        return own_engine(check_async_engine(engine)) if is_async_engine(engine) else engine
    except ImportError as exc:
        raise MissingDriverError(missing_driver_advice(url, exc)) from exc
    except (sa.exc.ArgumentError, TypeError, ValueError) as exc:
        shown = url.render_as_string(hide_password=True)
        raise ConfigurationError(f"sql_engine URL {shown!r} is not usable: {exc}") from exc


def missing_driver_advice(url: sa.URL, error: ImportError) -> str:
    """What to install for ``url``'s driver, which failed to import with ``error``.

    Example:
        >>> url = sa.make_url("postgresql+psycopg://db/cache")
        >>> print(missing_driver_advice(url, ModuleNotFoundError(name="psycopg")))
        the postgresql+psycopg URL needs the psycopg driver: pip install 'cachier_like[postgres]'
    """
    module = error.name or url.get_dialect().driver
    scheme = url.drivername
    async_extra = _ASYNC_EXTRAS.get(url.get_dialect().driver)
    if async_extra is not None:
        return f"the {scheme} URL needs {module}: pip install 'cachier_like[{async_extra}]'"
    extra = _EXTRAS.get(url.get_backend_name())
    if extra is None:
        return f"the {scheme} URL needs the driver module {module!r}, which is not installed"
    name, usual, driver = extra
    advice = f"the {scheme} URL needs the {module} driver: "
    if url.get_dialect().driver == driver:
        return advice + f"pip install 'cachier_like[{name}]'"
    return advice + (
        f"install the package that provides {module!r}, or use {usual}:// and "
        f"pip install 'cachier_like[{name}]'"
    )


def shared_engine(url: sa.URL) -> AnyEngine:
    """The one engine this process's cores use for ``url`` (from threads, for an async one)."""
    text = url.render_as_string(hide_password=False)
    with _lock:
        engine = _URL_ENGINES.get(text)
        if engine is None:
            engine = _URL_ENGINES[text] = engine_from_url(url)
            _POOL_OWNERS[sync_side(engine)] = os.getpid()
        return engine


def sync_side(engine: AnyEngine) -> sa.Engine:
    """The sync ``Engine`` holding ``engine``'s pool (itself, for a sync engine)."""
    return engine if isinstance(engine, sa.Engine) else engine.sync_engine


def _checked_engine(engine: object) -> AnyEngine:
    if is_async_engine(engine):
        return check_async_engine(engine)
    if not isinstance(engine, sa.Engine):
        raise ConfigurationError(f"sql_engine must give a SQLAlchemy Engine, not {engine!r}")
    if is_memory_sqlite(engine.url) and isinstance(engine.pool, SingletonThreadPool):
        raise ConfigurationError(
            "an in-memory SQLite engine with the default pool gives each thread its own "
            "database; pass the URL 'sqlite://' instead, or build the engine with "
            "poolclass=StaticPool and connect_args={'check_same_thread': False}"
        )
    return engine


def parse_url(spec: str | sa.URL, where: str = "sql_engine") -> sa.URL:
    """``spec`` as a URL whose dialect SQLAlchemy knows (its driver is checked later)."""
    try:
        url = sa.make_url(spec)
        url.get_dialect()  # imports the dialect's module, not the driver
    except sa.exc.NoSuchModuleError as exc:
        raise ConfigurationError(
            f"{where}: SQLAlchemy knows no database or driver {sa.make_url(spec).drivername!r} "
            "(e.g. sqlite:///path, postgresql+psycopg://..., mysql+pymysql://...)"
        ) from exc
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"{where} is not a database URL: {exc}") from None
    return url


_SPEC: StoreSpec[AnyEngine] = StoreSpec(
    backend="sql",
    option="sql_engine",
    env=SQL_URL_ENV,
    kinds="an Engine (or AsyncEngine), a callable returning one, or a database URL",
    example="postgresql+psycopg://host/db",
    is_object=lambda value: isinstance(value, sa.Engine) or is_async_engine(value),
    parse=parse_url,
    connect=shared_engine,
    check=_checked_engine,
    url_types=(str, sa.URL),
)


def engine_source(spec: object) -> StoreSource[AnyEngine]:
    """Validate ``sql_engine`` now (an engine, a callable, a URL, or None for the
    URL in ``$CACHIER_LIKE_SQL_URL``); the engine itself comes on first use."""
    return StoreSource(spec, _SPEC)


def adopt(engine: AnyEngine, inherited: bool) -> AnyEngine:
    """The engine to run statements through, its pool holding no other process's connection.

    The engines known at a fork are disposed in the child (below); one first met in a
    child (``inherited``: from the callable of a core built before the fork) is
    disposed here, before its first use. An AsyncEngine gives the core's own copy
    (see :func:`~.async_engines.private_engine`).
    """
    if is_async_engine(engine):
        engine = private_engine(engine)
    adopt_pool(sync_side(engine), inherited)
    return engine


def adopt_pool(pool_engine: sa.Engine, inherited: bool) -> None:
    """Dispose ``pool_engine``'s pool if another process's connections may be in it."""
    pid = os.getpid()
    with _lock:
        owner = _POOL_OWNERS.get(pool_engine)
        if owner != pid and (owner is not None or inherited):
            pool_engine.dispose(close=False)
        _POOL_OWNERS[pool_engine] = pid


def _create_table(engine: sa.Engine, table: sa.Table) -> None:
    try:
        connection = engine.connect()
    except (TypeError, ValueError, sa.exc.ProgrammingError) as exc:
        # An option the driver refuses (psycopg: a ProgrammingError; PyMySQL: TypeError).
        shown = engine.url.render_as_string(hide_password=True)
        raise ConfigurationError(f"the driver refused the options of {shown!r}: {exc}") from exc
    try:
        create_tables(connection, table)
    finally:
        connection.close()


def _runner(engine: AnyEngine) -> Runner:
    return Runner(engine) if isinstance(engine, sa.Engine) else AsyncRunner(engine)


def runner_for(engine: AnyEngine) -> Runner:
    """The one runner (and breaker) of ``engine``, connecting nothing."""
    return _setups(engine)[0]


def _setups(engine: AnyEngine) -> tuple[Runner, dict[str, Statements]]:
    pool_engine = sync_side(engine)
    with _lock:
        setups = _SETUPS.get(pool_engine) or (_runner(engine), {})
        _SETUPS[pool_engine] = setups
        return setups


def set_up(engine: AnyEngine, table: sa.Table) -> tuple[Runner, Statements]:
    """The runner for ``engine`` and the statements for ``table``, creating it if missing."""
    pool_engine = sync_side(engine)
    runner, tables = _setups(engine)
    with _lock:
        statements = tables.get(table.fullname)
    if statements is None:
        if runner.down:
            raise runner.refusal()
        try:
            # Connects first, so the dialect knows the server. One creation at a time in
            # this process: an in-memory database's threads share its one connection.
            with _create_lock:
                if isinstance(engine, sa.Engine):
                    _create_table(engine, table)
                else:
                    create_table_async(engine, table)
        except Exception as exc:
            outage = runner.failed(exc)
            if outage is None:
                raise
            raise outage from exc
        statements = Statements(table, pool_engine.dialect)
        with _lock:
            tables[table.fullname] = statements
    return runner, statements


def _after_fork_in_child() -> None:
    global _lock, _create_lock
    _lock = threading.Lock()
    _create_lock = threading.Lock()
    pid = os.getpid()
    for engine in list(_POOL_OWNERS):
        engine.dispose(close=False)  # the parent keeps using its connections
        _POOL_OWNERS[engine] = pid
    for runner, tables in list(_SETUPS.values()):
        runner.after_fork()
        if runner.memory:
            tables.clear()  # the child's in-memory database starts empty


forks.reset_in_child(_after_fork_in_child)
