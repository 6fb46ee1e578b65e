"""The Redis core, one module per job.

* :mod:`.core`: :class:`RedisCore`, the core itself (entries, claims, waits);
* :mod:`.maintenance`: clearing, purging, listing and counting (``SCAN``), inherited;
* :mod:`.keys`: key names, the entry header and claim tokens;
* :mod:`.link`: clients, per-thread connections and the circuit breaker;
* :mod:`.wire`: the Redis protocol on a private connection (packing, one exchange);
* :mod:`.scripts`: the Lua scripts for the steps that must be atomic, and :class:`.scripts.Script`;
* :mod:`.async_ops`: the native coroutines of ``async def`` functions (mixed in);
* :mod:`.async_link`: their commands on a ``redis.asyncio`` client (borrowed connections, breaker);
* :mod:`.async_clients`: which ``redis.asyncio`` client serves each event loop (URL
  clients per loop, closed with it).

Importing this package imports redis-py; the backend registry imports it only when
``backend="redis"`` is used.
"""

from .core import HEADER_SIZE, MAGIC, URL_ENV, RedisCore, key_tag

__all__ = ["HEADER_SIZE", "MAGIC", "URL_ENV", "RedisCore", "key_tag"]
