"""The Redis core on the real server: forks, outages, isolation, the core API.

Racing processes and a killed calculator are tested on every cross-process core by
``tests/test_behaviour_processes.py``; here, what only this core has. Processes are
forked (``multiprocessing.get_context("fork")``) so the decorated function can be a
closure defined inside the test. An outage is a real one: the client talks to Redis
through a small TCP proxy that the test stops and restarts. Nothing sleeps for a fixed
time: what must happen is polled for with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.crc import key_slot

from cachier_like import CachedFunction, ConfigurationError, Entry, cached
from cachier_like.cores.redis import RedisCore, key_tag
from cachier_like.cores.redis import core as redis_module
from cachier_like.cores.redis import wire as _redis_wire
from cachier_like.cores.redis.keys import tag_key, tags_tag
from cachier_like.cores.redis.link import RETRY_AFTER_S, Link
from tests.backends.redis_backend import redis_url
from tests.redis_cluster import Cluster
from tests.support import (
    DEADLINE_S,
    LIBRARY_LOGGER,
    run_forked,
    spy_on_wait,
    wait_until,
    warnings_in,
)

pytestmark = pytest.mark.redis


# -- helpers -----------------------------------------------------------------------


def keys_of(client: redis.Redis, prefix: str) -> list[str]:
    """Every key the core wrote under ``prefix``, sorted."""
    return sorted(k.decode() for k in client.scan_iter(match=f"{{{prefix}*", count=500))


def call_key(f: CachedFunction[..., Any], *args: Any) -> Hashable:
    """The cache key of ``f(*args)``."""
    key: Hashable = f._current().keys.key(args, {})
    return key


class Proxy:
    """A TCP proxy to the Redis server that a test can stop and restart (a real outage)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        assert self._listener is not None
        with self._lock:
            doomed = [self._listener, *self._sockets]
            self._sockets = []
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(DEADLINE_S)
        self._threads = []

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self._target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    target = urlsplit(redis_url())
    running = Proxy(target.hostname or "127.0.0.1", target.port or 6379)
    running.start()
    yield running
    if running._listener is not None and running._listener.fileno() != -1:
        running.stop()


@pytest.fixture
def options(redis_core_options: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``@cached`` options for the Redis core under this test's own key prefix."""
    return redis_core_options


@pytest.fixture
def make_core(redis_test_client: redis.Redis, redis_prefix: str) -> Callable[..., RedisCore]:
    """Build a ``RedisCore`` on the test client under this test's prefix."""

    def make(namespace: str = "tests.core", **extra: Any) -> RedisCore:
        return RedisCore(
            namespace, redis_client=redis_test_client, key_prefix=redis_prefix, **extra
        )

    return make


Options = Callable[..., dict[str, Any]]
CoreFactory = Callable[..., RedisCore]


# -- forked processes, one server ---------------------------------------------------


def test_forked_children_use_connections_of_their_own(options: Options) -> None:
    @cached(**options())
    def f(x: int) -> tuple[int, int]:
        return (x, os.getpid())

    parent = f(1)  # the parent has open connections before forking
    children = run_forked(4, lambda index: (f(1), f(100 + index)))
    assert all(hit == parent for hit, _ in children)
    assert all(own[1] != os.getpid() for _, own in children)
    # Their values are the parent's hits now, and its own connections still work.
    assert [f(100 + i) for i in range(4)] == [own for _, own in children]
    assert f(1) == parent


# -- the server goes away ------------------------------------------------------------


def test_an_unreachable_server_fails_open_with_one_warning_then_recovers(
    proxy: Proxy, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = urlsplit(redis_url()).path.strip("/") or "0"
    url = f"redis://127.0.0.1:{proxy.port}/{db}?socket_connect_timeout=0.5&socket_timeout=0.5"
    calls: list[int] = []

    @cached(backend="redis", redis_client=url, key_prefix=redis_prefix)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert double(1) == 2
    assert double(1) == 2
    assert calls == [1]

    proxy.stop()
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        began = time.monotonic()
        assert [double(2) for _ in range(20)] == [4] * 20
        assert double(1) == 2
        elapsed = time.monotonic() - began
    assert calls == [1] + [2] * 20 + [1]  # computed every time, never raised
    warnings = warnings_in(caplog, LIBRARY_LOGGER)
    assert len(warnings) == 1, warnings  # rate-limited: one, not one per call
    assert "Connection" in warnings[0]
    assert elapsed < 5, "a dead server stalled the calls"

    proxy.start()  # same port: the server is back

    fresh = iter(range(1000, 10**6))

    def cached_again() -> bool:
        x = next(fresh)
        double(x)
        return double(x) == 2 * x and calls.count(x) == 1  # the second call was a hit

    wait_until(cached_again, timeout_s=RETRY_AFTER_S + 10)
    assert double(1) == 2  # stored before the outage, still there
    assert calls.count(1) == 2


def test_a_killed_server_connection_is_reopened_transparently(
    redis_test_client: redis.Redis, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"{redis_prefix}-client"
    url = f"{redis_url()}?client_name={name}"
    calls: list[int] = []

    @cached(backend="redis", redis_client=url, key_prefix=redis_prefix)
    def triple(x: int) -> int:
        calls.append(x)
        return 3 * x

    assert triple(1) == 3

    def kill_connections() -> int:
        ids = [c["id"] for c in redis_test_client.client_list() if c.get("name") == name]
        for client_id in ids:
            redis_test_client.client_kill_filter(_id=client_id)
        return len(ids)

    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert kill_connections() >= 1
        assert triple(1) == 3
        assert triple(2) == 6
        assert kill_connections() >= 1
        assert triple(2) == 6
    assert calls == [1, 2]
    assert warnings_in(caplog, LIBRARY_LOGGER) == []


def test_a_server_that_cannot_be_reached_at_all_is_fail_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]  # free once closed: nothing listens there
    url = f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.2"

    @cached(backend="redis", redis_client=url)  # decorating needs no server
    def inc(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert [inc(i) for i in range(10)] == list(range(1, 11))
    assert len(warnings_in(caplog, LIBRARY_LOGGER)) == 1


# -- keys and isolation ----------------------------------------------------------------


def test_clearing_deletes_the_functions_keys_and_spares_a_longer_key_prefix(
    redis_test_client: redis.Redis, redis_prefix: str
) -> None:
    """Clearing deletes the function's keys and no key of a longer prefix.

    What the contract (neighbouring namespaces under one prefix, seen through reads)
    leaves out: another prefix that starts with this one is another cache, and the
    keys themselves are deleted.
    """

    mine: dict[str, Any] = {"redis_client": redis_test_client, "key_prefix": redis_prefix}

    @cached(backend="redis", namespace="app.f", **mine)
    def f(x: int) -> int:
        return x

    longer: dict[str, Any] = {"redis_client": redis_test_client, "key_prefix": redis_prefix + "x"}

    @cached(backend="redis", namespace="app.f", **longer)
    def other(x: int) -> int:
        return x

    f(1), f(2), other(1)
    before = keys_of(redis_test_client, redis_prefix)  # the longer prefix's keys too

    assert f.clear_cache() == 2
    removed = set(before) - set(keys_of(redis_test_client, redis_prefix))
    assert {k.split(":v:")[0] for k in removed} == {key_tag(redis_prefix, "app.f")}
    assert len(removed) == 2
    assert other.cached_entry(1) is not None


def test_a_functions_keys_share_one_cluster_slot(make_core: CoreFactory) -> None:
    core = make_core("pkg.mod.f.<locals>.g")
    assert core.tag == key_tag(core.tag[1:].split(":")[0], "pkg.mod.f.<locals>.g")
    slots = {key_slot(core.key_of(k).encode()) for k in ("a", "b", ("x", 1), 3.5)}
    slots.add(key_slot(core._c.encode() + b"a"))
    slots.add(key_slot(core._w.encode() + b"a"))
    assert len(slots) == 1
    assert len({key_slot(make_core(f"pkg.f{i}").key_of("a").encode()) for i in range(20)}) > 1


def test_server_ttl_gives_entries_a_server_side_expiry(
    options: Options, redis_test_client: redis.Redis
) -> None:
    @cached(**options(server_ttl=timedelta(minutes=5)))
    def f(x: int) -> int:
        return x

    @cached(**options())
    def g(x: int) -> int:
        return x

    f(1)  # stored and released by one script
    f.precache_value(2, value_to_cache=20)  # a plain SET
    g(1)
    for key in (call_key(f, 1), call_key(f, 2)):
        assert 0 < redis_test_client.pttl(f.core.key_of(key)) <= 300_000
    assert redis_test_client.pttl(g.core.key_of(call_key(g, 1))) == -1
    with pytest.raises(ConfigurationError, match="server_ttl"):
        RedisCore("x", redis_client=redis_test_client, server_ttl=0)


def test_a_hit_is_one_round_trip_and_a_miss_three(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url())  # a link of its own, counted alone

    @cached(backend="redis", redis_client=client, key_prefix=redis_prefix)
    def f(x: int) -> int:
        return x

    f.precache_value(0, value_to_cache=0)  # connects
    link: Link = f.core._link()
    trips: list[list[str]] = []
    original = link.pipeline

    def counting(*commands: tuple[Any, ...]) -> list[Any]:
        trips.append([str(command[0]) for command in commands])
        return original(*commands)

    monkeypatch.setattr(link, "pipeline", counting)
    f(1)
    # Read; claim and re-read together; store and release in one script.
    assert trips == [["GET"], ["SET", "GET"], ["EVALSHA"]]
    trips.clear()
    f(1)
    assert trips == [["GET"]]
    client.close()


# -- waiting ------------------------------------------------------------------------


def test_a_waiter_wakes_as_soon_as_the_value_lands(
    options: Options, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocking reads last up to a second here (a 60 s lease), so only a wake-up by the
    # release can make every round this prompt.
    rounds, bound_s = 5, 0.5
    go = threading.Event()
    landed: dict[int, float] = {}

    @cached(**options(lease=60))
    def f(x: int) -> int:
        assert go.wait(DEADLINE_S)
        landed[x] = time.monotonic()
        return x

    core = f.core
    waiting = spy_on_wait(monkeypatch, core)

    def one_round(x: int) -> float:
        """Seconds from the calculator's return to the waiter's return."""
        go.clear()
        waiting.clear()
        calculator = threading.Thread(target=f, args=(x,), daemon=True)
        calculator.start()
        wait_until(lambda: core.is_claimed(call_key(f, x)))
        returned: list[float] = []

        def wait_for_value() -> None:
            f(x)
            returned.append(time.monotonic())

        waiter = threading.Thread(target=wait_for_value, daemon=True)
        waiter.start()
        assert waiting.wait(DEADLINE_S)
        go.set()
        waiter.join(DEADLINE_S)
        calculator.join(DEADLINE_S)
        assert returned, "the waiter never returned"
        return returned[0] - landed[x]

    latencies = [one_round(x) for x in range(rounds)]
    assert max(latencies) < bound_s, latencies


@pytest.mark.asyncio
async def test_async_waiters_wake_promptly(options: Options) -> None:
    go = asyncio.Event()
    calls: list[int] = []

    @cached(**options(lease=60))
    async def f(x: int) -> int:
        calls.append(x)
        await go.wait()
        return x * 5

    calculator = asyncio.create_task(f(2))
    claimed = asyncio.to_thread(wait_until, lambda: f.core.is_claimed(call_key(f, 2)))
    await asyncio.wait_for(claimed, DEADLINE_S)
    waiters = [asyncio.create_task(f(2)) for _ in range(6)]
    began = time.monotonic()
    go.set()
    results = await asyncio.wait_for(asyncio.gather(calculator, *waiters), DEADLINE_S)
    assert results == [10] * 7
    assert calls == [2]
    assert time.monotonic() - began < 0.5


# -- the core API ----------------------------------------------------------------------


def test_a_stale_entry_stays_readable_while_it_is_recalculated(make_core: CoreFactory) -> None:
    core, other = make_core(), make_core()
    core.set("k", Entry("old", 1.0))
    assert other.claim("k", 30)
    assert core.get("k") == Entry("old", 1.0)  # readable, with its old timestamp
    other.set("k", Entry("new", 2.0))
    assert not other.is_claimed("k")  # stored and released by one script
    assert core.get("k") == Entry("new", 2.0)
    other.release("k")  # nothing left to do


def test_bytes_that_are_no_entry_are_a_miss_with_a_warning_and_are_replaced(
    options: Options, redis_test_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Beyond the contract's unreadable payload: a value without the core's header."""
    calls: list[int] = []

    @cached(**options())
    def f(x: int) -> int:
        calls.append(x)
        return x * 7

    assert f(1) == 7
    key = f.core.key_of(call_key(f, 1))
    redis_test_client.set(key, b"garbage")
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        assert f.cached_entry(1) is None
        assert f(1) == 7
    assert any(key in message for message in warnings_in(caplog, LIBRARY_LOGGER))
    assert f(1) == 7  # replaced by a good entry
    assert calls == [1, 1]


def test_purge_stale_removes_old_and_damaged_entries_only(
    make_core: CoreFactory, redis_test_client: redis.Redis
) -> None:
    core, neighbour = make_core("tests.purge"), make_core("tests.purge2")
    now = time.time()
    core.set("old", Entry(1, now - 100))
    core.set("fresh", Entry(2, now))
    neighbour.set("old", Entry(3, now - 100))
    redis_test_client.set(core.key_of("damaged"), b"xx")
    assert core.purge_stale(50, now) == 2
    assert core.get("fresh") == Entry(2, now)
    assert core.get("old") is None
    assert redis_test_client.exists(core.key_of("damaged")) == 0
    assert neighbour.get("old") == Entry(3, now - 100)


def test_entries_list_keys_times_and_payload_sizes(
    make_core: CoreFactory, redis_test_client: redis.Redis
) -> None:
    core = make_core()
    core.set("a", Entry(b"x" * 1000, 10.0))
    core.set("b", Entry(None, 20.0))
    redis_test_client.set(core.key_of("damaged"), b"xx")
    listed = sorted(core.entries(), key=lambda info: info.key)
    assert [(i.key, i.timestamp) for i in listed] == [("a", 10.0), ("b", 20.0)]
    assert 1000 < (listed[0].size or 0) < 1100


def test_namespaces_lists_the_functions_under_a_prefix_only(
    make_core: CoreFactory, redis_test_client: redis.Redis, redis_prefix: str
) -> None:
    for namespace in ("pkg.f", "pkg.g:odd{name}", "pkg.h"):
        make_core(namespace).set("k", Entry(1, 1.0))
    assert make_core("pkg.claims_only").claim("k", 30)
    RedisCore("pkg.other", redis_client=redis_test_client, key_prefix=redis_prefix + ":x").set(
        "k", Entry(1, 1.0)
    )
    found = RedisCore.namespaces(redis_client=redis_test_client, key_prefix=redis_prefix)
    assert found == ["pkg.f", "pkg.g:odd{name}", "pkg.h"]


def test_a_custom_key_prefix_and_the_default(make_core: CoreFactory, redis_prefix: str) -> None:
    assert make_core("pkg.f").key_of("k") == "{" + redis_prefix + ":pkg.f}:v:k"
    default = RedisCore("pkg.f", redis_client=redis_url())
    assert default.key_of("k") == "{cachier_like:pkg.f}:v:k"
    with pytest.raises(ConfigurationError, match="key_prefix"):
        RedisCore("pkg.f", redis_client=redis_url(), key_prefix="")


# -- client forms --------------------------------------------------------------------


def test_a_url_string_client(redis_prefix: str) -> None:
    @cached(backend="redis", redis_client=redis_url(), key_prefix=redis_prefix)
    def f(x: int) -> int:
        return x + 1

    assert f(1) == 2
    assert f.cached_entry(1) == Entry(2, f.cached_entry(1).timestamp)  # type: ignore[union-attr]


def test_a_callable_client_is_called_once_on_first_use(redis_prefix: str) -> None:
    made: list[redis.Redis] = []

    def factory() -> redis.Redis:
        made.append(redis.Redis.from_url(redis_url()))
        return made[-1]

    @cached(backend="redis", redis_client=factory, key_prefix=redis_prefix)
    def f(x: int) -> int:
        return x * 2

    assert made == []  # decorating connects to nothing
    assert f(2) == 4
    assert f(2) == 4
    assert len(made) == 1
    made[0].close()


def test_the_url_comes_from_the_environment_at_the_first_call(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decorated before the variable is set (a module imported before load_dotenv()).
    monkeypatch.delenv(redis_module.URL_ENV, raising=False)

    @cached(backend="redis", key_prefix=redis_prefix)
    def f(x: int) -> int:
        return x - 1

    monkeypatch.setenv(redis_module.URL_ENV, redis_url())
    assert f(5) == 4
    assert f.cached_entry(5) is not None
    assert f.core.stats().entries == 1  # stored on the server the variable names


def test_no_server_anywhere_is_a_configuration_error_at_the_first_call(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(redis_module.URL_ENV, raising=False)
    calls: list[int] = []

    @cached(backend="redis", key_prefix=redis_prefix)  # decorating needs nothing yet
    def g(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(ConfigurationError, match=redis_module.URL_ENV):
        g(1)  # raised to the caller, not "failed open"
    monkeypatch.setenv(redis_module.URL_ENV, "http://localhost:6379")
    with pytest.raises(ConfigurationError, match="must be a URL starting with"):
        g(1)
    assert calls == []


@pytest.mark.parametrize(
    ("client", "message"),
    [(42, "not int"), ("http://localhost", "URL starting with"), (b"redis://", "not bytes")],
    ids=["number", "http-url", "bytes"],
)
def test_an_invalid_client_is_a_configuration_error(client: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisCore("x", redis_client=client)


def test_a_decoding_client_is_refused() -> None:
    decoding = redis.Redis.from_url(redis_url(), decode_responses=True)
    with pytest.raises(ConfigurationError, match="decode"):
        RedisCore("x", redis_client=decoding)

    @cached(backend="redis", redis_client=lambda: decoding)
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="decode"):
        f(1)  # the factory's client is checked on first use: a mistake, raised
    decoding.close()


def test_an_invalid_url_option_is_a_configuration_error_at_the_first_call() -> None:
    @cached(backend="redis", redis_client=f"{redis_url()}?socket_timeout=soon")
    def f(x: int) -> int:
        return x

    with pytest.raises(ConfigurationError, match="socket_timeout"):
        f(1)


# -- Redis Cluster ---------------------------------------------------------------------

CLUSTER_URL_ENV = "CACHIER_LIKE_TEST_REDIS_CLUSTER_URL"


@pytest.fixture
def cluster_url(request: pytest.FixtureRequest) -> str:
    """``$CACHIER_LIKE_TEST_REDIS_CLUSTER_URL`` if set, else the session's private cluster."""
    url = os.environ.get(CLUSTER_URL_ENV)
    if url:
        return url
    cluster: Cluster = request.getfixturevalue("redis_cluster")
    return cluster.url


def test_a_redis_cluster_serves_hits_waits_and_per_function_clears(
    cluster_url: str, redis_prefix: str
) -> None:
    calls: list[str] = []
    go = threading.Event()
    functions = []
    for name in ("f", "f2", "g"):

        @cached(backend="redis", redis_client=cluster_url, key_prefix=redis_prefix, namespace=name)
        def f(x: int, name: str = name) -> str:
            calls.append(f"{name}{x}")
            if x == 99:
                assert go.wait(DEADLINE_S)
            return f"{name}-{x}"

        functions.append(f)
    f, f2, g = functions
    try:
        assert [f(1), f(1), f2(1), g(1), g(2)] == ["f-1", "f-1", "f2-1", "g-1", "g-2"]
        assert calls == ["f1", "f21", "g1", "g2"]
        calculator = threading.Thread(target=f, args=(99,), daemon=True)
        calculator.start()
        wait_until(lambda: f.core.is_claimed(call_key(f, 99)))
        assert f.core.stats().claims == 1
        results: list[str] = []
        waiter = threading.Thread(target=lambda: results.append(f(99)), daemon=True)
        waiter.start()
        go.set()
        waiter.join(DEADLINE_S)
        calculator.join(DEADLINE_S)
        assert results == ["f-99"]
        assert calls.count("f99") == 1
        assert f.core.stats().entries == 2
        assert f.clear_cache() == 2  # SCAN over every node; other functions untouched
        assert (f2.cached_entry(1), g.cached_entry(2)) != (None, None)
        assert g.core.purge_stale(0, time.time() + 1) == 2
        assert f2.clear_being_calculated() == 0
    finally:
        for function in functions:
            function.clear_cache()


@pytest.mark.parametrize("pool", ["plain", "blocking"], ids=["private-connection", "client"])
def test_a_large_value_is_stored_and_read_back_whole(redis_prefix: str, pool: str) -> None:
    # Large payloads go to the socket in pieces on private connections; clients on
    # other pools get them joined. Either way the stored entry is the same.
    if pool == "blocking":
        client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(redis_url()))
    else:
        client = redis.Redis.from_url(redis_url())
    value = os.urandom(300_000) * 7  # 2.1 MB, over the piece size several times

    @cached(backend="redis", redis_client=client, key_prefix=redis_prefix)
    def f(x: int) -> bytes:
        return value

    assert f(1) == value  # computed and stored under the claim (the store script)
    f.precache_value(2, value_to_cache=value)  # a plain SET
    for x in (1, 2):
        entry = f.cached_entry(x)
        assert entry is not None and entry.value == value
    client.close()


def test_a_large_payload_goes_to_the_socket_in_slices_without_a_copy() -> None:
    # A socket timeout bounds a whole sendall (Python 3.5+): slices each get the whole
    # timeout, so a large value on a fast link does not time out as one write would.
    payload = os.urandom(3 * _redis_wire._SEND_SLICE + 5)
    pieces = _redis_wire._pack((("SET", "k", _redis_wire.Parts((b"head", payload))),))
    assert max(len(piece) for piece in pieces) <= _redis_wire._SEND_SLICE
    assert any(isinstance(piece, memoryview) and piece.obj is payload for piece in pieces)
    data = b"head" + payload
    expected = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n" % (len(data), data)
    assert b"".join(pieces) == expected


# -- invalidation: tags, batches ---------------------------------------------------------


def test_get_tagged_is_one_round_trip_then_one_get(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cachier_like.cores.redis import tracking

    client = redis.Redis.from_url(redis_url())  # a link of its own, counted alone
    core = RedisCore("app.f", redis_client=client, key_prefix=redis_prefix)
    assert core.set("k", Entry("v", 1.0, (("user:7", 0),)))
    core.bump_tags(["user:7", "team 2"])
    trips: list[list[str]] = []
    original = _redis_wire._exchange

    def counting(slot: Any, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        trips.append([" ".join(map(str, command[:2])) for command in commands])
        return original(slot, commands)

    monkeypatch.setattr(f"{tracking.__name__}._exchange", counting)
    with client.monitor() as monitor:  # type: ignore[no-untyped-call]  # what the server gets
        for _ in range(3):
            assert core.get_tagged("k", ["user:7", "team 2", "never"]) == (
                Entry("v", 1.0, (("user:7", 0),)),
                (1, 1, 0),
            )
        client.echo(f"end-{redis_prefix}")
        seen = []
        for event in monitor.listen():
            if redis_prefix in event["command"]:
                seen.append(event["command"].split()[0])
            if f"end-{redis_prefix}" in event["command"]:
                break
    entry_key = core.key_of("k")
    first = [f"GET {entry_key}", "CLIENT TRACKING", "CLIENT CACHING", f"MGET {core._t}user:7"]
    assert trips == [first, [f"GET {entry_key}"], [f"GET {entry_key}"]]
    assert seen[:-1] == ["GET", "MGET", "GET", "GET"]  # then the ECHO
    client.close()


def test_tag_versions_survive_clear_and_are_never_listed(make_core: CoreFactory) -> None:
    core, other = make_core("app.f"), make_core("app.g")
    assert core.set("k", Entry(1, 1.0))
    core.bump_tags(["user:7", "a}:v:b*"])  # braces and globs: quoted in the key
    assert core.clear() == 1
    assert other.clear() == 0
    assert core.tag_versions(["user:7", "a}:v:b*"]) == (1, 1)
    assert (
        RedisCore.namespaces(redis_client=core._source.given, key_prefix=core.tag[1:].split(":")[0])
        == []
    )
    assert list(core.entries()) == [] and core.stats().entries == 0
    assert core.purge_stale(0, time.time() + 1) == 0
    assert core.tag_versions(["user:7"]) == (1,)


def test_tag_keys_share_one_slot_apart_from_every_function(make_core: CoreFactory) -> None:
    core = make_core("app.f")
    slots = {key_slot(tag_key(core._t, tag).encode()) for tag in ("a", "b:c", "ü", "x" * 512)}
    assert len(slots) == 1
    assert core._t.startswith(tags_tag(core.tag[1:].split(":")[0]))
    assert not core._t.startswith(core.tag)  # no function's hash tag


def test_set_many_by_the_holder_ends_its_claims_in_one_round_trip(
    make_core: CoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    core, other = make_core("app.f"), make_core("app.f")
    assert core.claim("a", 30.0) and core.claim("b", 30.0)
    link: Link = core._link()
    trips: list[list[str]] = []
    original = link.pipeline

    def counting(*commands: tuple[Any, ...]) -> list[Any]:
        trips.append([str(command[0]) for command in commands])
        return original(*commands)

    monkeypatch.setattr(link, "pipeline", counting)
    stored = core.set_many([("a", Entry(1, 1.0)), ("b", Entry(2, 1.0)), ("c", Entry(3, 1.0))])
    assert stored == [True, True, True]
    assert trips[-1] in (["EVALSHA", "EVALSHA", "SET"], ["EVAL", "EVAL", "SET"])
    assert not other.is_claimed("a") and not other.is_claimed("b")  # ended by the store
    assert other.get_many(["a", "b", "c", "d"]) == [
        Entry(1, 1.0),
        Entry(2, 1.0),
        Entry(3, 1.0),
        None,
    ]
    trips.clear()
    core.release("a")
    core.release("b")
    assert trips == []  # the releases had nothing left to do


def test_a_redis_cluster_serves_tags_batches_and_deletes(
    cluster_url: str, redis_prefix: str
) -> None:
    core = RedisCore("app.f", redis_client=cluster_url, key_prefix=redis_prefix)
    other = RedisCore("app.g", redis_client=cluster_url, key_prefix=redis_prefix)
    try:
        assert core.set_many([("a", Entry(1, 1.0, (("t", 0),))), ("b", Entry(2, 1.0))]) == [
            True,
            True,
        ]
        other.bump_tags(["t", "u"])
        assert core.get_tagged("a", ["t", "u", "v"]) == (Entry(1, 1.0, (("t", 0),)), (1, 1, 0))
        assert core.get_many(["a", "b", "c"]) == [Entry(1, 1.0, (("t", 0),)), Entry(2, 1.0), None]
        assert core.delete("a") is True and core.delete("a") is False
        assert core.clear() == 1
        assert other.tag_versions(["t"]) == (1,)
    finally:
        core.clear()
        cluster = redis.RedisCluster.from_url(cluster_url)
        cluster.delete(*(tag_key(core._t, t) for t in ("t", "u")))
        cluster.close()
