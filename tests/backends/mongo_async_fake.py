"""A test-only stand-in for pymongo's async API over mongomock, where no server can be had.

mongomock has no async API, and no MongoDB server runs where this suite is developed,
so the MongoDB core's native async path is tested on these stand-ins: an
:class:`AsyncCollectionStandIn` presents a mongomock collection through the coroutine
methods the core awaits (the names and arguments of pymongo's ``AsyncCollection``), and
an :class:`AsyncClientStandIn` stands in for ``pymongo.AsyncMongoClient`` where the
core builds a client from a URL (:class:`StandInServers`). The core's code path is
pymongo's: it cannot tell it has a stand-in. With ``$CACHIER_LIKE_TEST_MONGO_URI`` set,
the same tests also run on a real ``AsyncMongoClient`` (see ``tests/test_mongo_async.py``).

What the stand-ins copy from pymongo, so the tests prove something:

- every operation suspends the caller for one loop turn before it runs, as a round trip
  does, so concurrent tasks interleave between operations;
- a client is bound to the event loop it is first used on, and refuses any other
  (pymongo 4.12 and later raise too);
- a closed client refuses operations;
- a client set ``down`` fails every operation with pymongo's ``AutoReconnect`` (a
  ``ConnectionFailure``), as on an unreachable server.

What they do not: the operations run in the loop's thread (mongomock is synchronous),
so there is no network latency or timeout to meet.

Example:
    >>> import asyncio, mongomock
    >>> coll = AsyncCollectionStandIn(mongomock.MongoClient().db.entries)
    >>> async def main() -> object:
    ...     await coll.update_one({"k": 1}, {"$set": {"v": 2}}, upsert=True)
    ...     return (await coll.find_one({"k": 1}, {"_id": 0}))
    >>> asyncio.run(main())
    {'k': 1, 'v': 2}
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import mongomock
import pytest
from mongomock.store import ServerStore
from pymongo.errors import AutoReconnect

from cachier_like.testing.mongomock_support import teach_mongomock_bulk_updates

teach_mongomock_bulk_updates()  # bulk_write runs pymongo's UpdateOne, as on a server

__all__ = ["AsyncClientStandIn", "AsyncCollectionStandIn", "AsyncCursorStandIn", "StandInServers"]


class StandInServers:
    """Stand-in servers by URL, for the clients a core builds from ``mongodb://`` URLs.

    :meth:`install` patches ``pymongo.AsyncMongoClient`` with :class:`AsyncClientStandIn`
    and ``pymongo.MongoClient`` with mongomock, both reaching one store per host, so an
    ``async def`` function's per-loop async clients and the sync client of its sync
    methods see the same documents, as they would on a server.
    """

    def __init__(self) -> None:
        self.stores: dict[str, ServerStore] = {}
        #: Every async client built, in order.
        self.created: list[AsyncClientStandIn] = []

    def store(self, url: str) -> ServerStore:
        return self.stores.setdefault(urlsplit(url).netloc, ServerStore())  # type: ignore[no-untyped-call]

    def sync_client(self, url: str, **options: Any) -> Any:
        return mongomock.MongoClient(url, _store=self.store(url))

    def async_client(self, url: str, **options: Any) -> AsyncClientStandIn:
        client = AsyncClientStandIn(self.sync_client(url), url=url, **options)
        self.created.append(client)
        return client

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> StandInServers:
        servers = cls()
        monkeypatch.setattr("pymongo.AsyncMongoClient", servers.async_client)
        monkeypatch.setattr("pymongo.MongoClient", servers.sync_client)
        return servers


class AsyncClientStandIn:
    """``pymongo.AsyncMongoClient`` over a mongomock client: bound to one loop, closable."""

    def __init__(self, sync: Any, url: str | None = None, **options: Any) -> None:
        self.url = url
        self.options = options
        self.sync = sync
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        #: Set to make every operation fail as on an unreachable server.
        self.down = False
        #: How many pings it was sent (the breaker's probes).
        self.pings = 0
        self.admin = _Admin(self)

    async def turn(self) -> None:
        """What every operation does first: check the loop and the client, yield once."""
        loop = asyncio.get_running_loop()
        if self.closed:
            raise RuntimeError("this AsyncMongoClient stand-in was closed")
        if self.down:
            raise AutoReconnect("the stand-in server is down")
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            raise RuntimeError("an AsyncMongoClient cannot be used on another event loop")
        await asyncio.sleep(0)

    def __getitem__(self, name: str) -> _DatabaseStandIn:
        return _DatabaseStandIn(self, self.sync[name])

    def get_default_database(self, default: str | None = None) -> _DatabaseStandIn:
        return _DatabaseStandIn(self, self.sync.get_default_database(default))

    async def close(self) -> None:
        self.closed = True


class _Admin:
    def __init__(self, client: AsyncClientStandIn) -> None:
        self._client = client

    async def command(self, name: str) -> dict[str, Any]:
        self._client.pings += 1
        await self._client.turn()
        assert name == "ping", f"the stand-in answers only ping, not {name!r}"
        return {"ok": 1.0}


class _DatabaseStandIn:
    def __init__(self, client: AsyncClientStandIn, database: Any) -> None:
        self.client = client
        self.name = database.name
        self._database = database

    def __getitem__(self, name: str) -> AsyncCollectionStandIn:
        return AsyncCollectionStandIn(self._database[name], self)

    async def command(self, name: str) -> Any:
        await self.client.turn()
        return self._database.command(name)  # mongomock's (it has no hello of its own)


class AsyncCollectionStandIn:
    """A mongomock collection behind the coroutine methods of ``AsyncCollection``."""

    def __init__(self, collection: Any, database: _DatabaseStandIn | None = None) -> None:
        self.sync = collection
        if database is None:
            client = AsyncClientStandIn(collection.database.client)
            database = _DatabaseStandIn(client, collection.database)
        self.database = database
        self.name = collection.name

    async def _run(self, operation: str, /, *args: Any, **kwargs: Any) -> Any:
        await self.database.client.turn()
        return getattr(self.sync, operation)(*args, **kwargs)

    async def find_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("find_one", *args, **kwargs)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("update_one", *args, **kwargs)

    async def update_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("update_many", *args, **kwargs)

    async def bulk_write(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("bulk_write", *args, **kwargs)

    def find(self, *args: Any, **kwargs: Any) -> AsyncCursorStandIn:
        """As pymongo's: no round trip yet, a cursor whose reads are awaited."""
        return AsyncCursorStandIn(self, args, kwargs)

    async def delete_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("delete_one", *args, **kwargs)

    async def delete_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("delete_many", *args, **kwargs)

    async def create_index(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("create_index", *args, **kwargs)

    async def index_information(self) -> Any:
        return await self._run("index_information")

    async def count_documents(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("count_documents", *args, **kwargs)

    async def drop(self) -> None:
        await self._run("drop")


class AsyncCursorStandIn:
    """``AsyncCursor`` of a ``find``: the query runs when it is first awaited (``to_list``)."""

    def __init__(self, collection: AsyncCollectionStandIn, args: Any, kwargs: Any) -> None:
        self._collection = collection
        self._args = args
        self._kwargs = kwargs

    async def to_list(self, length: int | None = None) -> list[Any]:
        found = list(await self._collection._run("find", *self._args, **self._kwargs))
        return found if length is None else found[:length]
