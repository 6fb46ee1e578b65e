"""The MongoDB core: claims, leases, take-overs, fail-open, mongetter forms, TTL, layout.

These run on mongomock unless ``CACHIER_LIKE_TEST_MONGO_URI`` names a real server
(see ``tests/backends/mongo_backend.py``); the core's code path is the same. Where
mongomock differs from a server, the test says so:

- mongomock's state lives in one process, so "other machines" are threads there and
  forked processes only on a real server;
- mongomock applies an update to a matched document without atomicity between
  threads (a real server is atomic per document), so racing claims on an *existing*
  document are tested on a real server only; racing claims on a missing document are
  decided by the unique index in both;
- mongomock deletes TTL-expired documents eagerly on access, a server in a
  background pass about once a minute.

Nothing sleeps for a fixed time: callers meet at barriers and events, and the rest
polls with a deadline.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import mongomock
import pymongo
import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError

from cachier_like import BackendError, ConfigurationError, Entry, cached
from cachier_like.cores import mongo as mongo_module
from cachier_like.cores.mongo import TTL_INDEX_NAME, URL_ENV, MongoCore, close_clients
from tests.backends.mongo_backend import real_server_uri
from tests.support import FORK, ResultQueue, record, records, run_forked, wait_until, warnings_in

pytestmark = pytest.mark.mongo

DEADLINE_S = 30.0
#: A port nothing listens on: connections are refused at once.
DEAD_URL = "mongodb://127.0.0.1:1"
#: pymongo re-checks server selection every 0.5 s, so a shorter timeout rounds up.
PYMONGO_SELECTION_STEP_S = 0.5


# -- helpers -----------------------------------------------------------------------


def run_racers(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` for ``count`` racers released at once; return the results in order.

    Racers are forked processes on a real server; on mongomock, whose data lives in
    this process, they are threads.
    """
    if real_server_uri() is not None:
        return run_forked(count, work, start_together=True, timeout_s=DEADLINE_S)
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(DEADLINE_S)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    assert not errors, errors
    return results


def fixed_key(key: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
    """A ``hash_func`` giving every call the key ``key``, so tests can name it."""

    def hash_func(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return key

    return hash_func


def doc_of(collection: Any, namespace: str, key: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = collection.find_one({"ns": namespace, "key": key})
    return found


def as_utc(moment: datetime) -> datetime:
    """BSON dates come back naive (UTC) unless the client is tz-aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@pytest.fixture
def portable(mongo_collection: Any) -> dict[str, Any]:
    """``@cached`` options naming the test collection in a way a forked child can use.

    On a real server that is the URL (the child opens its own client); on mongomock
    the collection itself (racers are threads there).
    """
    uri = real_server_uri()
    if uri is None:
        return {"backend": "mongo", "mongetter": lambda: mongo_collection}
    names = {"database": mongo_collection.database.name, "collection": mongo_collection.name}
    return {"backend": "mongo", "mongetter": uri, "backend_options": names}


@pytest.fixture
def url_clients() -> Iterator[None]:
    """Close the clients the core opened from URLs during the test."""
    yield
    close_clients()


# -- racing callers, failures, expired claims, renewals -------------------------------


def test_racing_callers_on_one_key_compute_once(portable: dict[str, Any], tmp_path: Path) -> None:
    racers = 8
    counter = tmp_path / "calls"
    started = tmp_path / "started"

    @cached(**portable, wait_for_calc_timeout=DEADLINE_S)
    def f(x: int) -> str:
        record(counter, str(os.getpid()))
        # Hold the claim until every racer has made its call, so they all meet it.
        wait_until(lambda: len(records(started)) >= racers, timeout_s=DEADLINE_S)
        return f"value-{x}-{os.getpid()}-{threading.get_ident()}"

    def racer(index: int) -> str:
        record(started, str(index))
        return f(1)

    results = run_racers(racers, racer)
    assert len(records(counter)) == 1
    assert len(set(results)) == 1
    entry = f.cached_entry(1)
    assert entry is not None and entry.value == results[0]


@pytest.mark.skipif(
    real_server_uri() is None,
    reason="mongomock applies updates to an existing document without atomicity "
    "between threads; a real server is atomic per document",
)
def test_racing_refreshes_of_a_stale_entry_compute_once(
    portable: dict[str, Any], tmp_path: Path
) -> None:
    racers = 8
    counter = tmp_path / "calls"
    started = tmp_path / "started"

    @cached(**portable, stale_after=60, wait_for_calc_timeout=DEADLINE_S, hash_func=fixed_key("k"))
    def f(x: int) -> str:
        record(counter, str(os.getpid()))
        wait_until(lambda: len(records(started)) >= racers, timeout_s=DEADLINE_S)
        return f"fresh-{os.getpid()}"

    # Stale by a long way; the refreshed value stays fresh while the racers finish.
    assert f.core.set("k", Entry("stale", time.time() - 120))

    def racer(index: int) -> str:
        record(started, str(index))
        return f(1)

    results = run_racers(racers, racer)
    assert len(records(counter)) == 1
    assert len(set(results)) == 1 and results[0].startswith("fresh-")


def test_when_the_calculator_fails_a_waiter_takes_over(mongo_collection: Any) -> None:
    # Threads on both mongomock and a real server: the failure path, not processes.
    calls: list[int] = []
    lock = threading.Lock()
    started = threading.Event()
    release = threading.Event()
    waiting = threading.Semaphore(0)

    @cached(backend="mongo", mongetter=lambda: mongo_collection, hash_func=fixed_key("k"))
    def f(x: int) -> str:
        with lock:
            calls.append(x)
            n = len(calls)
        if n == 1:
            started.set()
            release.wait(DEADLINE_S)
            raise RuntimeError("calculator failed")
        return f"v{n}"

    core = f.core
    original_wait = core.wait

    def counting_wait(key: Hashable, timeout_s: float | None) -> Entry | None:
        waiting.release()
        result: Entry | None = original_wait(key, timeout_s)
        return result

    core.wait = counting_wait
    outcomes: list[Any] = []

    def call() -> None:
        try:
            outcomes.append(f(1))
        except RuntimeError as exc:
            outcomes.append(exc)

    first = threading.Thread(target=call, daemon=True)
    first.start()
    assert started.wait(DEADLINE_S)
    waiters = [threading.Thread(target=call, daemon=True) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    for _ in waiters:
        assert waiting.acquire(timeout=DEADLINE_S), "a caller never waited"
    release.set()
    for thread in [first, *waiters]:
        thread.join(DEADLINE_S)
    assert sum(isinstance(o, RuntimeError) for o in outcomes) == 1
    assert sorted(o for o in outcomes if isinstance(o, str)) == ["v2"] * 3
    assert len(calls) == 2
    doc = doc_of(mongo_collection, f.namespace, "k")
    assert doc is not None and "claim_token" not in doc  # every claim released


def test_failed_calculation_leaves_no_document(mongo_collection: Any) -> None:
    @cached(backend="mongo", mongetter=lambda: mongo_collection, hash_func=fixed_key("k"))
    def f(x: int) -> int:
        raise ValueError("no")

    with pytest.raises(ValueError):
        f(1)
    assert doc_of(mongo_collection, f.namespace, "k") is None


def test_an_expired_claim_is_taken_over(mongo_collection: Any) -> None:
    calls: list[int] = []

    @cached(backend="mongo", mongetter=lambda: mongo_collection, hash_func=fixed_key("k"))
    def f(x: int) -> str:
        calls.append(x)
        return "computed"

    # Another "process" claims the key with a short lease, then dies: it never
    # renews or releases.
    dead = MongoCore(f.namespace, mongetter=mongo_collection)
    lease = 0.3
    begin = time.monotonic()
    assert dead.claim("k", lease)
    assert f.core.is_claimed("k")
    assert f(1) == "computed"
    assert time.monotonic() - begin >= lease - 0.05, "took over before the lease ended"
    assert calls == [1]
    dead.release("k")  # too late: its token no longer matches, nothing happens
    doc = doc_of(mongo_collection, f.namespace, "k")
    assert doc is not None and "value" in doc and "claim_token" not in doc


def test_a_live_calculator_keeps_its_claim_past_the_lease(mongo_collection: Any) -> None:
    lease = 0.3
    calls: list[int] = []
    started = threading.Event()
    release = threading.Event()

    @cached(
        backend="mongo",
        mongetter=lambda: mongo_collection,
        hash_func=fixed_key("k"),
        lease=lease,
    )
    def f(x: int) -> str:
        calls.append(x)
        started.set()
        release.wait(DEADLINE_S)
        return f"v{len(calls)}"

    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(f(1)), daemon=True)
    first.start()
    assert started.wait(DEADLINE_S)
    doc = doc_of(mongo_collection, f.namespace, "k")
    assert doc is not None
    first_until = doc["claim_until"]
    second = threading.Thread(target=lambda: results.append(f(1)), daemon=True)
    second.start()

    def renewed_past_first_lease() -> bool:
        now = time.time()
        current = doc_of(mongo_collection, f.namespace, "k")
        return now > first_until + 0.05 and current is not None and current["claim_until"] > now

    try:
        wait_until(renewed_past_first_lease, timeout_s=DEADLINE_S)
        assert calls == [1], "the waiter took over a claim that was being renewed"
    finally:
        release.set()
    first.join(DEADLINE_S)
    second.join(DEADLINE_S)
    assert results == ["v1", "v1"]


def test_wait_backs_off(mongo_collection: Any) -> None:
    core = MongoCore("tests.wait", mongetter=mongo_collection)
    other = MongoCore("tests.wait", mongetter=mongo_collection)
    assert other.claim("k", 60.0)
    polls = 0
    original = core.is_claimed

    def counting(key: Hashable) -> bool:
        nonlocal polls
        polls += 1
        return original(key)

    core.is_claimed = counting  # type: ignore[method-assign]
    begin = time.monotonic()
    assert core.wait("k", 0.3) is None
    elapsed = time.monotonic() - begin
    assert 0.3 <= elapsed < 1.0
    # 2, 4, 8, ... 100 ms: about ten polls in 0.3 s, not 150 at a fixed 2 ms.
    assert 3 <= polls <= 15, polls


def test_the_holders_store_ends_its_claim_in_the_same_update(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = MongoCore("tests.ends", mongetter=mongo_collection)
    other = MongoCore("tests.ends", mongetter=mongo_collection)
    assert holder.claim("k", 60.0)
    assert other.set("k", Entry("other", 1.0))  # not the holder: the claim stays
    assert other.is_claimed("k")
    updates: list[Any] = []
    original = mongo_collection.update_one

    def counted(*args: Any, **kwargs: Any) -> Any:
        updates.append(args[1])
        return original(*args, **kwargs)

    monkeypatch.setattr(mongo_collection, "update_one", counted)
    holder._coll = None  # resolved again, through the counting collection
    assert holder.set("k", Entry("mine", 2.0))
    holder.release("k")  # nothing left to do
    assert len(updates) == 1 and "$unset" in updates[0]  # one write: value in, claim out
    assert not other.is_claimed("k")
    assert other.get("k") == Entry("mine", 2.0)


# -- duplicate-key races -----------------------------------------------------------


def _failing_update_one(
    monkeypatch: pytest.MonkeyPatch, collection: Any, failures: int, when: str
) -> list[int]:
    """Make the next ``failures`` upserts whose update contains ``when`` raise E11000."""
    original = collection.update_one
    raised: list[int] = []

    def update_one(query: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        if len(raised) < failures and kwargs.get("upsert") and when in str(update):
            raised.append(1)
            raise DuplicateKeyError("E11000 duplicate key error (injected)", 11000)
        return original(query, update, *args, **kwargs)

    monkeypatch.setattr(collection, "update_one", update_one)
    return raised


def test_duplicate_key_on_the_claim_upsert_means_lost(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = MongoCore("tests.dup", mongetter=mongo_collection)
    raised = _failing_update_one(monkeypatch, mongo_collection, 1, "claim_token")
    assert core.claim("k", 60.0) is False
    assert raised == [1]
    assert core.claim("k", 60.0) is True


def test_a_spurious_claim_race_does_not_reach_the_caller(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(backend="mongo", mongetter=lambda: mongo_collection)
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    # The insert lost to a writer that has already gone: the caller looks again
    # and claims.
    raised = _failing_update_one(monkeypatch, mongo_collection, 1, "claim_token")
    with caplog.at_level(logging.WARNING):
        assert f(4) == 8
    assert raised == [1]
    assert calls == [4]
    assert warnings_in(caplog) == []
    assert f(4) == 8 and calls == [4]


def test_set_retries_a_duplicate_key_race(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = MongoCore("tests.dup", mongetter=mongo_collection)
    raised = _failing_update_one(monkeypatch, mongo_collection, 2, "value")
    assert core.set("k", Entry("v", time.time()))
    assert raised == [1, 1]
    entry = core.get("k")
    assert entry is not None and entry.value == "v"


def test_set_gives_up_after_repeated_duplicate_keys(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = MongoCore("tests.dup", mongetter=mongo_collection)
    _failing_update_one(monkeypatch, mongo_collection, 100, "value")
    with pytest.raises(BackendError, match="duplicate-key"):
        core.set("k", Entry("v", time.time()))


# -- fail-open with a real pymongo client and no server -----------------------------


@pytest.mark.usefixtures("url_clients")
def test_unreachable_server_fails_open_within_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timeout_ms = 300
    calls: list[int] = []

    @cached(
        backend="mongo",
        mongetter=DEAD_URL,
        backend_options={"server_selection_timeout_ms": timeout_ms},
    )
    def f(x: int) -> int:
        calls.append(x)
        return x + 1

    limit = max(timeout_ms / 1000, PYMONGO_SELECTION_STEP_S) + 0.5
    with caplog.at_level(logging.WARNING, logger="cachier_like"):
        for x in (1, 1):
            begin = time.monotonic()
            assert f(x) == 2
            assert time.monotonic() - begin < limit
    assert calls == [1, 1]
    messages = warnings_in(caplog)
    assert len(messages) == 1, "failures are reported once per interval"
    assert "ServerSelectionTimeoutError" in messages[0]


@pytest.mark.usefixtures("url_clients")
def test_unreachable_server_raises_with_raise_on_error() -> None:
    @cached(backend="mongo", mongetter=DEAD_URL + "/?serverSelectionTimeoutMS=200")
    def f(x: int) -> int:
        return x

    f_raising = cached(
        backend="mongo", mongetter=DEAD_URL + "/?serverSelectionTimeoutMS=200", raise_on_error=True
    )(lambda x: x)
    assert f(1) == 1
    with pytest.raises(BackendError, match="ServerSelectionTimeoutError"):
        f_raising(1)


@pytest.mark.usefixtures("url_clients")
def test_default_server_selection_timeout_is_short() -> None:
    @cached(backend="mongo", mongetter=DEAD_URL)
    def f(x: int) -> int:
        return x

    begin = time.monotonic()
    assert f(1) == 1
    elapsed = time.monotonic() - begin
    default_s = mongo_module.DEFAULT_SERVER_SELECTION_TIMEOUT_MS / 1000
    assert default_s <= elapsed < default_s + PYMONGO_SELECTION_STEP_S + 1.0


# -- mongetter forms and lazy resolution --------------------------------------------


def test_mongetter_collection_and_callable_share_entries(mongo_collection: Any) -> None:
    @cached(backend="mongo", mongetter=mongo_collection, namespace="tests.shared")
    def by_collection(x: int) -> str:
        return "by collection"

    @cached(backend="mongo", mongetter=lambda: mongo_collection, namespace="tests.shared")
    def by_callable(x: int) -> str:
        return "by callable"

    assert by_collection(1) == "by collection"
    assert by_callable(1) == "by collection"


def test_mongetter_is_called_lazily_and_once(mongo_collection: Any) -> None:
    got: list[int] = []

    def mongetter() -> Any:
        got.append(1)
        return mongo_collection

    @cached(backend="mongo", mongetter=mongetter)
    def f(x: int) -> int:
        return x

    assert got == [], "decorating must not reach the server"
    assert f.cached_entry(1) is None
    assert f(1) == 1 and f(2) == 2 and f(1) == 1
    assert got == [1]


def test_a_forked_child_resolves_its_own_collection() -> None:
    # About re-resolution after fork, not the server: a mongomock collection in both
    # test modes (the child works on its own copy of it).
    resolved: list[int] = []
    collection: Any = mongomock.MongoClient()["db"]["entries"]

    def mongetter() -> Any:
        resolved.append(os.getpid())
        return collection

    @cached(backend="mongo", mongetter=mongetter)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    queue: ResultQueue[list[int]] = FORK.Queue()

    def child() -> None:
        f(2)
        queue.put(resolved)

    process = FORK.Process(target=child, daemon=True)
    process.start()
    in_child = queue.get(timeout=DEADLINE_S)
    process.join(DEADLINE_S)
    assert process.exitcode == 0
    assert in_child[0] == os.getpid() and len(in_child) == 2
    assert in_child[1] == process.pid
    assert resolved == [os.getpid()]


@pytest.mark.usefixtures("url_clients")
def test_url_mongetter_builds_its_client_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    # The URL names a host that does not exist: pymongo.MongoClient is replaced by a
    # recorder handing out a mongomock client, which proves when it is built.
    built: list[tuple[str, dict[str, Any]]] = []
    client: Any = mongomock.MongoClient()

    def fake_client(url: str, **options: Any) -> Any:
        built.append((url, options))
        return client

    monkeypatch.setattr(pymongo, "MongoClient", fake_client)

    @cached(
        backend="mongo",
        mongetter="mongodb://nowhere.invalid:27017",
        backend_options={"database": "db1", "collection": "c1"},
    )
    def f(x: int) -> int:
        return x * 3

    assert built == []
    assert f(2) == 6
    timeouts = {"serverSelectionTimeoutMS": 2000, "socketTimeoutMS": 1000, "connectTimeoutMS": 1000}
    assert built == [("mongodb://nowhere.invalid:27017", timeouts)]
    assert client["db1"]["c1"].find_one({"ns": f.namespace}) is not None


@pytest.mark.usefixtures("url_clients")
def test_url_mongetter_with_backend_options() -> None:
    # mongomock.patch stands in for the server behind the URL (in both test modes:
    # this is about where a URL's entries go, not about the server).
    with mongomock.patch(servers=(("mongo.example", 27017),)):

        @cached(
            backend="mongo",
            mongetter="mongodb://mongo.example:27017",
            backend_options={
                "database": "appdb",
                "collection": "memo",
                "server_selection_timeout_ms": 500,
            },
        )
        def f(x: int) -> int:
            return x + 10

        @cached(backend="mongo", mongetter="mongodb://mongo.example:27017/urldb")
        def g(x: int) -> int:
            return x + 20

        assert f(1) == 11 and g(1) == 21
        peek: Any = pymongo.MongoClient("mongodb://mongo.example:27017")
        doc = peek["appdb"]["memo"].find_one({"ns": f.namespace})
        assert doc is not None
        assert peek["urldb"]["entries"].find_one({"ns": g.namespace}) is not None
        assert f(1) == 11


@pytest.mark.usefixtures("url_clients")
def test_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(URL_ENV, "mongodb://env-mongo.example:27017/envdb")
    with mongomock.patch(servers=(("env-mongo.example", 27017),)):

        @cached(backend="mongo")
        def f(x: int) -> int:
            return x - 1

        assert f(5) == 4
        peek: Any = pymongo.MongoClient("mongodb://env-mongo.example:27017")
        assert peek["envdb"][mongo_module.DEFAULT_COLLECTION].count_documents({}) == 1


def test_no_mongetter_and_no_environment_is_a_configuration_error_at_the_first_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    calls: list[int] = []

    @cached(backend="mongo")  # decorating needs nothing yet
    def f(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(ConfigurationError, match=URL_ENV):
        f(3)  # a mistake to fix: raised, not "failed open"
    assert calls == []


@pytest.mark.usefixtures("url_clients")
def test_the_url_may_be_set_after_decoration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)

    @cached(backend="mongo")  # a module imported before load_dotenv()
    def f(x: int) -> int:
        return x * 5

    monkeypatch.setenv(URL_ENV, "mongodb://late-mongo.example:27017/latedb")
    with mongomock.patch(servers=(("late-mongo.example", 27017),)):
        assert f(2) == 10
        peek: Any = pymongo.MongoClient("mongodb://late-mongo.example:27017")
        assert peek["latedb"][mongo_module.DEFAULT_COLLECTION].count_documents({}) == 1


@pytest.mark.usefixtures("url_clients")
@pytest.mark.parametrize(
    "options",
    [
        {"mongetter": "mongodb://127.0.0.1:notaport/"},
        {"mongetter": DEAD_URL, "backend_options": {"server_selection_timeout_ms": "soon"}},
    ],
    ids=["bad-port", "bad-timeout"],
)
def test_an_invalid_url_or_option_is_a_configuration_error_at_the_first_call(
    options: dict[str, Any],
) -> None:
    calls: list[int] = []

    @cached(backend="mongo", **options)
    def f(x: int) -> int:
        calls.append(x)
        return x

    with pytest.raises(ConfigurationError, match="invalid MongoDB URL"):
        f(1)
    assert calls == []


@pytest.mark.parametrize(
    "options",
    [
        {"mongetter": 42},
        {"mongetter": "http://example.com"},
        {"mongetter": lambda: None, "backend_options": {"database": "x"}},
        {"mongetter": DEAD_URL, "server_ttl": -1.0},
        {"mongetter": DEAD_URL, "backend_options": {"no_such_option": 1}},
    ],
    ids=["number", "not-a-mongodb-url", "database-without-url", "negative-ttl", "unknown"],
)
def test_bad_options_are_rejected_at_decoration(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):

        @cached(backend="mongo", **options)
        def f(x: int) -> int:
            return x


def test_import_does_not_import_pymongo() -> None:
    code = "import sys, cachier_like; assert 'pymongo' not in sys.modules, 'pymongo imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


# -- document layout, claims as documents, stale reads ------------------------------


def test_document_layout_and_indexes(mongo_collection: Any) -> None:
    @cached(backend="mongo", mongetter=lambda: mongo_collection, hash_func=fixed_key("k"))
    def f(x: int) -> list[int]:
        return [x]

    assert f(1) == [1]
    entry = f.cached_entry(1)
    assert entry is not None
    doc = doc_of(mongo_collection, f.namespace, "k")
    assert doc is not None
    assert isinstance(doc["value"], bytes)  # BSON binary (bytes subclass Binary or bytes)
    assert doc["ts"] == entry.timestamp  # exact: a double, not the ms-precision date
    assert abs(as_utc(doc["time"]) - entry.time) < timedelta(milliseconds=1)
    assert doc["size"] == len(doc["value"])
    assert "expires_at" not in doc and "claim_token" not in doc and "claim_until" not in doc
    index = mongo_collection.index_information()[mongo_module.INDEX_NAME]
    assert [tuple(part) for part in index["key"]] == [("ns", 1), ("key", 1)]
    assert index["unique"] is True
    assert TTL_INDEX_NAME not in mongo_collection.index_information()


def test_a_claim_only_document_is_not_an_entry(mongo_collection: Any) -> None:
    core = MongoCore("tests.claims", mongetter=mongo_collection)
    assert core.claim("k", 60.0)
    doc = doc_of(mongo_collection, "tests.claims", "k")
    assert doc is not None and "value" not in doc
    assert core.get("k") is None
    assert core.stats().entries == 0 and core.stats().claims == 1
    core.release("k")
    assert doc_of(mongo_collection, "tests.claims", "k") is None


# -- clear, claims, purge, stats ----------------------------------------------------


def test_clear_keeps_a_calculation_in_progress(mongo_collection: Any) -> None:
    core = MongoCore("tests.clear", mongetter=mongo_collection)
    core.set("a", Entry(1, time.time()))
    core.set("b", Entry(2, time.time()))
    assert core.claim("b", 60.0)
    assert core.clear() == 2
    assert core.get("a") is None and core.get("b") is None
    assert core.is_claimed("b")
    core.release("b")
    assert mongo_collection.count_documents({}) == 0


def test_purge_stale_spares_an_entry_being_refreshed_until_its_claim_is_cleared(
    mongo_collection: Any,
) -> None:
    """Purging with claims in the documents, which the contract's purge test has not.

    A claim lives in its entry's document: purging spares an old entry being refreshed
    and a pending first calculation, and clear_claims ends the refresh (its lease can
    no longer be renewed) but keeps the entry, which a purge then removes.
    """
    core = MongoCore("tests.maint", mongetter=mongo_collection)
    now = time.time()
    core.set("old", Entry("o", now - 100))
    core.set("new", Entry("n", now))
    core.set("busy", Entry("b", now - 100))
    assert core.claim("busy", 60.0)  # an old entry being refreshed
    assert core.claim("pending", 60.0)  # a first calculation
    assert core.purge_stale(50, now) == 1
    assert core.get("old") is None and core.get("busy") is not None
    assert core.clear_claims() == 2
    assert not core.is_claimed("busy") and not core.renew("busy", 60.0)
    assert core.purge_stale(50, now) == 1  # "busy", no longer being refreshed
    assert core.stats().entries == 1


# -- server_ttl ---------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [timedelta(hours=1), 3600.0], ids=["timedelta", "seconds"])
def test_server_ttl_creates_a_ttl_index_and_sets_expires_at(
    mongo_collection: Any, ttl: timedelta | float
) -> None:
    @cached(
        backend="mongo",
        mongetter=lambda: mongo_collection,
        server_ttl=ttl,
        hash_func=fixed_key("k"),
    )
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    index = mongo_collection.index_information()[TTL_INDEX_NAME]
    assert [tuple(part) for part in index["key"]] == [("expires_at", 1)]
    assert index["expireAfterSeconds"] == 0  # each document carries its own expiry time
    doc = doc_of(mongo_collection, f.namespace, "k")
    assert doc is not None
    expected = datetime.fromtimestamp(doc["ts"] + 3600, tz=timezone.utc)
    assert abs(as_utc(doc["expires_at"]) - expected) < timedelta(milliseconds=1)


def test_entries_past_server_ttl_read_as_misses(mongo_collection: Any) -> None:
    # A real server deletes expired documents in a background pass about once a
    # minute; mongomock deletes them on the next access. Either way the core never
    # serves an entry older than server_ttl.
    core = MongoCore("tests.ttl", mongetter=mongo_collection, server_ttl=60)
    core.set("old", Entry("o", time.time() - 120))
    core.set("new", Entry("n", time.time()))
    assert core.get("old") is None
    entry = core.get("new")
    assert entry is not None and entry.value == "n"


def test_a_claim_pushes_expires_at_past_its_lease(mongo_collection: Any) -> None:
    core = MongoCore("tests.ttl", mongetter=mongo_collection, server_ttl=1)
    assert core.claim("k", 60.0)
    doc = doc_of(mongo_collection, "tests.ttl", "k")
    assert doc is not None
    assert as_utc(doc["expires_at"]).timestamp() >= doc["claim_until"] - 0.001


# -- inspection (the cachier-like CLI) ------------------------------------------------


@pytest.mark.usefixtures("url_clients")
def test_entries_namespaces_and_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from cachier_like.cli import main

    url = "mongodb://cli-mongo.example:27017"
    with mongomock.patch(servers=(("cli-mongo.example", 27017),)):
        options = {"database": "clidb", "collection": "memo"}

        @cached(backend="mongo", mongetter=url, backend_options=options)
        def f(x: int) -> int:
            return x

        @cached(backend="mongo", mongetter=url, backend_options=options)
        def g(x: int) -> int:
            return x

        f(1), f(2), g(1)
        assert MongoCore.namespaces(mongetter=url, **options) == sorted([f.namespace, g.namespace])
        infos = sorted(f.core.entries(), key=lambda info: info.timestamp)
        assert [info.timestamp for info in infos] == sorted(
            entry.timestamp for entry in (f.cached_entry(1), f.cached_entry(2)) if entry
        )
        assert all(info.size and info.size > 0 for info in infos)

        store = ["--backend", "mongo", "--url", url, "--db", "clidb", "--collection", "memo"]
        assert main(["ls", *store]) == 0
        listing = capsys.readouterr().out
        assert f.namespace in listing and g.namespace in listing
        assert main(["clear", *store, "--function", f.namespace]) == 0
        assert f.cached_entry(1) is None and g.cached_entry(1) is not None


# -- delete, batches, tag versions --------------------------------------------------

#: The collection methods a core may query or write with.
OPERATIONS: tuple[str, ...] = ("find", "find_one", "aggregate", "count_documents", "distinct")
OPERATIONS += ("update_one", "update_many", "delete_one", "delete_many", "bulk_write")
OPERATIONS += ("insert_one", "insert_many", "replace_one", "find_one_and_update")


def count_operations(monkeypatch: pytest.MonkeyPatch, collection: Any) -> dict[str, int]:
    """Count the operations made on ``collection`` from now on, by name.

    Only the outermost call counts: pymongo's ``find_one`` is a ``find`` underneath (so
    is mongomock's), which is one query, not two. Cores built afterwards see the
    counting methods (a core binds them as it resolves its collection).
    """
    counts: dict[str, int] = {}
    depth = threading.local()

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            outermost = not getattr(depth, "inside", False)
            if outermost:
                counts[name] = counts.get(name, 0) + 1
            depth.inside = True
            try:
                return original(*args, **kwargs)
            finally:
                depth.inside = not outermost

        return counted

    for name in OPERATIONS:
        monkeypatch.setattr(collection, name, counting(name, getattr(collection, name)))
    return counts


def test_get_tagged_reads_the_entry_and_its_tags_with_one_query(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = count_operations(monkeypatch, mongo_collection)
    core = MongoCore("tests.tagged", mongetter=mongo_collection)
    core.bump_tags(["a", "b"])
    core.bump_tags(["b"])
    entry = Entry("v", 1.0, (("a", 1), ("b", 2)))
    assert core.set("k", entry)
    core.get("k")  # the clock's offset is measured with a first read, not below
    counts.clear()
    assert core.get_tagged("k", ["a", "b", "never"]) == (entry, (1, 2, 0))
    assert counts == {"find": 1}
    counts.clear()
    assert core.get_tagged("missing", ["b"]) == (None, (2,))
    assert counts == {"find": 1}
    counts.clear()
    assert core.get_tagged("k", []) == (entry, ())  # no tags: the plain read
    assert counts == {"find_one": 1}


def test_batches_and_bumps_are_one_operation_each(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = count_operations(monkeypatch, mongo_collection)
    core = MongoCore("tests.batches", mongetter=mongo_collection)
    core.get("warm-up")
    items = [(f"k{i}", Entry(i, float(i))) for i in range(20)]
    counts.clear()
    assert core.set_many(items) == [True] * 20
    assert counts == {"bulk_write": 1}
    counts.clear()
    keys = [key for key, _ in items] + ["missing", "k3"]
    assert core.get_many(keys) == [entry for _, entry in items] + [None, Entry(3, 3.0)]
    assert counts == {"find": 1}
    counts.clear()
    core.bump_tags(["x", "y", "z"])
    assert counts == {"bulk_write": 1}
    counts.clear()
    assert core.tag_versions(["x", "y", "z", "w"]) == (1, 1, 1, 0)
    assert counts == {"find": 1}
    counts.clear()
    assert core.delete("k1")  # unclaimed: the document goes in one delete
    assert counts == {"delete_one": 1}
    assert doc_of(mongo_collection, "tests.batches", "k1") is None


def test_set_many_by_the_holder_ends_its_claims_in_the_bulk_and_no_others(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = MongoCore("tests.held", mongetter=mongo_collection)
    other = MongoCore("tests.held", mongetter=mongo_collection)
    assert holder.claim("a", 60.0) and holder.claim("b", 60.0)
    assert other.claim("c", 60.0)
    counts = count_operations(monkeypatch, mongo_collection)
    holder._coll = None  # resolved again, through the counting collection
    stored = holder.set_many([("a", Entry(1, 1.0)), ("b", Entry(2, 1.0)), ("c", Entry(3, 1.0))])
    assert stored == [True, True, True]
    for key in ("a", "b"):  # ended in the store itself, before any release
        doc = doc_of(mongo_collection, "tests.held", key)
        assert doc is not None and "claim_token" not in doc and "claim_until" not in doc
    assert other.is_claimed("c")  # not the holder's claim: it stays
    assert holder.renew("a", 60.0)  # ended by its own store: not a lost claim
    counts.clear()
    holder.release("a")
    holder.release("b")
    assert counts == {}  # nothing left to do
    assert other.get_many(["a", "b", "c"]) == [Entry(1, 1.0), Entry(2, 1.0), Entry(3, 1.0)]


def test_set_many_of_a_holder_whose_claim_was_taken_over_leaves_the_new_claim(
    mongo_collection: Any,
) -> None:
    holder = MongoCore("tests.taken", mongetter=mongo_collection)
    other = MongoCore("tests.taken", mongetter=mongo_collection)
    assert holder.claim("k", 60.0)
    assert other.clear_claims() == 1
    assert other.claim("k", 60.0)
    token = (doc_of(mongo_collection, "tests.taken", "k") or {})["claim_token"]
    assert holder.set_many([("k", Entry("late", 2.0))]) == [True]
    holder.release("k")  # its claim is gone: nothing to end
    doc = doc_of(mongo_collection, "tests.taken", "k")
    assert doc is not None and doc["claim_token"] == token
    assert other.get("k") == Entry("late", 2.0)


def _racing_bulk_write(
    monkeypatch: pytest.MonkeyPatch, collection: Any, failures: int, lost: int = 1
) -> list[int]:
    """Make the next ``failures`` bulk writes lose request ``lost`` to an insert race.

    As a server does: an ordered bulk runs the requests before it and stops, an
    unordered one runs all the others; then ``BulkWriteError`` reports E11000 at ``lost``.
    """
    original = collection.bulk_write
    raised: list[int] = []

    def bulk_write(requests: list[Any], ordered: bool = True, **kwargs: Any) -> Any:
        if len(raised) >= failures or len(requests) <= lost:
            return original(requests, ordered=ordered, **kwargs)
        raised.append(1)
        ran = requests[:lost] if ordered else requests[:lost] + requests[lost + 1 :]
        if ran:
            original(ran, ordered=ordered, **kwargs)
        error = {"index": lost, "code": 11000, "errmsg": "E11000 duplicate key (injected)"}
        raise BulkWriteError({"writeErrors": [error], "writeConcernErrors": []})

    monkeypatch.setattr(collection, "bulk_write", bulk_write)
    return raised


def test_set_many_resumes_at_the_store_that_lost_an_insert_race(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = MongoCore("tests.bulk_race", mongetter=mongo_collection)
    raised = _racing_bulk_write(monkeypatch, mongo_collection, failures=2)
    items = [(f"k{i}", Entry(i, 1.0)) for i in range(4)]
    assert core.set_many(items) == [True] * 4
    assert raised == [1, 1]
    assert core.get_many([key for key, _ in items]) == [entry for _, entry in items]


def test_set_many_gives_up_after_repeated_insert_races(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = MongoCore("tests.bulk_race", mongetter=mongo_collection)
    _racing_bulk_write(monkeypatch, mongo_collection, failures=100, lost=0)
    with pytest.raises(BackendError, match="duplicate-key"):
        core.set_many([("a", Entry(1, 1.0)), ("b", Entry(2, 1.0))])


def test_bump_tags_sends_again_only_the_increment_that_lost_a_race(
    mongo_collection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = MongoCore("tests.bump_race", mongetter=mongo_collection)
    raised = _racing_bulk_write(monkeypatch, mongo_collection, failures=1)
    core.bump_tags(["a", "b", "c"])
    assert raised == [1]
    assert core.tag_versions(["a", "b", "c"]) == (1, 1, 1)  # each once: none twice


def test_delete_under_a_live_claim_unsets_the_entry_and_a_dead_claim_goes_with_it(
    mongo_collection: Any,
) -> None:
    core = MongoCore("tests.delete", mongetter=mongo_collection, server_ttl=3600)
    holder = MongoCore("tests.delete", mongetter=mongo_collection)
    assert core.set("live", Entry(1, time.time())) and core.set("dead", Entry(2, time.time()))
    assert holder.claim("live", 60.0) and holder.claim("dead", 60.0)
    mongo_collection.update_one({"ns": "tests.delete", "key": "dead"}, {"$set": {"claim_until": 0}})
    assert core.delete("live") and core.delete("dead")
    doc = doc_of(mongo_collection, "tests.delete", "live")
    assert doc is not None and {"value", "ts", "time", "size"}.isdisjoint(doc)
    assert {"claim_token", "claim_until", "expires_at"} <= set(doc)  # the claim stays
    assert doc_of(mongo_collection, "tests.delete", "dead") is None  # a lapsed claim goes
    assert core.get("live") is None and core.is_claimed("live")
    assert not core.delete("live")  # no value left to remove


def test_tag_versions_are_the_collections_and_maintenance_never_sees_them(
    mongo_collection: Any,
) -> None:
    f = MongoCore("tests.tags.f", mongetter=mongo_collection, server_ttl=3600)
    g = MongoCore("tests.tags.g", mongetter=mongo_collection)
    f.bump_tags(["user:7", "team 2"])  # two tag documents: the unique index takes both
    g.bump_tags(["user:7"])
    assert f.set("k", Entry(1, time.time(), (("user:7", 2),)))
    assert g.set("k", Entry(2, time.time()))
    tag_docs = list(mongo_collection.find({"tag_version": {"$exists": True}}))
    assert len(tag_docs) == 2
    for doc in tag_docs:
        assert doc["key"] == doc["_id"] and set(doc["_id"]) == {"cachier_like_tag"}
        assert "ns" not in doc and "expires_at" not in doc  # no function's, no TTL
    assert MongoCore.namespaces(mongetter=mongo_collection) == ["tests.tags.f", "tests.tags.g"]
    assert [info.key for info in f.entries()] == ["k"]
    assert f.stats().entries == 1 and f.stats().claims == 0
    assert f.purge_stale(0.0, time.time() + 10.0) == 1
    assert f.clear_claims() == 0 and f.clear() == 0 and g.clear() == 1
    assert f.tag_versions(["user:7", "team 2"]) == (2, 1)  # clear() resets no version
    assert g.get_tagged("k", ["user:7"]) == (None, (2,))


_BULK_ON_MONGOMOCK = """
import sys
import mongomock
from cachier_like import cached
if sys.argv[1] == "taught":
    from cachier_like.testing.mongomock_support import teach_mongomock_bulk_updates
    teach_mongomock_bulk_updates()
    teach_mongomock_bulk_updates()  # idempotent
collection = mongomock.MongoClient().db.entries
@cached(backend="mongo", mongetter=collection, tags=["t"])
def f(x):
    return x
try:
    f.invalidate_tags("t")
    print(f.get_many([(1,), (2,)]), f.core.tag_versions(["t"]))
except Exception as exc:
    print("failed:", type(exc).__name__)
"""


@pytest.mark.skipif(real_server_uri() is not None, reason="about mongomock, not a server")
def test_the_shipped_mongomock_helper_lets_bulk_writes_run() -> None:
    """In a fresh process (this suite's own fixtures already taught this one)."""

    def run(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", _BULK_ON_MONGOMOCK, mode],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout.strip()

    if "sort" in pymongo.UpdateOne.__init__.__code__.co_varnames:  # pymongo 4.10+
        assert run("untaught").startswith("failed:")
    assert run("taught") == "[1, 2] (1,)"
