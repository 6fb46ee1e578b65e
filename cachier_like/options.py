"""Resolving one function's effective options: its own, overlaid on the global defaults."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import config
from .cores import BACKEND_OPTIONS, Core, core_class
from .default_dir import cache_dir_path
from .errors import ConfigurationError
from .fingerprint import code_fingerprint
from .identity import is_version_of, labelled_namespace
from .keys import HashFunc, KeyMaker
from .option_table import DECORATOR_DEFAULTS, OPTIONS
from .parsers import Parser
from .serialize import Serializer
from .tagging import TagsOption

#: ``Options.version`` while a ``track_code`` fingerprint waits for the first call:
#: never the defaults' version, so the first call resolves the options again.
PENDING = -1

# Options parsed for each function: process-wide settings are read where they are used.
_PARSERS: tuple[tuple[str, Parser], ...] = tuple(
    (o.name, o.parse) for o in OPTIONS if o.parse is not None and o.scope != "process"
)
# Core options given to @cached for another backend are a mistake, except these.
_CORE_OPTIONS = tuple(o.name for o in OPTIONS if o.backends is not None)
_TOLERATED = frozenset(o.name for o in OPTIONS if o.ignored_elsewhere)


@dataclass(frozen=True, slots=True)
class Options:
    """Everything the call path needs, resolved and validated."""

    version: int
    enabled: bool
    core: Core
    keys: KeyMaker
    stale_after: float | None
    next_time: bool
    wait_timeout: float | None  # None: wait as long as the calculator's claim holds
    allow_none: bool
    cleanup_stale: bool
    cleanup_interval: float
    raise_on_error: bool
    lease: float
    tags: TagsOption  # ``tags=``: fixed names, a callable of the call's arguments, or None


def _identity(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return id(value)
    return value


def _core_options(
    backend: str, merged: Mapping[str, Any], explicit: Mapping[str, Any]
) -> dict[str, Any]:
    """The options ``backend``'s core is built with: its own names, plus ``backend_options``.

    An option given to ``@cached`` that this backend does not take is an error; a
    global default for another backend is simply not passed on.
    """
    accepted = BACKEND_OPTIONS.get(backend, ())
    stray = sorted(
        name
        for name in _CORE_OPTIONS
        if name not in accepted and name not in _TOLERATED and explicit.get(name) is not None
    )
    if stray:
        raise ConfigurationError(
            f"option(s) {', '.join(stray)} do not apply to backend {backend!r} "
            f"(it takes: {', '.join(accepted) or 'none'})"
        )
    options = {name: merged[name] for name in accepted if merged.get(name) is not None}
    if backend == "pickle":  # the default directory is named as it is now
        options["cache_dir"] = cache_dir_path(options.get("cache_dir"))
    extra = merged["backend_options"]  # checked by its parser
    if extra is not None:
        options.update(extra)
    return options


class OptionResolver:
    """Keeps one function's options current with the global defaults.

    The core is rebuilt only when an option it depends on changes.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        namespace: str,
        explicit: Mapping[str, Any],
        skip_first: bool,
    ) -> None:
        self._func = func
        self._namespace = namespace
        self._explicit = dict(explicit)
        self._skip_first = skip_first
        self._core: Core | None = None
        self._keys: KeyMaker | None = None
        self._core_sig: tuple[Any, ...] | None = None
        self._core_options: dict[str, Any] = {}
        #: True while the function is being decorated: a ``track_code`` fingerprint then
        #: waits for the first call, when the helpers defined below it exist too.
        self.decorating = True

    def _stored_namespace(self, value: Mapping[str, Any]) -> tuple[str, bool]:
        """The namespace entries are stored under, and whether it is still pending."""
        fingerprint = None
        if value["track_code"]:
            if self.decorating:
                return self._namespace, True
            fingerprint = code_fingerprint(self._func)
        return labelled_namespace(self._namespace, value["version"], fingerprint), False

    def resolve(self) -> Options:
        """Build the options for the current global defaults (validated)."""
        version = config.version()
        merged = {**DECORATOR_DEFAULTS, **config.current(), **self._explicit}
        value = {name: parse(merged[name], name) for name, parse in _PARSERS}
        backend = value["backend"]
        core_options = _core_options(backend, merged, self._explicit)
        namespace, pending = self._stored_namespace(value)
        signature = (
            backend,
            namespace,
            value["hash_func"],
            value["ignore"],
            tuple(sorted((k, _identity(v)) for k, v in core_options.items())),
        )
        if self._core is None or signature != self._core_sig:
            self._core, self._keys = self._build_core(backend, namespace, value, core_options)
            self._core_sig = signature
            self._core_options = core_options
        assert self._keys is not None
        # Applies to the existing core: changing the limit must not drop its entries.
        self._core.size_limit = value["entry_size_limit"]
        self._core.signer = value["secret"]
        interval = value["cleanup_interval"]
        return Options(
            version=PENDING if pending else version,
            enabled=value["caching_enabled"],
            core=self._core,
            keys=self._keys,
            stale_after=value["stale_after"],
            next_time=value["next_time"],
            wait_timeout=value["wait_for_calc_timeout"] or None,
            allow_none=value["allow_none"],
            cleanup_stale=value["cleanup_stale"],
            cleanup_interval=interval if interval is not None else 86400.0,
            raise_on_error=value["raise_on_error"],
            lease=value["lease"],
            tags=value["tags"],
        )

    def _build_core(
        self,
        backend: str,
        namespace: str,
        value: Mapping[str, Any],
        core_options: dict[str, Any],
    ) -> tuple[Core, KeyMaker]:
        cls = core_class(backend)
        serializer: Serializer = value["serializer"]
        hash_func: HashFunc | None = value["hash_func"]
        try:
            core = cls(namespace, serializer=serializer, **core_options)
        except TypeError as exc:
            raise ConfigurationError(f"backend {backend!r} rejected its options: {exc}") from exc
        core.check_caller(inspect.iscoroutinefunction(self._func))
        keys = KeyMaker(
            self._func,
            hash_func=hash_func,
            skip_first=self._skip_first,
            stable=cls.stable_keys,
            ignore=value["ignore"],
        )
        return core, keys

    def retired_cores(self, current: Core) -> list[Core]:
        """Cores on the same store for this function's other versions (``version=``,
        ``track_code``): what ``cleanup_stale`` and ``clear --stale-only`` remove.

        Empty where the store cannot list its namespaces (the memory core's store dies
        with the process anyway).
        """
        cls = type(current)
        try:
            stored = cls.namespaces(**self._core_options)
        except NotImplementedError:
            return []
        return [
            cls(namespace, serializer=current.serializer, **self._core_options)
            for namespace in sorted(stored)
            if namespace != current.namespace and is_version_of(namespace, self._namespace)
        ]
