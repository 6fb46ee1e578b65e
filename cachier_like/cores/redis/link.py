"""How the Redis core talks to the server: clients, per-thread connections, Lua scripts.

Imported only by :mod:`cachier_like.cores.redis`. redis-py checks a connection out of
its pool and back in for every command (with locks and metrics), which costs more than
the round trip itself on a local network. A :class:`Link` therefore runs the core's
commands on one private connection per thread, built from the client's own connection
settings (host, auth, TLS, database, timeouts, retry), when the client is a
``redis.Redis`` on a plain ``ConnectionPool``. Any other client (``RedisCluster``,
Sentinel, a ``BlockingConnectionPool``, client-side caching) runs them through its own
``execute_command``, keeping its routing and limits.

A link is shared by every core that uses the same client. It is a circuit breaker
(:mod:`.._breaker`): once the server fails to connect or answer in time, calls fail at
once while a background thread pings it, and resume when it answers; so a dead or hung
server costs the calls in flight one timeout each, not one timeout per call.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ... import forks
from ...errors import BackendError, ConfigurationError
from .._breaker import Breaker
from ..shared import StoreSource, StoreSpec
from . import wire
from .scripts import Script, by_sha, by_text
from .tracking import read_tracked, tracks
from .wire import _exchange, _joined, _Slot

URL_ENV = "CACHIER_LIKE_REDIS_URL"
"""Environment variable holding the server URL when no ``redis_client`` is given."""
Client = redis.Redis | RedisCluster
NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError)
#: After a failure to build a client (a RedisCluster connects as it is built), the
#: next attempt waits this long.
RETRY_AFTER_S = 1.0
#: Timeouts of clients built from a URL (the URL's query parameters win): a server that
#: stops answering costs a call half a second before the breaker opens.
URL_DEFAULTS: dict[str, Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
SCAN_COUNT = 500
#: Longest single blocking read of a waiter (cut to half the socket timeout).
MAX_BLOCK_S = 1.0
_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_FAST_CONNECTIONS = (Connection, SSLConnection, UnixDomainSocketConnection)
_TRUE = {"1", "true", "yes", "on"}

_lock = threading.Lock()
_links: weakref.WeakKeyDictionary[Any, Link] = weakref.WeakKeyDictionary()
_url_clients: dict[str, Client] = {}


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()


forks.reset_in_child(_after_fork)


def _checked(client: Client) -> Client:
    if client.get_encoder().decode_responses:
        raise ConfigurationError("redis_client must not decode responses: entries are bytes")
    return client


def _is_client(value: object) -> bool:
    return isinstance(value, (redis.Redis, RedisCluster, aredis.Redis, AsyncRedisCluster))


def is_async_client(value: object) -> bool:
    """Whether ``value`` is a ``redis.asyncio`` client (``Redis`` or ``RedisCluster``)."""
    return isinstance(value, (aredis.Redis, AsyncRedisCluster))


def _client(value: object) -> Client:
    if not _is_client(value):
        raise ConfigurationError(
            f"redis_client callable returned {type(value).__name__}, not a client"
        )
    return _checked(value)  # type: ignore[arg-type]


def _check_url(url: str, where: str) -> str:
    if not url.startswith(_URL_SCHEMES):
        raise ConfigurationError(f"{where} must be a URL starting with {_URL_SCHEMES}: {url!r}")
    return url


_SPEC: StoreSpec[Client] = StoreSpec(
    backend="redis",
    option="redis_client",
    env=URL_ENV,
    kinds=(
        "a redis.Redis, a RedisCluster (or their redis.asyncio twins, for async def "
        "functions), a callable returning one, or a URL"
    ),
    example="redis://127.0.0.1:6379/0",
    is_object=_is_client,
    parse=_check_url,
    connect=lambda url: _checked(client_from_url(url)),
    check=_client,
)


class ClientSource:
    """What ``redis_client=`` names, checked at once, made into a client on first use.

    A client that failed to build (a RedisCluster connects as it is built) is not
    built again within :data:`RETRY_AFTER_S`.
    """

    def __init__(self, given: Any) -> None:
        self._source = StoreSource(given, _SPEC)
        self._retry_at = 0.0

    @property
    def given(self) -> Any:
        """``redis_client`` as given (None: the environment's URL)."""
        return self._source.given

    def resolve(self) -> Client:
        """The client: given, built from the URL (shared per URL), or the callable's.

        Raises ``ConfigurationError`` when no server is named (neither ``redis_client``
        nor ``$CACHIER_LIKE_REDIS_URL``) or what is named is not a usable client.
        """
        given = self._source.obj
        if given is not None:
            return given
        if time.monotonic() < self._retry_at:
            raise BackendError(f"Redis client not rebuilt within {RETRY_AFTER_S:g} s of a failure")
        try:
            with Link.errors():
                return self._source.resolve()
        except BackendError:
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            raise


def client_from_url(url: str) -> Client:
    """The shared client for ``url``, built on first use with short timeouts.

    ``?cluster=true`` builds a ``RedisCluster``; other query parameters
    (``socket_timeout=...``) go to redis-py and override :data:`URL_DEFAULTS`.
    """
    with _lock:
        client = _url_clients.get(url)
        if client is None:
            parts = urlsplit(url)
            query = parse_qsl(parts.query)
            cluster = any(k == "cluster" and v.lower() in _TRUE for k, v in query)
            rest = urlencode([(k, v) for k, v in query if k != "cluster"])
            plain = urlunsplit(parts._replace(query=rest))
            # One quick retry re-opens a connection the server closed; no back-off, and
            # none after a timeout (that would double the wait on a hung server).
            retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
            options = {**URL_DEFAULTS, "retry": retry}
            try:
                client = (
                    RedisCluster.from_url(plain, **options)
                    if cluster
                    else redis.Redis.from_url(plain, **options)
                )
            except (TypeError, ValueError) as exc:  # a bad query parameter
                raise ConfigurationError(f"invalid Redis URL {url!r}: {exc}") from exc
            _url_clients[url] = client
        return client


def link_for(client: Client) -> Link:
    """The link shared by every core using ``client``."""
    with _lock:
        link = _links.get(client)
        if link is None:
            try:
                link = Link(client)
            except TypeError as exc:  # an option redis-py's connections do not take
                raise ConfigurationError(f"invalid Redis connection option: {exc}") from exc
            _links[client] = link
        return link


class Link(Breaker):
    """Runs commands for the cores of one client (see the module docstring)."""

    def __init__(self, client: Client) -> None:
        self._client = weakref.ref(client)  # the cores hold the client itself
        self._local = threading.local()
        self._init_breaker("Redis")
        #: Whether keys of different slots must go in separate commands.
        self.cluster = isinstance(client, RedisCluster)
        pool = getattr(client, "connection_pool", None)
        self._factory: type[Connection] | None = None
        if (
            type(pool) is redis.ConnectionPool
            and getattr(pool, "cache", None) is None
            and pool.connection_class in _FAST_CONNECTIONS
        ):
            self._factory = pool.connection_class
            self._kwargs = dict(pool.connection_kwargs)
            timeout = getattr(self._factory(**self._kwargs), "socket_timeout", None)
        elif pool is not None:
            timeout = pool.connection_kwargs.get("socket_timeout")
        else:  # a cluster: its nodes' settings
            manager = getattr(client, "nodes_manager", None)
            timeout = getattr(manager, "connection_kwargs", {}).get("socket_timeout")
        #: Longest single blocking read: below the socket timeout, which would cut it.
        self.max_block = MAX_BLOCK_S if timeout is None else min(MAX_BLOCK_S, timeout / 2)

    def call(self, *args: Any) -> Any:
        """Run one command and return redis-py's reply (an error reply raises)."""
        return self.pipeline(args)[0]

    def pipeline(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Run commands in one round trip (not a transaction); an error reply raises."""
        if self.down:
            raise self.refusal()
        with self.errors():
            try:
                if self._factory is not None:
                    return self._private(commands)
                return self._through_client(commands)
            except NETWORK_ERRORS as exc:
                self.trip(exc)
                raise

    def read_tagged(self, key: str, tag_keys: tuple[str, ...]) -> tuple[Any, Sequence[Any]]:
        """The entry at ``key`` and the replies for ``tag_keys`` (bytes or None each, as
        one ``MGET`` gives them). On a private RESP3 connection the tags' versions come
        from what the server keeps current (:mod:`.tracking`; a tuple of ints), so a
        hit is one ``GET``. Not for a cluster (the entry's slot is not the tags')."""
        if self._factory is not None and not self.down:
            slot = self._slot()
            if slot.tracks:
                with self.errors():
                    try:
                        read = read_tracked(slot, key, tag_keys)
                    except NETWORK_ERRORS as exc:
                        self.trip(exc)
                        raise
                if read is not None:
                    return read  # the versions as ints, in a tuple
        replies = self.call("MGET", key, *tag_keys)
        return replies[0], replies[1:]

    def _through_client(self, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        client: Any = self.client()  # redis-py leaves execute_command untyped
        if len(commands) == 1:
            return [client.execute_command(*_joined(commands[0]))]
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*_joined(command))
        return list(pipe.execute())

    def batch(self, *commands: tuple[Any, ...]) -> list[Any]:
        """:meth:`pipeline` of commands and scripts (``(Script, numkeys, ...)``, see
        :mod:`.scripts`): by SHA1, once more as text when the server lacks a script."""
        try:
            return self.pipeline(*by_sha(commands))
        except NoScriptError:  # a plain command re-run stores the same bytes again
            return self.pipeline(*by_text(commands))

    def probe(self) -> None:
        """``PING`` the server past the breaker, on a connection of the probing thread."""
        try:
            with self.errors():
                if self._factory is not None:
                    self._private((("PING",),))
                elif isinstance(client := self.client(), RedisCluster):
                    # Every primary: a PING that one live node answers would close the
                    # breaker while another is down, and each trip after holds it longer.
                    client.ping(target_nodes=RedisCluster.PRIMARIES)
                else:
                    self._through_client((("PING",),))
        finally:
            slot: _Slot | None = getattr(self._local, "slot", None)
            if slot is not None:
                slot.conn.disconnect()
                del self._local.slot

    @staticmethod
    @contextlib.contextmanager
    def errors() -> Iterator[None]:
        """Turn redis-py's errors (whose repr hides the message) into ``BackendError``."""
        try:
            yield
        except NoScriptError:
            raise  # handled by script()
        except (RedisError, RedisClusterException) as exc:
            raise BackendError(f"Redis: {type(exc).__name__}: {exc}") from exc

    def script(self, script: Script, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """Run a Lua script by SHA1, sending its text when the server lacks it."""
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self.call("EVAL", script.text, len(keys), *keys, *args)

    def scan(self, match: str) -> Iterator[list[str]]:
        """Keys matching ``match``, in batches (``SCAN``, never ``KEYS``)."""
        batch: list[str] = []
        with self.errors():
            for key in self.client().scan_iter(match=match, count=SCAN_COUNT):
                batch.append(key.decode() if isinstance(key, bytes) else key)
                if len(batch) == SCAN_COUNT:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def headers(self, keys: list[str], size: int) -> list[tuple[str, bytes, int]]:
        """``(key, first size bytes, length)`` of each string key, in one pipeline."""
        pipe = self.client().pipeline(transaction=False)
        for key in keys:
            pipe.getrange(key, 0, size - 1)
            pipe.strlen(key)
        with self.errors():
            replies = pipe.execute()
        return [(k, replies[2 * i], int(replies[2 * i + 1])) for i, k in enumerate(keys)]

    def client(self) -> Client:
        """The client (alive while a core that uses it is)."""
        client = self._client()
        if client is None:
            raise RedisConnectionError("the Redis client was garbage-collected")
        return client

    def _slot(self) -> _Slot:
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None or slot.generation != wire._generation:
            assert self._factory is not None
            slot = self._local.slot = _Slot(self._factory(**self._kwargs))
            slot.tracks = tracks(slot.conn)
        return slot

    def _private(self, commands: tuple[tuple[Any, ...], ...]) -> list[Any]:
        return _exchange(self._slot(), commands)
