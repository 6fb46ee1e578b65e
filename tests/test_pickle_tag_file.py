"""The pickle core's tag file (``cachier_like.cores.pickle_tags``): a memory-mapped
file of counters, read with no system call, bumped in place under a seqlock.

Here, what the file itself promises: reads make no system call, other processes see
a bump at once, concurrent bumps all count, a writer killed mid-bump is repaired,
replaced files are remapped, network file systems read with ``pread``, and the
versions do not depend on ``PYTHONHASHSEED``. Its use by the core (damage, file
modes, listings) is tested in ``tests/test_pickle_core.py``. Processes are forked
(``FORK``) or fresh interpreters; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cachier_like import BackendError
from cachier_like.cores import pickle_tags
from cachier_like.cores.pickle_files import FileModes
from cachier_like.cores.pickle_tags import FILE_SIZE, HEADER_SIZE, MAGIC, SLOTS, TagFile
from tests.support import (
    DEADLINE_S,
    FORK,
    in_call,
    reap,
    run_code,
    run_forked,
    wait_until,
    warnings_in,
)
from tests.test_pickle_core import fake_os

pytestmark = pytest.mark.pickle

HEADER = struct.Struct("<8sQqIB")  # magic, sequence, base, slots, retired
ROOT = Path(__file__).resolve().parents[1]


def header(directory: Path) -> tuple[bytes, int, int, int, int]:
    """The header fields of the tag file in ``directory``."""
    with open(directory / pickle_tags.TAGS_FILE, "rb") as handle:
        fields: tuple[bytes, int, int, int, int] = HEADER.unpack(handle.read(HEADER.size))
    return fields


def poke_slot(directory: Path, tag: str, value: int) -> None:
    """Overwrite ``tag``'s counter in place (the file keeps its size: no SIGBUS)."""
    fd = os.open(directory / pickle_tags.TAGS_FILE, os.O_WRONLY)
    try:
        os.pwrite(fd, struct.pack("<q", value), 8 * pickle_tags.slot_index(tag))
    finally:
        os.close(fd)


def forbidden(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"a system call on the hit path: {args!r}")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The module's monotonic clock, frozen; ``clock[0] += s`` moves it on."""
    now = [time.monotonic()]
    monkeypatch.setattr(pickle_tags, "_monotonic", lambda: now[0])
    return now


# -- reads -----------------------------------------------------------------------------


def test_reads_on_a_local_file_system_make_no_system_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    assert not tags.network  # tmp_path is local here
    tags.bump(["a", "c"])
    tags.bump(["c"])
    assert tags.versions(["a"]) == (1,)  # warm-up: maps the file
    calls: list[str] = []

    def spy(name: str) -> Callable[..., Any]:
        real = getattr(os, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return call

    names = ("stat", "fstat", "lstat", "pread", "open", "read")
    monkeypatch.setattr(pickle_tags, "os", fake_os(**{name: forbidden for name in names}))
    monkeypatch.setattr(fcntl, "flock", forbidden)
    for _ in range(100):
        assert tags.versions(["a"]) == (1,)
        assert tags.versions(("a", "b", "c")) == (1, 0, 2)
        assert tags.versions([]) == ()
        assert tags.current(("a", "c")) == (1, 2)  # a tagged hit's lookup
    # The path is checked again (one stat) once per second of reads, no more.
    monkeypatch.setattr(pickle_tags, "os", fake_os(**{name: spy(name) for name in names}))
    clock[0] += 1.5
    for _ in range(100):
        assert tags.versions(["a"]) == (1,)
    assert calls == ["stat"]


def test_a_bump_is_seen_at_once_by_processes_that_mapped_the_file(tmp_path: Path) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    assert tags.versions(["t"]) == (0,)  # mapped before the fork: the child inherits it
    to_child, to_parent = FORK.Pipe()

    def reader() -> None:
        own = TagFile(str(tmp_path), FileModes())
        to_parent.send(own.versions(["t"]))  # mapped before any bump
        while (expected := to_parent.recv()) is not None:
            to_parent.send((tags.versions(["t"]), own.versions(["t"]), expected))

    child = FORK.Process(target=reader, daemon=True)
    child.start()
    try:
        assert to_child.poll(DEADLINE_S) and to_child.recv() == (0,)
        for round_ in range(1, 21):
            tags.bump(["t"])
            to_child.send(round_)
            assert to_child.poll(DEADLINE_S)
            inherited, own, expected = to_child.recv()
            assert inherited == own == (expected,) == (round_,)
        to_child.send(None)
        child.join(DEADLINE_S)
        assert child.exitcode == 0
    finally:
        reap(child)


def test_a_bump_in_a_forked_child_is_seen_by_the_parent(tmp_path: Path) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    assert tags.versions(["t"]) == (0,)

    def child(_: int) -> tuple[int, ...]:
        tags.bump(["t"])
        return tags.versions(["t"])

    assert run_forked(1, child) == [(1,)]
    assert tags.versions(["t"]) == (1,)


def test_concurrent_bumps_from_processes_and_threads_all_count(tmp_path: Path) -> None:
    processes, threads, rounds = 4, 2, 50

    def work(index: int) -> bool:
        tags = TagFile(str(tmp_path), FileModes())  # the fork's own mapping
        seen_rising = [True]

        def bump() -> None:
            last = 0
            for _ in range(rounds):
                tags.bump(["shared", f"own-{index}"])
                (now,) = tags.versions(["shared"])
                seen_rising[0] &= now > last  # never a torn or older read
                last = now

        workers = [threading.Thread(target=bump) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(DEADLINE_S)
        return seen_rising[0]

    assert (
        run_forked(processes, work, start_together=True, forbid_warnings=True) == [True] * processes
    )
    names = ["shared", *(f"own-{i}" for i in range(processes))]
    versions = TagFile(str(tmp_path), FileModes()).versions(names)
    assert versions == (processes * threads * rounds, *[threads * rounds] * processes)
    assert header(tmp_path)[1] % 2 == 0


def test_reads_during_bumps_in_another_process_are_never_torn(tmp_path: Path) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    assert tags.versions(["a", "b"]) == (0, 0)
    rounds = 300
    done = FORK.Event()

    def bumper() -> None:
        writer = TagFile(str(tmp_path), FileModes())
        for _ in range(rounds):
            writer.bump(["a", "b"])  # always together: a torn read would tell them apart
        done.set()

    child = FORK.Process(target=bumper, daemon=True)
    child.start()
    try:
        seen = set()
        while not done.is_set():
            a, b = tags.versions(["a", "b"])
            assert a == b
            seen.add(a)
        child.join(DEADLINE_S)
        assert child.exitcode == 0
    finally:
        reap(child)
    assert tags.versions(["a", "b"]) == (rounds, rounds)
    assert len(seen) > 10  # the reads did overlap the bumps


def test_racing_first_reads_make_one_file_and_leave_no_temporary_file(tmp_path: Path) -> None:
    results = run_forked(
        4,
        lambda _: TagFile(str(tmp_path), FileModes()).versions(["t"]),
        start_together=True,
        forbid_warnings=True,
    )
    assert results == [(0,)] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [pickle_tags.TAGS_FILE]
    assert (tmp_path / pickle_tags.TAGS_FILE).stat().st_size == FILE_SIZE
    assert header(tmp_path) == (MAGIC, 0, 0, SLOTS, 0)


def test_versions_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from cachier_like.cores.pickle_tags import TagFile, slot_index\n"
        "from cachier_like.cores.pickle_files import FileModes\n"
        "tags = TagFile(sys.argv[1] if len(sys.argv) > 1 else {dir!r}, FileModes())\n"
        "names = ['a', 'b', 'user:\\u00fc\\ud800', 'never']\n"
        "for count, name in enumerate(names[:3], 1):\n"
        "    for _ in range(count if {bump} else 0):\n"
        "        tags.bump([name])\n"
        "print(json.dumps([[slot_index(n) for n in names], tags.versions(names)]))\n"
    )
    outputs = []
    for seed, bump in (("1", True), ("2", False)):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        done = run_code(code.format(dir=str(tmp_path), bump=bump), env=env)
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[1][1] == [1, 2, 3, 0]
    # The slot is the file format's: the first 8 bytes of BLAKE2b, little-endian.
    digest = hashlib.blake2b(b"a", digest_size=8).digest()
    assert outputs[0][0][0] == HEADER_SIZE // 8 + int.from_bytes(digest, "little") % SLOTS


def test_tags_sharing_a_slot_are_bumped_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(pickle_tags._indexes, "twin", pickle_tags.slot_index("t"))
    tags = TagFile(str(tmp_path), FileModes())
    tags.bump(["t", "twin"])  # one slot: one step
    assert tags.versions(["t", "twin"]) == (1, 1)


# -- a writer killed mid-bump ------------------------------------------------------------


def test_a_writer_killed_mid_bump_makes_misses_until_the_next_bump_repairs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    tags.bump(["t"])
    assert tags.versions(["t", "u"]) == (1, 0)
    to_child, to_parent = FORK.Pipe()

    def writer() -> None:
        write_slots = pickle_tags._write_slots

        def stop_halfway(*args: Any) -> None:
            write_slots(*args)  # sequence number odd, counters written
            to_parent.send("odd")
            time.sleep(DEADLINE_S)  # killed here, before the even sequence number

        pickle_tags._write_slots = stop_halfway  # type: ignore[assignment]
        TagFile(str(tmp_path), FileModes()).bump(["t"])

    child = FORK.Process(target=writer, daemon=True)
    child.start()
    try:
        assert to_child.poll(DEADLINE_S) and to_child.recv() == "odd"
        assert header(tmp_path)[1] % 2 == 1
        # A live writer is waited out (on the lock file), not taken for a dead one.
        got: list[tuple[int, ...]] = []
        reader = threading.Thread(target=lambda: got.append(tags.versions(["t", "u"])))
        with caplog.at_level(logging.WARNING):
            reader.start()
            code = TagFile._shared_lock.__wrapped__.__code__  # type: ignore[attr-defined]
            wait_until(lambda: in_call(reader, code))
            assert got == []
            os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
            child.join(DEADLINE_S)
            reader.join(DEADLINE_S)
            again = tags.versions(["t", "u"])
            alone = tags.versions(["t"])  # the one-tag path, too
    finally:
        reap(child)
    (first,) = got
    # Versions no entry recorded: above any handed out, and new at every read.
    assert min(first) > 1 and min(again) > max(first)
    assert len(set(first + again)) == 4
    assert alone[0] > max(again)
    assert [m for m in warnings_in(caplog) if "interrupted" in m] != []

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        TagFile(str(tmp_path), FileModes()).bump(["u"])  # the repair (another object)
    assert any("restart above every version" in m for m in warnings_in(caplog))
    after = tags.versions(["t", "u"])
    assert after == tags.versions(["t", "u"])  # stable again
    assert min(after) > max(again)  # every tag moved past what was handed out
    assert after[1] == after[0] + 1 or after[0] == after[1] + 1  # only "u" (or "t") moved
    magic, seq, base, slots, retired = header(tmp_path)
    assert (magic, seq % 2, slots, retired) == (MAGIC, 0, SLOTS, 0)
    assert base > max(again)


# -- replaced and deleted files ----------------------------------------------------------


def test_a_replaced_file_is_retired_and_its_readers_remap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = TagFile(str(tmp_path), FileModes()), TagFile(str(tmp_path), FileModes())
    writer.bump(["t"])
    assert reader.versions(["t", "u"]) == (1, 0)
    old_words, old_identity = reader.view.words, reader.view.identity
    assert old_words is not None
    poke_slot(tmp_path, "t", -3)  # damaged in place: the reader's mapping shows it
    with caplog.at_level(logging.WARNING):
        (unknown, _) = reader.versions(["t", "u"])
        assert unknown > 1
        writer.bump(["t"])  # replaces the file: a new base above all handed out
    assert any("restart above every version" in m for m in warnings_in(caplog))
    assert old_words[1] % 2 == 1  # the old file is retired: odd forever...
    assert old_words[3] >> 32 & 0xFF == 1  # ...and flagged retired
    base = header(tmp_path)[2]
    assert base > unknown
    # No clock moved: the reader left the retired file at its next read.
    assert reader.versions(["t", "u"]) == (base + 1, base)
    assert reader.view.identity != old_identity


def test_a_deleted_file_is_left_within_a_second(tmp_path: Path, clock: list[float]) -> None:
    """Deleting the file under running processes is not supported; the harm is bounded:
    a process reads the deleted file until its next check of the path."""
    reader, writer = TagFile(str(tmp_path), FileModes()), TagFile(str(tmp_path), FileModes())
    writer.bump(["t"])
    assert reader.versions(["t"]) == (1,)
    os.unlink(tmp_path / pickle_tags.TAGS_FILE)
    writer.bump(["t"])
    writer.bump(["t"])  # a new file: t is 2 there
    assert reader.versions(["t"]) == (1,)  # still the deleted file
    clock[0] += 1.5
    assert reader.versions(["t"]) == (2,)


def test_a_bump_here_is_read_here_at_once_even_in_a_file_made_again(
    tmp_path: Path, clock: list[float]
) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    tags.bump(["t"])
    tags.bump(["t"])
    assert tags.versions(["t"]) == (2,)
    os.unlink(tmp_path / pickle_tags.TAGS_FILE)  # e.g. the cache directory wiped
    tags.bump(["t"])  # a new file: t is 1 there
    assert tags.versions(["t"]) == (1,)  # no clock moved


# -- no file, and network file systems ---------------------------------------------------


def test_without_a_file_versions_are_zero_and_creation_is_retried_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    directory = tmp_path / "not yet"
    tags = TagFile(str(directory), FileModes())
    assert tags.versions(["t"]) == (0,)  # no directory: none is made by a read
    assert not directory.exists()
    attempts: list[str] = []
    create = TagFile._create

    def failing_create(self: TagFile, base: int, how: str) -> None:
        attempts.append(how)
        raise PermissionError("read-only")

    monkeypatch.setattr(TagFile, "_create", failing_create)
    directory.mkdir()
    clock[0] += 1.5
    assert [tags.versions(["t"]) for _ in range(10)] == [(0,)] * 10
    assert attempts == ["unlocked"]
    with pytest.raises(BackendError):
        tags.bump(["t"])
    monkeypatch.setattr(TagFile, "_create", create)
    TagFile(str(directory), FileModes()).bump(["t"])  # another process makes it
    assert tags.versions(["t"]) == (1,)  # seen at once: the path is opened per read


def test_without_hard_links_only_a_bump_creates_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: Any) -> None:
        raise OSError(errno.EPERM, "no hard links here")

    monkeypatch.setattr(pickle_tags, "os", fake_os(link=no_links))
    tags = TagFile(str(tmp_path), FileModes())
    assert tags.versions(["t"]) == (0,)  # a read may race another: it makes none
    assert list(tmp_path.iterdir()) == []
    tags.bump(["t"])  # under the lock: renamed into place
    assert tags.versions(["t"]) == (1,)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        pickle_tags.TAGS_FILE,
        pickle_tags.TAGS_FILE + ".lock",
    ]


MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:40 / /mnt/shared rw,relatime shared:2 - nfs4 server:/export rw,vers=4.2
41 40 0:41 / /mnt/shared/local\040disk rw shared:3 - xfs /dev/sdb1 rw
42 22 0:42 / /mnt/shared2 rw shared:4 opt:1 - fuse.sshfs host:/ rw
43 22 0:43 / /mnt/stacked rw - ext4 /dev/sdc1 rw
44 22 0:44 / /mnt/stacked rw - cifs //host/share rw
"""


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("/home/me/cache", "ext4"),
        ("/mnt/shared/cache", "nfs4"),
        ("/mnt/shared", "nfs4"),
        ("/mnt/shared/local disk/cache", "xfs"),
        ("/mnt/shared2/cache", "fuse.sshfs"),
        ("/mnt/shared22/cache", "ext4"),  # a prefix of the name is not a parent
        ("/mnt/stacked/cache", "cifs"),  # the last mount on a point is the visible one
    ],
)
def test_the_file_system_type_comes_from_mountinfo(
    tmp_path: Path, directory: str, expected: str
) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(MOUNTINFO)
    assert pickle_tags.filesystem_type(directory, str(mountinfo)) == expected
    assert pickle_tags.filesystem_type(directory, str(tmp_path / "none")) is None


def test_on_a_network_file_system_each_read_uses_pread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pickle_tags, "filesystem_type", lambda directory: "nfs4")
    tags, other = TagFile(str(tmp_path), FileModes()), TagFile(str(tmp_path), FileModes())
    assert tags.network
    tags.bump(["t"])
    preads: list[int] = []
    real = os.pread

    def counting(fd: int, size: int, offset: int) -> bytes:
        preads.append(offset)
        return real(fd, size, offset)

    monkeypatch.setattr(pickle_tags, "os", fake_os(pread=counting))
    assert tags.versions(["t", "u"]) == (1, 0)
    assert tags.view.words is None and tags.view.descriptor is not None  # no mapping
    other.bump(["t"])
    assert tags.versions(["t", "u"]) == (2, 0)  # at once
    assert len(preads) >= 8  # header, two counters, sequence number: per read
    poke_slot(tmp_path, "u", -1)
    with caplog.at_level(logging.WARNING):
        assert min(tags.versions(["t", "u"])) > 2
    assert warnings_in(caplog) != []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_mapping_holds_at_most_one_descriptor_through_bumps_and_replacements(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    before = len(os.listdir("/proc/self/fd"))
    assert tags.versions(["t"]) == (0,)  # creates and maps the file
    # Python's mmap keeps a duplicate of the descriptor (before 3.13: trackfd=False).
    held = 0 if sys.version_info >= (3, 13) else 1
    assert len(os.listdir("/proc/self/fd")) == before + held
    with caplog.at_level(logging.ERROR):  # the replacements' warnings are expected
        for i in range(20):
            tags.bump(["t"])
            assert tags.versions(["t"])[0] > 0
            if i % 5 == 0:
                poke_slot(tmp_path, "t", -1)  # the next bump replaces the file
    assert len(os.listdir("/proc/self/fd")) == before + held


def test_a_bump_past_63_bits_is_refused(tmp_path: Path) -> None:
    tags = TagFile(str(tmp_path), FileModes())
    tags.bump(["t"])
    poke_slot(tmp_path, "t", (1 << 63) - 2)
    with pytest.raises(BackendError, match="overflow"):
        tags.bump(["t"])
    assert header(tmp_path)[1] % 2 == 0  # nothing half-written


# -- the record a tagged hit looks up (TagFile.current) -----------------------------------


def test_the_current_record_is_kept_until_any_bump_and_reads_no_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: list[float]
) -> None:
    reader, writer = TagFile(str(tmp_path), FileModes()), TagFile(str(tmp_path), FileModes())
    writer.bump(["a"])
    first = reader.current(("a", "b"))
    assert first.record == (("a", 1), ("b", 0))
    assert first == (1, 0)
    assert reader.current(("a", "b")) is first  # kept: one word of the mapping read
    monkeypatch.setattr(pickle_tags, "_monotonic", forbidden)
    for _ in range(100):
        assert reader.current(("a", "b")) is first
    monkeypatch.setattr(pickle_tags, "_monotonic", lambda: clock[0])
    writer.bump(["z"])  # any bump of the directory, another TagFile's (process's)
    again = reader.current(("a", "b"))
    assert again == (1, 0) and again is first  # read again, the same record: still current
    writer.bump(["b"])
    assert reader.current(("a", "b")) == (1, 1)  # at once, no clock moved


def test_a_deleted_file_is_left_at_the_next_full_read(tmp_path: Path, clock: list[float]) -> None:
    """A kept record does not check the path; the next miss's full read does."""
    reader, writer = TagFile(str(tmp_path), FileModes()), TagFile(str(tmp_path), FileModes())
    writer.bump(["t"])
    kept = reader.current(("t",))  # the first read maps the file; the second keeps it
    assert reader.current(("t",)) is kept == (1,)
    os.unlink(tmp_path / pickle_tags.TAGS_FILE)
    writer.bump(["t"])
    writer.bump(["t"])  # a new file: t is 2 there
    clock[0] += 1.5
    assert reader.current(("t",)) is kept  # the deleted file's, kept
    assert reader.versions(["t"]) == (2,)  # a full read checks the path
    assert reader.current(("t",)) == (2,)


def test_a_pickle_miss_notices_a_deleted_tag_file(tmp_path: Path, clock: list[float]) -> None:
    from cachier_like import cached

    calls: list[int] = []

    @cached(backend="pickle", cache_dir=tmp_path, tags=["t"])
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1), f(1)
    os.unlink(tmp_path / pickle_tags.TAGS_FILE)
    other = TagFile(str(tmp_path), FileModes())
    other.bump(["t"])  # another process, in the new file
    clock[0] += 1.5
    f(2)  # a miss: its full read of the versions finds the new file
    assert f(1) == 1
    assert calls == [1, 2, 1], "served an entry invalidated in the new tag file"


def test_records_kept_for_one_file_are_not_used_for_the_next(
    tmp_path: Path, clock: list[float]
) -> None:
    """A file made again has sequence numbers of its own: one equal to a kept record's
    must not bring back that record (here: t was 1 in the old file, is 0 in the new)."""
    reader, writer = TagFile(str(tmp_path), FileModes()), TagFile(str(tmp_path), FileModes())
    writer.bump(["t"])  # old file: sequence number 2, t = 1
    reader.current(("t",))
    assert reader.current(("t",)) == (1,)
    os.unlink(tmp_path / pickle_tags.TAGS_FILE)
    writer.bump(["u"])  # new file: sequence number 2 again, t = 0
    clock[0] += 1.5
    assert reader.versions(["t"]) == (0,)  # the full read moves to the new file
    assert reader.current(("t",)) == (0,)
