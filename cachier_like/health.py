"""Health checks: write, read and delete a probe entry through a function's core.

:func:`probe` (and :func:`aprobe`, through the core's ``async`` methods) store a small
entry under a key no call can produce, read it back, delete it, and report how long
that took, or in one line what went wrong: the store is down, refuses the write, hands
back something else, or keeps the entry. ``f.health()`` / ``await f.ahealth()`` and
``cachier-like health`` use them.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

from .cores.base import Core
from .entry import Entry
from .errors import ConfigurationError
from .steps import CoreFailure, CoreOp, Flow, drive_async, drive_sync

__all__ = ["Health", "aprobe", "probe"]

#: Probe keys start with this; a call's key is a digest, never this text.
PROBE_PREFIX = "cachier-like-health-probe-"


@dataclass(frozen=True)
class Health:
    """What a probe of one function's store found.

    ``latency_s`` is the time the write, the read and the delete took together (None
    when one failed); ``problem`` says what is wrong, in one line (None when ``ok``).

    Example:
        >>> from cachier_like import cached
        >>> @cached(backend="memory")
        ... def f(x: int) -> int:
        ...     return x
        >>> report = f.health()
        >>> report.ok, report.backend, report.problem
        (True, 'memory', None)
    """

    ok: bool
    backend: str
    namespace: str
    latency_s: float | None
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok and self.latency_s is not None:
            return (
                f"{self.namespace} ({self.backend}): ok, write+read+delete in "
                f"{self.latency_s * 1000:.2f} ms"
            )
        return f"{self.namespace} ({self.backend}): {self.problem}"


def _backend(core: Core) -> str:
    return type(core).__name__.removesuffix("Core").lower() or "custom"


def _failure(core: Core, step: str, error: BaseException) -> Health:
    detail = " ".join(str(error).split()) or type(error).__name__
    problem = f"cannot {step} a probe entry: {type(error).__name__}: {detail}"
    return Health(False, _backend(core), core.namespace, None, problem)


def _judge(core: Core, token: str, stored: bool, read: Entry | None, removed: bool) -> str | None:
    if not stored:
        return "the store refused the probe entry (is entry_size_limit below a few bytes?)"
    if read is None:
        return "the probe entry just written reads back as missing"
    if read.value != token:
        return f"the probe entry reads back as another value: {read.value!r}"
    if not removed:
        return "the probe entry could not be deleted"
    return None


def _probe_flow(core: Core) -> Flow:
    """The probe, once for both drivers: write, read back, delete; a failed step ends it
    (after a best-effort delete, so no probe entry is left behind)."""
    key, token = _probe_key()
    started = time.perf_counter()
    steps = (
        ("write", "set", (key, Entry(token, time.time()))),
        ("read", "get", (key,)),
        ("delete", "delete", (key,)),
    )
    results: list[Any] = []
    for step, operation, args in steps:
        try:
            results.append((yield CoreOp(core, operation, args)))
        except (CoreFailure, ConfigurationError) as failure:  # the report is the point
            with contextlib.suppress(CoreFailure, ConfigurationError):
                yield CoreOp(core, "delete", (key,))
            error = failure.error if isinstance(failure, CoreFailure) else failure
            return _failure(core, step, error)
    return _report(core, token, started, results)


def probe(core: Core) -> Health:
    """Write, read back and delete a probe entry through ``core``'s sync methods.

    Never raises for a store's failure: a :class:`Health` says what went wrong.

    Example:
        >>> from cachier_like.cores.memory import MemoryCore
        >>> probe(MemoryCore("demo.f")).ok
        True
    """
    return cast(Health, drive_sync(_probe_flow(core)))


async def aprobe(core: Core) -> Health:
    """:func:`probe` through ``core``'s ``async`` methods (for ``async def`` functions).

    Example:
        >>> import asyncio
        >>> from cachier_like.cores.memory import MemoryCore
        >>> asyncio.run(aprobe(MemoryCore("demo.f"))).ok
        True
    """
    return cast(Health, await drive_async(_probe_flow(core), core))


def _probe_key() -> tuple[str, str]:
    token = uuid.uuid4().hex
    return PROBE_PREFIX + token, token


def _report(core: Core, token: str, started: float, results: list[Any]) -> Health:
    elapsed = time.perf_counter() - started
    stored, read, removed = results
    problem = _judge(core, token, bool(stored), read, bool(removed))
    if problem is not None:
        return Health(False, _backend(core), core.namespace, None, problem)
    return Health(True, _backend(core), core.namespace, elapsed)
