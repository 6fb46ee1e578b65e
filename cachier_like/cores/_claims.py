"""Cross-process calculation claims for the pickle core, built on kernel file locks.

Kernel locks vanish with the process that holds them, so a killed calculator never
leaves a claim behind. Two implementations share one interface:

* ``RangeLockClaims`` (Linux): one lock file per function; a claim is an
  open-file-description lock (``F_OFD_SETLK``) on one byte at an offset derived from
  the key. No file is created per key, which keeps a miss cheap.
* ``FileLockClaims`` (other POSIX systems): one lock file per key, locked with
  ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading

import xxhash

from .pickle_files import PRIVATE, FileModes

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# struct flock on Linux (x86-64 and aarch64): short type, short whence, off_t start,
# off_t len, pid_t pid, padding.
_FLOCK = struct.Struct("hhqqi4x")
_OFD_SETLK: int | None = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_GETLK: int | None = getattr(fcntl, "F_OFD_GETLK", None)
_OFFSET_MASK = (1 << 60) - 1


def _open(path: str, directory: str, modes: FileModes) -> int:
    try:
        return modes.open(path, os.O_RDWR | _O_CLOEXEC)
    except FileNotFoundError:
        modes.make_directory(directory)
        return modes.open(path, os.O_RDWR | _O_CLOEXEC)


def _flocked(path: str) -> bool:
    """Whether some open file holds an exclusive ``flock`` on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class _KernelClaims:
    """In-process bookkeeping shared by both lock flavours.

    A kernel lock excludes other processes; ``_held`` excludes other threads of this
    one (and keeps each claim's descriptor, whose closing releases the lock).
    """

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def _open_lock(self, name: str) -> int:
        """Open the file holding the key's lock."""
        raise NotImplementedError

    def _try_lock(self, fd: int, name: str) -> bool:
        """Lock the key on ``fd`` without blocking; False if another holds it."""
        raise NotImplementedError

    def _acquire(self, name: str) -> int | None:
        """Open and lock the key's lock without blocking; None if another holds it."""
        fd = self._open_lock(name)  # errors here are real failures
        try:
            locked = self._try_lock(fd, name)
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return None
        return fd

    def claim(self, name: str) -> bool:
        """Take the key's claim without blocking; True if this caller now holds it."""
        with self._lock:
            if name in self._held:
                return False  # another thread of this process holds it
            self._held[name] = -1  # reserved while the kernel lock is taken
        fd: int | None = None
        try:
            fd = self._acquire(name)
        finally:
            with self._lock:
                if fd is None:
                    del self._held[name]
                else:
                    self._held[name] = fd
        return fd is not None

    def release(self, name: str) -> None:
        """Close the descriptor, which drops its lock."""
        with self._lock:
            fd = self._held.pop(name, -1)
        if fd >= 0:
            os.close(fd)

    def _drop_held(self) -> int:
        with self._lock:
            held = [fd for fd in self._held.values() if fd >= 0]
            self._held.clear()
        for fd in held:
            os.close(fd)
        return len(held)


class RangeLockClaims(_KernelClaims):
    """Claims as byte-range OFD locks on ``<directory>/.claims.lock`` (Linux)."""

    available = _OFD_SETLK is not None and _OFD_GETLK is not None

    def __init__(self, directory: str, modes: FileModes = PRIVATE) -> None:
        super().__init__()
        self._directory = directory
        self._path = os.path.join(directory, ".claims.lock")
        self._modes = modes

    @staticmethod
    def _range(name: str) -> bytes:
        # The same byte for the same key in every process: never Python's hash().
        offset = int(xxhash.xxh3_64_intdigest(name.encode())) & _OFFSET_MASK
        return _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)

    def _open_lock(self, name: str) -> int:
        return _open(self._path, self._directory, self._modes)

    def _try_lock(self, fd: int, name: str) -> bool:
        try:
            fcntl.fcntl(fd, _OFD_SETLK, self._range(name))  # type: ignore[arg-type]
        except (BlockingIOError, PermissionError):
            return False  # EAGAIN or EACCES from the lock call itself: someone else holds it
        return True

    def is_claimed(self, name: str) -> bool:
        """Whether any process (this one included) holds the key's claim."""
        if name in self._held:
            return True
        try:
            fd = os.open(self._path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            answer = fcntl.fcntl(fd, _OFD_GETLK, self._range(name))  # type: ignore[arg-type]
        finally:
            os.close(fd)
        return bool(_FLOCK.unpack(answer)[0] != fcntl.F_UNLCK)

    def _other_processes(self) -> int:
        """Count OFD locks on the lock file held elsewhere, from ``/proc/locks``."""
        try:
            info = os.stat(self._path)
            with open("/proc/locks", encoding="ascii") as handle:
                table = handle.read()
        except OSError:
            return 0
        device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
        found = sum(1 for line in table.splitlines() if "OFDLCK" in line and f" {device} " in line)
        return max(found - len(self._held), 0)

    def clear(self) -> int:
        """Drop every claim: this process's, and other processes' by removing the file.

        Returns how many claims were in progress. Meant as a reset for a bad state:
        a calculator still running finishes and stores as usual.
        """
        others = self._other_processes()
        dropped = self._drop_held()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        return dropped + others

    def count(self) -> int:
        """Claims in progress, in every process."""
        return len(self._held) + self._other_processes()


class FileLockClaims(_KernelClaims):
    """Claims as ``flock`` locks on ``<directory>/.claims/<key>.lock`` (portable POSIX)."""

    available = True

    def __init__(self, directory: str, modes: FileModes = PRIVATE) -> None:
        super().__init__()
        self._directory = os.path.join(directory, ".claims")
        self._modes = modes

    def _path(self, name: str) -> str:
        return self._directory + "/" + name + ".lock"

    def _open_lock(self, name: str) -> int:
        return _open(self._path(name), self._directory, self._modes)

    def _try_lock(self, fd: int, name: str) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def is_claimed(self, name: str) -> bool:
        """Whether any process holds the key's lock."""
        return name in self._held or _flocked(self._path(name))

    def clear(self) -> int:
        """Drop every claim: this process's, and other processes' by deleting files.

        Returns how many claims were in progress.
        """
        in_progress = self._drop_held()
        try:
            with os.scandir(self._directory) as it:
                for item in it:
                    in_progress += _flocked(item.path)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(item.path)
        except FileNotFoundError:
            pass
        return in_progress

    def count(self) -> int:
        """Claims in progress, in every process."""
        try:
            with os.scandir(self._directory) as it:
                return sum(_flocked(item.path) for item in it)
        except FileNotFoundError:
            return 0


Claims = RangeLockClaims | FileLockClaims


def make_claims(
    directory: str, prefer_range_locks: bool = True, modes: FileModes = PRIVATE
) -> Claims:
    """The best claim implementation this platform offers.

    Example:
        >>> import tempfile
        >>> claims = make_claims(tempfile.mkdtemp())
        >>> claims.claim("ab" * 16), claims.claim("ab" * 16)
        (True, False)
    """
    if prefer_range_locks and RangeLockClaims.available:
        return RangeLockClaims(directory, modes)
    return FileLockClaims(directory, modes)
