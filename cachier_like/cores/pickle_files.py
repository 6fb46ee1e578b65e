"""The pickle core's files: entry file format, directory names, reads and writes.

An entry file is a header (:data:`MAGIC`, then the calculation time as a little-endian
double) followed by the payload. Used by :mod:`.pickle`; no state, no locks.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from ..errors import BackendError
from ..hashing import stable_hash

MAGIC = b"CLKE\x01\x00\x00\x00"
_HEADER = struct.Struct("<8sd")
HEADER_SIZE = _HEADER.size
_ENTRY_SUFFIX = ".entry"
_NAMESPACE_FILE = ".namespace"
_READ_CHUNK = 1 << 16
_MAX_DIRNAME = 180
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class FileModes:
    """The permissions of what the pickle core creates: entry files and directories.

    Private by default (files ``0o600``, directories ``0o700``): a cache directory
    others can write is a way to run code in every process that reads it. A directory
    gets the search bit wherever its files are readable. Modes that open files to the
    group or others are set with ``chmod`` after creation, as the umask may clear them.

    Example:
        >>> oct(FileModes(0o640).directory)
        '0o750'
    """

    file: int = 0o600

    @property
    def directory(self) -> int:
        return self.file | ((self.file & 0o444) >> 2)

    def open(self, path: str, flags: int) -> int:
        """``os.open(path, flags | O_CREAT)`` with :attr:`file` as the new file's mode."""
        fd = os.open(path, flags | os.O_CREAT, self.file)
        if self.file & 0o077:
            os.fchmod(fd, self.file)
        return fd

    def make_directory(self, path: str) -> None:
        """Create ``path`` (and its missing parents) with :attr:`directory` as the mode."""
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, mode=self.directory, exist_ok=True)
        try:
            os.mkdir(path, self.directory)
        except FileExistsError:
            return
        if self.directory & 0o077:
            os.chmod(path, self.directory)


PRIVATE = FileModes()


def namespace_dirname(namespace: str) -> str:
    """Map a namespace to one safe directory name, injectively.

    Example:
        >>> namespace_dirname("pkg.mod.f.<locals>.g")
        'pkg.mod.f.%3Clocals%3E.g'
    """
    name = quote(namespace, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > _MAX_DIRNAME:
        name = name[: _MAX_DIRNAME - 34] + "~" + stable_hash(namespace)
    return name


def list_namespaces(root: Path) -> list[str]:
    """The full namespaces of the function directories under ``root``, sorted.

    Each directory's :data:`_NAMESPACE_FILE` names it (its name may be shortened);
    without one, the name is unquoted. Files in ``root`` are no functions.
    """
    try:
        names = [item.name for item in os.scandir(root) if item.is_dir()]
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        try:
            with open(root / name / _NAMESPACE_FILE, encoding="utf-8") as handle:
                found.append(handle.read())
        except OSError:
            found.append(unquote(name))
    return sorted(found)


def write_entry(fd: int, timestamp: float, payload: bytes) -> None:
    """Write an entry file's header and payload to ``fd``, never copying the payload."""
    header = _HEADER.pack(MAGIC, timestamp)
    written = os.writev(fd, (header, payload))
    while written < HEADER_SIZE:  # a short write within the header itself (rare)
        written += os.write(fd, header[written:])
    view = memoryview(payload)[written - HEADER_SIZE :]
    while view:
        view = view[os.write(fd, view) :]


def _read_file(path: str) -> bytes | None:
    """The bytes of the file at ``path``; None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackendError(f"cannot read {path}: {exc}") from exc
    try:
        data = os.read(fd, _READ_CHUNK)
        if len(data) == _READ_CHUNK:
            chunks = [data]
            while chunk := os.read(fd, max(_READ_CHUNK, os.fstat(fd).st_size)):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data
    finally:
        os.close(fd)


def _read_stamp(path: str) -> float | None:
    """The timestamp in the header of the entry file at ``path``; None if unreadable."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(HEADER_SIZE)
    except OSError:
        return None
    if len(header) < HEADER_SIZE or header[:8] != MAGIC:
        return None
    return float(_HEADER.unpack(header)[1])
