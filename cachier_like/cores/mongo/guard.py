"""A MongoDB collection whose operations go through its client's circuit breaker.

After a connection failure or a timeout, operations fail at once while a background
thread pings the server (:mod:`.._breaker`), and resume when it answers. An
``AsyncCollection`` has a breaker of its own kind (:class:`_AsyncGuarded`): its
operations are awaited on the loop, and the prober's ping runs on the client's loop
(pymongo binds an async client to one loop).
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from typing import Any

import pymongo
from pymongo.errors import ConnectionFailure

from ...errors import BackendError
from .._breaker import Breaker
from . import clients

#: The time budget of operations over many documents (clear, purge, stats, listings,
#: index creation), which the socket timeout of URL clients would cut on a large
#: collection; each first pings the server within the short timeouts.
MAINTENANCE_S = 600.0


class _ClientBreaker(Breaker):
    """The breaker of one client (shared by every core on it); the probe is a ``ping``."""

    def __init__(self, client: Any) -> None:
        self.client = weakref.ref(client)
        self._init_breaker("MongoDB")

    def probe(self) -> None:
        client = self.client()
        if client is not None:  # else no core uses it any more
            client.admin.command("ping")

    def run(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise self.refusal()
        try:
            return method(*args, **kwargs)
        except ConnectionFailure as exc:  # unreachable, timed out, no server selected
            self.trip(exc)
            raise BackendError(f"MongoDB: {type(exc).__name__}: {exc}") from exc

    def run_long(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        # A ping with the client's short timeouts first: the long budget below would
        # also be how long pymongo waits to select a server that is down.
        self.run(self.probe)
        with pymongo.timeout(MAINTENANCE_S):
            return self.run(method, *args, **kwargs)


#: How long the prober waits for an async client's ping on the client's loop (the
#: client's own timeouts end it sooner on a dead server).
ASYNC_PROBE_WAIT_S = 10.0


class _AsyncClientBreaker(_ClientBreaker):
    """The breaker of one ``AsyncMongoClient``: awaited operations, a ping on its loop."""

    def __init__(self, client: Any) -> None:
        # Where the client failed; weak, so a breaker keeps no closed loop alive.
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        super().__init__(client)

    def probe(self) -> None:
        # In the prober thread: the ping must run on the loop the client belongs to.
        client = self.client()
        loop = None if self._loop is None else self._loop()
        if client is None or loop is None or loop.is_closed():
            return  # nothing left to probe: the next operation finds out for itself
        ping = asyncio.run_coroutine_threadsafe(client.admin.command("ping"), loop)
        try:
            ping.result(ASYNC_PROBE_WAIT_S)
        finally:
            ping.cancel()

    async def run(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise self.refusal()
        try:
            return await method(*args, **kwargs)
        except ConnectionFailure as exc:  # unreachable, timed out, no server selected
            self._loop = weakref.ref(asyncio.get_running_loop())
            self.trip(exc)
            raise BackendError(f"MongoDB: {type(exc).__name__}: {exc}") from exc

    async def run_long(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        client = self.client()
        if client is not None:  # a ping within the short timeouts first, as for sync clients
            await self.run(client.admin.command, "ping")
        with pymongo.timeout(MAINTENANCE_S):
            return await self.run(method, *args, **kwargs)


_breakers: dict[int, _ClientBreaker] = {}


def _breaker_for(coll: Any, kind: type[_ClientBreaker] = _ClientBreaker) -> Any:
    client = coll.database.client
    with clients._clients_lock:  # read at call time: a forked child rebinds it
        breaker = _breakers.get(id(client))
        if breaker is None or breaker.client() is not client or type(breaker) is not kind:
            for key in [k for k, b in _breakers.items() if b.client() is None]:
                del _breakers[key]
            breaker = _breakers[id(client)] = kind(client)
        return breaker


#: Operations on one document run with the client's own timeouts; operations over many
#: documents get a longer budget (:data:`MAINTENANCE_S`). The batched operations of the
#: call path (``find_list``: a ``find`` read into a list, and ``bulk_write``) touch a
#: few documents by index, so they run with the client's own timeouts too.
_ONE_DOCUMENT = ("find_one", "update_one", "delete_one", "bulk_write")
_MANY_DOCUMENTS: tuple[str, ...] = ("create_index", "update_many", "delete_many", "find")
_MANY_DOCUMENTS += ("distinct", "count_documents")


class _Guarded:
    """A collection whose operations (those named above, ``aggregate``, which returns a
    list, and its database's ``command``) go through its client's breaker."""

    def __init__(self, coll: Any) -> None:
        breaker = _breaker_for(coll)
        for name in _ONE_DOCUMENT:
            setattr(self, name, functools.partial(breaker.run, getattr(coll, name)))
        self.command = functools.partial(breaker.run, coll.database.command)
        for name in _MANY_DOCUMENTS:
            setattr(self, name, functools.partial(breaker.run_long, getattr(coll, name)))
        self.aggregate = functools.partial(breaker.run_long, _listing(coll.aggregate))
        self.find_list = functools.partial(breaker.run, _listing(coll.find))

    def __getattr__(self, name: str) -> Any:  # for type checkers: the operations set above
        raise AttributeError(name)


def _listing(method: Any) -> Any:
    return lambda *args, **kwargs: list(method(*args, **kwargs))


async def _alisting(find: Any, *args: Any, **kwargs: Any) -> list[Any]:
    # AsyncCollection.find returns its cursor at once; the round trips are to_list's.
    return list(await find(*args, **kwargs).to_list(None))


class _AsyncGuarded:
    """An async collection whose coroutines (those the native async path awaits) go
    through its client's breaker."""

    def __init__(self, coll: Any) -> None:
        breaker = _breaker_for(coll, _AsyncClientBreaker)
        for name in _ONE_DOCUMENT:
            setattr(self, name, functools.partial(breaker.run, getattr(coll, name)))
        self.command = functools.partial(breaker.run, coll.database.command)
        for name in ("create_index", "update_many", "delete_many"):
            setattr(self, name, functools.partial(breaker.run_long, getattr(coll, name)))
        self.find_list = functools.partial(breaker.run, functools.partial(_alisting, coll.find))

    def __getattr__(self, name: str) -> Any:  # for type checkers: the operations set above
        raise AttributeError(name)
