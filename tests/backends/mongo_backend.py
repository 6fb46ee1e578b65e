"""The mongo core of the behaviour suite: mongomock by default, a real server on request.

Set ``CACHIER_LIKE_TEST_MONGO_URI`` (e.g. ``mongodb://127.0.0.1:27017``) to run the
same tests against a real MongoDB server; the core cannot tell which one it has.
Each test gets its own collection, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.backends.services import require_service
from tests.backends.types import CoreOptions

TEST_URI_ENV = "CACHIER_LIKE_TEST_MONGO_URI"
TEST_DATABASE = "cachier_like_test"

PARAMS = [pytest.param("mongo", marks=pytest.mark.mongo, id="mongo")]


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
