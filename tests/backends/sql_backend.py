"""The SQL cores of the behaviour suite and the contract: SQLite, PostgreSQL, MariaDB.

SQLite is a file in the test's own directory, reached by URL (the core builds its own
autocommit engine). PostgreSQL and MariaDB are the local servers, reached through one
plain ``create_engine(url)`` per server and test session (as an application would
pass it), with URLs overridable by environment variables. Every test gets its own
table, dropped afterwards, so parallel runs (``-n auto``) never share rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from cachier_like.cores.base import Core
from cachier_like.cores.shared import storage_name
from cachier_like.cores.sql.schema import namespace_text, tags_table_name
from cachier_like.testing import CoreContract, MakeCore
from tests.backends.services import require_service
from tests.backends.types import CoreOptions

POSTGRES_URL_ENV = "CACHIER_LIKE_TEST_POSTGRES_URL"
MYSQL_URL_ENV = "CACHIER_LIKE_TEST_MYSQL_URL"
DEFAULT_URLS = {
    "postgres": (POSTGRES_URL_ENV, "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": (MYSQL_URL_ENV, "mysql+pymysql://root@127.0.0.1:3306/test"),
}
#: Bounded connection attempts, so an unreachable host skips (or fails) quickly.
_CONNECT_ARGS = {"postgres": {"connect_timeout": 5}, "mariadb": {"connect_timeout": 5}}

#: The contract's ``damage(core, key)`` fixture.
Damage = Callable[[Core, Hashable], None]
Tamper = Callable[[Core, Hashable, bytes], None]

PARAMS = [
    pytest.param("sql_sqlite", marks=pytest.mark.sql, id="sql_sqlite"),
    pytest.param("sql_postgres", marks=pytest.mark.sql, id="sql_postgres"),
    pytest.param("sql_mariadb", marks=pytest.mark.sql, id="sql_mariadb"),
]
#: The ids of PARAMS whose store forked processes share: every database.
CROSS_PROCESS = frozenset({"sql_sqlite", "sql_postgres", "sql_mariadb"})


def server_url(server: str) -> str:
    """The URL of ``server`` ("postgres" or "mariadb"): its variable, else the default."""
    variable, default = DEFAULT_URLS[server]
    return os.environ.get(variable) or default


def unique_table() -> str:
    """A table name no other test (or xdist worker) uses."""
    return f"clt_{uuid.uuid4().hex[:24]}"


def drop_table(engine: sa.Engine, table: str) -> None:
    """Drop one test's table and its tags table (they may never have been created)."""
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        connection.execute(sa.text(f"DROP TABLE IF EXISTS {tags_table_name(table)}"))


def connect_server(server: str) -> sa.Engine:
    """A plain engine for ``server``; skip the test (fail under CI) when it is down."""
    url = server_url(server)
    engine = sa.create_engine(url, connect_args=_CONNECT_ARGS[server])

    def probe() -> None:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    variable = DEFAULT_URLS[server][0]
    how = f"start it (scripts/test-local.sh) or point ${variable} at a server"
    require_service(f"{server} at {sa.make_url(url)!r}", probe, how)
    return engine


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[sa.Engine]:
    """One engine on the PostgreSQL test server for this session (and xdist worker)."""
    engine = connect_server("postgres")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def mariadb_engine() -> Iterator[sa.Engine]:
    """One engine on the MariaDB/MySQL test server for this session (and xdist worker)."""
    engine = connect_server("mariadb")
    yield engine
    engine.dispose()


def _options_on(engine: sa.Engine | str) -> tuple[CoreOptions, str]:
    table = unique_table()

    def options(**extra: Any) -> dict[str, Any]:
        return {"backend": "sql", "sql_engine": engine, "table_name": table, **extra}

    return options, table


@pytest.fixture
def sql_sqlite_core_options(tmp_path: Path) -> CoreOptions:
    """``@cached`` options for the SQL core on a SQLite file of this test's own."""
    options, _ = _options_on(f"sqlite:///{tmp_path / 'cache.sqlite'}")
    return options


@pytest.fixture
def sql_postgres_core_options(postgres_engine: sa.Engine) -> Iterator[CoreOptions]:
    """``@cached`` options for the SQL core on PostgreSQL, in a table of this test's own."""
    options, table = _options_on(postgres_engine)
    yield options
    drop_table(postgres_engine, table)


@pytest.fixture
def sql_mariadb_core_options(mariadb_engine: sa.Engine) -> Iterator[CoreOptions]:
    """``@cached`` options for the SQL core on MariaDB, in a table of this test's own."""
    options, table = _options_on(mariadb_engine)
    yield options
    drop_table(mariadb_engine, table)


def _make_sql_core(engine: sa.Engine | str, table: str) -> MakeCore:
    from cachier_like.cores.sql import SQLCore

    def make(namespace: str, **options: Any) -> Core:
        return SQLCore(namespace, sql_engine=engine, table_name=table, **options)

    return make


class _SQLContract(CoreContract):
    """The contract on the SQL core, in a table of the test's own (``sql_store``)."""

    pytestmark = pytest.mark.sql
    race_rounds = 4  # a round trip a claim: a few rounds of 16 threads suffice

    @pytest.fixture
    def sql_store(self) -> tuple[sa.Engine | str, str]:
        """Override: the engine (or URL) and table of the test's store."""
        raise NotImplementedError

    @pytest.fixture
    def make_core(self, sql_store: tuple[sa.Engine | str, str]) -> MakeCore:
        return _make_sql_core(*sql_store)

    @pytest.fixture
    def store_options(self, sql_store: tuple[sa.Engine | str, str]) -> dict[str, Any]:
        engine, table = sql_store
        return {"sql_engine": engine, "table_name": table}

    @pytest.fixture
    def damage(self, sql_store: tuple[sa.Engine | str, str]) -> Iterator[Damage]:
        engine, table = sql_store
        # SQLite is reached by URL: the test opens a connection of its own.
        own = sa.create_engine(engine) if isinstance(engine, str) else engine
        update = sa.text(f"UPDATE {table} SET value = :v WHERE namespace = :ns AND cache_key = :k")

        def garble(core: Core, key: Hashable) -> None:
            garbage = b"\x80\x05garbage"  # a pickle's opening, then nothing of one
            params = {"v": garbage, "ns": namespace_text(core.namespace), "k": storage_name(key)}
            with own.begin() as connection:
                assert connection.execute(update, params).rowcount == 1

        yield garble
        if own is not engine:
            own.dispose()

    @pytest.fixture
    def tamper(self, sql_store: tuple[sa.Engine | str, str]) -> Iterator[Tamper]:
        engine, table = sql_store
        own = sa.create_engine(engine) if isinstance(engine, str) else engine
        update = sa.text(f"UPDATE {table} SET value = :v WHERE namespace = :ns AND cache_key = :k")

        def replace(core: Core, key: Hashable, payload: bytes) -> None:
            params = {"v": payload, "ns": namespace_text(core.namespace), "k": storage_name(key)}
            with own.begin() as connection:
                assert connection.execute(update, params).rowcount == 1

        yield replace
        if own is not engine:
            own.dispose()


class SQLiteContract(_SQLContract):
    """The contract on the SQL core on a SQLite file of the test's own (reached by URL)."""

    @pytest.fixture
    def sql_store(self, tmp_path: Path) -> tuple[sa.Engine | str, str]:
        return f"sqlite:///{tmp_path / 'contract.sqlite'}", unique_table()


class _ServerContract(_SQLContract):
    """The contract on the SQL core on a server, in a table of the test's own."""

    engine_fixture: ClassVar[str]

    @pytest.fixture
    def sql_store(self, request: pytest.FixtureRequest) -> Iterator[tuple[sa.Engine | str, str]]:
        engine: sa.Engine = request.getfixturevalue(self.engine_fixture)
        table = unique_table()
        yield engine, table
        drop_table(engine, table)


class PostgresContract(_ServerContract):
    """The contract on the SQL core on PostgreSQL, whose waiters are woken by NOTIFY."""

    engine_fixture = "postgres_engine"
    notifications = True


class MariaDBContract(_ServerContract):
    """The contract on the SQL core on MariaDB."""

    engine_fixture = "mariadb_engine"


CONTRACTS = [SQLiteContract, PostgresContract, MariaDBContract]
