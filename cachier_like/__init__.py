"""cachier_like: persistent, stale-aware memoization with pluggable storage cores.

Example:
    >>> import tempfile
    >>> from cachier_like import cached
    >>> @cached(cache_dir=tempfile.mkdtemp())
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> double(21)
    42
"""

from .batches import Args
from .config import (
    disable_caching,
    enable_caching,
    get_default_params,
    get_global_params,
    reset_default_params,
    set_default_params,
    set_global_params,
)
from .decorator import cached, cachier
from .entry import Entry
from .errors import (
    AsyncOnlyError,
    BackendError,
    CachierLikeError,
    ConfigurationError,
    MissingDriverError,
    UnkeyableArgumentError,
)
from .health import Health
from .keys import stable_hash
from .serialize import PickleSerializer, Serializer
from .warming import WarmReport
from .wrapper import CachedFunction

__all__ = [
    "Args",
    "AsyncOnlyError",
    "BackendError",
    "CachedFunction",
    "CachierLikeError",
    "ConfigurationError",
    "Entry",
    "Health",
    "MissingDriverError",
    "PickleSerializer",
    "Serializer",
    "UnkeyableArgumentError",
    "WarmReport",
    "cached",
    "cachier",
    "disable_caching",
    "enable_caching",
    "get_default_params",
    "get_global_params",
    "reset_default_params",
    "set_default_params",
    "set_global_params",
    "stable_hash",
]

__version__ = "0.1.0"
