"""The MongoDB core's native async path: ``async def`` functions on pymongo's async API.

No MongoDB server runs where this suite is developed, and mongomock has no async API,
so these tests run on the stand-in of ``tests/backends/mongo_async_fake.py`` (mongomock
behind ``AsyncCollection``'s coroutine methods; every operation yields one loop turn);
with ``$CACHIER_LIKE_TEST_MONGO_URI`` set, each collection test runs on a real
``AsyncMongoClient`` too (skipped otherwise). Where the tests need two "processes"
sharing one store, they are two cores (two decorated functions, or a bare
:class:`MongoCore`) on one collection: forked processes cannot share mongomock's
in-process data.

Nothing sleeps for a fixed time: tasks meet at events, and the rest polls with a
deadline (:func:`eventually`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from typing import Any

import mongomock
import pymongo
import pytest
import pytest_asyncio

from cachier_like import AsyncOnlyError, Entry, cached
from cachier_like.cores.base import Core
from cachier_like.cores.mongo import INDEX_NAME, MongoCore, close_clients
from cachier_like.cores.mongo import clients as mongo_clients
from cachier_like.cores.mongo import guard as guard_module
from tests.backends.mongo_async_fake import AsyncCollectionStandIn, StandInServers
from tests.backends.mongo_backend import TEST_DATABASE, TEST_URI_ENV, real_server_uri
from tests.backends.services import require_service
from tests.support import DEADLINE_S, thread_hops, warnings_in

pytestmark = pytest.mark.mongo

KEY = "held_key"
NO_SERVER = (
    f"no MongoDB server: set ${TEST_URI_ENV} to run these tests on a real AsyncMongoClient "
    "too (the stand-in over mongomock runs them either way)"
)


def fixed_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A ``hash_func`` giving every call the key :data:`KEY`, so tests can name it."""
    return KEY


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` from the loop with a short pause until it holds, or fail."""
    deadline = time.monotonic() + DEADLINE_S
    while not await condition():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE_S} s"
        await asyncio.sleep(0.005)


def spy_on_wait_async(monkeypatch: pytest.MonkeyPatch, core: Core) -> asyncio.Event:
    """Patch ``core.wait_async`` to set the returned event whenever a caller starts waiting."""
    original = core.wait_async
    waiting = asyncio.Event()

    async def spy(key: Hashable, timeout_s: float | None) -> Entry | None:
        waiting.set()
        return await original(key, timeout_s)

    monkeypatch.setattr(core, "wait_async", spy)
    return waiting


def count_renewals(monkeypatch: pytest.MonkeyPatch, core: Core) -> list[bool]:
    """Patch ``core.arenew`` to record each renewal's outcome in the returned list."""
    original = core.arenew
    renewed: list[bool] = []

    async def spy(key: Hashable, lease_s: float) -> bool:
        kept = await original(key, lease_s)
        renewed.append(kept)
        return kept

    monkeypatch.setattr(core, "arenew", spy)
    return renewed


def loop_hops(hops: list[str], on_server: bool) -> list[str]:
    """The thread hops a native path must not make.

    On a real server, asyncio's own ``getaddrinfo`` (run in the loop's executor when
    pymongo opens a connection to a named host) is pymongo's, not the core's.
    """
    return [h for h in hops if not (on_server and h.startswith("run_in_executor(getaddrinfo)"))]


@pytest_asyncio.fixture(params=["stand-in", "server"])
async def acoll(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """An async collection of this test's own: the stand-in, or on a real server."""
    name = f"entries_{uuid.uuid4().hex}"
    if request.param == "stand-in":
        yield AsyncCollectionStandIn(mongomock.MongoClient()[TEST_DATABASE][name])
        return
    uri = real_server_uri()
    if uri is None:
        pytest.skip(NO_SERVER)
    sync_client = request.getfixturevalue("_real_mongo_client")
    require_service(
        "MongoDB",
        lambda: sync_client.admin.command("ping"),
        f"start a server or unset ${TEST_URI_ENV}",
    )
    client: Any = pymongo.AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    await client.admin.command("ping")  # connected before any test counts thread hops
    collection = client.get_default_database(TEST_DATABASE)[name]
    yield collection
    await collection.drop()
    await client.close()


@pytest.fixture
def namespace() -> str:
    return f"tests.mongo_async.{uuid.uuid4().hex}"


def on_server(acoll: Any) -> bool:
    return not isinstance(acoll, AsyncCollectionStandIn)


async def doc_of(acoll: Any, namespace: str, key: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = await acoll.find_one({"ns": namespace, "key": key}, {"_id": 0})
    return found


# -- hits, misses, staleness ----------------------------------------------------------


@pytest.mark.asyncio
async def test_miss_then_hit_then_stale_recomputes(acoll: Any, namespace: str) -> None:
    calls: list[int] = []

    @cached(backend="mongo", mongetter=acoll, namespace=namespace, stale_after=60)
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert double.core.native_async
    assert await double(2) == 4  # a miss: computed and stored
    assert await double(2) == 4  # a hit
    assert calls == [2]
    stored = await acoll.find_one({"ns": namespace}, {"_id": 0})
    assert stored is not None
    # The sync core's layout, and no claim left behind.
    assert set(stored) == {"ns", "key", "value", "ts", "time", "size"}
    assert INDEX_NAME in await acoll.index_information()
    await double.core.aset(stored["key"], Entry(99, time.time() - 120))  # now stale
    assert await double(2) == 4
    assert calls == [2, 2]


@pytest.mark.asyncio
async def test_next_time_serves_the_stale_value_and_refreshes_on_the_loop(
    acoll: Any, namespace: str
) -> None:
    calls: list[int] = []

    @cached(
        backend="mongo",
        mongetter=acoll,
        namespace=namespace,
        hash_func=fixed_key,
        stale_after=60,
        next_time=True,
    )
    async def latest(x: int) -> int:
        calls.append(x)
        return 100 + x

    core = latest.core
    await core.aset(KEY, Entry(99, time.time() - 120))
    assert await latest(1) == 99  # the stale value, at once

    async def refreshed() -> bool:
        entry = await core.aget(KEY)
        return entry is not None and entry.value == 101

    await eventually(refreshed, "the background refresh")
    assert calls == [1]
    assert await latest(1) == 101


@pytest.mark.asyncio
async def test_sync_and_async_cores_share_documents(namespace: str) -> None:
    collection: Any = mongomock.MongoClient()[TEST_DATABASE][f"entries_{uuid.uuid4().hex}"]
    native = MongoCore(namespace, mongetter=AsyncCollectionStandIn(collection))
    threaded = MongoCore(namespace, mongetter=collection)
    assert native.native_async and not threaded.native_async
    assert await native.aset("k", Entry([1, 2], 5.0))
    assert threaded.get("k") == Entry([1, 2], 5.0)
    threaded.set("j", Entry("sync", 6.0))
    assert await native.aget("j") == Entry("sync", 6.0)
    assert threaded.claim("c", 30.0)
    assert not await native.aclaim("c", 30.0)  # one claim, whichever API takes it
    assert await native.aclear() == 2  # the entries; the live claim stays
    assert threaded.is_claimed("c")
    assert await native.aclear_claims() == 1
    assert not threaded.is_claimed("c")


@pytest.mark.asyncio
async def test_the_holders_store_ends_its_claim_and_no_other_store_does(
    acoll: Any, namespace: str
) -> None:
    holder = MongoCore(namespace, mongetter=acoll)
    other = MongoCore(namespace, mongetter=acoll)
    assert await holder.aclaim(KEY, 30.0)
    assert await other.aset(KEY, Entry("other", 1.0))  # not the holder: the claim stays
    claimed = await doc_of(acoll, namespace, KEY)
    assert claimed is not None and claimed["claim_until"] > time.time()
    assert await holder.aset(KEY, Entry("mine", 2.0))  # one update: the value, claim ended
    stored = await doc_of(acoll, namespace, KEY)
    assert stored is not None and "claim_token" not in stored and "claim_until" not in stored
    assert await holder.arenew(KEY, 30.0)  # ended by its own store: nothing lost
    await holder.arelease(KEY)  # nothing left to do
    assert await other.aget(KEY) == Entry("mine", 2.0)
    assert not await other.arenew(KEY, 30.0)  # it never held the claim


# -- one computation ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_thousand_concurrent_awaits_of_a_cold_key_compute_once(
    acoll: Any, namespace: str
) -> None:
    calls: list[int] = []

    @cached(backend="mongo", mongetter=acoll, namespace=namespace)
    async def slow(x: int) -> int:
        calls.append(x)
        for _ in range(10):  # the others arrive meanwhile
            await asyncio.sleep(0)
        return 3 * x

    results = await asyncio.gather(*(slow(7) for _ in range(1000)))
    assert results == [21] * 1000
    assert calls == [7]


@pytest.mark.asyncio
async def test_a_second_core_waits_for_the_first_cores_claim(
    acoll: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    computing, finish = asyncio.Event(), asyncio.Event()
    options: dict[str, Any] = {
        "backend": "mongo",
        "mongetter": acoll,
        "namespace": namespace,
        "hash_func": fixed_key,
    }

    @cached(**options)
    async def first(x: int) -> str:
        computing.set()
        await finish.wait()
        return "from the first"

    @cached(**options)
    async def second(x: int) -> str:
        raise AssertionError("the second core computed while the first held the claim")

    # Two "processes": two cores on one store, sharing no flight, only the claim.
    assert first.core is not second.core
    waiting = spy_on_wait_async(monkeypatch, second.core)
    calculation = asyncio.create_task(first(1))
    await asyncio.wait_for(computing.wait(), DEADLINE_S)
    waiter = asyncio.create_task(second(1))
    await asyncio.wait_for(waiting.wait(), DEADLINE_S)
    assert not waiter.done()
    finish.set()
    assert await asyncio.wait_for(calculation, DEADLINE_S) == "from the first"
    assert await asyncio.wait_for(waiter, DEADLINE_S) == "from the first"


@pytest.mark.asyncio
async def test_wait_async_ends_with_the_claim_or_at_its_timeout(acoll: Any, namespace: str) -> None:
    holder = MongoCore(namespace, mongetter=acoll)
    waiter = MongoCore(namespace, mongetter=acoll)
    assert await holder.aclaim(KEY, 30.0)
    begin = time.monotonic()
    assert await waiter.wait_async(KEY, 0.25) is None  # still claimed: the timeout
    assert time.monotonic() - begin >= 0.25  # it waited, not returned at once
    waiting = asyncio.create_task(waiter.wait_async(KEY, DEADLINE_S))
    await asyncio.sleep(0)
    assert await holder.aset(KEY, Entry("done", 1.0))
    assert not waiting.done()  # a store alone does not end the claim
    await holder.arelease(KEY)
    assert await asyncio.wait_for(waiting, DEADLINE_S) == Entry("done", 1.0)


@pytest.mark.asyncio
async def test_a_lapsed_lease_is_taken_over_and_the_old_holder_cannot_touch_it(
    acoll: Any, namespace: str
) -> None:
    dead = MongoCore(namespace, mongetter=acoll)  # another process's core, which died
    assert await dead.aclaim(KEY, 0.2)  # never renewed: it lapses
    dead_token = dead._tokens[KEY]

    @cached(backend="mongo", mongetter=acoll, namespace=namespace, hash_func=fixed_key)
    async def compute(x: int) -> str:
        held = await doc_of(acoll, namespace, KEY)
        assert held is not None and held["claim_token"] != dead_token
        assert not await dead.arenew(KEY, 30.0)  # its claim is gone
        await dead.arelease(KEY)  # and its release leaves the new claim alone
        still = await doc_of(acoll, namespace, KEY)
        assert still is not None and still["claim_token"] == held["claim_token"]
        return "taken over"

    assert await compute(1) == "taken over"
    stored = await doc_of(acoll, namespace, KEY)
    assert stored is not None and "claim_token" not in stored


@pytest.mark.asyncio
async def test_cancelling_a_calculation_releases_its_claim(acoll: Any, namespace: str) -> None:
    started = asyncio.Event()
    hang = [True]

    @cached(backend="mongo", mongetter=acoll, namespace=namespace, hash_func=fixed_key)
    async def held(x: int) -> int:
        started.set()
        if hang[0]:
            await asyncio.Event().wait()
        return x

    calculation = asyncio.create_task(held(5))
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    claim = await doc_of(acoll, namespace, KEY)
    assert claim is not None and claim["claim_until"] > time.time()
    calculation.cancel()
    with pytest.raises(asyncio.CancelledError):
        await calculation
    assert await doc_of(acoll, namespace, KEY) is None  # the claim-only document is gone
    hang[0] = False
    assert await asyncio.wait_for(held(5), DEADLINE_S) == 5  # the key is free at once


# -- never leaving the event loop -----------------------------------------------------


@pytest.mark.asyncio
async def test_no_core_operation_leaves_the_event_loop(
    acoll: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: dict[str, Any] = {
        "backend": "mongo",
        "mongetter": acoll,
        "namespace": namespace,
        "hash_func": fixed_key,
        "lease": 0.15,  # renewed every 0.05 s
    }

    @cached(**options)
    async def slow(x: int) -> int:
        # Compute until the lease was renewed twice, with another core waiting.
        await eventually(lambda: _true(len(renewed) >= 2 and waiting.is_set()), "renewals")
        return 10 * x

    @cached(**options)
    async def other(x: int) -> int:
        raise AssertionError("the waiting core computed")

    renewed = count_renewals(monkeypatch, slow.core)
    waiting = spy_on_wait_async(monkeypatch, other.core)
    with thread_hops(monkeypatch) as hops:
        calculation = asyncio.create_task(slow(4))  # a miss: claim, renewals, store, release
        await asyncio.sleep(0)
        waiter = asyncio.create_task(other(4))  # a wait on the claim
        assert await asyncio.wait_for(calculation, DEADLINE_S) == 40
        assert await asyncio.wait_for(waiter, DEADLINE_S) == 40
        assert await slow(4) == 40  # a hit
        assert await slow.aclear_being_calculated() == 0
        assert await slow.aclear_cache() == 1
    assert all(renewed)
    assert loop_hops(hops, on_server(acoll)) == []


async def _true(value: bool) -> bool:
    return value


# -- deletes, batches, tag versions ----------------------------------------------------


def count_calls(
    monkeypatch: pytest.MonkeyPatch, acoll: Any, names: tuple[str, ...]
) -> dict[str, int]:
    """Count the calls of ``acoll``'s methods ``names`` (before a core resolves it)."""
    counts: dict[str, int] = {}

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] = counts.get(name, 0) + 1
            return original(*args, **kwargs)  # a coroutine, or find's cursor

        return counted

    for name in names:
        monkeypatch.setattr(acoll, name, counting(name, getattr(acoll, name)))
    return counts


@pytest.mark.asyncio
async def test_deletes_batches_and_tags_never_leave_the_event_loop(
    acoll: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = MongoCore(namespace, mongetter=acoll)
    holder = MongoCore(namespace, mongetter=acoll)
    tagged = Entry(1, 1.0, (("t", 0),))
    with thread_hops(monkeypatch) as hops:
        assert await core.aset_many([("a", tagged), ("b", Entry(2, 1.0))]) == [True, True]
        assert await core.aget_many(["b", "missing", "a"]) == [Entry(2, 1.0), None, tagged]
        assert await core.aget_many([]) == []
        await core.abump_tags(["t", "u"])
        await core.abump_tags(["u"])
        assert await core.atag_versions(["t", "u", "never"]) == (1, 2, 0)
        assert await core.aget_tagged("a", ["t", "u"]) == (tagged, (1, 2))
        assert await holder.aclaim("b", 30.0)
        assert await core.adelete("b") is True  # claimed: the entry goes, the claim stays
        assert await core.adelete("a") is True  # unclaimed: the document goes
        assert await core.adelete("a") is False
    assert loop_hops(hops, on_server(acoll)) == []
    claimed = await doc_of(acoll, namespace, "b")
    assert claimed is not None and "value" not in claimed and "claim_token" in claimed
    assert await doc_of(acoll, namespace, "a") is None
    assert await core.aget_tagged("b", ["t"]) == (None, (1,))


@pytest.mark.asyncio
async def test_aget_tagged_is_one_find_and_aset_many_one_bulk_write(
    acoll: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ("find", "find_one", "bulk_write", "update_one", "update_many", "delete_one")
    counts = count_calls(monkeypatch, acoll, names)
    core = MongoCore(namespace, mongetter=acoll)
    await core.aget("warm-up")  # the clock's offset is measured with a first read
    counts.clear()
    items = [(f"k{i}", Entry(i, 1.0, (("t", 0),))) for i in range(10)]
    assert await core.aset_many(items) == [True] * 10
    assert counts == {"bulk_write": 1}
    counts.clear()
    await core.abump_tags(["t", "u"])
    assert counts == {"bulk_write": 1}
    counts.clear()
    assert await core.aget_tagged("k3", ["t", "u", "v"]) == (items[3][1], (1, 1, 0))
    assert counts == {"find": 1}
    counts.clear()
    assert await core.aget_many(["k1", "k2"]) == [items[1][1], items[2][1]]
    assert counts == {"find": 1}


@pytest.mark.asyncio
async def test_the_holders_aset_many_ends_its_own_claims_only(acoll: Any, namespace: str) -> None:
    holder = MongoCore(namespace, mongetter=acoll)
    other = MongoCore(namespace, mongetter=acoll)
    assert await holder.aclaim("a", 30.0) and await other.aclaim("c", 30.0)
    assert await holder.aset_many([("a", Entry(1, 1.0)), ("c", Entry(3, 1.0))]) == [True, True]
    ended = await doc_of(acoll, namespace, "a")
    assert ended is not None and "claim_token" not in ended and "claim_until" not in ended
    kept = await doc_of(acoll, namespace, "c")
    assert kept is not None and kept["claim_until"] > time.time()  # another's claim
    assert await holder.arenew("a", 30.0)  # ended by its own store: not lost
    await holder.arelease("a")
    assert await other.aget_many(["a", "c"]) == [Entry(1, 1.0), Entry(3, 1.0)]


@pytest.mark.asyncio
async def test_tag_versions_are_shared_with_sync_cores_and_survive_aclear(namespace: str) -> None:
    collection: Any = mongomock.MongoClient()[TEST_DATABASE][f"entries_{uuid.uuid4().hex}"]
    native = MongoCore(namespace, mongetter=AsyncCollectionStandIn(collection))
    threaded = MongoCore(f"{namespace}.other", mongetter=collection)
    await native.abump_tags(["x"])
    threaded.bump_tags(["x", "y"])
    assert await native.atag_versions(["x", "y"]) == (2, 1)
    assert await native.aset("k", Entry("v", 1.0, (("x", 2),)))
    assert threaded.get_tagged("missing", ["x"]) == (None, (2,))
    assert await native.aclear() == 1
    assert await native.aget_tagged("k", ["x", "y"]) == (None, (2, 1))
    assert threaded.tag_versions(["x", "y"]) == (2, 1)


# -- function kinds -------------------------------------------------------------------


def test_a_sync_function_on_an_async_collection_is_a_type_error() -> None:
    collection = AsyncCollectionStandIn(mongomock.MongoClient().db.entries)
    with pytest.raises(TypeError, match="async def") as raised:

        @cached(backend="mongo", mongetter=collection)
        def plain(x: int) -> int:
            return x

    assert isinstance(raised.value, AsyncOnlyError)
    assert "pymongo Collection or a mongodb:// URL" in str(raised.value)


def test_a_callable_giving_a_sync_function_an_async_collection_raises_on_first_call() -> None:
    collection = AsyncCollectionStandIn(mongomock.MongoClient().db.entries)

    @cached(backend="mongo", mongetter=lambda: collection)
    def plain(x: int) -> int:
        return x

    with pytest.raises(AsyncOnlyError, match="async def"):
        plain(1)  # a mistake to fix: raised, not failed open


@pytest.mark.asyncio
async def test_a_callable_giving_an_async_collection_is_native(
    acoll: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[int] = []

    def mongetter() -> Any:
        given.append(1)
        return acoll

    @cached(backend="mongo", mongetter=mongetter, namespace=namespace)
    async def double(x: int) -> int:
        return 2 * x

    with thread_hops(monkeypatch) as hops:
        assert list(await asyncio.gather(double(1), double(1), double(2))) == [2, 2, 4]
        assert await double(1) == 2
    assert double.core.native_async
    assert given == [1]  # called once for this loop
    assert loop_hops(hops, on_server(acoll)) == []


@pytest.mark.asyncio
async def test_an_async_function_on_a_sync_collection_runs_through_threads(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    collection: Any = mongomock.MongoClient()[TEST_DATABASE][f"entries_{uuid.uuid4().hex}"]

    @cached(backend="mongo", mongetter=lambda: collection, namespace=namespace)
    async def double(x: int) -> int:
        return 2 * x

    with thread_hops(monkeypatch) as hops:
        assert await double(3) == 6
        assert await double(3) == 6
    assert not double.core.native_async  # learnt from the callable's collection
    assert hops  # the documented, slower path
    entry = double.cached_entry(3)
    assert entry is not None and entry.value == 6


def test_sync_methods_of_an_async_function_on_an_async_collection_say_what_to_use() -> None:
    collection = AsyncCollectionStandIn(mongomock.MongoClient().db.entries)

    @cached(backend="mongo", mongetter=collection)
    async def double(x: int) -> int:
        return 2 * x

    for method in (double.clear_cache, double.clear_being_calculated):
        with pytest.raises(AsyncOnlyError, match=r"aclear_cache\(\)"):
            method()
    with pytest.raises(AsyncOnlyError, match="mongodb:// URL"):
        double.cached_entry(1)


# -- URL clients: one per event loop, closed with it ----------------------------------


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInServers]:
    """Stand-in servers behind ``pymongo.AsyncMongoClient`` and ``pymongo.MongoClient``."""
    yield StandInServers.install(monkeypatch)
    close_clients()


def unique_url() -> str:
    return f"mongodb://db-{uuid.uuid4().hex[:12]}:27017/cache"


def test_a_url_gives_each_event_loop_its_own_client_closed_with_the_loop(
    servers: StandInServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    url = unique_url()

    @cached(backend="mongo", mongetter=url)
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    @cached(backend="mongo", mongetter=url)
    async def triple(x: int) -> int:
        return 3 * x

    async def both() -> list[int]:
        return list(await asyncio.gather(double(1), triple(1), double(2)))

    assert double.core.native_async
    with thread_hops(monkeypatch) as hops:
        assert asyncio.run(both()) == [2, 3, 4]
        assert len(servers.created) == 1  # one client for the loop, shared by both functions
        assert servers.created[0].closed  # closed as asyncio.run shut the loop down
        assert asyncio.run(double(1)) == 2  # another loop: a client of its own; a hit
    assert hops == []
    assert len(servers.created) == 2 and servers.created[1].closed
    # Nothing holds on to the closed loops (a client refers to its loop), but the
    # core's handle of the last one, until another loop comes.
    assert mongo_clients._loop_clients == {} and mongo_clients._closers == {}
    assert len(double.core._loop_colls) == 1
    assert calls == [1, 2]
    assert servers.created[0].options == {
        "socketTimeoutMS": 1000,
        "connectTimeoutMS": 1000,
        "serverSelectionTimeoutMS": 2000,
    }
    # The sync methods reach the same store through the process's sync client.
    entry = double.cached_entry(2)
    assert entry is not None and entry.value == 4
    assert double.clear_cache() == 2


@pytest.mark.asyncio
async def test_close_clients_closes_a_loops_client_on_that_loop(
    servers: StandInServers,
) -> None:
    @cached(backend="mongo", mongetter=unique_url())
    async def double(x: int) -> int:
        return 2 * x

    assert await double(1) == 2
    assert len(servers.created) == 1
    close_clients()

    async def closed() -> bool:
        return servers.created[0].closed

    await eventually(closed, "the client's close on its loop")
    assert await double(1) == 2  # a new client, same store: a hit
    assert len(servers.created) == 2 and not servers.created[1].closed


@pytest.mark.asyncio
async def test_the_breaker_pings_on_the_clients_loop_and_caching_resumes(namespace: str) -> None:
    collection = AsyncCollectionStandIn(mongomock.MongoClient().db.entries)
    server = collection.database.client
    calls: list[int] = []

    @cached(backend="mongo", mongetter=collection, namespace=namespace)
    async def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert await double(1) == 2
    server.down = True
    assert await double(1) == 2  # computed again: the cache failed open
    assert calls == [1, 1]
    breaker = guard_module._breakers[id(server)]
    assert breaker.down
    pings = server.pings  # the index creation's, so far

    async def pinged() -> bool:
        return server.pings > pings

    await eventually(pinged, "the prober's ping on this loop")
    assert breaker.down  # the server did not answer it
    server.down = False  # the prober's next ping answers

    async def closed() -> bool:
        return not breaker.down

    await eventually(closed, "the breaker closing")
    assert await double(1) == 2  # a hit again
    assert calls == [1, 1]


@pytest.mark.asyncio
async def test_a_dead_server_fails_open_and_the_breaker_skips_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cachier_like")

    @cached(
        backend="mongo",
        mongetter="mongodb://127.0.0.1:1",  # nothing listens here
        backend_options={"server_selection_timeout_ms": 300},
    )
    async def double(x: int) -> int:
        return 2 * x

    try:
        assert double.core.native_async
        assert await double(21) == 42  # computed; the cache failed open
        assert any("MongoDB" in message for message in warnings_in(caplog, "cachier_like"))
        breakers = [
            b
            for b in guard_module._breakers.values()
            if type(b) is guard_module._AsyncClientBreaker
        ]
        assert any(b.down for b in breakers)  # the next calls skip the server at once
        assert await double(21) == 42
    finally:
        close_clients()
