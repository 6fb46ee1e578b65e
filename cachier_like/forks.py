"""The package's one ``os.register_at_fork`` hook: what a forked child resets.

A child inherits its parent's locks (perhaps held by a thread that does not exist in
the child), connections, claims and background threads (which do not). Modules and
objects that keep such state register a reset here; the child runs every reset, in
the order they were registered, before it returns from ``fork()``.

Example:
    >>> from cachier_like import forks
    >>> state = {"pid": 1}
    >>> _ = forks.reset_in_child(lambda: state.clear())
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

Reset = TypeVar("Reset", bound=Callable[[], Any])

_resets: dict[int, Callable[[], Any] | weakref.WeakMethod[Callable[[], Any]]] = {}
_ids = itertools.count()


def reset_in_child(reset: Reset) -> Reset:
    """Run ``reset()`` in every child forked from now on; return ``reset``.

    A bound method is held weakly: registering one per object (a core, a connection
    pool) keeps no object alive, and a collected object's reset is dropped.
    """
    slot = next(_ids)
    if inspect.ismethod(reset):
        _resets[slot] = weakref.WeakMethod(reset, lambda _: _resets.pop(slot, None))
    else:
        _resets[slot] = reset
    return reset


def _after_fork_in_child() -> None:
    for held in list(_resets.values()):
        reset = held() if isinstance(held, weakref.WeakMethod) else held
        if reset is None:
            continue
        try:
            reset()
        except Exception:  # one failed reset must not keep the others from running
            logger.exception("reset after fork failed: %r", reset)


os.register_at_fork(after_in_child=_after_fork_in_child)
