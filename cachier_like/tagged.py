"""The call path of a function with ``tags=``: its hit checks the tags' versions.

A tagged function is a :class:`TaggedCachedFunction` (``async def``:
:class:`AsyncTaggedCachedFunction`), so an untagged function's hit path carries no tag
check at all. A tagged hit reads the entry and its tags' versions together
(:meth:`Core.get_tagged`: one round trip where the store allows) and serves the entry
only if it was computed under those versions. On cores whose entries are never behind
their tags (the memory core) a tagged function takes the plain hit path instead
(:func:`hit_path`, chosen each time the options are resolved), whose misses still
record the call's tags.
"""

from __future__ import annotations

from typing import Any, ParamSpec, TypeVar, cast

from . import config
from .controls import NO_CONTROLS, take_controls
from .errors import ConfigurationError
from .policy import Job, call_flow
from .steps import drive_sync
from .tagging import Expected, expected
from .wrapper import AsyncCachedFunction, CachedFunction, _now

__all__ = ["AsyncTaggedCachedFunction", "TaggedCachedFunction", "hit_path"]

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
            if not self._tag_reads:  # now on a core whose entries follow their tags
                return self(*args, **kwargs)
        if not self._fast or (kwargs and not self._controls.isdisjoint(kwargs)):
            return super().__call__(*args, **kwargs)
        try:
            key = opts.keys.key(args, kwargs)
        except Exception as exc:
            self._unkeyable(exc, args, kwargs, opts)
            return self._func(*args, **kwargs)
        spec = opts.tags  # fixed tags, inline: the one case a hit must not pay a call for
        tags = spec if type(spec) is tuple else self._call_tags(opts, args, kwargs)
        if tags is None:
            return self._func(*args, **kwargs)
        try:
            entry, versions = opts.core.get_tagged(key, tags)
        except ConfigurationError:
            raise
        except Exception as exc:
            self._reporter.report("read", exc, opts.raise_on_error)
            return self._func(*args, **kwargs)
        if (
            entry is not None
            and (entry.value is not None or opts.allow_none)
            and (opts.stale_after is None or _now() - entry.timestamp <= opts.stale_after)
            and entry.tags
            == (versions if type(versions) is Expected else expected(tags, versions)).record
        ):
            return entry.value  # type: ignore[no-any-return]
        job = Job(self._reporter, opts, key, (self._func, args, kwargs), opts.allow_none)
        job.tags, job.tag_versions = tags, versions
        flow = call_flow(job, NO_CONTROLS, entry, True, self._start_refresh)
        return cast(R, drive_sync(flow))


class AsyncTaggedCachedFunction(AsyncCachedFunction[P, R]):
    """:class:`TaggedCachedFunction` for ``async def`` functions."""

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:  # type: ignore[override]
        opts = self._opts
        if opts.version != config._version:
            opts = self._current()
            if not self._tag_reads:  # now on a core whose entries follow their tags
                return await self(*args, **kwargs)
        if not self._fast or (kwargs and not self._controls.isdisjoint(kwargs)):
            controls = take_controls(kwargs, self._controls) if kwargs else NO_CONTROLS
            return await self._acall_controlled(args, kwargs, opts, controls)
        try:
            key = opts.keys.key(args, kwargs)
        except Exception as exc:
            self._unkeyable(exc, args, kwargs, opts)
            return await self._func(*args, **kwargs)  # type: ignore[misc]
        spec = opts.tags  # fixed tags inline, as on the sync hit path
        tags = spec if type(spec) is tuple else self._call_tags(opts, args, kwargs)
        if tags is None:
            return await self._func(*args, **kwargs)  # type: ignore[misc]
        try:
            entry, versions = await opts.core.aget_tagged(key, tags)
        except ConfigurationError:
            raise
        except Exception:
            return await self._ashare(opts, key, (args, kwargs), tags=tags)
        if (
            entry is not None
            and (entry.value is not None or opts.allow_none)
            and (opts.stale_after is None or _now() - entry.timestamp <= opts.stale_after)
            and entry.tags
            == (versions if type(versions) is Expected else expected(tags, versions)).record
        ):
            return entry.value
        return await self._ashare(
            opts,
            key,
            (args, kwargs),
            entry=entry,
            have_entry=True,
            tags=tags,
            tag_versions=versions,
        )


def hit_path(is_async: bool, reads_tags: bool) -> type[CachedFunction[Any, Any]]:
    """The class whose ``__call__`` serves a tagged function: one reading its tags'
    versions, or, on cores whose entries are never behind their tags, the plain one.

    Example:
        >>> hit_path(is_async=False, reads_tags=True).__name__
        'TaggedCachedFunction'
    """
    if reads_tags:
        return AsyncTaggedCachedFunction if is_async else TaggedCachedFunction
    return AsyncCachedFunction if is_async else CachedFunction
