"""The memory cores' tag versions: one set per process, shared by every memory core.

Read without the lock (a dict read is atomic under the GIL), bumped under it so racing
increments are all counted.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .. import forks

__all__ = ["bump", "current", "reset_tag_versions", "versions"]

_TAG_VERSIONS: dict[str, int] = {}
_tag_lock = threading.Lock()


def _new_tag_lock() -> None:
    global _tag_lock
    _tag_lock = threading.Lock()  # the parent's may be held by a thread the child lacks


forks.reset_in_child(_new_tag_lock)


def versions(tags: Sequence[str]) -> tuple[int, ...]:
    """This process's version of each tag (0 for one never bumped).

    Example:
        >>> versions(["never-bumped"])
        (0,)
    """
    read = _TAG_VERSIONS.get
    return tuple([read(tag, 0) for tag in tags])


def bump(tags: Sequence[str]) -> None:
    """Advance each tag's version by one."""
    with _tag_lock:
        for tag in tags:
            _TAG_VERSIONS[tag] = _TAG_VERSIONS.get(tag, 0) + 1


def current(tags: tuple[tuple[str, int], ...]) -> bool:
    """Whether recorded tag versions are still the process's."""
    read = _TAG_VERSIONS.get
    return all(read(tag, 0) == version for tag, version in tags)


def reset_tag_versions() -> None:
    """Forget every tag version of this process (all back to 0), for test harnesses.

    Only safe once the memory cores are cleared too: an entry recorded under a version
    that a reset hands out again would look current.

    Example:
        >>> bump(["t"])
        >>> reset_tag_versions()
        >>> versions(["t"])
        (0,)
    """
    with _tag_lock:
        _TAG_VERSIONS.clear()
