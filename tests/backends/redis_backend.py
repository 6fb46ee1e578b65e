"""The Redis core of the behaviour suite and the core contract, on the real server.

The server is ``$CACHIER_LIKE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
Every test gets a key prefix of its own, so parallel runs (``-n auto``) never share
keys, and every key under that prefix is removed after the test (with ``SCAN``).

``redis_cluster`` is a private 3-master Redis Cluster (``tests/redis_cluster.py``), one
per test session (xdist worker), started on first use from the local binaries.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import pytest
import redis

from cachier_like.cores.base import Core
from cachier_like.testing import CoreContract, MakeCore
from tests.backends.services import require_service
from tests.backends.types import CoreOptions
from tests.redis_cluster import Cluster, private_cluster

REDIS_URL_ENV = "CACHIER_LIKE_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

PARAMS = [pytest.param("redis", marks=pytest.mark.redis, id="redis")]
#: The ids of PARAMS whose store forked processes share.
CROSS_PROCESS = frozenset({"redis"})


def redis_url() -> str:
    """The test server's URL: the environment variable, else the local default."""
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def unique_prefix() -> str:
    """A key prefix no other test (or xdist worker) uses."""
    return f"clt-{uuid.uuid4().hex[:16]}"


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Remove every key under ``prefix``: the core's (``{prefix...``) and the test's own."""
    removed = 0
    for pattern in (f"{{{prefix}*", f"{prefix}*"):
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                removed += int(client.unlink(*batch))
                batch = []
        if batch:
            removed += int(client.unlink(*batch))
    return removed


@pytest.fixture(scope="session")
def redis_test_client() -> Iterator[redis.Redis]:
    """One client per test session (xdist worker); skips (fails under CI) when down."""
    url = redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)

    def probe() -> None:
        try:
            client.ping()
        except redis.RedisError as exc:  # redis-py's repr hides the message
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc

    how = f"start it (scripts/test-local.sh) or point ${REDIS_URL_ENV} at a server"
    require_service(f"Redis at {url}", probe, how)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A private 3-master Redis Cluster for this session; its nodes are stopped at the end."""
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
def redis_prefix(redis_test_client: redis.Redis) -> Iterator[str]:
    """This test's key prefix; its keys are deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    delete_prefix(redis_test_client, prefix)


@pytest.fixture
def redis_core_options(redis_test_client: redis.Redis, redis_prefix: str) -> CoreOptions:
    """``@cached`` options for the Redis core, under this test's own key prefix."""

    def options(**extra: Any) -> dict[str, Any]:
        return {
            "backend": "redis",
            "redis_client": redis_test_client,
            "key_prefix": redis_prefix,
            **extra,
        }

    return options


class RedisContract(CoreContract):
    """The contract on the Redis core, under the test's own key prefix."""

    pytestmark = pytest.mark.redis
    notifications = True

    @pytest.fixture
    def make_core(self, redis_test_client: redis.Redis, redis_prefix: str) -> MakeCore:
        from cachier_like.cores.redis import RedisCore

        def make(namespace: str, **options: Any) -> Core:
            return RedisCore(
                namespace, redis_client=redis_test_client, key_prefix=redis_prefix, **options
            )

        return make

    @pytest.fixture
    def store_options(self, redis_test_client: redis.Redis, redis_prefix: str) -> dict[str, Any]:
        return {"redis_client": redis_test_client, "key_prefix": redis_prefix}

    @pytest.fixture
    def damage(self, redis_test_client: redis.Redis) -> Callable[[Core, Hashable], None]:
        from cachier_like.cores.redis import RedisCore

        def garble(core: Core, key: Hashable) -> None:
            assert isinstance(core, RedisCore)
            assert redis_test_client.set(core.key_of(key), b"garbage", xx=True)

        return garble

    @pytest.fixture
    def tamper(self, redis_test_client: redis.Redis) -> Callable[[Core, Hashable, bytes], None]:
        from cachier_like.cores.redis import HEADER_SIZE, RedisCore

        def replace(core: Core, key: Hashable, payload: bytes) -> None:
            assert isinstance(core, RedisCore)
            stored = redis_test_client.get(core.key_of(key))
            assert isinstance(stored, bytes)
            assert redis_test_client.set(core.key_of(key), stored[:HEADER_SIZE] + payload)

        return replace


CONTRACTS = [RedisContract]
