"""Which ``redis.asyncio`` client serves each event loop, for the Redis core's async path.

Imported only by :mod:`cachier_like.cores.redis`. For ``async def`` functions
(:class:`AsyncLinks`): a client given is used as it is; a callable is called once per
loop; a URL (or ``$CACHIER_LIKE_REDIS_URL``) gets a client of its own in each loop,
shared by the cores using that URL there, and closed with the loop: an async generator
started on the loop awaits ``aclose()`` in its ``finally``, which
``loop.shutdown_asyncgens()`` (called by ``asyncio.run``) runs. The links of given
clients hand their connections back to the pool at the same moment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ...errors import ConfigurationError
from ..shared import StoreSource
from .async_link import AsyncClient, AsyncLink
from .link import _SPEC, _TRUE, URL_DEFAULTS, is_async_client

#: redis_client= read for the async path: a URL stays a URL (a client per loop).
_ASYNC_SPEC = dataclasses.replace(_SPEC, connect=lambda url: url)


def async_client_from_url(url: str) -> AsyncClient:
    """A new ``redis.asyncio`` client for ``url``, with the sync URL clients' timeouts."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    cluster = any(k == "cluster" and v.lower() in _TRUE for k, v in query)
    rest = urlencode([(k, v) for k, v in query if k != "cluster"])
    plain = urlunsplit(parts._replace(query=rest))
    options = {**URL_DEFAULTS, "retry": Retry(NoBackoff(), 1)}
    try:
        if cluster:
            return AsyncRedisCluster.from_url(plain, **options)
        return aredis.Redis.from_url(plain, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid Redis URL {url!r}: {exc}") from exc


async def _close_at_loop_end(link: AsyncLink) -> AsyncIterator[None]:
    """Suspended until the loop's ``shutdown_asyncgens()``, which runs the ``finally``."""
    try:
        yield
    finally:
        await link.aclose()


_loop_links: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Any, tuple[AsyncLink, Any]]
] = weakref.WeakKeyDictionary()


async def _link_in_loop(what: Any, make: Any) -> AsyncLink:
    """The running loop's link for ``what`` (a URL or a client), made with ``make()``."""
    loop = asyncio.get_running_loop()
    links = _loop_links.get(loop)
    if links is None:
        links = _loop_links[loop] = {}
    held = links.get(what)
    if held is None:
        client, owned = make()
        link = AsyncLink(client, loop, owned)
        closer = _close_at_loop_end(link)
        await closer.__anext__()  # started: the loop now finalizes it at its shutdown
        links[what] = held = (link, closer)  # the loop only holds its async gens weakly
    return held[0]


class AsyncLinks:
    """The link each event loop uses for one core's ``redis_client`` (see the module doc).

    :meth:`current` is None for a client that is not ``redis.asyncio`` (a sync client,
    served through threads) as for a loop not seen yet; :meth:`make` tells them apart.
    """

    def __init__(self, given: Any) -> None:
        self._source = StoreSource(given, _ASYNC_SPEC)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncLink | None] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> AsyncLink | None:
        """The running loop's link, if :meth:`make` made one."""
        return self._loops.get(asyncio.get_running_loop())

    def known(self) -> bool:
        """Whether :meth:`make` has run in the running loop."""
        return asyncio.get_running_loop() in self._loops

    async def make(self) -> AsyncLink | None:
        """Resolve ``redis_client`` in the running loop; None when it gives a sync client."""
        resolved = self._source.resolve()  # a URL, or a client (a callable's, once a loop)
        link: AsyncLink | None = None
        if isinstance(resolved, str):
            link = await _link_in_loop(resolved, lambda: (async_client_from_url(resolved), True))
        elif is_async_client(resolved):
            link = await _link_in_loop(resolved, lambda: (resolved, False))
        self._loops[asyncio.get_running_loop()] = link
        return link
