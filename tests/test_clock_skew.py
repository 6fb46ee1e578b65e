"""Freshness judged by the store's clock: a process whose clock is 5 minutes off agrees.

Each call runs in a fresh interpreter whose ``time.time`` is shifted before
``cachier_like`` is imported, as on a machine with a skewed clock; the entries meet on
the shared Redis server (whose ``TIME`` is the reference) or PostgreSQL (``now()``).
MongoDB's run in this process, on mongomock (see the MongoDB section).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import mongomock
import pytest
import sqlalchemy as sa

from cachier_like import cached, policy, wrapper
from cachier_like.cores.mongo import MongoCore
from tests.backends.mongo_async_fake import AsyncCollectionStandIn
from tests.backends.redis_backend import redis_url
from tests.backends.sql_backend import drop_table, server_url, unique_table
from tests.support import run_code

SKEW_S = 300.0
CALL = """
import time
_real = time.time
time.time = lambda: _real() + {skew!r}
from cachier_like import cached, policy, wrapper

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


# -- MongoDB -----------------------------------------------------------------------
# No MongoDB server can be had here and mongomock has no ``hello``: the fixture below
# makes mongomock's answer the real clock (the server's) while this process's
# ``time.time`` is shifted, as on a machine with a skewed clock. The entries and claims
# meet in one mongomock collection, through the sync path and the native async one.


@pytest.fixture
def mongo_server_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Answer ``hello`` with the real time; the returned function shifts this process's."""
    real = time.time
    command_of_mongomock = mongomock.Database.command

    def hello(self: Any, command: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if command != "hello":  # ping, ...
            return command_of_mongomock(self, command, *args, **kwargs)
        now = datetime.fromtimestamp(real(), tz=timezone.utc)
        return {"ok": 1.0, "localTime": now.replace(tzinfo=None)}  # pymongo's naive UTC

    monkeypatch.setattr(mongomock.Database, "command", hello)

    def shift(skew: float) -> None:
        skewed = lambda: real() + skew  # noqa: E731
        monkeypatch.setattr(time, "time", skewed)
        for module in (policy, wrapper):  # the hit path's clock, bound at import
            monkeypatch.setattr(module, "_now", skewed)

    return shift


def _mongo_call(collection: Any, is_async: bool, answer: str, **options: Any) -> tuple[str, int]:
    """Call a freshly decorated function (a new core, as in a new process) on ``key`` 1."""
    calls: list[int] = []
    target = AsyncCollectionStandIn(collection) if is_async else collection
    decorate = cached(backend="mongo", mongetter=target, namespace="skew.f", **options)
    if is_async:

        async def af(x: int) -> str:
            calls.append(x)
            return answer

        value = asyncio.run(decorate(af)(1))
    else:

        def f(x: int) -> str:
            calls.append(x)
            return answer

        value = decorate(f)(1)
    return value, len(calls)


@pytest.mark.mongo
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "native-async"])
@pytest.mark.parametrize(("writer", "reader"), [(-SKEW_S, 0.0), (0.0, SKEW_S)])
def test_mongodb_entries_are_judged_by_the_servers_clock(
    mongo_server_clock: Callable[[float], None], writer: float, reader: float, is_async: bool
) -> None:
    collection: Any = mongomock.MongoClient().db.entries
    mongo_server_clock(writer)
    assert _mongo_call(collection, is_async, "written", stale_after=60) == ("written", 1)
    mongo_server_clock(reader)
    assert _mongo_call(collection, is_async, "recomputed", stale_after=60) == ("written", 0)


@pytest.mark.mongo
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "native-async"])
def test_mongodb_expiry_dates_are_in_the_servers_time(
    mongo_server_clock: Callable[[float], None], is_async: bool
) -> None:
    # The TTL monitor deletes by the server's clock: stamped by a clock 5 minutes behind,
    # an entry with server_ttl=60 would be past its expiry as it is written.
    collection: Any = mongomock.MongoClient().db.entries
    mongo_server_clock(-SKEW_S)
    _mongo_call(collection, is_async, "written", server_ttl=60)
    expires = collection.find_one({"ns": "skew.f"})["expires_at"].replace(tzinfo=timezone.utc)
    assert abs(expires.timestamp() - (time.time() + SKEW_S + 60)) < 5


@pytest.mark.mongo
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "native-async"])
@pytest.mark.parametrize(("holder", "other"), [(-SKEW_S, 0.0), (0.0, SKEW_S)])
def test_a_mongodb_claim_stays_live_for_a_process_whose_clock_is_ahead(
    mongo_server_clock: Callable[[float], None], holder: float, other: float, is_async: bool
) -> None:
    # Judged by the two clocks, the other process would find the 60 s lease lapsed
    # 4 minutes ago and take over a calculation in progress.
    collection: Any = mongomock.MongoClient().db.entries
    target = AsyncCollectionStandIn(collection) if is_async else collection

    mongo_server_clock(holder)
    holding = MongoCore("skew.g", mongetter=target)
    assert asyncio.run(holding.aclaim("k", 60.0)) if is_async else holding.claim("k", 60.0)
    mongo_server_clock(other)
    rival = MongoCore("skew.g", mongetter=collection)
    assert rival.is_claimed("k")
    assert not rival.claim("k", 60.0)
    if is_async:
        native_rival = MongoCore("skew.g", mongetter=AsyncCollectionStandIn(collection))
        assert asyncio.run(native_rival.aclaim("k", 60.0)) is False


@pytest.mark.mongo
def test_mongodb_listings_and_purges_are_in_this_processs_time(
    mongo_server_clock: Callable[[float], None],
) -> None:
    collection: Any = mongomock.MongoClient().db.entries
    mongo_server_clock(-SKEW_S)
    _mongo_call(collection, False, "written")
    core = MongoCore("skew.f", mongetter=collection)
    [info] = core.entries()
    assert abs(info.timestamp - time.time()) < 5  # not 5 minutes in the future
    stats = core.stats()
    assert stats.newest is not None and abs(stats.newest - time.time()) < 5
    assert core.purge_stale(60.0, time.time()) == 0  # a fresh entry by every clock
    assert core.purge_stale(0.0, time.time() + 1) == 1
