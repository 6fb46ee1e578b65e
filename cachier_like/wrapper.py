"""The wrapper ``@cached`` returns: the call path, per-call controls and maintenance."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import types
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, cast

from . import config
from .alerts import FailureReporter
from .entry import Entry
from .errors import ConfigurationError, UnkeyableArgumentError
from .identity import function_namespace
from .options import OptionResolver, Options
from .policy import (
    CORE,
    CoreFailure,
    Flow,
    Job,
    background_refresh_flow,
    compute_and_store,
    drive_async,
    drive_sync,
    miss_flow,
)
from .refreshes import Refresher

logger = logging.getLogger("cachier_like")

P = ParamSpec("P")
R = TypeVar("R")

#: cachier's per-call keywords, honoured unless the function declares the name itself.
CONTROL_KEYWORDS = frozenset(
    {
        "cachier__skip_cache",
        "cachier__overwrite_cache",
        "cachier__verbose",
        "cachier__allow_none",
        "max_age",
    }
)


@dataclass(frozen=True, slots=True)
class CallControls:
    """Per-call overrides taken from cachier-style keywords."""

    skip: bool = False
    overwrite: bool = False
    verbose: bool = False
    allow_none: bool | None = None
    max_age: float | None = None


_NO_CONTROLS = CallControls()


_now = time.time


def _is_fresh(entry: Entry, bound: float | None, now: float) -> bool:
    return bound is None or now - entry.timestamp <= bound


class CachedFunction(Generic[P, R]):
    """A function wrapped by :func:`cached`; call it like the original.

    Example:
        >>> from cachier_like import cached
        >>> @cached(backend="memory")
        ... def square(x: int) -> int:
        ...     return x * x
        >>> square(3), square.cached_entry(3).value
        (9, 9)
        >>> square.clear_cache()
        1
    """

    # Copied from the wrapped function by functools.update_wrapper.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self, func: Callable[P, R], explicit: dict[str, Any], namespace: str | None
    ) -> None:
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self._func = func
        self._is_async = inspect.iscoroutinefunction(func)
        params = list(inspect.signature(func).parameters)
        is_method = bool(params) and params[0] == "self"
        allow_methods = explicit.get(
            "allow_non_static_methods", config.get_default_params()["allow_non_static_methods"]
        )
        if is_method and not allow_methods:
            raise TypeError(
                f"{func.__qualname__} looks like an instance method (first parameter 'self'); "
                "its cache would be shared by every instance. Pass "
                "allow_non_static_methods=True to cache it anyway (self is left out of keys)."
            )
        self.namespace = namespace or function_namespace(func)
        self._resolver = OptionResolver(func, self.namespace, explicit, skip_first=is_method)
        self._opts, self._fast = self._resolve()
        self._reporter = FailureReporter(self.namespace)
        self._controls = CONTROL_KEYWORDS - self._opts.keys.binder.declared_names
        self._refresher = Refresher(self.namespace)
        self._cleanup_lock = threading.Lock()
        self._next_cleanup = 0.0
        if self._is_async and hasattr(inspect, "markcoroutinefunction"):
            inspect.markcoroutinefunction(self)

    def __repr__(self) -> str:
        return f"<cached function {self.namespace} on {type(self._opts.core).__name__}>"

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Bind like a plain function, so the wrapper works as a method.
        if instance is None:
            return self
        return types.MethodType(self, instance)

    # -- the call path -----------------------------------------------------------

    def _resolve(self) -> tuple[Options, bool]:
        """The current options, and whether calls may take the inline hit path."""
        opts = self._resolver.resolve()
        return opts, opts.enabled and not opts.cleanup_stale and not self._is_async

    def _current(self) -> Options:
        opts = self._opts
        if opts.version != config._version:
            opts, self._fast = self._resolve()
            self._opts = opts
        return opts

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        opts = self._opts
        if opts.version != config._version:
            opts = self._current()
        if self._fast and (not kwargs or self._controls.isdisjoint(kwargs)):
            # The hit fast path: one key, one core read, one freshness check.
            try:
                key = opts.keys.key(args, kwargs)
            except Exception as exc:
                self._unkeyable(exc, args, kwargs, opts)
                return self._func(*args, **kwargs)
            try:
                entry = opts.core.get(key)
            except ConfigurationError:
                raise
            except Exception as exc:
                self._reporter.report("read", exc, opts.raise_on_error)
                return self._func(*args, **kwargs)
            if (
                entry is not None
                and (entry.value is not None or opts.allow_none)
                and (opts.stale_after is None or _now() - entry.timestamp <= opts.stale_after)
            ):
                return entry.value  # type: ignore[no-any-return]  # (cast() costs a call)
            job = Job(self._reporter, opts, key, (self._func, args, kwargs), opts.allow_none)
            return cast(R, drive_sync(self._call_flow(job, _NO_CONTROLS, entry, True)))
        controls = self._take_controls(kwargs) if kwargs else _NO_CONTROLS
        if self._is_async:
            return cast(R, self._acall(args, kwargs, opts, controls))
        if not opts.enabled or controls.skip:
            return self._func(*args, **kwargs)
        work = self._job(args, kwargs, opts, controls)
        if work is None:
            return self._func(*args, **kwargs)  # no key: run it uncached
        if controls.overwrite:
            return cast(R, drive_sync(compute_and_store(work)))
        if opts.cleanup_stale:
            self._maybe_cleanup(opts)
        return cast(R, drive_sync(self._call_flow(work, controls, None, False)))

    async def _acall(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], opts: Options, controls: CallControls
    ) -> Any:
        func = cast(Callable[..., Coroutine[Any, Any, Any]], self._func)
        if not opts.enabled or controls.skip:
            return await func(*args, **kwargs)
        job = self._job(args, kwargs, opts, controls)
        if job is None:
            return await func(*args, **kwargs)  # no key: run it uncached
        blocking = opts.core.blocking
        if controls.overwrite:
            return await drive_async(compute_and_store(job), blocking)
        if opts.cleanup_stale:
            self._maybe_cleanup(opts)
        return await drive_async(self._call_flow(job, controls, None, False), blocking)

    def _job(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], opts: Options, controls: CallControls
    ) -> Job | None:
        """The call's work, or None when its arguments give no key (after warning)."""
        allow_none = opts.allow_none if controls.allow_none is None else controls.allow_none
        try:
            key = opts.keys.key(args, kwargs)
        except Exception as exc:
            self._unkeyable(exc, args, kwargs, opts)
            return None
        return Job(self._reporter, opts, key, (self._func, args, kwargs), allow_none)

    def _unkeyable(
        self, error: Exception, args: tuple[Any, ...], kwargs: dict[str, Any], opts: Options
    ) -> None:
        """No key for this call: warn (rate-limited), or raise with ``raise_on_error``.

        A call that does not bind is not warned about: running it makes Python raise
        its own error, naming the function, as the undecorated call would.
        """
        failure = opts.keys.failure(args, kwargs, error)
        if failure is not None:
            if opts.raise_on_error:
                raise UnkeyableArgumentError(
                    f"{self.namespace}: cannot make a cache key: {failure} ({error})"
                ) from error
            self._reporter.report(f"key ({failure})", error, raise_on_error=False)

    def _take_controls(self, kwargs: dict[str, Any]) -> CallControls:
        found = {name: kwargs.pop(name) for name in self._controls if name in kwargs}
        if not found:
            return _NO_CONTROLS
        max_age = found.get("max_age")
        return CallControls(
            skip=bool(found.get("cachier__skip_cache", False)),
            overwrite=bool(found.get("cachier__overwrite_cache", False)),
            verbose=bool(found.get("cachier__verbose", False)),
            allow_none=found.get("cachier__allow_none"),
            max_age=config.as_seconds(max_age, "max_age") if max_age is not None else None,
        )

    def _call_flow(
        self, job: Job, controls: CallControls, entry: Entry | None, have_entry: bool
    ) -> Flow:
        """Read (unless already read), then serve, serve stale and refresh, or compute."""
        opts = job.opts
        if not have_entry:
            try:
                entry = yield (CORE, opts.core.get, (job.key,))
            except CoreFailure as failure:
                job.report("read", failure)
                return (yield job.compute())
        bound = opts.stale_after
        if controls.max_age is not None:
            bound = controls.max_age if bound is None else min(bound, controls.max_age)
        verbose = controls.verbose
        if entry is not None and (entry.value is not None or job.allow_none):
            now = _now()
            if _is_fresh(entry, bound, now):
                if verbose:
                    logger.info("%s: cache hit for key %s", self.namespace, job.key)
                return entry.value
            if (
                opts.next_time
                and not _is_fresh(entry, opts.stale_after, now)
                and (controls.max_age is None or _is_fresh(entry, controls.max_age, now))
            ):
                if verbose:
                    logger.info("%s: stale hit for key %s; refreshing", self.namespace, job.key)
                self._start_refresh(job, entry)
                return entry.value
        if verbose:
            state = "stale" if entry is not None else "missing"
            logger.info("%s: %s entry for key %s; calculating", self.namespace, state, job.key)
        return (yield from miss_flow(job, entry))

    # -- background work ---------------------------------------------------------

    def _start_refresh(self, job: Job, seen: Entry) -> None:
        """Refresh ``job.key`` in the background unless this process already is."""
        if self._is_async:
            make_flow = functools.partial(background_refresh_flow, job, seen)
            self._refresher.start_task(job.key, make_flow, job.opts.core.blocking)
        else:
            self._refresher.start_thread(job.key, background_refresh_flow(job, seen))

    def _maybe_cleanup(self, opts: Options) -> None:
        """At most once per ``cleanup_interval``, purge stale entries in a thread."""
        now = time.time()
        if opts.stale_after is None or now < self._next_cleanup:
            return
        with self._cleanup_lock:
            if now < self._next_cleanup:
                return
            self._next_cleanup = now + opts.cleanup_interval
        stale_after = opts.stale_after

        def purge() -> None:
            try:
                removed = opts.core.purge_stale(stale_after, time.time())
                logger.debug("%s: purged %d stale entries", self.namespace, removed)
            except Exception as exc:
                self._reporter.report("cleanup", exc, raise_on_error=False)

        threading.Thread(target=purge, name="cachier_like-cleanup", daemon=True).start()

    # -- per-call controls and maintenance ------------------------------------------

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Recompute the value for these arguments and store it, ignoring any entry.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def now_ish(x: int) -> int:
            ...     return x
            >>> now_ish.refresh(1)
            1
        """
        return self(*args, cachier__overwrite_cache=True, **kwargs)  # type: ignore[arg-type]

    def uncached(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly: no read, no write.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x + 1
            >>> f.uncached(1), f.cached_entry(1)
            (2, None)
        """
        return self._func(*args, **kwargs)

    def cached_entry(self, *args: P.args, **kwargs: P.kwargs) -> Entry | None:
        """Return the stored :class:`Entry` for these arguments, fresh or not, or None.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f(5); f.cached_entry(5).value
            5
            5
        """
        opts = self._current()
        return opts.core.get(opts.keys.key(args, kwargs))

    def precache_value(self, *args: Any, value_to_cache: Any, **kwargs: Any) -> Any:
        """Store ``value_to_cache`` as the result for these arguments; return it.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     raise RuntimeError("not called")
            >>> f.precache_value(1, value_to_cache=10)
            10
            >>> f(1)
            10
        """
        opts = self._current()
        opts.core.set(opts.keys.key(args, kwargs), Entry(value_to_cache, time.time()))
        return value_to_cache

    def clear_cache(self) -> int:
        """Remove every entry of this function (no other function's); return how many.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f(1); f(2); f.clear_cache()
            1
            2
            2
        """
        return self._current().core.clear()

    def clear_being_calculated(self) -> int:
        """Drop every in-progress calculation claim of this function (a reset).

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f.clear_being_calculated()
            0
        """
        return self._current().core.clear_claims()

    def cache_dpath(self) -> str | None:
        """The directory holding this function's entries (pickle core), else None.

        Example:
            >>> from cachier_like import cached
            >>> @cached(backend="memory")
            ... def f(x: int) -> int:
            ...     return x
            >>> f.cache_dpath() is None
            True
        """
        return self._current().core.location()

    @property
    def core(self) -> Any:
        """The storage core currently serving this function."""
        return self._current().core
