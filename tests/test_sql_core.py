"""The SQL core on real databases: SQLite, PostgreSQL and MariaDB.

Every test runs on each database (the servers' tests skip locally when a server is
down, and fail under ``CI``). Racing processes and a killed calculator are tested on
every cross-process core by ``tests/test_behaviour_processes.py``; here, what only
this core has. Processes are forked (``multiprocessing`` "fork"), so a decorated
function can be a closure defined in the test. Nothing sleeps for a fixed time:
processes and threads meet at barriers; the rest polls with a deadline.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from cachier_like import BackendError, ConfigurationError, Entry, cached, cli
from cachier_like.cores.shared import storage_name as key_text
from cachier_like.cores.sql import SQL_URL_ENV, SQLCore
from cachier_like.cores.sql.schema import namespace_text, split_table_name
from tests.backends.sql_backend import drop_table, server_url, unique_table
from tests.support import DEADLINE_S, library_warnings, run_forked, wait_until

pytestmark = pytest.mark.sql

WORKERS = 8


# -- databases ------------------------------------------------------------------------


@dataclass
class Database:
    """One database under test: a plain engine on it and a table of this test's own."""

    name: str
    url: str
    engine: sa.Engine
    table: str

    def options(self, **extra: Any) -> dict[str, Any]:
        """``@cached`` keyword arguments for this database and table."""
        return {"backend": "sql", "sql_engine": self.engine, "table_name": self.table, **extra}

    def execute(self, sql: str, **params: Any) -> list[Any]:
        """Run SQL on the test's table (``{table}`` in ``sql``); rows, if any."""
        with self.engine.begin() as connection:
            result = connection.execute(sa.text(sql.format(table=self.table)), params)
            return list(result.fetchall()) if result.returns_rows else []

    def namespaces(self) -> Counter[str]:
        """How many rows each namespace has in the table."""
        return Counter(row[0] for row in self.execute("SELECT namespace FROM {table}"))

    def fresh_engine(self) -> sa.Engine:
        """A new engine of the test's own (for listeners or pool settings)."""
        return sa.create_engine(self.url)


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each database in turn, with a plain ``create_engine(url)`` as applications have."""
    name: str = request.param
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'cache.sqlite'}"
        engine = sa.create_engine(url)
    else:
        engine = request.getfixturevalue(f"{name}_engine")
        url = server_url(name)
    database = Database(name, url, engine, unique_table())
    yield database
    drop_table(engine, database.table)
    if name == "sqlite":
        engine.dispose()


# -- helpers --------------------------------------------------------------------------


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Record the SQL statements ``engine`` sends while the block runs."""
    sent: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def closed_port() -> int:
    """A local TCP port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- many processes, one table --------------------------------------------------------


def test_the_table_is_created_once_when_many_processes_start_together(db: Database) -> None:
    # A callable: each worker gets the (inherited) engine on its first call, and must
    # not use the parent's pooled connections.
    @cached(**db.options(sql_engine=lambda: db.engine))
    def double(x: int) -> int:
        return 2 * x

    # Nothing has connected yet: every worker creates the table at the same moment.
    assert not sa.inspect(db.engine).has_table(db.table)

    results = run_forked(WORKERS, double, start_together=True, forbid_warnings=True)
    assert results == [2 * i for i in range(WORKERS)]
    tables = [t for t in sa.inspect(db.engine).get_table_names() if t == db.table]
    assert tables == [db.table]
    assert double.core.stats().entries == WORKERS


# -- races between threads -------------------------------------------------------------


def test_concurrent_stores_and_claims_on_one_key_never_raise(db: Database) -> None:
    threads, rounds = 12, 15
    core = SQLCore("race.f", sql_engine=db.engine, table_name=db.table)
    errors: list[BaseException] = []
    won = Counter[int]()
    barrier = threading.Barrier(threads)

    def hammer(index: int) -> None:
        try:
            barrier.wait(DEADLINE_S)
            for n in range(rounds):
                if core.claim("k", 30.0):
                    won[index] += 1
                    core.set("k", Entry((index, n), time.time()))
                    core.release("k")
                else:
                    core.set("k", Entry((index, -n), time.time()))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    with library_warnings() as warned:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(DEADLINE_S)
    assert errors == []
    assert warned == []
    assert sum(won.values()) >= 1
    entry = core.get("k")
    assert entry is not None
    assert entry.value[0] in range(threads)
    assert not core.is_claimed("k")
    assert db.namespaces() == Counter({"race.f": 1})


def test_exactly_one_of_many_racing_threads_claims(db: Database) -> None:
    threads = 16
    core = SQLCore("claim.f", sql_engine=db.engine, table_name=db.table)
    core.set("stale", Entry("old", 0.0))  # an existing row, claimed by update
    for key in ("new", "stale"):
        barrier = threading.Barrier(threads)
        outcomes: list[bool] = []

        def contend(
            key: str = key, barrier: threading.Barrier = barrier, outcomes: list[bool] = outcomes
        ) -> None:
            barrier.wait(DEADLINE_S)
            outcomes.append(core.claim(key, 30.0))

        workers = [threading.Thread(target=contend) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(DEADLINE_S)
        assert sorted(outcomes) == [False] * (threads - 1) + [True], key
        assert core.is_claimed(key)
        core.release(key)
        assert not core.is_claimed(key)
    assert core.get("new") is None  # the released claim left no row behind
    assert db.namespaces() == Counter({"claim.f": 1})


# -- the database goes away ------------------------------------------------------------


def unreachable_url(name: str, tmp_path: Path) -> str:
    """A URL of ``name``'s kind that cannot be connected to."""
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'cache.sqlite'}"
    scheme, user = (
        ("postgresql+psycopg", "postgres") if name == "postgres" else ("mysql+pymysql", "root")
    )
    return f"{scheme}://{user}@127.0.0.1:{closed_port()}/test"


@pytest.mark.parametrize("name", ["sqlite", "postgres", "mariadb"])
def test_an_unreachable_database_fails_open_with_a_warning(
    name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    made: list[sa.Engine] = []
    url = unreachable_url(name, tmp_path)

    def engine() -> sa.Engine:
        made.append(sa.create_engine(url))
        return made[-1]

    @cached(backend="sql", sql_engine=engine)
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert made == [], "decorating must not build the engine or connect"
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert f(21) == 42
        assert f(21) == 42
    assert calls == [21, 21]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings, "no warning for an unreachable database"
    assert "goes on without the cache" in warnings[0]

    @cached(backend="sql", sql_engine=url, raise_on_error=True)
    def g(x: int) -> int:
        return x

    with pytest.raises(BackendError):
        g(1)


# SQLite has no server connection to drop: only the server databases.
@pytest.mark.parametrize("db", ["postgres", "mariadb"], indirect=True)
def test_the_cache_resumes_when_the_server_drops_its_connections(db: Database) -> None:
    engine = sa.create_engine(db.url, pool_size=2, max_overflow=0)
    calls: list[int] = []

    @cached(**db.options(sql_engine=engine))
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    assert f(1) == 2
    with engine.connect() as connection:
        ask = "SELECT pg_backend_pid()" if db.name == "postgres" else "SELECT CONNECTION_ID()"
        ids = [int(connection.execute(sa.text(ask)).scalar_one())]
    kill = "SELECT pg_terminate_backend({})" if db.name == "postgres" else "KILL {}"
    with db.engine.begin() as admin:
        for connection_id in ids:
            admin.execute(sa.text(kill.format(connection_id)))
    try:
        with library_warnings() as warned:
            assert f(1) == 2  # the dead pooled connection is replaced, the read retried
            assert f(2) == 3
            assert f(2) == 3
        assert warned == []
        assert calls == [1, 2]
    finally:
        engine.dispose()


# -- what lands in the table ------------------------------------------------------------


def test_clearing_keeps_only_a_claims_row_which_its_release_deletes(db: Database) -> None:
    """The rows a clear leaves, which the contract (seeing reads only) cannot check.

    A claim is a row of its own: clearing leaves it and every other function's rows,
    and releasing the claim deletes it, so no claim-only row piles up.
    """

    @cached(**db.options())
    def f(x: int) -> int:
        return x

    @cached(**db.options())
    def g(x: int) -> int:
        return -x

    for x in range(3):
        f(x)
        g(x)
    assert f.core.claim("in-progress", 30.0)
    assert f.clear_cache() == 3
    assert db.namespaces() == Counter(
        {namespace_text(g.namespace): 3, namespace_text(f.namespace): 1}
    )
    f.core.release("in-progress")
    assert db.namespaces() == Counter({namespace_text(g.namespace): 3})


def test_purge_stale_is_one_statement_and_spares_fresh_and_claimed_rows(db: Database) -> None:
    engine = db.fresh_engine()
    core = SQLCore("purge.f", sql_engine=engine, table_name=db.table)
    other = SQLCore("purge.other", sql_engine=engine, table_name=db.table)
    now = time.time()
    core.set("old", Entry("old", now - 100))
    core.set("fresh", Entry("fresh", now))
    core.set("old-claimed", Entry("old", now - 100))
    other.set("old", Entry("old", now - 100))
    assert core.claim("old-claimed", 30.0)
    assert core.claim("lapsed", 0.001)  # a claim-only row whose calculator vanished
    wait_until(lambda: not core.is_claimed("lapsed"))
    try:
        with statements(engine) as sent:
            assert core.purge_stale(50, now) == 2
        assert len(sent) == 1
        assert sent[0].startswith("DELETE FROM")
        assert core.get("fresh") is not None
        assert core.get("old-claimed") is not None
        assert core.get("old") is None
        assert other.get("old") is not None
        assert core.stats().claims == 1
    finally:
        core.release("old-claimed")
        engine.dispose()


def test_a_hit_is_one_select_and_a_miss_is_claim_recheck_and_store(db: Database) -> None:
    engine = db.fresh_engine()

    @cached(**db.options(sql_engine=engine))
    def f(x: int) -> int:
        return x + 1

    f.cached_entry(0)  # connect and create the table first
    try:
        with statements(engine) as miss:
            assert f(1) == 2
        with statements(engine) as hit:
            assert f(1) == 2
    finally:
        engine.dispose()
    assert len(hit) == 1
    assert hit[0].startswith("SELECT") and "WHERE" in hit[0]
    # Read, claim, re-read, store (the store also ends the claim: no release).
    verbs = [statement.split()[0] for statement in miss]
    assert verbs == ["SELECT", "INSERT", "SELECT", "INSERT"], miss
    assert "ON CONFLICT" in miss[3] or "ON DUPLICATE KEY UPDATE" in miss[3]


def test_an_unreadable_payload_is_a_miss_with_a_warning_and_is_replaced(db: Database) -> None:
    calls: list[int] = []

    @cached(**db.options())
    def f(x: int) -> list[int]:
        calls.append(x)
        return [x, x]

    assert f(1) == [1, 1]
    db.execute("UPDATE {table} SET value = :garbage", garbage=b"\x80\x05not a pickle")
    with library_warnings() as warned:
        assert f.cached_entry(1) is None
        assert f(1) == [1, 1]
    assert calls == [1, 1]
    assert any("unreadable" in message for message in warned)
    assert f(1) == [1, 1]
    assert calls == [1, 1]


def test_namespaces_differing_in_case_or_trailing_space_stay_apart(db: Database) -> None:
    functions = []
    for namespace in ("Mod.F", "mod.f", "mod.f ", "mod.f" + "x" * 300, "mod.f" + "y" * 300):

        @cached(**db.options(), namespace=namespace)
        def f(x: int, namespace: str = namespace) -> str:
            return namespace

        functions.append(f)
    assert [f(1) for f in functions] == [f.namespace for f in functions]
    assert [f.cached_entry(1).value for f in functions] == [f.namespace for f in functions]  # type: ignore[union-attr]
    assert len(db.namespaces()) == len(functions)


def test_any_hashable_key_is_stored_under_a_column_safe_key(db: Database) -> None:
    core = SQLCore("keys.f", sql_engine=db.engine, table_name=db.table)
    keys: list[Hashable] = ["plain_key", "MiXeD", "ünïcode", "x" * 200, ("a", 1), 1, 1.0, True]
    for index, key in enumerate(keys):
        core.set(key, Entry(index, 0.0))
    assert [core.get(key).value for key in keys] == list(range(len(keys)))  # type: ignore[union-attr]
    assert all(len(key_text(key)) <= 64 and key_text(key).isascii() for key in keys)


def test_stats_of_an_empty_namespace_and_the_rows_clear_claims_leaves(db: Database) -> None:
    """Beyond the contract's stats and clear_claims: SQL's own corners.

    An empty namespace counts 0 bytes (the SUM of no rows is NULL), and clear_claims
    deletes the claim-only rows and keeps the entries' rows.
    """
    core = SQLCore("stats.f", sql_engine=db.engine, table_name=db.table)
    empty = core.stats()
    assert (empty.entries, empty.total_bytes, empty.oldest, empty.claims) == (0, 0, None, 0)
    core.set("a", Entry(b"x" * 100, 10.0))
    core.set("b", Entry(b"y" * 10, 20.0))
    assert core.claim("b", 30.0)  # an entry being recalculated
    assert core.claim("c", 30.0)  # a first calculation: a claim-only row
    assert db.namespaces() == Counter({"stats.f": 3})
    assert core.clear_claims() == 2
    assert db.namespaces() == Counter({"stats.f": 2})
    assert (core.get("a"), core.get("b")) == (Entry(b"x" * 100, 10.0), Entry(b"y" * 10, 20.0))


@pytest.mark.parametrize("db", ["sqlite", "mariadb"], indirect=True)
def test_a_polling_waiter_wakes_promptly_after_the_value_lands(db: Database) -> None:
    # PostgreSQL's waiters are woken by NOTIFY instead: tests/test_sql_notify.py.
    core = SQLCore("wait.f", sql_engine=db.engine, table_name=db.table)
    polls: list[float] = []
    original = core._poll

    def counting_poll(key: str) -> tuple[bool, Entry | None]:
        polls.append(time.monotonic())
        return original(key)

    core._poll = counting_poll  # type: ignore[method-assign]
    assert core.claim("k", 30.0)
    got: list[Entry | None] = []
    waiter = threading.Thread(target=lambda: got.append(core.wait("k", DEADLINE_S)))
    waiter.start()
    wait_until(lambda: len(polls) >= 8)  # backed off to its longest sleep by now
    core.set("k", Entry("v", time.time()))
    landed = time.monotonic()
    waiter.join(DEADLINE_S)
    woke = time.monotonic()
    assert got and got[0] is not None and got[0].value == "v"
    assert woke - landed < 0.5, "the waiter polls too slowly"
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert gaps[0] < 0.05, "the first polls must come quickly"


def test_namespaces_entries_and_the_cli_inspect_a_table(
    db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SQLCore.namespaces(sql_engine=db.engine, table_name=db.table) == []
    assert not sa.inspect(db.engine).has_table(db.table), "listing must not create the table"

    @cached(**db.options())
    def f(x: int) -> bytes:
        return b"f" * 10 * x

    @cached(**db.options())
    def g(x: int) -> int:
        return -x

    f(1)
    f(2)
    g(1)
    assert f.core.claim("claimed-only", 30.0)  # a claim row is not an entry
    names = [namespace_text(f.namespace), namespace_text(g.namespace)]
    assert SQLCore.namespaces(sql_engine=db.engine, table_name=db.table) == sorted(names)
    entries = sorted(f.core.entries(), key=lambda info: info.size or 0)
    assert [info.key for info in entries] == [
        key_text(f._current().keys.key((x,), {})) for x in (1, 2)
    ]
    assert entries[0].size is not None and entries[1].size == entries[0].size + 10
    assert all(time.time() - info.timestamp < 60 for info in entries)
    f.core.release("claimed-only")

    store = ["--backend", "sql", "--url", db.url, "--table", db.table]
    assert cli.main(["ls", *store, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["functions"]
    assert {row["function"]: row["entries"] for row in listed} == {names[0]: 2, names[1]: 1}
    assert cli.main(["clear", *store, "--function", f.namespace, "--yes"]) == 0
    capsys.readouterr()
    assert f.cached_entry(1) is None
    assert g.cached_entry(1) is not None


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Entries",
        "1entries",
        "cache-entries",
        "entries; DROP TABLE users",
        "a.b.c",
        "x" * 64,
        "entries ",
        "ëntries",
        'entries"',
        5,
    ],
)
def test_bad_table_names_are_rejected_when_decorating(name: object) -> None:
    options: dict[str, Any] = {"backend": "sql", "sql_engine": "sqlite://", "table_name": name}
    with pytest.raises(ConfigurationError, match="table_name"):

        @cached(**options)
        def f(x: int) -> int:
            return x


def test_table_names_may_name_a_schema() -> None:
    assert split_table_name("cache_entries") == (None, "cache_entries")
    assert split_table_name("analytics.cache_entries") == ("analytics", "cache_entries")
    assert split_table_name("_t" + "1" * 61) == (None, "_t" + "1" * 61)


def test_sql_engine_may_be_an_engine_a_callable_a_url_or_the_environment(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[sa.Engine] = []

    def factory() -> sa.Engine:
        built.append(db.engine)
        return db.engine

    forms: list[object] = [db.engine, factory, db.url, None]
    monkeypatch.setenv(SQL_URL_ENV, db.url)
    for index, form in enumerate(forms):
        options = db.options(sql_engine=form) if form is not None else db.options()
        if form is None:
            del options["sql_engine"]

        @cached(**options, namespace=f"forms.{index}")
        def f(x: int, index: int = index) -> int:
            return x + index

        assert f(1) == 1 + index
        assert f.cached_entry(1).value == 1 + index  # type: ignore[union-attr]
    assert len(built) == 1, "the callable is called once, on first use"
    assert len(db.namespaces()) == len(forms)
    # Functions given the same URL share one engine (one connection pool).
    one, two = (SQLCore(name, sql_engine=db.url, table_name=db.table) for name in "ab")
    assert one.get("k") is None and two.get("k") is None
    assert one._engine is two._engine


def test_the_core_needs_neither_greenlet_nor_the_orm(tmp_path: Path) -> None:
    code = f"""
import sys
sys.modules["greenlet"] = None  # importing it now fails
import cachier_like
assert "sqlalchemy" not in sys.modules, "import cachier_like imported sqlalchemy"
from cachier_like import cached

@cached(backend="sql", sql_engine="sqlite:///{tmp_path / "c.sqlite"}")
def f(x):
    return x + 1

assert f(1) == 2 and f(1) == 2 and f.cached_entry(1).value == 2
assert "sqlalchemy.orm" not in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def test_a_missing_or_wrong_sql_engine_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SQL_URL_ENV, raising=False)
    from_environment = SQLCore("f")  # the variable is read on first use
    with pytest.raises(ConfigurationError, match=SQL_URL_ENV):
        from_environment.get("k")
    monkeypatch.setenv(SQL_URL_ENV, "nosuchdb://host/db")
    with pytest.raises(ConfigurationError, match="nosuchdb"):
        from_environment.get("k")
    # What needs no server nor environment is checked at once.
    with pytest.raises(ConfigurationError, match="sql_engine"):
        SQLCore("f", sql_engine=42)
    with pytest.raises(ConfigurationError, match="URL"):
        SQLCore("f", sql_engine="not a url")
    with pytest.raises(ConfigurationError, match="knows no database or driver 'nosuchdb'"):
        SQLCore("f", sql_engine="nosuchdb://host/db")
    with pytest.raises(ConfigurationError, match=r"postgresql\+nosuchdriver"):
        SQLCore("f", sql_engine="postgresql+nosuchdriver://host/db")
    memory_per_thread = sa.create_engine("sqlite://")
    with pytest.raises(ConfigurationError, match="StaticPool"):
        SQLCore("f", sql_engine=memory_per_thread)
    bad_factory = SQLCore("f", sql_engine=lambda: "sqlite://")
    with pytest.raises(ConfigurationError, match="Engine"):
        bad_factory.get("k")


def test_the_url_comes_from_the_environment_at_the_first_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decorated before the variable is set (a module imported before load_dotenv()).
    monkeypatch.delenv(SQL_URL_ENV, raising=False)
    calls: list[int] = []

    @cached(backend="sql")
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    with pytest.raises(ConfigurationError, match=SQL_URL_ENV):
        f(1)  # raised to the caller, not "failed open"
    monkeypatch.setenv(SQL_URL_ENV, f"sqlite:///{tmp_path / 'env.sqlite'}")
    assert f(1) == 2 and f(1) == 2
    assert calls == [1]
    assert (tmp_path / "env.sqlite").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:5432/test?no_such_option=1", "no_such_option"),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/test?connect_timeout=soon", "soon"),
        ("mysql+pymysql://root@127.0.0.1:3306/test?no_such_option=1", "no_such_option"),
        ("mysql+pymysql://root@127.0.0.1:3306/test?connect_timeout=soon", "soon"),
    ],
    ids=["postgres-unknown", "postgres-bad-value", "mysql-unknown", "mysql-bad-value"],
)
def test_an_invalid_url_option_is_a_configuration_error_at_the_first_call(
    url: str, message: str
) -> None:
    calls: list[int] = []

    @cached(backend="sql", sql_engine=url, table_name=unique_table())
    def f(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(ConfigurationError, match=message):
        f(1)
    assert calls == []


_WITHOUT_DRIVER = """
import sys
sys.modules[{module!r}] = None  # importing the driver now fails, as if not installed
from cachier_like import MissingDriverError, cached

@cached(backend="sql", sql_engine={url!r})  # decorating needs no driver
def f(x):
    return x + 1

try:
    f(1)
except MissingDriverError as exc:
    print(exc)
else:
    print("no error: the call failed open")
"""


@pytest.mark.parametrize(
    ("module", "url", "advice"),
    [
        (
            "psycopg",
            "postgresql+psycopg://u@127.0.0.1:1/db",
            "pip install 'cachier_like[postgres]'",
        ),
        ("psycopg", "postgresql://u@127.0.0.1:1/db", "pip install 'cachier_like[postgres]'"),
        ("pymysql", "mysql+pymysql://u@127.0.0.1:1/db", "pip install 'cachier_like[mysql]'"),
        ("MySQLdb", "mysql://u@127.0.0.1:1/db", "use mysql+pymysql:// and pip install"),
        ("pyodbc", "mssql+pyodbc://u@127.0.0.1:1/db", "driver module 'pyodbc'"),
    ],
    ids=["psycopg", "postgresql-default", "pymysql", "mysqldb", "other-dialect"],
)
def test_a_missing_driver_is_raised_naming_what_to_install(
    module: str, url: str, advice: str
) -> None:
    code = _WITHOUT_DRIVER.format(module=module, url=url)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert advice in done.stdout, done.stdout
    assert module in done.stdout


def test_a_server_that_is_down_at_run_time_still_fails_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # free once closed: nothing listens there
    calls: list[int] = []

    @cached(backend="sql", sql_engine=f"postgresql+psycopg://postgres@127.0.0.1:{port}/test")
    def f(x: int) -> int:
        calls.append(x)
        return x * 3

    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert [f(2), f(2), f(2)] == [6, 6, 6]
    assert calls == [2, 2, 2]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "refused" in warned[0], warned


def test_in_memory_sqlite_is_shared_by_the_threads_of_a_process() -> None:
    calls: list[int] = []
    release = threading.Event()
    threads = 6

    @cached(backend="sql", sql_engine="sqlite://")
    def f(x: int) -> int:
        calls.append(x)
        release.wait(DEADLINE_S)
        return x * 10

    results: list[int] = []
    workers = [threading.Thread(target=lambda: results.append(f(4))) for _ in range(threads)]
    for worker in workers:
        worker.start()
    wait_until(lambda: len(calls) >= 1)
    release.set()
    for worker in workers:
        worker.join(DEADLINE_S)
    assert results == [40] * threads
    assert calls == [4]
    engine = sa.create_engine("sqlite://", poolclass=StaticPool)
    assert SQLCore("g", sql_engine=engine).set("k", Entry(1, 0.0))
