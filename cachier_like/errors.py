"""Exceptions raised by cachier_like."""

from __future__ import annotations


class CachierLikeError(Exception):
    """Base class of every error this library raises on its own."""


class BackendError(CachierLikeError):
    """A storage core failed (server unreachable, disk full, permission denied).

    The decorator catches it, logs a warning and returns the computed value
    (fail-open) unless the function was decorated with ``raise_on_error=True``.
    """


class ConfigurationError(CachierLikeError, ValueError):
    """An option or default parameter has an invalid name or value.

    Raised to the caller, at decoration or at the first call that needs the option
    (a store resolved lazily): a configuration mistake is never "failed open".
    """


class MissingDriverError(ConfigurationError, ImportError):
    """A core's driver is not installed; the message names the extra to install."""


class AsyncOnlyError(ConfigurationError, TypeError):
    """A store only ``async def`` functions can use was given to a sync one.

    A SQLAlchemy ``AsyncEngine`` as ``sql_engine``, or a pymongo ``AsyncCollection`` as
    ``mongetter``: raised as the function is decorated (or, from a callable returning
    one, on its first call). Use an ``async def`` function, or a sync ``Engine``,
    ``Collection`` or URL. Also raised by the sync methods (``clear_cache()``,
    ``cached_entry()``, ...) of an ``async def`` function on an ``AsyncCollection``,
    which has no sync API: await ``aclear_cache()`` instead, or give a URL.
    """


class UnkeyableArgumentError(CachierLikeError, TypeError):
    """A call's arguments cannot be made into a cache key (a generator, a lock, ...).

    Raised only with ``raise_on_error=True``; otherwise the call runs without the cache
    and a warning names the function, the argument and its type.
    """
