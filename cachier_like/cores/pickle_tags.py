"""The pickle core's tag versions: one memory-mapped file per cache directory.

Every function under one ``cache_dir`` shares the versions::

    <cache_dir>/.cachier_like_tags        64-byte header, then 65536 counters (512 KiB, sparse)
    <cache_dir>/.cachier_like_tags.lock   taken (flock) by each bump, exclusive
    <cache_dir>/.cachier_like_tags.<pid>-<random>.<tid>.tmp   a file being created

The header is :data:`MAGIC`, a sequence number (u64), ``base`` (i64), the slot count
(u32) and a ``retired`` byte; the slots are signed 64-bit little-endian counters. A
tag's version is ``base + slot[h(tag) % slots]``, ``h`` the first 8 bytes of the
BLAKE2b digest of the tag's UTF-8 ('surrogatepass') bytes: the same in every process,
whatever ``PYTHONHASHSEED``. Two tags sharing a slot only cost misses: bumping one
invalidates the entries of the other too.

Each process maps the file once (``MAP_SHARED``, read-only) and reads the counters from
the mapping: a read makes no system call. A bump (under the lock file's exclusive
``flock``, which excludes threads and processes alike) writes in place as a seqlock:
the sequence number made odd, the counters, then the sequence number made even (then
``fdatasync``, before the bump returns but after the lock is released). A
reader reads the sequence number, ``base`` and its counters, then the sequence number
again, and retries while they differ or it is odd. A sequence number that stays odd
is waited out under a shared ``flock``; odd even then means a writer died mid-bump:
see :meth:`TagFile.versions`.

The file is never truncated nor rewritten whole: it is created full-size under a
temporary name and hard-linked into place (so nobody maps half a header), and a
damaged file is replaced by a new one (renamed over it) after it is retired (its
sequence number made odd for good, its ``retired`` byte set), which makes every
mapping of it open the path again. Truncating the file in
place while processes have it mapped makes their next read fail with ``SIGBUS`` (as
for any mapped file): never edit it. Deleting it is not supported while processes
run either: they would go on reading the deleted file, up to the next check of the
path (at most one ``stat`` per second, on a read) or their own next bump. On a
network file system (NFS, SMB, ...), whose mapped pages are not coherent between
machines, each read uses ``pread`` instead of the mapping.

No namespace directory can be named like these files: directory names never start
with a dot (:func:`~.pickle_files.namespace_dirname`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import logging
import mmap
import os
import re
import secrets
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from .. import forks
from ..alerts import RateLimitedLog
from ..errors import BackendError
from ..tagging import Expected, expected
from .pickle_files import _O_CLOEXEC, FileModes

logger = logging.getLogger(__name__)

TAGS_FILE = ".cachier_like_tags"
_LOCK_SUFFIX = ".lock"
MAGIC = b"CLTAGS\x00\x02"
SLOTS = 1 << 16
_HEADER = struct.Struct("<8sQqIB35x")  # magic, sequence, base, slots, retired, reserved
HEADER_SIZE = _HEADER.size
FILE_SIZE = HEADER_SIZE + 8 * SLOTS
_SEQ_OFFSET, _BASE_OFFSET, _RETIRED_OFFSET = 8, 16, 28
# The mapping is read as 64-bit words: 0 the magic, 1 the sequence number, 2 the base,
# 3 the slot count and the retired byte (SLOTS exactly while healthy), 8... the slots.
_MAGIC_WORD = int.from_bytes(MAGIC, "little", signed=True)
_WORD = struct.Struct("<q")
_FIRST_WORDS = struct.Struct("<4q")
_ALL_SLOTS = struct.Struct(f"<{SLOTS}q")
_MAX_VERSION = (1 << 63) - 1  # the frame stores versions as signed 64-bit integers
_SPINS = 8  # reads retried while a bump is being written, before waiting on the lock
_RECHECK_S = 1.0  # how often a read makes sure the path still names the mapped file
_RETRY_CREATE_S = 1.0  # how often reads retry creating a file they could not create
_MAX_INDEXES = 4096
# File systems whose mapped pages other machines' writes do not reach.
_NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "openafs", "ceph"}
    | {"fuse.sshfs", "sshfs", "fuse.ceph", "glusterfs", "fuse.glusterfs", "lustre"}
    | {"gpfs", "beegfs", "ocfs2", "gfs2", "fuse.s3fs", "davfs"}
)
_MOUNTINFO = "/proc/self/mountinfo"
# Python's mmap keeps a duplicate of the descriptor, unless told not to (3.13+).
_NO_FD: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}
_monotonic = time.monotonic
#: Tag sets a TagFile keeps the current record of (a bound, not an LRU).
_MAX_KNOWN = 4096
_damage_log = RateLimitedLog(logger)
# Versions handed out while the file is damaged: each read one never handed out before.
_unknown = itertools.count(1)
# Slot word indexes by tag, the same for every file (their slot count is fixed).
_indexes: dict[str, int] = {}


def _unknown_version() -> int:
    """A version no entry has recorded: above every version of a healthy file, and new.

    Above (not merely unequal) so that a comparison by order marks entries stale too.
    """
    return time.time_ns() + next(_unknown)


def slot_index(tag: str) -> int:
    """The index of ``tag``'s counter among the file's 64-bit words: the same in every
    process (its byte offset is 8 times that).

    Example:
        >>> slot_index("user:7") == slot_index("user:7") >= HEADER_SIZE // 8
        True
    """
    index = _indexes.get(tag)
    if index is None:
        digest = hashlib.blake2b(tag.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        index = HEADER_SIZE // 8 + int.from_bytes(digest, "little") % SLOTS
        if len(_indexes) >= _MAX_INDEXES:
            _indexes.clear()  # bounded: tags made per call (user ids) must not grow it
        _indexes[tag] = index
    return index


class _Descriptor:
    """An open descriptor closed when the last reference goes: a thread reading through
    it holds one, so it can never be closed (and its number reused) under the read."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _View:
    """What this process reads the versions from: the mapping (as 64-bit words), or a
    descriptor to ``pread`` (network file systems); neither while the file is absent
    or damaged."""

    __slots__ = ("check_at", "damaged", "descriptor", "identity", "known", "words")

    def __init__(
        self,
        words: memoryview | None = None,
        descriptor: _Descriptor | None = None,
        identity: tuple[int, int] | None = None,
        damaged: bool = False,
    ) -> None:
        self.words = words
        self.descriptor = descriptor
        self.identity = identity  # (st_dev, st_ino) of the file read
        live = words is not None or descriptor is not None
        self.check_at = _monotonic() + _RECHECK_S if live else 0.0
        self.damaged = damaged
        #: By tag set: the sequence number its versions were read under in this file,
        #: and what an entry current at them records (see TagFile.current). A view of
        #: another file starts empty: its sequence numbers are not this one's.
        self.known: dict[tuple[str, ...], tuple[int, Expected]] = {}


_NOT_OPEN = _View()


def _valid_header(header: bytes, size: int) -> tuple[int, int] | None:
    """The sequence number and base of a healthy file's header; None if it is not one."""
    if size != FILE_SIZE or len(header) < HEADER_SIZE:
        return None
    magic, seq, base, slots, retired = _HEADER.unpack_from(header)
    if magic != MAGIC or slots != SLOTS or retired or not 0 <= base < _MAX_VERSION:
        return None
    return seq, base


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_type(directory: str, mountinfo: str = _MOUNTINFO) -> str | None:
    """The type of the file system holding ``directory`` (from ``mountinfo``); None if
    it cannot be told.

    Example:
        >>> filesystem_type("/", mountinfo="/nonexistent") is None
        True
    """
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    path = os.path.realpath(directory)
    best, found = -1, None
    for line in lines:
        mount, sep, rest = line.partition(" - ")
        fields, tail = mount.split(), rest.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # the last of stacked mounts is the visible one
            best, found = len(point), tail[0]
    return found


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
        #: Whether reads use ``pread`` rather than the mapping: on a network file system,
        #: or where the mapping's native words are not the file's little-endian ones.
        self.network = filesystem_type(directory) in _NETWORK_FS or sys.byteorder != "little"
        #: What versions are read from now (the mapping of the file, mostly).
        self.view = _NOT_OPEN
        self._create_after = 0.0  # reads do not retry a failed creation before then

    # -- reads -------------------------------------------------------------------------

    def current(self, tags: tuple[str, ...]) -> Expected:
        """What an entry of ``tags`` current now records: :func:`~..tagging.expected` of
        :meth:`versions`, the same object for as long as no tag of the directory is
        bumped (the file's sequence number moves with every bump), so a tagged hit
        reads one word of the mapping, not its tags' slots. Such a read does not check
        the path (a clock read would cost a hit more than the rest of this): a deleted
        file is noticed by the next :meth:`versions` (a miss, an invalidation).

        Example:
            >>> import tempfile
            >>> tags = TagFile(tempfile.mkdtemp(), FileModes())
            >>> tags.current(("a",)), tags.current(("a",)) is tags.current(("a",))
            ((0,), True)
        """
        view = self.view
        words = view.words
        if words is not None:
            seq = words[1]
            known = view.known.get(tags)
            if known is not None and known[0] == seq:
                return known[1]  # an odd seq is never kept: no bump began since
            found = expected(tags, self.versions(tags))
            if not seq & 1 and self.view is view and words[1] == seq:
                if len(view.known) >= _MAX_KNOWN:
                    view.known.clear()
                view.known[tags] = (seq, found)
            return found
        return expected(tags, self.versions(tags))

    def versions(self, tags: Sequence[str]) -> tuple[int, ...]:
        """The current version of each tag: from the mapping, with no system call.

        While the file is damaged, or a bump was interrupted (its process died while
        writing), each read returns versions no entry has recorded (above any a
        healthy file holds, and new at every read), so every tagged entry is a miss
        rather than one that may have been invalidated being served; a rate-limited
        warning says so. The next bump repairs the file under a new ``base`` (the
        clock in nanoseconds), above every version handed out before, which makes
        every older entry stale.

        The first read creates the file (all versions 0) if its directory exists; while
        it cannot be created (no directory yet, no write permission), all versions are
        0, as nothing was ever bumped. Deleting the file resets the versions, so delete
        it only with every entry of the directory, and with no process running.
        """
        view = self.view
        words = view.words
        if words is None or view.check_at <= _monotonic():
            return self._versions_slowly(tags)
        # One try here; a retry (a bump being written, ...) is the slow path's.
        if len(tags) == 1:  # the usual case: no list
            at = _indexes.get(tags[0]) or slot_index(tags[0])
            seq = words[1]
            version = words[2] + words[at]
            # A retired file's sequence number is odd too; its magic is checked with
            # its path, once per second.
            if words[1] == seq and not seq & 1 and 0 <= version < _MAX_VERSION:
                return (version,)
            return self._versions_slowly(tags)
        # Several tags: a plain loop (cheaper than comprehensions or map here).
        seq = words[1]
        base = words[2]
        found = []
        index = _indexes.get
        for tag in tags:
            count = words[index(tag) or slot_index(tag)]
            if not 0 <= count < _MAX_VERSION - base:
                return self._versions_slowly(tags)
            found.append(base + count)
        if words[1] == seq and not seq & 1:
            return tuple(found)
        return self._versions_slowly(tags)

    def _versions_slowly(self, tags: Sequence[str]) -> tuple[int, ...]:
        """A read off the mapping's fast path: the first one, the periodic check of the
        path, a network file system, a bump in progress, a damaged or absent file."""
        if not tags:
            return ()
        where = [slot_index(tag) for tag in tags]
        view = self._current_view()
        found = self._read(view, where)
        if found is None:
            # A bump in progress, a file being replaced, a dead writer or damage: look
            # again with live writers waited out (a damaged file may be mid-replacement).
            with self._shared_lock():
                self.view = view = self._open_view()
                found = self._read(view, where, spins=1)
        if found is not None:
            return found
        if view.words is None and view.descriptor is None and not view.damaged:
            return (0,) * len(tags)  # no file, and none could be made: nothing was bumped
        _damage_log.warn(
            self.path,
            "ignoring the damaged tag versions file %s (or one whose last bump was "
            "interrupted): every tagged entry under %s is a miss until the next "
            "invalidation repairs it",
            self.path,
            self.directory,
        )
        return tuple([_unknown_version() for _ in tags])

    def _read(self, view: _View, where: list[int], spins: int = _SPINS) -> tuple[int, ...] | None:
        """The versions at ``where`` in ``view``, consistent; None if none could be read
        (an odd or moving sequence number, a retired or damaged file, no file)."""
        words, descriptor = view.words, view.descriptor
        for _ in range(spins):
            try:
                if words is not None:
                    magic, seq, base, shape = words[0], words[1], words[2], words[3]
                    found = tuple([base + words[at] for at in where])
                    again = words[1]
                elif descriptor is not None:
                    fd = descriptor.fd
                    magic, seq, base, shape = _FIRST_WORDS.unpack(os.pread(fd, 32, 0))
                    found = tuple([base + _pread_word(fd, at) for at in where])
                    again = _pread_word(fd, 1)
                else:
                    return None if view.damaged else (0,) * len(where)
            except struct.error:  # a short read: the file was cut under the descriptor
                return None
            except OSError as exc:
                raise BackendError(f"cannot read {self.path}: {exc}") from exc
            if seq & 1 or again != seq:
                continue
            if magic != _MAGIC_WORD or shape != SLOTS or not _in_range(found):
                return None
            return found
        return None

    def _current_view(self) -> _View:
        """The view to read from, opened again if it was never opened, is absent or
        damaged, or is due for its check that the path still names its file."""
        view = self.view
        if view.check_at > _monotonic():  # a live view, checked less than a second ago
            return view
        if view.identity is not None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                st = None
            except OSError as exc:
                raise BackendError(f"cannot read {self.path}: {exc}") from exc
            same = st is not None and (st.st_dev, st.st_ino) == view.identity
            if same and (view.words is None or view.words[0] == _MAGIC_WORD):
                if not view.damaged:
                    view.check_at = _monotonic() + _RECHECK_S
                return view
        self.view = view = self._open_view()
        return view

    def _open_view(self) -> _View:
        """Open (and map, on a local file system) the file; create it if absent."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            if _monotonic() < self._create_after:
                return _NOT_OPEN
            try:
                self._create(base=0, how="unlocked")
            except OSError as exc:
                logger.debug("cannot create %s (versions read as 0): %s", self.path, exc)
                self._create_after = _monotonic() + _RETRY_CREATE_S
                return _NOT_OPEN
            return self._open_view()
        except OSError as exc:
            raise BackendError(f"cannot read {self.path}: {exc}") from exc
        descriptor = _Descriptor(fd)
        try:
            st = os.fstat(fd)
            healthy = _valid_header(os.pread(fd, HEADER_SIZE, 0), st.st_size) is not None
        except OSError as exc:
            raise BackendError(f"cannot read {self.path}: {exc}") from exc
        identity = (st.st_dev, st.st_ino)
        if not healthy:
            return _View(identity=identity, damaged=True)
        if self.network:
            return _View(descriptor=descriptor, identity=identity)
        try:
            mapped = mmap.mmap(fd, FILE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ, **_NO_FD)
        except (OSError, ValueError) as exc:
            logger.debug("cannot map %s: %s", self.path, exc)
            return _View(identity=identity, damaged=True)
        # Indexing a memoryview of words is the cheapest read Python has (no struct call).
        return _View(words=memoryview(mapped).cast("q"), identity=identity)

    @contextlib.contextmanager
    def _shared_lock(self) -> Iterator[None]:
        """Hold the lock file shared (no bump runs meanwhile), if it can be opened."""
        try:
            fd = os.open(self.path + _LOCK_SUFFIX, os.O_RDONLY | _O_CLOEXEC)
        except OSError:  # no lock file: no bump ever ran here, or none can be waited for
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # -- bumps -------------------------------------------------------------------------

    def bump(self, tags: Sequence[str]) -> None:
        """Advance each tag's version by one, atomically across threads and processes.

        Tags sharing a slot advance by one together. A bump whose versions would
        overflow 63 bits raises :class:`~cachier_like.errors.BackendError`.
        """
        if not tags:
            return
        where = sorted({slot_index(tag) for tag in tags})
        try:
            lock_fd = self._open_lock()
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
                try:
                    fd = self._bump_locked(where)
                finally:
                    # Explicitly: a child forked meanwhile holds a copy of the descriptor.
                    fcntl.flock(lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(lock_fd)
            try:
                # Durable before the bump returns (a crash of the machine must not bring
                # back versions already handed out), but not under the lock: readers
                # that wait for the lock (rare) need not wait for the disk.
                _sync(fd)
            finally:
                os.close(fd)
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

    def _bump_locked(self, where: list[int]) -> int:
        """Advance the counters at ``where`` in place; the caller holds the lock file.
        Returns the file's descriptor, for the caller to sync and close."""
        try:
            fd = os.open(self.path, os.O_RDWR | _O_CLOEXEC)
        except FileNotFoundError:
            self._create(base=0, how="locked")
            fd = os.open(self.path, os.O_RDWR | _O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self.view.identity:
                # Not the file this process reads (it was deleted and made again): the
                # next read here must see this bump, not wait for its check of the path.
                self.view = _NOT_OPEN
            state = _valid_header(os.pread(fd, HEADER_SIZE, 0), st.st_size)
            counts = [_pread_word(fd, at) for at in where] if state else []
            if state is None or min(counts) < 0:
                old, fd = fd, -1  # _replace closes it
                fd = self._replace(old)
                state, counts = (0, self._base_of(fd)), [0] * len(where)
            seq, base = state
            new_base = base
            if seq & 1:
                repaired = self._repaired_base(fd, base)
                if repaired is None:  # the dead writer's counters are not to be trusted
                    old, fd = fd, -1
                    fd = self._replace(old)
                    seq, base, counts = 0, self._base_of(fd), [0] * len(where)
                new_base = base if repaired is None else repaired
            if new_base + max(counts) + 1 >= _MAX_VERSION:
                raise BackendError(f"tag versions in {self.path} would overflow 63 bits")
            odd = seq + 1 if seq % 2 == 0 else seq + 2
            _write_slots(fd, odd, new_base if new_base != base else None, where, counts)
            os.pwrite(fd, _WORD.pack(odd + 1), _SEQ_OFFSET)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return fd

    def _repaired_base(self, fd: int, base: int) -> int | None:
        """A base above every version the file handed out before its writer died, and
        every unknown version handed out meanwhile; None if a counter is invalid."""
        counts = _ALL_SLOTS.unpack(os.pread(fd, 8 * SLOTS, HEADER_SIZE))
        if min(counts) < 0 or base + max(counts) >= _MAX_VERSION:
            return None
        _damage_log.warn(
            (self.path, "repair"),
            "%s: a bump was interrupted: tag versions restart above every version handed "
            "out so far, which makes every tagged entry under %s stale",
            self.path,
            self.directory,
        )
        return max(base + int(max(counts)) + 1, time.time_ns() + next(_unknown))

    def _replace(self, old_fd: int) -> int:
        """Retire a damaged file and put a fresh one in its place: the new file's
        descriptor (``old_fd`` is closed)."""
        _damage_log.warn(
            (self.path, "rewrite"),
            "%s was damaged: tag versions restart above every version handed out so far, "
            "which makes every tagged entry under %s stale",
            self.path,
            self.directory,
        )
        try:
            if os.fstat(old_fd).st_size >= HEADER_SIZE:
                # Its readers open the path again: they see an odd sequence number (the
                # fast path checks nothing else), then the retired byte.
                seq = _pread_word(old_fd, 1)
                os.pwrite(old_fd, _WORD.pack(seq + 1 if seq % 2 == 0 else seq), _SEQ_OFFSET)
                os.pwrite(old_fd, b"\x01", _RETIRED_OFFSET)
        finally:
            os.close(old_fd)
        self._create(base=time.time_ns() + next(_unknown), how="replace")
        self.view = _NOT_OPEN
        return os.open(self.path, os.O_RDWR | _O_CLOEXEC)

    @staticmethod
    def _base_of(fd: int) -> int:
        return int(_HEADER.unpack(os.pread(fd, HEADER_SIZE, 0))[2])

    def _create(self, base: int, how: str) -> None:
        """Put a full-size file in place, whole: written under a temporary name, then
        hard-linked into place if none is there yet (a racing creator's file is as
        good), or renamed over the damaged one (``how="replace"``).

        On a file system without hard links, only a bump (``how="locked"``, under the
        lock file) creates the file: renamed into place if still absent.
        """
        tmp = f"{self.path}.{os.getpid()}-{secrets.token_hex(4)}.{threading.get_ident()}.tmp"
        try:
            fd = self._modes.open(tmp, os.O_RDWR | os.O_EXCL | _O_CLOEXEC)
            try:
                os.pwrite(fd, _HEADER.pack(MAGIC, 0, base, SLOTS, 0), 0)
                os.ftruncate(fd, FILE_SIZE)  # the counters: zeros, sparse
                os.fsync(fd)
            finally:
                os.close(fd)
            if how == "replace":
                os.replace(tmp, self.path)
                return
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            except OSError as exc:
                no_links = exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP)
                if not no_links or how != "locked":
                    raise
                if not os.path.exists(self.path):  # no other bump runs meanwhile
                    os.rename(tmp, self.path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _in_range(versions: tuple[int, ...]) -> bool:
    return all(0 <= version < _MAX_VERSION for version in versions)


def _pread_word(fd: int, index: int) -> int:
    return int(_WORD.unpack(os.pread(fd, 8, 8 * index))[0])


def _sync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def _write_slots(fd: int, odd: int, base: int | None, where: list[int], counts: list[int]) -> None:
    """The first half of a bump: the sequence number made odd, then the new counters
    (and base). Its own function so a test can stop a writer here."""
    os.pwrite(fd, _WORD.pack(odd), _SEQ_OFFSET)
    if base is not None:
        os.pwrite(fd, _WORD.pack(base), _BASE_OFFSET)
    for at, count in zip(where, counts, strict=True):
        os.pwrite(fd, _WORD.pack(count + 1), 8 * at)


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
