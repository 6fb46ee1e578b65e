"""The pickle core's tag versions: one small file per cache directory.

Every function under one ``cache_dir`` shares the versions::

    <cache_dir>/.cachier_like_tags        {"format": ..., "base": 0, "counts": {"user:7": 2}}
    <cache_dir>/.cachier_like_tags.lock   taken (flock, exclusive) by each bump
    <cache_dir>/.cachier_like_tags.<pid>-<random>.<tid>.tmp   a bump being written

A tag's version is ``base + counts[tag]`` (0 for a tag never bumped, while the file is
absent or ``base`` is 0). A bump is a read-modify-write under the lock file's
exclusive ``flock``, which excludes threads (each opens its own file description) and
processes alike; the new file is written beside the old one and renamed over it, so a
reader sees one or the other, whole.

Readers cache the parsed file in this process, keyed by its ``os.stat`` (inode, device,
modification time, size): a read costs one ``stat`` while nobody bumps. The cache keeps
the file it parsed open, so its inode cannot be reused by a later version of the file
(which could otherwise match the cached stat within one tick of the file system clock).

A damaged file (not JSON of this format) is never trusted: see :meth:`TagFile.versions`.
No namespace directory can be named like these files: directory names never start
with a dot (:func:`~.pickle_files.namespace_dirname`).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .. import forks
from ..alerts import RateLimitedLog
from ..errors import BackendError
from .pickle_files import _O_CLOEXEC, FileModes

logger = logging.getLogger(__name__)

TAGS_FILE = ".cachier_like_tags"
_LOCK_SUFFIX = ".lock"
_FORMAT = "cachier_like tag versions 1"
_MAX_VERSION = (1 << 63) - 1  # the frame stores versions as signed 64-bit integers
_damage_log = RateLimitedLog(logger)
# Versions handed out while the file is damaged: each read one never handed out before.
_unknown = itertools.count(1)


def _unknown_version() -> int:
    """A version no entry has recorded: above every version of a healthy file, and new.

    Above (not merely unequal) so that a comparison by order marks entries stale too.
    """
    return time.time_ns() + next(_unknown)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One parsed state of the file, and the ``stat`` it was read at."""

    stamp: tuple[int, int, int, int] | None  # None: the file is absent
    base: int
    counts: dict[str, int] = field(default_factory=dict)
    damaged: bool = False
    fd: int | None = None  # keeps the parsed inode from being reused


_ABSENT = _Snapshot(None, 0)


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_dev, st.st_mtime_ns, st.st_size)


def _parse(data: bytes) -> tuple[int, dict[str, int]] | None:
    """The base and counts of a tag file's bytes; None when they are not such a file."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        return None
    base, counts = doc.get("base"), doc.get("counts")
    if type(base) is not int or base < 0 or not isinstance(counts, dict):
        return None
    if not all(type(n) is int and n > 0 for n in counts.values()):
        return None
    if base + max(counts.values(), default=0) >= _MAX_VERSION:
        return None
    return base, counts


class TagFile:
    """The tag versions of one cache directory, shared by the cores of this process.

    Example:
        >>> import tempfile
        >>> tags = TagFile(tempfile.mkdtemp(), FileModes())
        >>> tags.versions(["a", "b"])
        (0, 0)
        >>> tags.bump(["b"])
        >>> tags.versions(["a", "b"])
        (0, 1)
    """

    def __init__(self, directory: str, modes: FileModes) -> None:
        self.directory = directory
        self.path = os.path.join(directory, TAGS_FILE)
        self._modes = modes
        self._snapshot = _ABSENT
        self._lock = threading.Lock()  # guards swapping the snapshot (and closing its fd)
        forks.reset_in_child(self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """The current version of each tag.

        While the file is damaged, each read returns versions no entry has recorded
        (above any a healthy file holds, and new at every read), so every tagged entry
        is a miss rather than one that may have been invalidated being served; a
        rate-limited warning says so. The next bump rewrites the file under a new
        ``base`` (the clock in nanoseconds), above every version handed out before,
        which makes every older entry stale.

        A missing file means no tag was ever bumped: all versions are 0. Deleting the
        file resets the versions, so delete it only with every entry of the directory.
        """
        if not tags:
            return ()
        try:
            stamp = _stamp(os.stat(self.path))
        except FileNotFoundError:
            return (0,) * len(tags)
        except OSError as exc:
            raise BackendError(f"cannot read {self.path}: {exc}") from exc
        snapshot = self._snapshot
        if snapshot.stamp != stamp:
            snapshot = self._load()
        if snapshot.damaged:
            _damage_log.warn(
                self.path,
                "ignoring the damaged tag versions file %s: every tagged entry under %s is "
                "a miss until the next invalidation rewrites it",
                self.path,
                self.directory,
            )
            return tuple([_unknown_version() for _ in tags])
        base, read = snapshot.base, snapshot.counts.get
        return tuple([base + read(tag, 0) for tag in tags])

    def _load(self) -> _Snapshot:
        """Parse the file as it is now and cache it, keyed by the stat of what was read."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return _ABSENT
        except OSError as exc:
            raise BackendError(f"cannot read {self.path}: {exc}") from exc
        try:
            stamp = _stamp(os.fstat(fd))
            parsed = _parse(_read_all(fd))
        except BaseException:
            os.close(fd)
            raise
        if parsed is None:
            snapshot = _Snapshot(stamp, 0, damaged=True, fd=fd)
        else:
            snapshot = _Snapshot(stamp, parsed[0], parsed[1], fd=fd)
        with self._lock:
            old, self._snapshot = self._snapshot, snapshot
        if old.fd is not None:
            os.close(old.fd)
        return snapshot

    def bump(self, tags: Sequence[str]) -> None:
        """Advance each tag's version by one, atomically across threads and processes."""
        if not tags:
            return
        try:
            lock_fd = self._open_lock()
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                try:
                    self._rewrite(tags)
                finally:
                    # Explicitly: a child forked meanwhile holds a copy of the descriptor.
                    fcntl.flock(lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(lock_fd)
        except OSError as exc:
            raise BackendError(f"cannot bump tag versions in {self.path}: {exc}") from exc

    def _open_lock(self) -> int:
        lock_path = self.path + _LOCK_SUFFIX
        flags = os.O_RDWR | _O_CLOEXEC
        try:
            return self._modes.open(lock_path, flags)
        except FileNotFoundError:
            self._modes.make_directory(self.directory)
            return self._modes.open(lock_path, flags)

    def _rewrite(self, tags: Sequence[str]) -> None:
        """Read, bump and replace the file; the caller holds the lock file."""
        try:
            with open(self.path, "rb") as handle:
                parsed = _parse(handle.read())
            if parsed is None:
                _damage_log.warn(
                    (self.path, "rewrite"),
                    "%s was damaged: tag versions restart above every version handed out "
                    "so far, which makes every tagged entry under %s stale",
                    self.path,
                    self.directory,
                )
                parsed = (time.time_ns() + next(_unknown), {})
        except FileNotFoundError:
            parsed = (0, {})
        base, counts = parsed
        for tag in tags:
            counts[tag] = counts.get(tag, 0) + 1
        # ASCII (escapes): a tag may hold lone surrogates, which UTF-8 cannot.
        data = json.dumps({"format": _FORMAT, "base": base, "counts": counts}).encode("ascii")
        tmp = f"{self.path}.{os.getpid()}-{secrets.token_hex(4)}.{threading.get_ident()}.tmp"
        try:
            fd = self._modes.open(tmp, os.O_WRONLY | os.O_TRUNC | _O_CLOEXEC)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)  # a crash must not bring back versions already handed out
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


_files: dict[tuple[str, int], TagFile] = {}
_files_lock = threading.Lock()


def _new_files_lock() -> None:
    global _files_lock
    _files_lock = threading.Lock()


forks.reset_in_child(_new_files_lock)


def tag_file(directory: str, modes: FileModes) -> TagFile:
    """The one :class:`TagFile` of ``directory`` in this process (made on first use).

    Example:
        >>> tag_file("/tmp/x", FileModes()) is tag_file("/tmp/x", FileModes())
        True
    """
    slot = (directory, modes.file)
    found = _files.get(slot)
    if found is None:
        with _files_lock:
            found = _files.get(slot) or _files.setdefault(slot, TagFile(directory, modes))
    return found
