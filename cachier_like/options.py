"""Resolving one function's effective options: its own, overlaid on the global defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import config
from .cores import BACKEND_OPTIONS, Core, core_class
from .errors import ConfigurationError
from .keys import HashFunc, KeyMaker
from .serialize import DEFAULT_SERIALIZER, Serializer


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


def _flag(merged: Mapping[str, Any], name: str) -> bool:
    value = merged[name]
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


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
        for name in {n for names in BACKEND_OPTIONS.values() for n in names}
        # cachier takes cache_dir whatever the backend; so do we, for drop-in use.
        if name not in accepted and name != "cache_dir" and explicit.get(name) is not None
    )
    if stray:
        raise ConfigurationError(
            f"option(s) {', '.join(stray)} do not apply to backend {backend!r} "
            f"(it takes: {', '.join(accepted) or 'none'})"
        )
    options = {name: merged[name] for name in accepted if merged.get(name) is not None}
    if backend == "pickle" and "cache_dir" not in options:
        options["cache_dir"] = config.default_cache_dir()
    extra = merged.get("backend_options")
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise ConfigurationError(f"backend_options must be a mapping, not {extra!r}")
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

    def resolve(self) -> Options:
        """Build the options for the current global defaults (validated)."""
        version = config.version()
        merged = {**config.get_default_params(), **self._explicit}
        backend = merged["backend"]
        if not isinstance(backend, str):
            raise ConfigurationError(f"backend must be a string, not {backend!r}")
        core_options = _core_options(backend, merged, self._explicit)
        signature = (
            backend,
            merged["hash_func"],
            tuple(sorted((k, _identity(v)) for k, v in core_options.items())),
        )
        if self._core is None or signature != self._core_sig:
            serializer: Serializer = self._explicit.get("serializer", DEFAULT_SERIALIZER)
            self._core, self._keys = self._build_core(merged, core_options, serializer)
            self._core_sig = signature
        assert self._keys is not None
        # Applies to the existing core: changing the limit must not drop its entries.
        self._core.size_limit = config.parse_size(merged["entry_size_limit"])
        wait = config.as_seconds(merged["wait_for_calc_timeout"], "wait_for_calc_timeout")
        lease = config.as_seconds(merged["lease"], "lease")
        interval = config.as_seconds(merged["cleanup_interval"], "cleanup_interval")
        if not lease:
            raise ConfigurationError("lease must be a positive duration")
        return Options(
            version=version,
            enabled=_flag(merged, "caching_enabled"),
            core=self._core,
            keys=self._keys,
            stale_after=config.as_seconds(merged["stale_after"], "stale_after"),
            next_time=_flag(merged, "next_time"),
            wait_timeout=wait or None,
            allow_none=_flag(merged, "allow_none"),
            cleanup_stale=_flag(merged, "cleanup_stale"),
            cleanup_interval=interval if interval is not None else 86400.0,
            raise_on_error=_flag(merged, "raise_on_error"),
            lease=lease,
        )

    def _build_core(
        self, merged: Mapping[str, Any], core_options: dict[str, Any], serializer: Serializer
    ) -> tuple[Core, KeyMaker]:
        backend = merged["backend"]
        cls = core_class(backend)
        try:
            core = cls(self._namespace, serializer=serializer, **core_options)
        except TypeError as exc:
            raise ConfigurationError(f"backend {backend!r} rejected its options: {exc}") from exc
        hash_func: HashFunc | None = merged["hash_func"]
        if hash_func is not None and not callable(hash_func):
            raise ConfigurationError(f"hash_func must be callable, not {hash_func!r}")
        keys = KeyMaker(
            self._func, hash_func=hash_func, skip_first=self._skip_first, stable=cls.stable_keys
        )
        return core, keys
