"""Freshness judged by the store's clock: a process whose clock is 5 minutes off agrees.

Each call runs in a fresh interpreter whose ``time.time`` is shifted before
``cachier_like`` is imported, as on a machine with a skewed clock; the entries meet on
the shared Redis server (whose ``TIME`` is the reference) or PostgreSQL (``now()``).
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from tests.backends.redis_backend import redis_url
from tests.backends.sql_backend import drop_table, server_url, unique_table
from tests.support import run_code

SKEW_S = 300.0
CALL = """
import time
_real = time.time
time.time = lambda: _real() + {skew!r}
from cachier_like import cached

calls = []

@cached(backend="redis", redis_client={url!r}, key_prefix={prefix!r}, namespace="skew.f",
        stale_after=60)
def f(x):
    calls.append(x)
    return {answer!r}

print(f({key!r}), len(calls))
"""


#: The same call from an async def function, on the native redis.asyncio path.
ASYNC_CALL = CALL.replace("def f(x):", "async def f(x):").replace(
    "print(f({key!r}), len(calls))", "import asyncio\nprint(asyncio.run(f({key!r})), len(calls))"
)


def _call(prefix: str, skew: float, key: int, answer: str, template: str = CALL) -> tuple[str, int]:
    code = template.format(skew=skew, url=redis_url(), prefix=prefix, key=key, answer=answer)
    done = run_code(code)
    assert done.returncode == 0, done.stderr
    value, computed = done.stdout.split()
    return value, int(computed)


@pytest.mark.redis
@pytest.mark.parametrize("template", [CALL, ASYNC_CALL], ids=["sync", "native-async"])
@pytest.mark.parametrize(("writer", "reader"), [(-SKEW_S, 0.0), (0.0, SKEW_S)])
def test_an_entry_is_fresh_for_a_reader_whose_clock_disagrees_with_its_writers(
    redis_prefix: str, writer: float, reader: float, template: str
) -> None:
    # Judged by the two clocks, the reader would find the entry 5 minutes old (stale_after
    # is 60 s) and compute it again.
    assert _call(redis_prefix, writer, 1, "written", template) == ("written", 1)
    assert _call(redis_prefix, reader, 1, "recomputed", template) == ("written", 0)


@pytest.mark.redis
def test_a_writer_ahead_does_not_keep_its_entry_fresh_longer(redis_prefix: str) -> None:
    # Stamped by a clock 5 minutes ahead, the entry would look fresh for 5 more minutes.
    code = CALL.replace("stale_after=60", "stale_after=1")
    first = run_code(
        code.format(skew=SKEW_S, url=redis_url(), prefix=redis_prefix, key=3, answer="ahead")
    )
    assert first.stdout.split() == ["ahead", "1"], first.stderr
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:  # stale_after is a time: let it pass
        time.sleep(0.05)
    later = run_code(
        code.format(skew=0.0, url=redis_url(), prefix=redis_prefix, key=3, answer="recomputed")
    )
    assert later.stdout.split() == ["recomputed", "1"], later.stderr


@pytest.mark.redis
def test_a_stale_entry_is_stale_for_every_clock(redis_prefix: str) -> None:
    # The writer's clock is 5 minutes behind and its entry is older than stale_after by
    # the server's clock: no reader's clock makes it fresh again.
    code = CALL.replace("stale_after=60", "stale_after=0.001")
    done = run_code(
        code.format(skew=-SKEW_S, url=redis_url(), prefix=redis_prefix, key=2, answer="old")
    )
    assert done.returncode == 0, done.stderr
    again = run_code(
        code.format(skew=SKEW_S, url=redis_url(), prefix=redis_prefix, key=2, answer="new")
    )
    assert again.stdout.split() == ["new", "1"], again.stderr


@pytest.mark.sql
@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"], ids=["sync", "native-async"])
@pytest.mark.parametrize(("writer", "reader"), [(-SKEW_S, 0.0), (0.0, SKEW_S)])
def test_postgresql_entries_are_judged_by_the_databases_clock(
    postgres_engine: sa.Engine, writer: float, reader: float, driver: str
) -> None:
    if driver == "asyncpg":
        pytest.importorskip("asyncpg")
    table = unique_table()
    url = server_url("postgres").replace("+psycopg", f"+{driver}")
    template = CALL if driver == "psycopg" else ASYNC_CALL
    template = template.replace(
        'backend="redis", redis_client={url!r}, key_prefix={prefix!r}',
        'backend="sql", sql_engine={url!r}, table_name={prefix!r}',
    )
    try:
        for skew, answer, expected in ((writer, "written", 1), (reader, "recomputed", 0)):
            code = template.format(skew=skew, url=url, prefix=table, key=1, answer=answer)
            done = run_code(code)
            assert done.returncode == 0, done.stderr
            assert done.stdout.split() == ["written", str(expected)], done.stderr
    finally:
        drop_table(postgres_engine, table)
