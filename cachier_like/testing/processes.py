"""Threads and forked processes for concurrency tests, with no fixed sleeps.

- :func:`record` and :func:`records`: a line log in a file that threads and forked
  processes append to (one ``O_APPEND`` write a line), e.g. to count calculations.
- :func:`wait_until`: poll a condition with back-off until a deadline.
- :data:`FORK` and :func:`run_forked`: run ``work(i)`` in forked processes and collect
  the results, failing the test on a worker's exception, hang or crash.
- :class:`StuckCalculator`: a forked calculator stuck inside a calculation, to be
  killed with SIGKILL; :func:`reap`: the clean-up of processes after a failed test.
- :func:`in_call`: whether a thread is inside a given function (e.g. a core's ``wait``).
- :func:`library_warnings`: the warnings the library logs, in whichever process.

Processes are forked, so a closure defined inside a test runs in them as it is.

Example:
    >>> import tempfile, pathlib
    >>> log = pathlib.Path(tempfile.mkdtemp()) / "calls"
    >>> record(log, "one"); record(log, "two")
    >>> records(log)
    ['one', 'two']
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.queues
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Processes are forked: a closure defined in a test runs in them as it is.
FORK = multiprocessing.get_context("fork")
#: A generous bound: it only matters when something hangs.
DEADLINE_S = 60.0
#: The library's logger, the parent of every logger it uses.
LIBRARY_LOGGER = "cachier_like"

ResultQueue = multiprocessing.queues.Queue  # the runtime class, for annotations


def record(path: Path, line: str) -> None:
    """Append one line to ``path`` with one O_APPEND write, from any thread or process."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)


def records(path: Path) -> list[str]:
    """The lines appended to ``path`` so far (none if nothing was appended yet)."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_until(condition: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s`` seconds.

    The polls start 1 ms apart and back off to 20 ms apart.

    Example:
        >>> wait_until(lambda: True)
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def in_call(thread: threading.Thread, code: types.CodeType) -> bool:
    """Whether ``thread`` is currently executing ``code`` (anywhere on its stack).

    Example:
        >>> in_call(threading.current_thread(), in_call.__code__)
        True
    """
    if thread.ident is None:
        return False
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


class _Collector(logging.Handler):
    """A logging handler that keeps the messages of the warnings (or worse) it is given."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def library_warnings() -> Iterator[list[str]]:
    """Collect the warnings the library logs inside the block, in whichever process it runs.

    Unlike pytest's ``caplog``, this works in forked processes too.

    Example:
        >>> with library_warnings() as warned:
        ...     logging.getLogger("cachier_like.demo").warning("careful")
        >>> warned
        ['careful']
    """
    collector = _Collector()
    library = logging.getLogger(LIBRARY_LOGGER)
    library.addHandler(collector)
    try:
        yield collector.messages
    finally:
        library.removeHandler(collector)


def reap(*processes: BaseProcess | None) -> None:
    """Kill and join whichever of ``processes`` is still alive (``None`` is skipped)."""
    for process in processes:
        if process is not None and process.is_alive():
            process.kill()
            process.join()


def run_forked(
    count: int,
    work: Callable[[int], T],
    *,
    start_together: bool = False,
    forbid_warnings: bool = False,
    timeout_s: float = DEADLINE_S,
) -> list[T]:
    """Run ``work(index)`` in ``count`` forked processes; return the results in index order.

    With ``start_together``, the processes meet at a barrier before calling ``work``, so
    that they contend. With ``forbid_warnings``, a warning the library logs in a worker
    fails the test. A worker's exception fails the test with its repr; a worker that
    hangs fails it after ``timeout_s`` (and is killed); one must also exit cleanly.

    Example:
        >>> run_forked(3, lambda index: index * 10)
        [0, 10, 20]
    """
    queue: ResultQueue[tuple[int, str, Any, list[str]]] = FORK.Queue()
    barrier = FORK.Barrier(count) if start_together else None

    def target(index: int) -> None:
        collecting: AbstractContextManager[list[str]] = (
            library_warnings() if forbid_warnings else nullcontext([])
        )
        with collecting as warned:
            try:
                if barrier is not None:
                    barrier.wait(timeout=timeout_s)
                queue.put((index, "ok", work(index), warned))
            except BaseException as exc:
                queue.put((index, "error", repr(exc), warned))

    processes = [FORK.Process(target=target, args=(i,), daemon=True) for i in range(count)]
    for process in processes:
        process.start()
    try:
        outcomes = [queue.get(timeout=timeout_s) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=timeout_s)
        reap(*processes)
    failed = [(index, error) for index, status, error, _ in outcomes if status != "ok"]
    assert not failed, f"worker processes failed: {failed}"
    warned = [(index, messages) for index, _, _, messages in outcomes if messages]
    assert not warned, f"worker processes logged warnings: {warned}"
    assert [process.exitcode for process in processes] == [0] * count
    return [value for _, _, value, _ in sorted(outcomes, key=lambda outcome: outcome[0])]


class StuckCalculator:
    """A forked process that gets stuck inside a calculation until it is killed.

    The decorated function calls :meth:`checkpoint`; :meth:`running` forks a process
    that makes the call, in which the checkpoint reports and then blocks for good
    (holding the calculation's claim). Anywhere else the checkpoint does nothing.
    """

    def __init__(self) -> None:
        self._stuck_here = False
        self._reports, self._report = FORK.Pipe(duplex=False)
        self._process: BaseProcess | None = None

    def checkpoint(self) -> None:
        """In the calculator process, report and block until killed; elsewhere, nothing."""
        if self._stuck_here:
            self._report.send("calculating")
            threading.Event().wait()  # blocks until this process is killed

    @contextmanager
    def running(self, call: Callable[[], object]) -> Iterator[BaseProcess]:
        """Fork the calculator, which runs ``call()``; enter once it is stuck in there.

        Yields the process. On exit it is killed if it still lives (after a failure).
        """

        def calculator() -> None:
            self._stuck_here = True
            call()

        self._process = FORK.Process(target=calculator, daemon=True)
        self._process.start()
        try:
            assert self._reports.poll(DEADLINE_S), "the calculator never started"
            assert self._reports.recv() == "calculating"
            yield self._process
        finally:
            reap(self._process)

    def kill(self) -> None:
        """Kill the calculator with SIGKILL, as a crash would, and check that it died of it."""
        assert self._process is not None and self._process.pid is not None
        os.kill(self._process.pid, signal.SIGKILL)
        self._process.join(DEADLINE_S)
        assert self._process.exitcode == -signal.SIGKILL
