"""The call path of a function with ``tags=``: its hit checks the tags' versions.

A tagged function is a :class:`TaggedCachedFunction` (``async def``:
:class:`AsyncTaggedCachedFunction`), chosen as it is decorated, so an untagged
function's hit path carries no tag check at all. A tagged hit reads the entry and its
tags' versions together (:meth:`Core.get_tagged`: one round trip where the store
allows) and serves the entry only if it was computed under those versions; on cores
whose entries are never behind their tags (the memory core) it is a plain read.
"""

from __future__ import annotations

from typing import Any, ParamSpec, TypeVar, cast

from . import config
from .controls import NO_CONTROLS, take_controls
from .entry import Entry
from .errors import ConfigurationError
from .policy import Job, call_flow
from .steps import drive_sync
from .tagging import expected
from .wrapper import AsyncCachedFunction, CachedFunction, _now

__all__ = ["AsyncTaggedCachedFunction", "TaggedCachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")


class TaggedCachedFunction(CachedFunction[P, R]):
    """A cached function whose entries carry tags (``@cached(tags=...)``).

    Example:
        >>> from cachier_like import cached
        >>> @cached(backend="memory", tags=lambda user_id: [f"user:{user_id}"])
        ... def profile(user_id: int) -> dict:
        ...     return {"id": user_id}
        >>> profile(7), profile.invalidate_tags("user:7"), profile.cached_entry(7)
        ({'id': 7}, None, None)
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        opts = self._opts
        if opts.version != config._version:
            opts = self._current()
        if not self._fast or (kwargs and not self._controls.isdisjoint(kwargs)):
            return super().__call__(*args, **kwargs)
        try:
            key = opts.keys.key(args, kwargs)
        except Exception as exc:
            self._unkeyable(exc, args, kwargs, opts)
            return self._func(*args, **kwargs)
        # Cores whose entries are never behind their tags (memory) read as for a plain
        # hit: the call's tags are needed only when it computes.
        reads_tags = self._tag_reads
        tags: tuple[str, ...] = ()
        if reads_tags:
            spec = opts.tags  # fixed tags, inline: the one case a hit must not pay a call for
            made = spec if type(spec) is tuple else self._call_tags(opts, args, kwargs)
            if made is None:
                return self._func(*args, **kwargs)
            tags = made
        versions: tuple[int, ...] | None = None
        try:
            if reads_tags:
                entry, versions = opts.core.get_tagged(key, tags)
            else:
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
            and (versions is None or entry.tags == expected(tags, versions).record)
        ):
            return entry.value  # type: ignore[no-any-return]
        if not reads_tags:
            made = self._made_tags(opts, args, kwargs)
            if made is None:
                return self._func(*args, **kwargs)
            tags = made
        job = Job(self._reporter, opts, key, (self._func, args, kwargs), opts.allow_none)
        job.tags, job.tag_versions = tags, versions
        flow = call_flow(job, NO_CONTROLS, entry, versions is not None, self._start_refresh)
        return cast(R, drive_sync(flow))


class AsyncTaggedCachedFunction(AsyncCachedFunction[P, R]):
    """:class:`TaggedCachedFunction` for ``async def`` functions."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:  # type: ignore[override]
        opts = self._opts
        if opts.version != config._version:
            opts = self._current()
        if not self._fast or (kwargs and not self._controls.isdisjoint(kwargs)):
            controls = take_controls(kwargs, self._controls) if kwargs else NO_CONTROLS
            return await self._acall_controlled(args, kwargs, opts, controls)
        try:
            key = opts.keys.key(args, kwargs)
        except Exception as exc:
            self._unkeyable(exc, args, kwargs, opts)
            return await self._func(*args, **kwargs)  # type: ignore[misc]
        tags = self._made_tags(opts, args, kwargs)
        if tags is None:
            return await self._func(*args, **kwargs)  # type: ignore[misc]
        core = opts.core
        versions: tuple[int, ...] | None = None
        entry: Entry | None
        try:
            if self._tag_reads:
                entry, versions = await core.aget_tagged(key, tags)
            elif core.blocking or core.native_async:
                entry = await core.aget(key)
            else:
                entry = core.get(key)
        except ConfigurationError:
            raise
        except Exception:
            return await self._ashare(opts, key, (args, kwargs), tags=tags)
        if (
            entry is not None
            and (entry.value is not None or opts.allow_none)
            and (opts.stale_after is None or _now() - entry.timestamp <= opts.stale_after)
            and (versions is None or entry.tags == expected(tags, versions).record)
        ):
            return entry.value
        return await self._ashare(
            opts,
            key,
            (args, kwargs),
            entry=entry,
            have_entry=versions is not None,
            tags=tags,
            tag_versions=versions,
        )
