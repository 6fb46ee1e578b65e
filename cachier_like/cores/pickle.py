"""File core: one file per entry under ``cache_dir``, shared safely by many processes.

Layout for a function whose namespace is ``pkg.mod.f``::

    <cache_dir>/pkg.mod.f/<key>.entry      header (magic, timestamp) + payload
    <cache_dir>/pkg.mod.f/<key>.<pid>-<random>.<tid>.tmp   a write in progress
    <cache_dir>/pkg.mod.f/.claims.lock    calculation claims: byte-range locks (Linux)
    <cache_dir>/pkg.mod.f/.claims/<key>.lock      ... or one flock file per key elsewhere

Entries are written to a temporary file and renamed into place, so a reader sees the
old file or the new one, never half of one. Claims are kernel file locks (see
``_claims``): the kernel drops them when the calculating process dies, so no waiter
is blocked by a dead one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import forks
from ..entry import Entry
from ..errors import BackendError, ConfigurationError
from ..serialize import DEFAULT_SERIALIZER, Serializer
from ..tagging import expected
from ._claims import make_claims
from .base import Core, CoreStats, EntryInfo
from .pickle_files import (
    _ENTRY_SUFFIX,
    _HEADER,
    _NAMESPACE_FILE,
    _O_CLOEXEC,
    HEADER_SIZE,
    MAGIC,
    PRIVATE,
    FileModes,
    _read_file,
    _read_stamp,
    list_namespaces,
    namespace_dirname,
    write_entry,
)
from .pickle_tags import tag_file
from .shared import storage_name  # file-safe: no key names a path outside the directory

logger = logging.getLogger(__name__)

__all__ = ["HEADER_SIZE", "MAGIC", "PickleCore", "namespace_dirname", "write_entry"]

_WAIT_MIN_S = 0.001
_WAIT_MAX_S = 0.05


def _new_process_tag() -> str:
    # pid alone is not unique on a shared file system, nor the thread id after fork.
    return f"{os.getpid()}-{secrets.token_hex(4)}"


_process_tag = _new_process_tag()


def _retag_after_fork() -> None:
    global _process_tag
    _process_tag = _new_process_tag()


forks.reset_in_child(_retag_after_fork)


class PickleCore(Core):
    """Entries as files under ``cache_dir``; claims as ``flock`` lock files.

    Example:
        >>> import tempfile
        >>> core = PickleCore("demo.f", cache_dir=tempfile.mkdtemp())
        >>> core.set("k", Entry([1, 2], 0.0))
        True
        >>> core.get("k").value
        [1, 2]
    """

    def __init__(
        self,
        namespace: str,
        *,
        cache_dir: str | os.PathLike[str],
        serializer: Serializer = DEFAULT_SERIALIZER,
        prefer_range_locks: bool = True,
        file_mode: int = PRIVATE.file,
    ) -> None:
        super().__init__(namespace, serializer=serializer)
        if (
            not isinstance(file_mode, int)
            or isinstance(file_mode, bool)
            or file_mode & ~0o777
            or file_mode & 0o600 != 0o600
        ):
            raise ConfigurationError(
                f"file_mode must be permission bits including the owner's read and write "
                f"(0o600 to 0o777, e.g. 0o640 to let the group read), not {file_mode!r}"
            )
        self._modes = FileModes(file_mode)
        #: The ``cache_dir`` given, ``~`` expanded: what ``cache_dpath()`` returns.
        self.cache_dir = os.path.expanduser(os.fspath(cache_dir))
        #: This function's own subdirectory, which holds its entries and claims.
        self.directory = Path(self.cache_dir).absolute() / namespace_dirname(namespace)
        self._dir = str(self.directory)
        self._claims = make_claims(self._dir, prefer_range_locks, self._modes)
        self._named = False  # whether this process saw the namespace file written
        # Shared by every function under this cache_dir (see pickle_tags).
        self._tags = tag_file(str(Path(self.cache_dir).absolute()), self._modes)

    def location(self) -> str:
        """The ``cache_dir`` given, as cachier's ``cache_dpath()`` returns it.

        The entries are in this function's subdirectory of it, :attr:`directory`.
        """
        return self.cache_dir

    # -- entries -------------------------------------------------------------------

    def get(self, key: Hashable) -> Entry | None:
        """Read one entry file; an unreadable one is a miss and a warning."""
        name = storage_name(key)
        path = self._dir + "/" + name + _ENTRY_SUFFIX
        data = _read_file(path)
        if data is None:
            return None
        if len(data) < HEADER_SIZE or data[:8] != MAGIC:
            self.warn_damaged(path, "bad header")
            return None
        stamp = _HEADER.unpack_from(data)[1]
        return self.decode_entry(memoryview(data)[HEADER_SIZE:], path, name, stamp)

    def get_tagged(
        self, key: Hashable, tags: Sequence[str]
    ) -> tuple[Entry | None, tuple[int, ...]]:
        """The entry file and the tags' versions (read with no system call, see
        :mod:`.pickle_tags`); an entry current at them is recognised by its first bytes
        (:meth:`~.base.Core.decode_current`), not parsed."""
        name = storage_name(key)
        path = self._dir + "/" + name + _ENTRY_SUFFIX
        data = _read_file(path)
        tags = tags if type(tags) is tuple else tuple(tags)
        if data is None:  # a miss reads the versions in full, which checks the file's path
            return None, expected(tags, self._tags.versions(tags))
        # TagFile.current's kept record, looked up here: the call costs a hit a tenth
        # of the margin a tagged hit has over a plain one.
        mapped = self._tags.view
        known = mapped.known.get(tags)
        if known is not None and mapped.words[1] == known[0]:  # type: ignore[index]
            current = known[1]  # kept only for views with words
        else:
            current = self._tags.current(tags)
        if len(data) < HEADER_SIZE or data[:8] != MAGIC:
            self.warn_damaged(path, "bad header")
            return None, current
        stamp = _HEADER.unpack_from(data)[1]
        # decode_current, inlined: the call costs a tagged hit a tenth of its margin
        head = current.head
        if self.signer is None and data.startswith(head, HEADER_SIZE):
            view: Any = memoryview(data)[HEADER_SIZE + len(head) :]  # bytes-like, no copy
            try:
                value = self.serializer.loads(view)
            except Exception as exc:
                self.warn_damaged(path, repr(exc), kind=type(exc))
                return None, current
            return Entry(value, stamp, current.record), current
        entry = self.decode_entry(memoryview(data)[HEADER_SIZE:], path, name, stamp)
        return entry, current  # the versions, with the record a current entry holds

    def set(self, key: Hashable, entry: Entry) -> bool:
        """Write the entry to a temporary file, then rename it into place."""
        name = storage_name(key)
        payload = self.encode_entry(entry, name, entry.timestamp)
        if payload is None:
            return False
        final = self._dir + "/" + name + _ENTRY_SUFFIX
        tmp = f"{self._dir}/{name}.{_process_tag}.{threading.get_ident()}.tmp"
        flags = os.O_WRONLY | os.O_TRUNC | _O_CLOEXEC
        try:
            try:
                fd = self._modes.open(tmp, flags)
            except FileNotFoundError:
                self._make_directory()
                fd = self._modes.open(tmp, flags)
            try:
                write_entry(fd, entry.timestamp, payload)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            if not self._named:
                self._write_namespace_file()
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise BackendError(f"cannot write {final}: {exc}") from exc
        return True

    def delete(self, key: Hashable) -> bool:
        """Remove the entry file of ``key``; its claim, if any, stays."""
        path = self._dir + "/" + storage_name(key) + _ENTRY_SUFFIX
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise BackendError(f"cannot delete {path}: {exc}") from exc
        return True

    def tag_versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """The versions of ``tags`` under ``cache_dir``, shared by all its functions: read
        from a memory-mapped file, with no system call; a damaged file makes tagged
        entries misses (see :meth:`.pickle_tags.TagFile.versions`)."""
        return self._tags.versions(tags)

    def bump_tags(self, tags: Sequence[str]) -> None:
        """Advance each tag's version under ``cache_dir`` by one (an in-place increment
        under a lock file, which readers see at once: see :mod:`.pickle_tags`)."""
        self._tags.bump(tags)

    def _make_directory(self) -> None:
        self._modes.make_directory(self._dir)

    def _write_namespace_file(self) -> None:
        """Record the full namespace beside the entries, once per process and function.

        The CLI lists stores without importing code, and the directory name may be
        shortened. The directory may have been made by a claim rather than by a store,
        so this runs after the first store, whoever made the directory.
        """
        path = os.path.join(self._dir, _NAMESPACE_FILE)
        if not os.path.exists(path):
            tmp = f"{path}.{_process_tag}.{threading.get_ident()}.tmp"
            try:
                fd = self._modes.open(tmp, os.O_WRONLY | os.O_TRUNC | _O_CLOEXEC)
                with open(fd, "w", encoding="utf-8") as handle:
                    handle.write(self.namespace)
                os.replace(tmp, path)
            except OSError as exc:  # e.g. a full disk: the entry is stored all the same
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                logger.debug("cannot write %s (tried again at the next store): %s", path, exc)
                return
        self._named = True

    def _files(self, suffix: str) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(self._dir) as it:
                for item in it:
                    if item.name.endswith(suffix) and item.is_file():
                        yield item
        except FileNotFoundError:
            return

    def clear(self) -> int:
        """Remove this function's entry files (and abandoned temporary files).

        Returns how many entries were removed. Temporary files younger than
        :attr:`TEMP_MAX_AGE_S` stay: they may be writes in progress.
        """
        removed = 0
        for item in list(self._files(_ENTRY_SUFFIX)):
            try:
                os.unlink(item.path)
                removed += 1
            except FileNotFoundError:
                pass
        self._remove_abandoned_temporaries()
        return removed

    # -- claims --------------------------------------------------------------------

    def claim(self, key: Hashable, lease_s: float) -> bool:
        """Claim ``key`` with a kernel lock, without blocking.

        The lease is the holder's life: the kernel drops the lock if it dies.
        """
        try:
            return self._claims.claim(storage_name(key))
        except OSError as exc:
            raise BackendError(f"cannot claim {key!r} under {self._dir}: {exc}") from exc

    def release(self, key: Hashable) -> None:
        """Drop this caller's claim on ``key``."""
        self._claims.release(storage_name(key))

    def is_claimed(self, key: Hashable) -> bool:
        """Whether any thread or process holds the claim on ``key``."""
        return self._claims.is_claimed(storage_name(key))

    def wait(self, key: Hashable, timeout_s: float | None) -> Entry | None:
        """Poll the claim with exponential back-off (1 ms to 50 ms) until it ends."""
        return self.poll_wait(key, timeout_s, _WAIT_MIN_S, _WAIT_MAX_S)

    def clear_claims(self) -> int:
        """Drop every claim (a reset for a bad state); return how many were held."""
        return self._claims.clear()

    # -- maintenance ---------------------------------------------------------------

    #: Age (by modification time) after which a temporary file is taken to be the
    #: leftover of a writer that died between writing and renaming it; a live writer
    #: touches its file as it writes, so a younger one is left for its rename.
    TEMP_MAX_AGE_S = 3600.0
    _TEMP_SUFFIX = ".tmp"  # as ``set`` names them

    def _remove_abandoned_temporaries(self) -> int:
        # Ages by the real clock, like the file system's: not a caller's ``now``.
        now = time.time()
        removed = 0
        for item in list(self._files(self._TEMP_SUFFIX)):
            try:
                if now - item.stat().st_mtime > self.TEMP_MAX_AGE_S:
                    os.unlink(item.path)
                    removed += 1
            except FileNotFoundError:
                pass
        if removed:
            logger.debug("removed %d abandoned temporary file(s) under %s", removed, self._dir)
        return removed

    def purge_stale(self, older_than_s: float, now: float) -> int:
        """Remove entry files (and corrupted ones) calculated before ``now - older_than_s``.

        Returns how many entries were removed; abandoned temporary files (older than
        :attr:`TEMP_MAX_AGE_S`) go too.
        """
        self._remove_abandoned_temporaries()
        removed = 0
        for item in list(self._files(_ENTRY_SUFFIX)):
            stamp = _read_stamp(item.path)
            if stamp is None or now - stamp > older_than_s:
                try:
                    os.unlink(item.path)
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def entries(self) -> Iterator[EntryInfo]:
        """Every entry file: key, calculation time and size."""
        for item in self._files(_ENTRY_SUFFIX):
            stamp = _read_stamp(item.path)
            try:
                size = item.stat().st_size - HEADER_SIZE
            except FileNotFoundError:
                continue
            if stamp is not None:
                yield EntryInfo(key=item.name[: -len(_ENTRY_SUFFIX)], timestamp=stamp, size=size)

    @classmethod
    def namespaces(cls, **options: Any) -> list[str]:
        """Functions with a directory under ``cache_dir`` (as written by this core).

        Files there (the tag versions) are not functions.
        """
        return list_namespaces(Path(options["cache_dir"]).expanduser())

    def stats(self) -> CoreStats:
        """Count readable entries, their payload bytes and timestamps (as ``entries``)."""
        return self.stats_from_entries(claims=self._claims.count())
