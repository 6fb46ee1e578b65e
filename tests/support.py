"""Helpers shared by the core test modules (``tests/test_*_core.py``).

The process and thread helpers live in :mod:`cachier_like.testing.processes` (the
shipped core contract needs them too) and are re-exported here:

- :func:`record` and :func:`records`: a line log in a file that threads and forked
  processes append to (one ``O_APPEND`` write a line), e.g. to count calculations.
- :func:`wait_until`: poll a condition with back-off until a deadline.
- :data:`FORK` and :func:`run_forked`: run ``work(i)`` in forked processes and collect
  the results, failing the test on a worker's exception, hang or crash.
- :class:`StuckCalculator`: a forked calculator stuck inside a calculation, to be
  killed with SIGKILL; :func:`reap`: the clean-up of processes after a failed test.
- :func:`in_call`: whether a thread is inside a given function.
- :func:`library_warnings`: the warnings logged, in whichever process.

Defined here:

- :func:`spy_on_wait` and :func:`start_waiter`: know when a caller is waiting on a claim.
- :func:`warnings_in`: the warnings ``caplog`` captured.
- :func:`key_windows`: overlapping key ranges, so that several workers ask for each key.
- :func:`run_code`: run a piece of code in a fresh interpreter and capture its output.
- :func:`thread_hops`: record every ``asyncio.to_thread`` / ``run_in_executor`` call, to
  show that a native async path never leaves the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cachier_like import Entry
from cachier_like.testing.processes import (
    DEADLINE_S,
    FORK,
    LIBRARY_LOGGER,
    ResultQueue,
    StuckCalculator,
    in_call,
    library_warnings,
    reap,
    record,
    records,
    run_forked,
    wait_until,
)

__all__ = [
    "DEADLINE_S",
    "FORK",
    "LIBRARY_LOGGER",
    "ResultQueue",
    "StuckCalculator",
    "in_call",
    "key_windows",
    "library_warnings",
    "reap",
    "record",
    "records",
    "run_forked",
    "spy_on_wait",
    "start_waiter",
    "thread_hops",
    "wait_until",
    "warnings_in",
]

T = TypeVar("T")


def warnings_in(caplog: pytest.LogCaptureFixture, logger_prefix: str = "") -> list[str]:
    """Messages of the warnings (or worse) ``caplog`` captured so far.

    With ``logger_prefix``, only those of loggers whose names start with it.
    """
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(logger_prefix)
    ]


# -- waiting callers ------------------------------------------------------------------


def spy_on_wait(monkeypatch: pytest.MonkeyPatch, core: Any) -> threading.Event:
    """Patch ``core.wait`` to set the returned event whenever a caller starts waiting."""
    original_wait: Callable[[Hashable, float | None], Entry | None] = core.wait
    waiting = threading.Event()

    def wait_spy(key: Hashable, timeout_s: float | None) -> Entry | None:
        waiting.set()
        return original_wait(key, timeout_s)

    monkeypatch.setattr(core, "wait", wait_spy)
    return waiting


def start_waiter(
    monkeypatch: pytest.MonkeyPatch, core: Any, call: Callable[[], T]
) -> tuple[threading.Thread, list[T]]:
    """Start a thread that runs ``call()``; return once it waits on a claim in ``core``.

    Returns the thread and the list its result lands in.
    """
    waiting = spy_on_wait(monkeypatch, core)
    results: list[T] = []
    waiter = threading.Thread(target=lambda: results.append(call()), daemon=True)
    waiter.start()
    assert waiting.wait(DEADLINE_S), "the waiter never started waiting"
    return waiter, results


# -- keys -----------------------------------------------------------------------------


def key_windows(count: int, size: int, step: int, key_space: int) -> list[list[int]]:
    """``count`` windows of ``size`` keys, each ``step`` keys after the one before.

    Keys wrap around at ``key_space``; with ``step < size`` the windows overlap, so
    about ``size / step`` workers ask for each key.
    """
    return [[(index * step + j) % key_space for j in range(size)] for index in range(count)]


def run_code(
    code: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this interpreter in a fresh process; its output, captured."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextlib.contextmanager
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every ``asyncio.to_thread`` and ``loop.run_in_executor`` call made inside.

    Yields a list that gets one line per call (the function handed over and the library
    frame that handed it), while the calls still run as usual, so a test can assert that
    a native async path makes none::

        with thread_hops(monkeypatch) as hops:
            asyncio.run(main())
        assert hops == []
    """
    hops: list[str] = []
    original_to_thread = asyncio.to_thread
    original_executor = asyncio.base_events.BaseEventLoop.run_in_executor

    def caller() -> str:
        frames = [f for f in traceback.extract_stack()[:-2] if "cachier_like" in f.filename]
        return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "outside the library"

    async def to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        hops.append(f"to_thread({getattr(func, '__qualname__', func)}) from {caller()}")
        return await original_to_thread(func, *args, **kwargs)

    def run_in_executor(
        loop: asyncio.AbstractEventLoop, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        hops.append(f"run_in_executor({getattr(func, '__qualname__', func)}) from {caller()}")
        return original_executor(loop, executor, func, *args)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(asyncio, "to_thread", to_thread)
        patch.setattr(asyncio.base_events.BaseEventLoop, "run_in_executor", run_in_executor)
        yield hops
