"""Background refreshes (``next_time``): one per key, finished before the process exits.

A caller served a stale value leaves its refresh running in the background. A short
job would otherwise exit before the refresh stores, and serve the stale value in every
run; so pending refreshes are waited for at exit, up to ``refresh_exit_timeout``
seconds in all (a global default, 30 s):

* sync functions refresh in daemon threads, joined by an ``atexit`` handler;
* async functions refresh in tasks of the caller's event loop. ``asyncio.run``
  cancels the tasks still pending when the main coroutine returns, and waits for
  them: a refresh cancelled that way releases its claim and runs once more, to the
  end or until the timeout, on the same loop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from . import config, forks
from .steps import Flow, drive_async, drive_sync

if TYPE_CHECKING:
    from .cores.base import Core

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_threads: set[threading.Thread] = set()


def exit_timeout() -> float:
    """The global bound, in seconds, on waiting for pending refreshes at exit."""
    value = config.as_seconds(
        config.get_default_params()["refresh_exit_timeout"], "refresh_exit_timeout"
    )
    return 0.0 if value is None else value


def finish_pending(timeout_s: float | None = None) -> int:
    """Wait for this process's refresh threads, up to ``timeout_s`` in all.

    Returns how many were still running afterwards. Called at exit; callable
    earlier too, e.g. at the end of a batch job that forks no more.

    Example:
        >>> finish_pending(timeout_s=1.0)
        0
    """
    deadline = time.monotonic() + (exit_timeout() if timeout_s is None else timeout_s)
    with _lock:
        pending = [thread for thread in _threads if thread.is_alive()]
    if pending:
        logger.info("waiting for %d background refresh(es) to finish", len(pending))
    for thread in pending:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = sum(thread.is_alive() for thread in pending)
    if left:
        logger.warning(
            "%d background refresh(es) did not finish within refresh_exit_timeout; "
            "their entries stay stale until the next call refreshes them",
            left,
        )
    return left


atexit.register(finish_pending)


def _forget_parent_threads() -> None:
    global _lock
    _lock = threading.Lock()
    _threads.clear()


forks.reset_in_child(_forget_parent_threads)


class Refresher:
    """Runs one function's background refreshes: at most one per key in this process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._running: set[Hashable] = set()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    def _take(self, key: Hashable) -> bool:
        with self._lock:
            if key in self._running:
                return False
            self._running.add(key)
            return True

    def _done(self, key: Hashable) -> None:
        with self._lock:
            self._running.discard(key)

    def start_thread(self, key: Hashable, flow: Flow) -> None:
        """Refresh ``key`` in a thread unless this process already is."""
        if not self._take(key):
            return
        thread = threading.Thread(
            target=self._run_sync, args=(key, flow), name=f"cachier_like-refresh-{self.name}"
        )
        thread.daemon = True  # joined, with a bound, by finish_pending() at exit
        with _lock:
            _threads.add(thread)
        thread.start()

    def _run_sync(self, key: Hashable, flow: Flow) -> None:
        try:
            drive_sync(flow)
        except Exception:
            logger.warning("%s: background refresh failed", self.name, exc_info=True)
        finally:
            self._done(key)
            with _lock:
                _threads.discard(threading.current_thread())

    def start_task(self, key: Hashable, make_flow: Callable[[], Flow], core: Core) -> None:
        """Refresh ``key`` in a task of the running loop unless this process already is."""
        if not self._take(key):
            return
        task = asyncio.get_running_loop().create_task(self._run_async(key, make_flow, core))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_async(self, key: Hashable, make_flow: Callable[[], Flow], core: Core) -> None:
        try:
            try:
                await drive_async(make_flow(), core)
            except asyncio.CancelledError:
                # Only a shutdown cancels a refresh nobody awaits (asyncio.run cancels
                # what is pending, then waits for it): run it once more, bounded.
                task = asyncio.current_task()
                uncancel = getattr(task, "uncancel", None)  # Python 3.11+
                if uncancel is not None:
                    uncancel()
                logger.info("%s: finishing a background refresh before exit", self.name)
                await asyncio.wait_for(drive_async(make_flow(), core), exit_timeout())
        except asyncio.TimeoutError:
            logger.warning(
                "%s: a background refresh did not finish within refresh_exit_timeout; "
                "its entry stays stale until the next call refreshes it",
                self.name,
            )
        except (Exception, asyncio.CancelledError):
            logger.warning("%s: background refresh failed", self.name, exc_info=True)
        finally:
            self._done(key)
