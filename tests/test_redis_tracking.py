"""Tag versions kept current by the server's invalidations (``cores/redis/tracking.py``).

A tagged hit on a private RESP3 connection is one ``GET``: the tags' versions come from
what this connection read before, dropped when Redis says the key changed. These tests
show the hit sends nothing else, and that no way a version can change — another client,
another process, a lost connection, a flush — lets a stale entry be served. The
refusing server and the flush run on private servers (``tests/faults.py``).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cachier_like import cached
from cachier_like.cores.redis import tracking, wire
from cachier_like.cores.redis.link import link_for
from tests.faults import private_redis

pytestmark = pytest.mark.redis


class Spy:
    """The commands each exchange of the tracked read sends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[list[str]] = []
        real = wire._exchange

        def spy(slot: Any, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
            self.sent.append([" ".join(str(part) for part in c[:2]) for c in commands])
            return real(slot, commands)

        monkeypatch.setattr(f"{tracking.__name__}._exchange", spy)


def tagged_function(client: redis.Redis, prefix: str, calls: list[int]) -> Any:
    @cached(backend="redis", redis_client=client, key_prefix=prefix, tags=["report"])
    def report(x: int) -> int:
        calls.append(x)
        return x * 10

    return report


@pytest.fixture
def other_client() -> Iterator[redis.Redis]:
    """A second client (its own connections), as another machine would have."""
    from tests.backends.redis_backend import redis_url

    client = redis.Redis.from_url(redis_url())
    yield client
    client.close()


def test_a_tagged_hit_sends_one_get(
    redis_test_client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    report = tagged_function(redis_test_client, redis_prefix, calls)
    spy = Spy(monkeypatch)
    assert report(1) == 10
    spy.sent.clear()
    assert [report(1) for _ in range(20)] == [10] * 20
    assert calls == [1]
    opts = report._current()
    assert spy.sent == [["GET " + opts.core.key_of(opts.keys.key((1,), {}))]] * 20


def test_an_invalidation_by_another_client_is_seen_by_the_very_next_call(
    redis_test_client: redis.Redis, redis_prefix: str, other_client: redis.Redis
) -> None:
    calls: list[int] = []
    report = tagged_function(redis_test_client, redis_prefix, calls)
    elsewhere = tagged_function(other_client, redis_prefix, [])
    assert report(1) == 10
    for round_ in range(100):
        assert report(1) == 10  # a hit, its versions kept on the connection
        assert len(calls) == round_ + 1
        elsewhere.invalidate_tags("report")  # another connection's INCR
        assert report(1) == 10
        assert len(calls) == round_ + 2, "served an entry invalidated elsewhere"


def _invalidate_in_child(url: str, prefix: str, ready: Any, go: Any, done: Any) -> None:
    client = redis.Redis.from_url(url)
    child = tagged_function(client, prefix, [])
    ready.set()
    for _ in range(20):
        go.wait()
        go.clear()
        child.invalidate_tags("report")
        done.set()


def test_an_invalidation_by_another_process_is_seen_by_the_next_call(
    redis_test_client: redis.Redis, redis_prefix: str
) -> None:
    from tests.backends.redis_backend import redis_url

    calls: list[int] = []
    report = tagged_function(redis_test_client, redis_prefix, calls)
    context = multiprocessing.get_context("spawn")
    ready, go, done = context.Event(), context.Event(), context.Event()
    child = context.Process(
        target=_invalidate_in_child, args=(redis_url(), redis_prefix, ready, go, done)
    )
    child.start()
    try:
        assert ready.wait(60)
        report(1)
        for round_ in range(20):
            report(1)
            assert len(calls) == round_ + 1
            done.clear()
            go.set()
            assert done.wait(30)
            report(1)
            assert len(calls) == round_ + 2, "served an entry another process invalidated"
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0


def test_a_lost_connection_forgets_its_versions(
    redis_test_client: redis.Redis, redis_prefix: str, other_client: redis.Redis
) -> None:
    calls: list[int] = []
    report = tagged_function(redis_test_client, redis_prefix, calls)
    report(1), report(1)
    link = link_for(redis_test_client)
    own_id = link.call("CLIENT", "ID")  # this thread's private connection
    assert other_client.client_kill_filter(_id=own_id) == 1
    # While it is gone (so no invalidation can reach it), the tag changes.
    tagged_function(other_client, redis_prefix, []).invalidate_tags("report")
    assert report(1) == 10
    assert calls == [1, 1], "served an entry invalidated while the connection was down"
    assert link.call("CLIENT", "ID") != own_id  # it did reconnect


def test_a_resp2_client_reads_the_versions_with_each_entry(
    redis_prefix: str, other_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.backends.redis_backend import redis_url

    client = redis.Redis.from_url(redis_url(), protocol=2)
    try:
        calls: list[int] = []
        report = tagged_function(client, redis_prefix, calls)
        spy = Spy(monkeypatch)
        report(1), report(1)
        assert spy.sent == []  # not tracked: RESP2 sends invalidations elsewhere
        tagged_function(other_client, redis_prefix, []).invalidate_tags("report")
        report(1)
        assert calls == [1, 1]
    finally:
        client.close()


def test_a_server_refusing_tracking_falls_back_to_reading_versions_per_hit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with private_redis(extra=["--rename-command", "CLIENT", ""]) as server:
        client = redis.Redis.from_url(server.url)
        other = redis.Redis.from_url(server.url)
        calls: list[int] = []
        with caplog.at_level("INFO", logger=tracking.__name__):
            report = tagged_function(client, "refusing", calls)
            assert [report(1), report(1)] == [10, 10]
        assert calls == [1]
        assert any("refused CLIENT TRACKING" in r.getMessage() for r in caplog.records)
        assert link_for(client)._slot().tracks is False
        tagged_function(other, "refusing", []).invalidate_tags("report")
        assert report(1) == 10
        assert calls == [1, 1]
        client.close()
        other.close()


def test_a_flush_forgets_every_version() -> None:
    with private_redis() as server:
        client = redis.Redis.from_url(server.url)
        other = redis.Redis.from_url(server.url)
        calls: list[int] = []
        report = tagged_function(client, "flushed", calls)
        report(1), report(1)
        slot = link_for(client)._slot()
        assert slot.tracked.versions  # kept after the first read
        other.flushall()
        link_for(client).call("PING")  # reads the invalidation that came first
        assert slot.tracked.versions == {}
        report(1)
        assert calls == [1, 1]  # the entry went with the flush
        client.close()
        other.close()


def test_the_kept_versions_are_bounded(
    redis_test_client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracking, "MAX_VERSIONS", 8)
    calls: list[int] = []

    @cached(
        backend="redis",
        redis_client=redis_test_client,
        key_prefix=redis_prefix,
        tags=lambda x: [f"t{x}"],
    )
    def many(x: int) -> int:
        calls.append(x)
        return x

    for x in range(30):
        assert many(x) == x
        assert many(x) == x
    assert calls == list(range(30))
    slot = link_for(redis_test_client)._slot()
    assert 0 < len(slot.tracked.versions) <= 8
    many.invalidate_tags("t3")
    assert many(3) == 3
    assert calls[-1] == 3 and len(calls) == 31


def test_versions_kept_by_one_thread_are_not_another_threads(
    redis_test_client: redis.Redis, redis_prefix: str, other_client: redis.Redis
) -> None:
    calls: list[int] = []
    report = tagged_function(redis_test_client, redis_prefix, calls)
    report(1), report(1)
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(report(1)))
    worker.start()
    worker.join(30)
    assert seen == [10] and calls == [1]  # its own connection, its own first read
    tagged_function(other_client, redis_prefix, []).invalidate_tags("report")
    worker = threading.Thread(target=lambda: seen.append(report(1)))
    worker.start()
    worker.join(30)
    assert calls == [1, 1]
    assert report(1) == 10
    assert calls == [1, 1]  # the main thread's connection was told too: a hit of the new entry
