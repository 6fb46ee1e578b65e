"""Plumbing the cores share: the name a key is stored under, and options naming a store.

Imports no driver: each core passes its own checks and constructors in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import ConfigurationError
from ..hashing import stable_hash

T = TypeVar("T")

#: Keys stored under their own name (``@cached`` makes only such keys: hex digests, or a
#: ``hash_func`` result that matches); any other key is stored under its digest.
SAFE_KEY = re.compile(r"[0-9a-z_-]{1,64}")


def storage_name(key: Hashable) -> str:
    """The name ``key`` is stored under: a safe string as it is, anything else hashed.

    Safe means ``[0-9a-z_-]``, 1 to 64 characters: a valid file name, Redis key,
    document field and ``cache_key`` column value everywhere, naming no other path.

    Example:
        >>> storage_name("user_42")
        'user_42'
        >>> storage_name("../escape") == storage_name("../escape") != "../escape"
        True
        >>> len(storage_name(("any", "hashable", 1)))
        32
    """
    if type(key) is str and SAFE_KEY.fullmatch(key):
        return key
    return stable_hash(key)


@dataclass(frozen=True)
class StoreSpec(Generic[T]):
    """How one core's store option is read (see :class:`StoreSource`)."""

    backend: str  #: "redis"
    option: str  #: "redis_client"
    env: str  #: the variable holding the URL when the option is not given
    kinds: str  #: what the option may be, for messages
    example: str  #: an example URL, for the message when nothing names a store
    is_object: Callable[[object], bool]  #: whether a value is a store object itself
    parse: Callable[[Any, str], Any]  #: check a URL (raise ConfigurationError), return it parsed
    connect: Callable[[Any], T]  #: the store for a parsed URL
    check: Callable[[Any], T]  #: check a store object (given, or a callable's result)
    url_types: tuple[type, ...] = (str,)


class StoreSource(Generic[T]):
    """An option naming a store, checked at once and resolved on first use.

    The option is the store object, a zero-argument callable returning one, or a URL;
    with None, the URL in ``spec.env``, read on first use, so it may be set after the
    decorated function's module is imported (by ``load_dotenv()``, say). Nothing
    connects until :meth:`resolve`.

    Example:
        >>> spec = StoreSpec(
        ...     backend="demo", option="store", env="DEMO_URL", kinds="a dict or a URL",
        ...     example="demo://x", is_object=lambda v: isinstance(v, dict),
        ...     parse=lambda url, where: url, connect=lambda url: {"url": url},
        ...     check=lambda v: v,
        ... )
        >>> StoreSource("demo://a", spec).resolve()
        {'url': 'demo://a'}
        >>> StoreSource(42, spec)
        Traceback (most recent call last):
        ...
        cachier_like.errors.ConfigurationError: store must be a dict or a URL, not int 42
    """

    __slots__ = ("given", "spec", "url")

    def __init__(self, given: object, spec: StoreSpec[T]) -> None:
        self.spec = spec
        self.given = given
        self.url: Any = None
        if isinstance(given, spec.url_types):
            self.url = spec.parse(given, spec.option)
        elif spec.is_object(given):
            spec.check(given)
        elif given is not None and not callable(given):
            raise ConfigurationError(
                f"{spec.option} must be {spec.kinds}, not {type(given).__name__} {given!r}"
            )

    @property
    def by_url(self) -> bool:
        """Whether the store is named by a URL (given, or from the environment)."""
        return self.given is None or self.url is not None

    @property
    def obj(self) -> T | None:
        """The store object, when one was given itself."""
        return None if self.by_url or not self.spec.is_object(self.given) else self.given  # type: ignore[return-value]

    def current_url(self) -> Any:
        """The URL the store is named by, parsed: the one given, else the environment's.

        For a source that is :attr:`by_url`; the environment is read now.
        """
        spec = self.spec
        if self.url is not None:
            return self.url
        text = os.environ.get(spec.env) or None
        if text is None:
            raise ConfigurationError(
                f"the {spec.backend} backend needs {spec.option}= ({spec.kinds}), or a "
                f"URL in ${spec.env} (e.g. {spec.example})"
            )
        return spec.parse(text, f"${spec.env}")

    def resolve(self) -> T:
        """The store: the object given, the callable's, or the one the URL names."""
        spec, given = self.spec, self.given
        if self.by_url:
            return spec.connect(self.current_url())
        if spec.is_object(given):
            return given  # type: ignore[return-value]
        assert callable(given)
        return spec.check(given())
