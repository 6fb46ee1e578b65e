"""The wrapper ``@cached`` returns: the call path (the methods are in ``methods``)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
import types
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from . import config
from .alerts import FailureReporter
from .batches import split_call
from .cleanup import CleanupScheduler
from .controls import CONTROL_KEYWORDS, NO_CONTROLS, CallControls, take_controls
from .entry import Entry
from .errors import ConfigurationError, UnkeyableArgumentError
from .flights import share
from .identity import function_namespace, unwrap_partial
from .methods import CacheMethods
from .options import OptionResolver, Options
from .policy import Job, background_refresh_flow, call_flow, compute_and_store
from .refreshes import Refresher
from .steps import drive_async, drive_sync
from .tagging import check_tags
from .verbose import tell

logger = logging.getLogger(__name__)

# The hit fast path's clock; a module global is one lookup cheaper than time.time.
_now = time.time


P = ParamSpec("P")
R = TypeVar("R")


class CachedFunction(CacheMethods[P, R]):
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

    def __new__(cls, func: Callable[P, R], *args: Any, **kwargs: Any) -> CachedFunction[P, R]:
        if cls is not CachedFunction:
            return super().__new__(cls)
        is_async = inspect.iscoroutinefunction(func)
        explicit = args[0] if args else kwargs.get("explicit", {})
        if explicit.get("tags") is not None:
            from .tagged import (  # noqa: PLC0415 (tagged.py subclasses this module's classes)
                AsyncTaggedCachedFunction,
                TaggedCachedFunction,
            )

            return super().__new__(AsyncTaggedCachedFunction if is_async else TaggedCachedFunction)
        return super().__new__(AsyncCachedFunction if is_async else cls)

    def __init__(
        self, func: Callable[P, R], explicit: dict[str, Any], namespace: str | None
    ) -> None:
        functools.update_wrapper(self, func)
        base = unwrap_partial(func)[0]
        if base is not func:
            # A partial has no name or docstring of its own: show its function's. Its
            # own signature stays (inspect.signature follows __wrapped__ to it).
            for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
                with contextlib.suppress(AttributeError):
                    setattr(self, attr, getattr(base, attr))
        self.__wrapped__ = func
        self._func = func
        self._is_async = inspect.iscoroutinefunction(func)
        params = list(inspect.signature(func).parameters)
        is_method = bool(params) and params[0] == "self"
        allow_methods = explicit.get(
            "allow_non_static_methods", config.get_default_params()["allow_non_static_methods"]
        )
        if is_method and not allow_methods:
            name = getattr(self, "__qualname__", func)  # a partial of a nameless callable
            raise TypeError(
                f"{name} looks like an instance method (first parameter 'self'); "
                "its cache would be shared by every instance. Pass "
                "allow_non_static_methods=True to cache it anyway (self is left out of keys)."
            )
        self.namespace = namespace or function_namespace(func)
        self._resolver = OptionResolver(func, self.namespace, explicit, skip_first=is_method)
        #: Whether a tagged hit reads its tags' versions (not on cores whose entries are
        #: never behind them); set with the options.
        self._tag_reads = False
        #: Whether calls may take the hit path (the sync one, or AsyncCachedFunction's).
        self._opts, self._fast = self._resolve()
        self._resolver.decorating = False
        self._reporter = FailureReporter(self.namespace)
        self._controls = CONTROL_KEYWORDS - self._opts.keys.binder.declared_names
        self._refresher = Refresher(self.namespace)
        self._cleanup = CleanupScheduler(self._reporter)
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
        """The current options, and whether calls may take the hit path."""
        opts = self._resolver.resolve()
        self._tag_reads = opts.tags is not None and not opts.core.tags_current_on_read
        if opts.tags is not None:
            from .tagged import hit_path  # noqa: PLC0415 (tagged.py subclasses this module's)

            # The hit path is the class's __call__ (Python looks special methods up on the
            # type): a tagged function on a core whose entries are never behind their tags
            # takes the plain one, whose misses still record the call's tags.
            self.__class__ = hit_path(self._is_async, self._tag_reads)
        return opts, opts.enabled and not opts.cleanup_stale

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
            if self._tag_reads:  # tagged, now on a core whose entries can be behind them
                return self(*args, **kwargs)
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
            # policy.fresh(entry, opts.allow_none, opts.stale_after, now), inlined: a call
            # and an unconditional clock read would cost a hit about a sixth more.
            if (
                entry is not None
                and (entry.value is not None or opts.allow_none)
                and (opts.stale_after is None or _now() - entry.timestamp <= opts.stale_after)
            ):
                return entry.value  # type: ignore[no-any-return]  # (cast() costs a call)
            read_job = Job(self._reporter, opts, key, (self._func, args, kwargs), opts.allow_none)
            if opts.tags is not None:  # tagged, on a core whose entries follow their tags
                made = self._call_tags(opts, args, kwargs)
                if made is None:
                    return self._func(*args, **kwargs)
                read_job.tags = made
            flow = call_flow(read_job, NO_CONTROLS, entry, True, self._start_refresh)
            return cast(R, drive_sync(flow))
        controls = take_controls(kwargs, self._controls) if kwargs else NO_CONTROLS
        if not opts.enabled or controls.skip:
            self._say_uncached(opts, controls)
            return self._func(*args, **kwargs)
        job = self._job(args, kwargs, opts, controls)
        if job is None:
            return self._func(*args, **kwargs)  # no key: run it uncached
        if controls.overwrite:
            job.say("overwriting: calculating")
            return cast(R, drive_sync(compute_and_store(job)))
        if opts.cleanup_stale:
            self._cleanup.maybe_purge(opts, self._resolver.retired_cores)
        return cast(R, drive_sync(call_flow(job, controls, None, False, self._start_refresh)))

    async def _ashare(
        self,
        opts: Options,
        key: Hashable,
        call: tuple[Any, ...],
        *,
        entry: Entry | None = None,
        have_entry: bool = False,
        tags: tuple[str, ...] | None = None,
        tag_versions: tuple[int, ...] | None = None,
    ) -> Any:
        """Concurrent awaits of this cold key in this loop share one computation.

        ``tags`` None: the call's tags are made here, if the function has any.
        """
        args, kwargs = call
        if tags is None:
            tags = () if opts.tags is None else self._call_tags(opts, args, kwargs)
            if tags is None:
                return await self._func(*args, **kwargs)  # type: ignore[misc]
        job = Job(self._reporter, opts, key, (self._func, args, kwargs), opts.allow_none)
        job.tags, job.tag_versions = tags, tag_versions
        return await share((opts.core, key), lambda: self._adrive(job, entry, have_entry))

    async def _acall_controlled(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], opts: Options, controls: CallControls
    ) -> Any:
        """An async call with per-call controls, disabled caching or ``cleanup_stale``."""
        func: Callable[..., Any] = self._func
        if not opts.enabled or controls.skip:
            self._say_uncached(opts, controls)
            return await func(*args, **kwargs)
        made = self._job(args, kwargs, opts, controls)
        if made is None:
            return await func(*args, **kwargs)  # no key: run it uncached
        job, core = made, opts.core
        if controls.overwrite:
            job.say("overwriting: calculating")
            return await drive_async(compute_and_store(job), core)
        if opts.cleanup_stale:
            self._cleanup.maybe_purge(opts, self._resolver.retired_cores)
        if controls is not NO_CONTROLS:  # per-call controls: a flight of its own
            flow = call_flow(job, controls, None, False, self._start_refresh)
            return await drive_async(flow, core)
        return await share((core, job.key), lambda: self._adrive(job, None, False))

    async def _adrive(self, job: Job, entry: Entry | None, have_entry: bool) -> Any:
        flow = call_flow(job, NO_CONTROLS, entry, have_entry, self._start_refresh)
        return await drive_async(flow, job.opts.core)

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
        call = (self._func, args, kwargs)
        job = Job(self._reporter, opts, key, call, allow_none, controls.verbose)
        if opts.tags is not None:
            tags = self._call_tags(opts, args, kwargs)
            if tags is None:
                return None
            job.tags = tags
        return job

    def _many_jobs(
        self, opts: Options, calls: Sequence[object]
    ) -> tuple[list[Job], dict[int, int], dict[int, tuple[tuple[Any, ...], dict[str, Any]]]]:
        """For ``get_many``: one job per distinct key, the job of each call (by position),
        and the calls that give no key (run uncached, after a warning)."""
        jobs: list[Job] = []
        by_key: dict[Hashable, int] = {}
        where: dict[int, int] = {}
        unkeyed: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        for position, call in enumerate(calls):
            args, kwargs = split_call(call)
            job = self._job(args, kwargs, opts, NO_CONTROLS)
            if job is None:
                unkeyed[position] = (args, kwargs)
                continue
            index = by_key.get(job.key)
            if index is None:
                index = by_key[job.key] = len(jobs)
                jobs.append(job)
            where[position] = index
        return jobs, where, unkeyed

    def _tags_of(
        self, opts: Options, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, ...]:
        """The call's tags: ``tags=`` as given, or what its callable returns for the call.

        The callable receives the call's arguments as ``hash_func`` does (by name, defaults
        applied); what it returns must be strings (a ``ConfigurationError`` otherwise).
        """
        spec = opts.tags
        if type(spec) is tuple:
            return spec
        assert callable(spec)
        positional, named = opts.keys.binder.named(args, kwargs)
        return check_tags(spec(*positional, **named), f"{self.namespace}: tags callable's result")

    def _call_tags(
        self, opts: Options, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, ...] | None:
        """:meth:`_tags_of`, or None when the tags callable raised: then the call runs
        uncached, after a rate-limited warning (raised instead with ``raise_on_error``).
        A ``ConfigurationError`` (tags that are not strings) is raised as it is."""
        try:
            return self._tags_of(opts, args, kwargs)
        except ConfigurationError:
            raise
        except Exception as exc:
            if opts.raise_on_error:
                raise
            self._reporter.report("tags callable", exc, raise_on_error=False)
            return None

    def _say_uncached(self, opts: Options, controls: CallControls) -> None:
        if controls.verbose:
            reason = "caching is disabled" if not opts.enabled else "cache skipped"
            tell(self.namespace, f"{reason}: calling the function")

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

    def _start_refresh(self, job: Job, seen: Entry) -> None:
        """Refresh ``job.key`` in the background unless this process already is."""
        if self._is_async:
            make_flow = functools.partial(background_refresh_flow, job, seen)
            self._refresher.start_task(job.key, make_flow, job.opts.core)
        else:
            self._refresher.start_thread(job.key, background_refresh_flow(job, seen))


class AsyncCachedFunction(CachedFunction[P, R]):
    """A cached ``async def`` function: ``__call__`` is itself the coroutine of the call.

    One coroutine a hit (no second one wrapped around the call path). Made by
    ``CachedFunction(func, ...)`` whenever ``func`` is a coroutine function.
    """

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:  # type: ignore[override]
        opts = self._opts
        if opts.version != config._version:
            opts = self._current()
            if self._tag_reads:  # tagged, now on a core whose entries can be behind them
                return await self(*args, **kwargs)
        if not self._fast or (kwargs and not self._controls.isdisjoint(kwargs)):
            controls = take_controls(kwargs, self._controls) if kwargs else NO_CONTROLS
            return await self._acall_controlled(args, kwargs, opts, controls)
        # The async hit path: one key, one read, one freshness check. Nothing for the miss
        # is built here, not even a closure (its cells would cost every hit a sixth).
        try:
            key = opts.keys.key(args, kwargs)
        except Exception as exc:
            self._unkeyable(exc, args, kwargs, opts)
            return await self._func(*args, **kwargs)  # type: ignore[misc]  # no key: uncached
        core = opts.core
        try:
            if core.blocking or core.native_async:
                entry = await core.aget(key)  # native, or the base class's worker thread
            else:
                entry = core.get(key)  # no coroutine on an in-process hit
        except ConfigurationError:
            raise
        except Exception:
            # The flow reads again, and reports the failure as it decides what to do.
            return await self._ashare(opts, key, (args, kwargs))
        if (
            entry is not None
            and (entry.value is not None or opts.allow_none)
            and (opts.stale_after is None or _now() - entry.timestamp <= opts.stale_after)
        ):
            return entry.value  # policy.fresh, inlined as on the sync hit path
        return await self._ashare(opts, key, (args, kwargs), entry=entry, have_entry=True)
