"""The Redis core's native ``redis.asyncio`` path, on the real server.

``async def`` functions given a ``redis.asyncio`` client (an instance, a callable or a
URL) never leave the event loop: the no-thread test patches ``asyncio.to_thread`` and
``run_in_executor`` and counts zero calls through hits, misses, claims, renewals, waits
and clears. Waiters in other processes are woken by the wake list, not by polling.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from cachier_like import AsyncOnlyError, ConfigurationError, Entry, cached
from cachier_like.cores.redis import RedisCore
from cachier_like.cores.redis.async_link import AsyncLink
from cachier_like.cores.redis.keys import tag_key
from tests.backends.redis_backend import redis_url
from tests.support import (
    DEADLINE_S,
    FORK,
    StuckCalculator,
    reap,
    record,
    records,
    thread_hops,
    wait_until,
    warnings_in,
)

pytestmark = pytest.mark.redis

Kind = str  # "instance", "callable", "url" or "blocking-pool"
#: "blocking-pool": a client whose commands go through its own execute_command.
KINDS = ["instance", "callable", "url", "blocking-pool"]


def client_option(kind: Kind) -> Any:
    """``redis_client=`` of each kind (a client connects in the loop that first uses it)."""
    if kind == "url":
        return redis_url()
    if kind == "callable":
        return lambda: aredis.Redis.from_url(redis_url())
    if kind == "blocking-pool":
        pool = aredis.BlockingConnectionPool.from_url(redis_url(), max_connections=4)
        return lambda: aredis.Redis(connection_pool=pool)
    return aredis.Redis.from_url(redis_url())


@pytest.fixture
def options(redis_prefix: str) -> Callable[..., dict[str, Any]]:
    def make(kind: Kind = "url", **extra: Any) -> dict[str, Any]:
        return {
            "backend": "redis",
            "redis_client": client_option(kind),
            "key_prefix": redis_prefix,
            **extra,
        }

    return make


Options = Callable[..., dict[str, Any]]


def key_of(func: Any, *args: Any) -> Hashable:
    key: Hashable = func._current().keys.key(args, {})
    return key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- configurations ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_async_client_serves_misses_and_hits_natively(
    options: Options, kind: Kind, redis_test_client: redis.Redis
) -> None:
    calls: list[int] = []

    @cached(**options(kind))
    async def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert f.core.native_async

    async def main() -> list[int]:
        return [await f(1), await f(1), await f(2)]

    assert asyncio.run(main()) == [2, 2, 4]
    assert calls == [1, 2]
    assert redis_test_client.exists(f.core.key_of(key_of(f, 1)))  # stored on the server
    assert asyncio.run(main()) == [2, 2, 4]  # a second loop: its own client
    assert calls == [1, 2]


def test_a_sync_client_with_an_async_function_runs_through_threads(
    options: Options, redis_test_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    @cached(**options(redis_client=redis_test_client))
    async def f(x: int) -> int:
        return x + 1

    assert not f.core.native_async
    with thread_hops(monkeypatch) as hops:
        assert asyncio.run(f(1)) == 2
    assert hops  # the documented, slower path


def test_a_callable_returning_a_sync_client_runs_through_threads(
    options: Options, redis_test_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    @cached(**options(redis_client=lambda: redis_test_client))
    async def f(x: int) -> int:
        return x + 1

    with thread_hops(monkeypatch) as hops:
        assert asyncio.run(f(1)) == 2
        assert asyncio.run(f(1)) == 2
    assert hops


def test_a_sync_function_given_an_async_client_is_refused_at_decoration(
    options: Options,
) -> None:
    with pytest.raises(TypeError, match=r"pass a redis\.Redis or a URL"):

        @cached(**options("instance"))
        def f(x: int) -> int:
            return x

    assert issubclass(AsyncOnlyError, TypeError)


def test_a_sync_function_whose_callable_returns_an_async_client_fails_at_first_call(
    options: Options,
) -> None:
    @cached(**options("callable"))
    def f(x: int) -> int:
        return x

    with pytest.raises(AsyncOnlyError, match=r"pass a redis\.Redis or a URL"):
        f(1)


def test_sync_upkeep_of_an_async_function(options: Options) -> None:
    """With a URL the sync methods use a sync client; with an async client they say what to do."""

    @cached(**options("url"))
    async def by_url(x: int) -> int:
        return x

    @cached(**options("instance", namespace="tests.other"))
    async def by_client(x: int) -> int:
        return x

    async def main() -> int:
        await by_url(1)
        await by_client(1)
        assert by_url.cached_entry(1).value == 1  # type: ignore[union-attr]
        assert by_url.clear_cache() == 1
        with pytest.raises(ConfigurationError, match=r"aclear_cache\(\)"):
            by_client.clear_cache()
        return await by_client.aclear_cache()  # a client instance serves one event loop

    assert asyncio.run(main()) == 1


# -- the policy on the native path ----------------------------------------------------


def test_stale_entries_are_recomputed_or_served_and_refreshed(options: Options) -> None:
    calls: list[str] = []

    @cached(**options(stale_after=60))
    async def f(x: str) -> str:
        calls.append(x)
        return f"new {x}"

    @cached(**options(stale_after=60, next_time=True, namespace="tests.next"))
    async def g(x: str) -> str:
        calls.append(x)
        return f"new {x}"

    async def main() -> tuple[str, str]:
        old = time.time() - 3600
        await f.core.aset(key_of(f, "a"), Entry("old a", old))
        await g.core.aset(key_of(g, "b"), Entry("old b", old))
        recomputed = await f("a")
        served = await g("b")
        deadline = time.monotonic() + DEADLINE_S
        while await g.core.aget(key_of(g, "b")) == Entry("old b", old):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        return recomputed, served

    assert asyncio.run(main()) == ("new a", "old b")
    assert sorted(calls) == ["a", "b"]


def test_a_thousand_concurrent_awaits_of_a_cold_key_compute_once(options: Options) -> None:
    calls: list[int] = []

    @cached(**options())
    async def f(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0.01)
        return x * 3

    async def main() -> list[int]:
        return await asyncio.gather(*(f(7) for _ in range(1000)))

    assert asyncio.run(main()) == [21] * 1000
    assert calls == [7]


def test_concurrent_tasks_never_read_each_others_claim_snapshot(options: Options) -> None:
    @cached(**options())
    async def f(x: int) -> int:
        return x

    core = f.core
    assert isinstance(core, RedisCore)

    async def main() -> None:
        claimed = asyncio.Event()
        stored = asyncio.Event()

        async def holder() -> Entry | None:
            assert await core.aclaim("k", 30)  # its snapshot: no entry
            claimed.set()
            await stored.wait()
            return await core.aget("k")

        async def other() -> Entry | None:
            await claimed.wait()
            await core.aset("k", Entry("landed", 1.0))  # not the holder: a plain SET
            stored.set()
            return await core.aget("k")

        seen_by_holder, seen_by_other = await asyncio.gather(holder(), other())
        assert seen_by_other == Entry("landed", 1.0)  # the server, not the snapshot
        assert seen_by_holder is None  # the holder's re-read is its claim's snapshot
        await core.arelease("k")
        assert not await core.aclear_claims()

    asyncio.run(main())


def test_many_waiters_on_a_small_pool_share_its_connections(
    redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """60 waiters, each on a flow of its own (a per-call control), on a pool of 8: a few
    block, the others probe; none runs out of connections, all get the one value."""
    go = asyncio.Event()
    calls: list[int] = []

    async def main() -> list[int]:
        client = aredis.Redis.from_url(redis_url(), max_connections=8)

        @cached(backend="redis", redis_client=client, key_prefix=redis_prefix, lease=60)
        async def f(x: int) -> int:
            calls.append(x)
            await go.wait()
            return x + 1

        try:
            calculator = asyncio.create_task(f(1))
            deadline = time.monotonic() + DEADLINE_S
            while not calls:  # the calculator holds the claim
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            control: dict[str, Any] = {"max_age": 3600}
            waiters = [asyncio.create_task(f(1, **control)) for _ in range(60)]
            link = f.core._alinks.current()
            assert link is not None and link.max_blockers < 8
            while link.blockers < link.max_blockers:  # the others probe meanwhile
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            go.set()
            return await asyncio.wait_for(asyncio.gather(calculator, *waiters), DEADLINE_S)
        finally:
            await client.aclose()

    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert asyncio.run(main()) == [2] * 61
    assert calls == [1]
    assert warnings_in(caplog) == []


def test_cancelling_the_calculator_releases_its_claim(options: Options) -> None:
    @cached(**options(lease=60))
    async def f(x: int) -> int:
        await asyncio.Event().wait()
        return x

    core = f.core
    assert isinstance(core, RedisCore)

    async def main() -> None:
        task = asyncio.create_task(f(1))
        deadline = time.monotonic() + DEADLINE_S
        while not core.is_claimed(key_of(f, 1)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not core.is_claimed(key_of(f, 1))

    asyncio.run(main())


def test_a_claim_cut_short_by_cancellation_is_dropped(
    options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled after its SET reached the server, a claim is released in the background."""

    @cached(**options(lease=600))  # far past the poll's deadline below
    async def f(x: int) -> int:
        return x

    core = f.core
    assert isinstance(core, RedisCore) and core.cancel_safe_async
    original = AsyncLink.pipeline
    sent = asyncio.Event()

    async def stalled(self: AsyncLink, *commands: Any, block_s: float = 0.0) -> Any:
        replies = await original(self, *commands, block_s=block_s)
        if commands[0][0] == "SET":  # the claim is taken; its reply is "late"
            sent.set()
            await asyncio.Event().wait()
        return replies

    async def main() -> None:
        monkeypatch.setattr(AsyncLink, "pipeline", stalled)
        task = asyncio.create_task(f(1))
        await asyncio.wait_for(sent.wait(), DEADLINE_S)
        assert core.is_claimed(key_of(f, 1))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        monkeypatch.setattr(AsyncLink, "pipeline", original)
        deadline = time.monotonic() + 10.0
        while core.is_claimed(key_of(f, 1)):
            assert time.monotonic() < deadline, "the claim outlived its cancelled caller"
            await asyncio.sleep(0.005)

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["url", "blocking-pool"])
def test_no_operation_leaves_the_event_loop(
    options: Options, monkeypatch: pytest.MonkeyPatch, kind: Kind
) -> None:
    """Hits, misses, claims, renewals, waits and clears: no to_thread, no executor."""
    go = asyncio.Event()
    renewals: list[bool] = []

    @cached(**options(kind, lease=0.3))
    async def slow(x: int) -> int:
        await go.wait()
        return x * 2

    # A second function object on the same namespace has a core of its own, so its
    # call does not join the first one's flight: it finds the claim taken and waits.
    @cached(**options(kind, lease=0.3, namespace=slow.namespace))
    async def same(x: int) -> int:
        return -1  # never run: the value arrives from the first

    core, other = slow.core, same.core
    arenew, wait_async = core.arenew, other.wait_async
    waiting = asyncio.Event()

    async def counted(key: Hashable, lease_s: float) -> bool:
        kept: bool = await arenew(key, lease_s)
        renewals.append(kept)
        return kept

    async def told(key: Hashable, timeout_s: float | None) -> Entry | None:
        waiting.set()
        entry: Entry | None = await wait_async(key, timeout_s)
        return entry

    monkeypatch.setattr(core, "arenew", counted)
    monkeypatch.setattr(other, "wait_async", told)

    async def main() -> tuple[int, int, int, int, int]:
        calculator = asyncio.create_task(slow(4))
        deadline = time.monotonic() + DEADLINE_S
        while len(renewals) < 2:  # renewals come every lease/3 = 0.1 s
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        waiter = asyncio.create_task(same(4))
        await asyncio.wait_for(waiting.wait(), DEADLINE_S)
        await asyncio.sleep(0.02)  # into its blocking read (either way it must wake)
        go.set()
        computed, waited = await calculator, await waiter
        hit = await slow(4)
        cleared = await slow.aclear_cache()
        claims = await slow.aclear_being_calculated()
        return computed, waited, hit, cleared, claims

    with thread_hops(monkeypatch) as hops:
        assert asyncio.run(main()) == (8, 8, 8, 1, 0)
    assert hops == []
    assert renewals and all(renewals)


def test_the_url_client_of_a_loop_is_closed_with_it(options: Options) -> None:
    @cached(**options("url"))
    async def f(x: int) -> int:
        return x

    links: list[AsyncLink] = []

    async def main() -> None:
        await f(1)
        await f(1)
        link = f.core._alinks.current()
        assert link is not None and link.owned
        links.append(link)

    asyncio.run(main())
    client: Any = links[0].client
    pool = client.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert connections  # the core's own, lent from this pool
    assert not any(conn.is_connected for conn in connections)


def test_a_dead_server_fails_open_within_a_bound(redis_prefix: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    calls: list[int] = []

    @cached(backend="redis", redis_client=url, key_prefix=redis_prefix)
    async def f(x: int) -> int:
        calls.append(x)
        return x + 10

    async def main() -> list[int]:
        return [await f(1), await f(1), await f(2)]

    began = time.monotonic()
    assert asyncio.run(asyncio.wait_for(main(), DEADLINE_S)) == [11, 11, 12]
    assert time.monotonic() - began < 2.0
    assert calls == [1, 1, 2]


def test_a_server_that_never_answers_costs_one_timeout_then_the_breaker_opens(
    redis_prefix: str,
) -> None:
    """A socket that accepts connections (the backlog) but never replies: the first
    call waits out the URL client's 0.5 s timeout, later ones fail open at once."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

        @cached(backend="redis", redis_client=url, key_prefix=redis_prefix)
        async def f(x: int) -> int:
            return x + 20

        async def main() -> tuple[list[int], list[float]]:
            values, took = [], []
            for x in range(5):
                began = time.monotonic()
                values.append(await f(x))
                took.append(time.monotonic() - began)
            return values, took

        values, took = asyncio.run(asyncio.wait_for(main(), DEADLINE_S))
    assert values == [20, 21, 22, 23, 24]
    assert took[0] < 2.0 and sum(took[1:]) < 0.5, took


# -- across processes -------------------------------------------------------------------


def test_a_waiter_in_another_process_is_woken_by_the_store(options: Options) -> None:
    """A forked waiter blocks on the wake list (it reports its BLMOVE) and gets the value
    within 50 ms of the store (the median of three rounds): a notification, not a poll."""
    go = asyncio.Event()

    @cached(**options(lease=60))
    async def f(x: int) -> int:
        await go.wait()
        return x * 9

    reports, report = FORK.Pipe(duplex=False)
    original = AsyncLink.pipeline

    async def telling(self: AsyncLink, *commands: Any, block_s: float = 0.0) -> Any:
        if commands[0][0] == "BLMOVE":
            report.send(("blocking",))
        return await original(self, *commands, block_s=block_s)

    def waiter(x: int) -> None:
        AsyncLink.pipeline = telling  # type: ignore[method-assign]  # in the child only
        value = asyncio.run(f(x))
        report.send(("value", value, time.time()))

    async def one_round(x: int) -> float:
        go.clear()
        calculator = asyncio.create_task(f(x))
        deadline = time.monotonic() + DEADLINE_S
        while not f.core.is_claimed(key_of(f, x)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        process = FORK.Process(target=waiter, args=(x,))
        process.start()
        try:
            assert await asyncio.to_thread(reports.poll, DEADLINE_S)
            assert reports.recv() == ("blocking",)
            stored_from = time.time()
            go.set()
            assert await calculator == x * 9
            while True:
                assert await asyncio.to_thread(reports.poll, DEADLINE_S)
                message = reports.recv()
                if message[0] == "value":
                    break
            assert message[1] == x * 9
            return float(message[2]) - stored_from
        finally:
            await asyncio.to_thread(process.join, DEADLINE_S)
            reap(process)

    async def main() -> list[float]:
        return [await one_round(x) for x in range(3)]

    latencies = asyncio.run(main())
    shown = ", ".join(f"{s * 1000:.1f} ms" for s in latencies)
    assert sorted(latencies)[1] < 0.05, f"woken {shown} after the store"


def test_a_killed_async_calculator_is_taken_over(options: Options, tmp_path: Path) -> None:
    log = tmp_path / "calls"
    stuck = StuckCalculator()

    @cached(**options(lease=1))
    async def f(x: int) -> int:
        record(log, f"computing {x}")
        stuck.checkpoint()  # in the calculator: blocks its loop (no renewals) until killed
        return x + 100

    with stuck.running(lambda: asyncio.run(f(5))):
        wait_until(lambda: f.core.is_claimed(key_of(f, 5)))
        stuck.kill()
    assert asyncio.run(asyncio.wait_for(f(5), DEADLINE_S)) == 105
    assert records(log) == ["computing 5", "computing 5"]


@pytest.mark.parametrize("kind", ["url", "blocking-pool"])
def test_invalidation_and_batches_never_leave_the_event_loop(
    options: Options, monkeypatch: pytest.MonkeyPatch, kind: Kind
) -> None:
    """adelete, aget_many, aset_many, atag_versions, abump_tags, aget_tagged: native."""

    @cached(**options(kind))
    async def f(x: int) -> int:
        return x

    core = f.core
    tagged = Entry("v", 1.0, (("user:7", 0),))

    async def main() -> None:
        await f(0)  # the loop's link is made
        assert await core.aset_many([("a", tagged), ("b", Entry(2, 1.0))]) == [True, True]
        assert await core.aget_many(["a", "missing", "b"]) == [tagged, None, Entry(2, 1.0)]
        assert await core.aget_many([]) == []
        assert await core.atag_versions(["user:7", "x"]) == (0, 0)
        await core.abump_tags(["user:7", "x"])
        await core.abump_tags(["x"])
        assert await core.atag_versions(["user:7", "x"]) == (1, 2)
        assert await core.aget_tagged("a", ["user:7", "x"]) == (tagged, (1, 2))
        assert await core.aget_tagged("missing", ["x"]) == (None, (2,))
        assert await core.adelete("a") is True
        assert await core.adelete("a") is False
        assert await core.aget("a") is None

    with thread_hops(monkeypatch) as hops:
        asyncio.run(main())
    assert hops == []
    assert core.native_async
    raw = redis.Redis.from_url(redis_url())
    assert raw.get(tag_key(core._t, "x")) == b"2"  # the key the sync operations read
    raw.close()


def test_aset_many_by_the_claiming_task_ends_its_claims(options: Options) -> None:
    @cached(**options("url"))
    async def f(x: int) -> int:
        return x

    core = f.core

    async def main() -> tuple[bool, bool]:
        await f(0)
        assert await core.aclaim("a", 30.0) and await core.aclaim("b", 30.0)
        assert await core.aset_many([("a", Entry(1, 1.0)), ("b", Entry(2, 1.0))]) == [True, True]
        ended = (not core.is_claimed("a"), not core.is_claimed("b"))  # before the releases
        await core.arelease("a")
        await core.arelease("b")
        return ended

    assert asyncio.run(main()) == (True, True)
    assert core.get_many(["a", "b"]) == [Entry(1, 1.0), Entry(2, 1.0)]
