"""The mongo core of the behaviour suite: mongomock by default, a real server on request.

Set ``CACHIER_LIKE_TEST_MONGO_URI`` (e.g. ``mongodb://127.0.0.1:27017``) to run the
same tests against a real MongoDB server; the core cannot tell which one it has.
Each test gets its own collection, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import pytest

from cachier_like.cores.base import Core
from cachier_like.cores.shared import storage_name
from cachier_like.testing import CoreContract, MakeCore
from cachier_like.testing.mongomock_support import teach_mongomock_bulk_updates
from tests.backends.services import require_service
from tests.backends.types import CoreOptions

TEST_URI_ENV = "CACHIER_LIKE_TEST_MONGO_URI"
TEST_DATABASE = "cachier_like_test"

PARAMS = [pytest.param("mongo", marks=pytest.mark.mongo, id="mongo")]
#: The ids of PARAMS whose store forked processes share: none, as a forked child needs a
#: URL mongetter, not this test's collection object (and mongomock lives in one process).
CROSS_PROCESS: frozenset[str] = frozenset()


teach_mongomock_bulk_updates()  # bulk_write runs pymongo's UpdateOne, as on a server


def real_server_uri() -> str | None:
    """The URI of the real server the tests run against, or None for mongomock."""
    return os.environ.get(TEST_URI_ENV) or None


@pytest.fixture(scope="session")
def _real_mongo_client() -> Iterator[Any]:
    """One pymongo client per test process for the real server (None on mongomock)."""
    uri = real_server_uri()
    if uri is None:
        yield None
        return
    import pymongo

    client: Any = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def mongo_collection(_real_mongo_client: Any) -> Iterator[Any]:
    """A collection of this test's own: on the real server, or in a mongomock client."""
    name = f"entries_{uuid.uuid4().hex}"
    if _real_mongo_client is None:
        import mongomock

        yield mongomock.MongoClient()[TEST_DATABASE][name]
        return
    client = _real_mongo_client
    require_service(
        "MongoDB",
        lambda: client.admin.command("ping"),
        f"start a server or unset ${TEST_URI_ENV} to use mongomock",
    )
    collection = client.get_default_database(TEST_DATABASE)[name]
    yield collection
    collection.drop()


@pytest.fixture
def mongo_core_options(mongo_collection: Any) -> CoreOptions:
    """``@cached`` options for the mongo core, with a mongetter for this test's collection."""

    def options(**extra: Any) -> dict[str, Any]:
        return {"backend": "mongo", "mongetter": lambda: mongo_collection, **extra}

    return options


class MongoContract(CoreContract):
    """The contract on the mongo core, in a collection of the test's own.

    On mongomock the data lives in this process, and updates of an existing document
    are not atomic between threads (see ``tests/test_mongo_core.py``).
    """

    pytestmark = pytest.mark.mongo
    cross_process = False  # a forked child needs a URL mongetter, not this collection
    atomic_claims_on_entries = real_server_uri() is not None

    @pytest.fixture
    def make_core(self, mongo_collection: Any) -> MakeCore:
        from cachier_like.cores.mongo import MongoCore

        def make(namespace: str, **options: Any) -> Core:
            return MongoCore(namespace, mongetter=mongo_collection, **options)

        return make

    @pytest.fixture
    def store_options(self, mongo_collection: Any) -> dict[str, Any]:
        return {"mongetter": mongo_collection}

    @pytest.fixture
    def damage(self, mongo_collection: Any) -> Callable[[Core, Hashable], None]:
        def garble(core: Core, key: Hashable) -> None:
            document = {"ns": core.namespace, "key": storage_name(key)}
            garbage = {"$set": {"value": "garbage", "ts": "not a time"}}
            assert mongo_collection.update_one(document, garbage).matched_count == 1

        return garble

    @pytest.fixture
    def tamper(self, mongo_collection: Any) -> Callable[[Core, Hashable, bytes], None]:
        from bson import Binary

        def replace(core: Core, key: Hashable, payload: bytes) -> None:
            document = {"ns": core.namespace, "key": storage_name(key)}
            planted = {"$set": {"value": Binary(payload)}}
            assert mongo_collection.update_one(document, planted).matched_count == 1

        return replace


CONTRACTS = [MongoContract]
