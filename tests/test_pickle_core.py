"""The pickle-file core: its files across processes, torn reads, damage, fail-open, its API.

Racing processes and a killed calculator are tested on every cross-process core by
``tests/test_behaviour_processes.py``; here, what only this core has. Processes are
forked (``multiprocessing.get_context("fork")``) so the decorated function can be a
closure defined inside the test, or started with ``sys.executable`` on
``tests/helpers/pickle_core_worker.py`` when a fresh interpreter matters. Nothing
sleeps for a fixed time: processes meet at barriers and report through pipes, and the
rest polls with a deadline.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cachier_like import BackendError, Entry, cached, config
from cachier_like.cores import pickle as pickle_module
from cachier_like.cores import pickle_files as pickle_files_module
from cachier_like.cores import pickle_tags
from cachier_like.cores.pickle import HEADER_SIZE, MAGIC, PickleCore, namespace_dirname
from cachier_like.cores.shared import storage_name
from cachier_like.keys import stable_hash
from tests.support import (
    DEADLINE_S,
    FORK,
    key_windows,
    library_warnings,
    reap,
    run_forked,
    wait_until,
    warnings_in,
)

pytestmark = pytest.mark.pickle

HELPER = Path(__file__).parent / "helpers" / "pickle_core_worker.py"


# -- helpers -----------------------------------------------------------------------


def entry_files(directory: Path) -> list[Path]:
    """The ``.entry`` files of one function's cache directory (its ``core.directory``)."""
    return sorted(directory.glob("*.entry"))


def tmp_files(directory: Path) -> list[Path]:
    """Temporary files left anywhere under one function's cache directory."""
    return sorted(directory.rglob("*.tmp"))


def fake_os(**overrides: Callable[..., Any]) -> types.ModuleType:
    """A stand-in for the ``os`` module with some functions replaced."""
    module = types.ModuleType("os")
    module.__dict__.update(vars(os))
    for name, function in overrides.items():
        setattr(module, name, function)
    return module


def no_space(*args: Any, **kwargs: Any) -> Any:
    """Fail like a full disk."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -- many processes, one cache -----------------------------------------------------


def test_racing_processes_leave_one_entry_file_a_key_and_no_temporary_file(
    cache_dir: Path,
) -> None:
    """The files racing writers leave behind, which no other core has.

    Results, calculation counts and stats of racing processes (and a killed calculator)
    are checked on every cross-process core by ``tests/test_behaviour_processes.py``.
    """
    workers, key_space = 8, 40
    # Each key is asked for by about four processes.
    windows = key_windows(workers, size=20, step=5, key_space=key_space)

    @cached(cache_dir=cache_dir)
    def square(k: int) -> int:
        return k * k + 7

    run_forked(workers, lambda index: [square(k) for k in windows[index]], start_together=True)
    assert len(entry_files(square.core.directory)) == key_space
    assert tmp_files(square.core.directory) == []


BLOB_SIZE = 1 << 20


def check_blob(value: Any, max_marker: int) -> int:
    """Assert ``value`` is one complete written blob; return its marker."""
    assert isinstance(value, bytes)
    assert len(value) == BLOB_SIZE
    assert value == value[:4] * (BLOB_SIZE // 4), "a mixed or partial value was read"
    marker = int.from_bytes(value[:4], "big")
    assert 0 <= marker <= max_marker
    return marker


def read_until_done(
    read: Callable[[], Entry | None], done: Callable[[], bool], max_marker: int
) -> set[int]:
    """Read while writers run (and once after); every read must be a complete value."""
    seen: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S
    while True:
        finished = done()
        entry = read()
        assert entry is not None, "a reader found no readable entry while writers rewrote it"
        seen.add(check_blob(entry.value, max_marker))
        if finished:
            return seen
        assert time.monotonic() < deadline, "the writers did not finish"


def test_reads_never_see_a_torn_entry_while_another_process_rewrites_it(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counter = itertools.count()
    rounds = 40

    @cached(cache_dir=cache_dir)
    def blob(k: int) -> bytes:
        marker = next(counter)
        return marker.to_bytes(4, "big") * (BLOB_SIZE // 4)

    assert check_blob(blob(0), 0) == 0
    done_r, done_w = FORK.Pipe(duplex=False)

    def writer() -> None:
        for _ in range(rounds):
            blob.refresh(0)  # markers 1..rounds: the counter continues in the child
        done_w.send("done")

    process = FORK.Process(target=writer, daemon=True)
    process.start()
    try:
        with caplog.at_level(logging.WARNING):

            def done() -> bool:
                if done_r.poll():
                    return True
                assert process.is_alive() or done_r.poll(), "the writer died"
                return False

            seen = read_until_done(lambda: blob.cached_entry(0), done, rounds)
        process.join(DEADLINE_S)
    finally:
        if process.is_alive():
            process.kill()
            process.join()
    assert process.exitcode == 0
    assert rounds in seen  # the last read came after the last write
    assert warnings_in(caplog) == []
    assert tmp_files(blob.core.directory) == []


def test_forked_processes_rewriting_one_key_do_not_collide(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Forked siblings share the parent's core object; their writes must not collide.

    Each writer refreshes the same key with 1 MB values while this process reads it:
    every read must be a complete value, and no writer may fail to store.
    """
    writers, rounds = 3, 30
    state = {"next": 0}

    @cached(cache_dir=cache_dir)
    def blob(k: int) -> bytes:
        marker = state["next"]
        state["next"] += 1
        return marker.to_bytes(4, "big") * (BLOB_SIZE // 4)

    blob(0)  # marker 0; the core is built before the fork, as in any pre-fork server
    max_marker = writers * rounds
    start = FORK.Barrier(writers + 1)

    def writer(index: int) -> int:
        with library_warnings() as warned:
            state["next"] = index * rounds + 1  # writer i writes markers i*rounds+1 ..
            start.wait(timeout=DEADLINE_S)
            for _ in range(rounds):
                blob.refresh(0)
            return len(warned)

    outcome: list[list[Any]] = []
    runner = threading.Thread(target=lambda: outcome.append(run_forked(writers, writer)))
    with caplog.at_level(logging.WARNING):
        runner.start()
        start.wait(timeout=DEADLINE_S)
        try:
            seen = read_until_done(
                lambda: blob.cached_entry(0), lambda: not runner.is_alive(), max_marker
            )
        finally:
            runner.join(DEADLINE_S)
    assert outcome, "a writer process failed"
    assert outcome[0] == [0] * writers, "writers logged store failures"
    assert seen
    assert warnings_in(caplog) == []
    assert tmp_files(blob.core.directory) == []


def test_an_entry_written_by_one_process_is_read_by_another(cache_dir: Path) -> None:
    namespace = "tests.pickle_core.cross_process"

    def helper(mode: str, x: int) -> dict[str, Any]:
        done = subprocess.run(
            [
                sys.executable,
                str(HELPER),
                mode,
                str(x),
                "--cache-dir",
                str(cache_dir),
                "--namespace",
                namespace,
            ],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outcome: dict[str, Any] = json.loads(done.stdout)
        return outcome

    computed = helper("compute", 5)
    assert computed["calls"] == 1
    assert computed["result"]["value"] == 16
    assert computed["result"]["pid"] != os.getpid()

    @cached(cache_dir=cache_dir, namespace=namespace)
    def triple_plus_one(x: int) -> dict[str, int]:
        raise AssertionError("this process must hit the entry the other one stored")

    assert triple_plus_one(5) == computed["result"]

    # And the other way round: stored here, hit by a fresh interpreter.
    triple_plus_one.precache_value(9, value_to_cache={"x": 9, "value": 28, "pid": os.getpid()})
    hit = helper("hit", 9)
    assert hit == {"result": {"x": 9, "value": 28, "pid": os.getpid()}, "calls": 0}


# -- damaged entries, clearing, failures -------------------------------------------


# Damage to the file's framing; an unreadable payload in a sound file is the contract's.
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda data: b"this is not a cache entry at all" * 3,
    "empty": lambda data: b"",
    "truncated_header": lambda data: data[: HEADER_SIZE - 3],
    "truncated_payload": lambda data: data[: HEADER_SIZE + (len(data) - HEADER_SIZE) // 2],
    "bad_magic": lambda data: b"XXXXXXXX" + data[8:],
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_entry_is_a_miss_with_a_warning_and_is_replaced(
    cache_dir: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    calls: list[int] = []

    @cached(cache_dir=cache_dir)
    def numbers(x: int) -> list[int]:
        calls.append(x)
        return list(range(x))

    assert numbers(50) == list(range(50))
    (path,) = entry_files(numbers.core.directory)
    path.write_bytes(DAMAGE[damage](path.read_bytes()))

    with caplog.at_level(logging.WARNING):
        assert numbers(50) == list(range(50))
    assert calls == [50, 50]
    assert any(path.name in message for message in warnings_in(caplog)), warnings_in(caplog)

    assert entry_files(numbers.core.directory) == [path]
    assert path.read_bytes()[:8] == MAGIC
    entry = numbers.cached_entry(50)
    assert entry is not None
    assert entry.value == list(range(50))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert numbers(50) == list(range(50))
    assert calls == [50, 50]
    assert warnings_in(caplog) == []


def test_store_failure_on_a_read_only_directory_fails_open(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(cache_dir=cache_dir)
    def tenfold(x: int) -> int:
        calls.append(x)
        return 10 * x

    assert tenfold(1) == 10  # creates the function's directory and its claims directory
    directory = tenfold.core.directory
    if os.geteuid() == 0:
        # root ignores directory permissions: fail the rename like a full disk instead.
        monkeypatch.setattr(pickle_module, "os", fake_os(replace=no_space))
    else:
        directory.chmod(0o555)
    try:
        with caplog.at_level(logging.WARNING):
            assert tenfold(2) == 20
        assert tenfold.cached_entry(2) is None
        assert tenfold(1) == 10  # existing entries are still served
    finally:
        directory.chmod(0o755)
    assert calls == [1, 2]
    assert any("store" in message for message in warnings_in(caplog)), warnings_in(caplog)
    assert tmp_files(directory) == []


@pytest.mark.parametrize("failing", ["open", "write", "replace"])
def test_a_full_disk_fails_open_and_leaves_no_temporary_file(
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failing: str,
) -> None:
    calls: list[int] = []

    @cached(cache_dir=cache_dir)
    def tenfold(x: int) -> int:
        calls.append(x)
        return 10 * x

    assert tenfold(1) == 10

    def open_tmp_fails(path: str, flags: int, mode: int = 0o777) -> int:
        if str(path).endswith(".tmp"):
            no_space()
        return os.open(path, flags, mode)

    overrides: dict[str, dict[str, Callable[..., Any]]] = {
        "open": {"open": open_tmp_fails},
        "write": {"write": no_space, "writev": no_space},
        "replace": {"replace": no_space},
    }
    fake = fake_os(**overrides[failing])
    for module in (pickle_module, pickle_files_module):  # the core and its file writer
        monkeypatch.setattr(module, "os", fake)
    with caplog.at_level(logging.WARNING):
        assert tenfold(2) == 20
    assert calls == [1, 2]
    assert any("store" in message for message in warnings_in(caplog)), warnings_in(caplog)
    assert tenfold.cached_entry(2) is None
    assert tmp_files(tenfold.core.directory) == []

    @cached(cache_dir=cache_dir, namespace="tests.pickle_core.strict", raise_on_error=True)
    def strict(x: int) -> int:
        return x

    with pytest.raises(BackendError):
        strict(1)


def test_a_cache_directory_where_claims_cannot_be_made_fails_open(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache directory the user may not write to must not hang a call.

    As a normal user the directory is made read-only; root ignores permissions, so
    there creating the claim lock file fails with EACCES the way it would.
    """
    readonly = cache_dir / "shared"
    readonly.mkdir()

    @cached(cache_dir=readonly)
    def tenfold(x: int) -> int:
        return 10 * x

    if os.geteuid() == 0:
        from cachier_like.cores import _claims

        def open_denied(path: str, flags: int, mode: int = 0o777) -> int:
            if flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return os.open(path, flags, mode)

        def makedirs_denied(path: str, *args: Any, **kwargs: Any) -> None:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

        denied: dict[str, Callable[..., Any]] = {
            "open": open_denied,
            "makedirs": makedirs_denied,
            "mkdir": makedirs_denied,
        }
        monkeypatch.setattr(_claims, "os", fake_os(**denied))
        monkeypatch.setattr(pickle_module, "os", fake_os(**denied))
        monkeypatch.setattr(pickle_files_module, "os", fake_os(**denied))
    else:
        readonly.chmod(0o555)
    results: list[int] = []
    caller = threading.Thread(target=lambda: results.append(tenfold(3)), daemon=True)
    try:
        with caplog.at_level(logging.WARNING):
            caller.start()
            caller.join(10)
            assert not caller.is_alive(), "the call hangs when it cannot create a claim"
    finally:
        readonly.chmod(0o755)
        monkeypatch.undo()  # lets a hung caller finish
        caller.join(DEADLINE_S)
    assert results == [30]
    assert warnings_in(caplog), "the failure to cache was not reported"


def test_a_custom_hash_func_with_readable_keys_keeps_claims_working(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys from ``hash_func`` are used as file names when safe; claims must accept them."""

    def user_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return f"user_profile_{kwargs['uid']}"

    calls: list[int] = []

    @cached(cache_dir=cache_dir, hash_func=user_key)
    def profile(uid: int) -> dict[str, int]:
        calls.append(uid)
        return {"uid": uid}

    with caplog.at_level(logging.WARNING):
        assert profile(12345678) == {"uid": 12345678}
        assert profile(7) == {"uid": 7}
        assert profile(12345678) == {"uid": 12345678}
    assert calls == [12345678, 7]
    assert warnings_in(caplog) == []


def test_default_cache_dir_honours_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "from-env"
    monkeypatch.setenv(config.CACHE_DIR_ENV, str(chosen))

    @cached
    def plus_one(x: int) -> int:
        return x + 1

    assert plus_one.cache_dpath() == str(chosen)
    assert plus_one.core.directory.parent == chosen.absolute()
    assert plus_one(1) == 2
    assert len(entry_files(plus_one.core.directory)) == 1


# -- the core's own API --------------------------------------------------------------


CoreFactory = Callable[..., PickleCore]


@pytest.fixture(params=["range_locks", "file_locks"])
def claims_kind(request: pytest.FixtureRequest) -> str:
    """Which claim implementation a direct-API test runs on.

    ``range_locks``: byte-range OFD locks (the Linux default); ``file_locks``: one
    ``flock`` file per key (the portable fallback).
    """
    kind: str = request.param
    return kind


@pytest.fixture
def make_core(claims_kind: str, cache_dir: Path) -> CoreFactory:
    """Build ``PickleCore`` objects on this test's cache directory."""

    def factory(namespace: str = "tests.pickle_core.direct", **options: Any) -> PickleCore:
        return PickleCore(
            namespace,
            cache_dir=cache_dir,
            prefer_range_locks=claims_kind == "range_locks",
            **options,
        )

    return factory


def test_get_set_and_location(make_core: CoreFactory, cache_dir: Path) -> None:
    core = make_core()
    assert core.get("k") is None
    assert core.set("k", Entry({"a": [1, 2]}, 123.5)) is True
    assert core.get("k") == Entry({"a": [1, 2]}, 123.5)
    assert core.set("k", Entry("new", 124.0)) is True
    assert core.get("k") == Entry("new", 124.0)
    assert core.set(("tuple", 1), Entry(None, 1.0)) is True  # any hashable key works
    assert core.get(("tuple", 1)) == Entry(None, 1.0)
    assert core.set("../escape", Entry("x", 1.0)) is True  # keys never name other paths
    assert list(cache_dir.iterdir()) == [core.directory]
    # Another core object on the same directory sees the same entries.
    assert make_core().get("k") == Entry("new", 124.0)
    # location() (cache_dpath()) is the directory given; entries are in a subdirectory.
    assert core.location() == str(cache_dir)
    assert core.directory.parent == cache_dir.absolute()


def test_clear_removes_entries_and_temporaries_of_this_namespace_only(
    make_core: CoreFactory,
) -> None:
    core = make_core("pkg.f")
    other = make_core("pkg.f2")
    for i in range(4):
        core.set(i, Entry(i, 1.0))
        other.set(i, Entry(i, 1.0))
    stray = core.directory / "deadbeef.1.2.tmp"
    stray.write_bytes(b"half a write")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stray, (two_hours_ago, two_hours_ago))  # abandoned, not a write in progress
    assert core.claim(0, 60)
    try:
        assert core.clear() == 4
    finally:
        core.release(0)
    assert core.get(0) is None
    assert entry_files(core.directory) == []
    assert not stray.exists()
    assert all(other.get(i) == Entry(i, 1.0) for i in range(4))
    assert core.clear() == 0


@pytest.mark.parametrize("key", ["k", "user_profile_7", "0123456789abcdef0123456789abcdef"])
def test_a_claim_holds_against_other_interpreters(
    make_core: CoreFactory, claims_kind: str, cache_dir: Path, key: str
) -> None:
    """A fresh interpreter (its own hash seed) must see this process's claim."""
    core = make_core()
    assert core.claim(key, 60)
    try:
        for seed in ("1", "2", "3"):
            done = subprocess.run(
                [
                    sys.executable,
                    str(HELPER),
                    "claim",
                    key,
                    "--cache-dir",
                    str(cache_dir),
                    "--namespace",
                    core.namespace,
                    *(["--file-locks"] if claims_kind == "file_locks" else []),
                ],
                capture_output=True,
                text=True,
                timeout=DEADLINE_S,
                check=False,
                env={**os.environ, "PYTHONHASHSEED": seed},
            )
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout) == {"claimed": False}, f"PYTHONHASHSEED={seed}"
    finally:
        core.release(key)


def test_purge_stale_removes_old_and_corrupted_entries(make_core: CoreFactory) -> None:
    core = make_core()
    now = 1_000_000.0
    core.set("new", Entry("new", now - 1))
    before = set(entry_files(core.directory))
    core.set("broken", Entry("broken", now))
    (broken,) = set(entry_files(core.directory)) - before
    broken.write_bytes(b"junk")
    core.set("old", Entry("old", now - 100))
    assert core.purge_stale(50, now) == 2
    assert core.get("old") is None
    assert core.get("new") == Entry("new", now - 1)
    assert not broken.exists()
    assert core.purge_stale(50, now) == 0


def test_namespace_dirname_is_injective_and_safe() -> None:
    names = [
        "pkg.f",
        "pkg/f",
        "pkg\\f",
        "pkg%2Ff",
        "pkg%f",
        "pkg f",
        "pkg:f",
        "pkg?f",
        "pkg*f",
        "pkg<f>",
        "pkg>f<",
        "pkg\x00f",
        "pkg\nf",
        "pkg.f.<locals>.g",
        "pkg.f.%3Clocals%3E.g",
        "pkg.\u00e9",
        "pkg.e\u0301",
        ".",
        "..",
        ".hidden",
        "%2Ehidden",
        ".claims",
    ]
    dirnames = [namespace_dirname(name) for name in names]
    assert len(set(dirnames)) == len(names)
    for dirname in dirnames:
        assert dirname not in ("", ".", "..")
        assert not dirname.startswith(".")
        assert "/" not in dirname
        assert "\\" not in dirname
        assert "\x00" not in dirname
        assert dirname.isascii()
        assert len(dirname) <= 180


def test_long_namespaces_get_a_hash_suffix(make_core: CoreFactory, cache_dir: Path) -> None:
    base = "pkg." + "very_long_module_name." * 20
    first, second = base + "f", base + "g"
    short = "pkg.short"
    assert namespace_dirname(short) == short
    for name in (first, second):
        dirname = namespace_dirname(name)
        assert len(dirname) <= 180
        assert dirname.endswith("~" + stable_hash(name))
    assert namespace_dirname(first) != namespace_dirname(second)
    # Long names built from unsafe characters are bounded too, and usable on disk.
    unsafe = "<>" * 200
    assert len(namespace_dirname(unsafe)) <= 180
    for name in (first, second, unsafe):
        core = make_core(name)
        assert core.set("k", Entry(name, 1.0))
        assert core.get("k") == Entry(name, 1.0)
        assert core.directory.parent == cache_dir.absolute()


# -- temporary files of interrupted writes ------------------------------------------

TWO_HOURS_S = 2 * 3600.0


def make_old(path: Path) -> None:
    """Backdate ``path`` past the age at which a temporary file counts as abandoned."""
    stamp = time.time() - TWO_HOURS_S
    os.utime(path, (stamp, stamp))


def sigkilled_writer(core: PickleCore, key: str) -> Path:
    """Kill (SIGKILL) a forked writer of ``key`` between its write and its rename.

    Returns the temporary file it leaves.
    """
    written = FORK.Event()

    def writer() -> None:
        def block(src: str, dst: str) -> None:
            written.set()
            threading.Event().wait()  # until killed

        pickle_module.os = fake_os(replace=block)  # type: ignore[attr-defined]
        core.set(key, Entry("never renamed", time.time()))

    process = FORK.Process(target=writer, daemon=True)
    process.start()
    try:
        assert written.wait(DEADLINE_S), "the writer never reached its rename"
        process.kill()
        process.join(DEADLINE_S)
        assert process.exitcode == -signal.SIGKILL
    finally:
        reap(process)
    (left,) = tmp_files(core.directory)
    assert left.name.startswith(f"{key}.{process.pid}-"), left.name
    return left


def test_a_sigkilled_writers_temporary_file_is_removed_once_an_hour_old(
    make_core: CoreFactory,
) -> None:
    core = make_core()
    core.set("kept", Entry("kept", time.time()))
    left = sigkilled_writer(core, "k")
    # Fresh: it could be a write in progress, so neither clean-up touches it.
    assert core.purge_stale(TWO_HOURS_S, time.time()) == 0
    assert left.exists()
    assert core.clear() == 1  # the count is of entries, never of temporary files
    assert left.exists()
    now = time.time()
    core.set("kept", Entry("kept", now))
    make_old(left)
    assert core.purge_stale(TWO_HOURS_S, now) == 0
    assert not left.exists()
    assert core.get("kept") == Entry("kept", now)  # the fresh entry stays

    other = sigkilled_writer(core, "k2")
    make_old(other)
    assert core.clear() == 1
    assert tmp_files(core.directory) == []


def test_clear_leaves_a_write_in_progress_to_finish(
    make_core: CoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent clear must not delete the temporary file a live writer renames next."""
    core = make_core()
    core.set("old", Entry("old", 1.0))
    written, go = threading.Event(), threading.Event()

    def paused_replace(src: str, dst: str) -> None:
        written.set()
        assert go.wait(DEADLINE_S)
        os.replace(src, dst)

    monkeypatch.setattr(pickle_module, "os", fake_os(replace=paused_replace))
    outcome: list[object] = []

    def write() -> None:
        try:
            outcome.append(core.set("k", Entry("new", 2.0)))
        except BaseException as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert written.wait(DEADLINE_S)
        assert core.clear() == 1
        assert core.purge_stale(0.0, time.time()) == 0  # nothing left but the write
    finally:
        go.set()
        writer.join(DEADLINE_S)
    assert outcome == [True]
    assert core.get("k") == Entry("new", 2.0)
    assert tmp_files(core.directory) == []


def test_cleanup_stale_removes_abandoned_temporary_files(cache_dir: Path) -> None:
    @cached(cache_dir=cache_dir, stale_after=3600, cleanup_stale=True, cleanup_interval=0)
    def double(x: int) -> int:
        return 2 * x

    assert double(1) == 2
    directory = double.core.directory
    abandoned, in_progress = directory / "a.1-0.1.tmp", directory / "b.1-0.1.tmp"
    abandoned.write_bytes(b"half")
    in_progress.write_bytes(b"half")
    make_old(abandoned)
    assert double(1) == 2  # a hit starts the clean-up in the background
    wait_until(lambda: not abandoned.exists())
    assert in_progress.exists()
    assert double.cached_entry(1) is not None


def test_an_ordinary_first_store_records_the_full_namespace(cache_dir: Path) -> None:
    long_name = "tests.pickle_core." + "very_long_module_name." * 12 + "f"

    @cached(cache_dir=cache_dir, namespace=long_name)
    def f(x: int) -> int:
        return x

    assert f(1) == 1  # claim (which makes the directory), compute, store
    assert len(f.core.directory.name) < len(long_name)  # the directory name is cut
    assert PickleCore.namespaces(cache_dir=cache_dir) == [long_name]


# -- tag versions: one file per cache directory --------------------------------------------


TAGS_FILE = ".cachier_like_tags"
_TAG_HEADER = struct.Struct("<8sQqIB35x")  # magic, sequence, base, slots, retired


def tag_file_bytes(
    *,
    magic: bytes = pickle_tags.MAGIC,
    seq: int = 0,
    base: int = 0,
    slots: int = pickle_tags.SLOTS,
    retired: int = 0,
    size: int = pickle_tags.FILE_SIZE,
    counts: dict[str, int] | None = None,
) -> bytes:
    """The bytes of a tag file (healthy with the defaults)."""
    data = bytearray(_TAG_HEADER.pack(magic, seq, base, slots, retired))
    data += bytes(max(0, size - len(data)))
    for tag, count in (counts or {}).items():
        struct.pack_into("<q", data, 8 * pickle_tags.slot_index(tag), count)
    return bytes(data[:size])


DAMAGED_TAGS = {
    "garbage": b"\x00\xffnot a tag file at all",
    "empty": b"",
    "cut short": tag_file_bytes(size=pickle_tags.FILE_SIZE // 2),
    "too long": tag_file_bytes(size=pickle_tags.FILE_SIZE + 8),
    "foreign": tag_file_bytes(magic=b"SOMEONE\x01"),
    "other slot count": tag_file_bytes(slots=1024),
    "negative base": tag_file_bytes(base=-5),
    "negative count": tag_file_bytes(counts={"t": -3}),
    "retired": tag_file_bytes(seq=3, retired=1),  # its replacement never came
}


@pytest.mark.parametrize("damage", DAMAGED_TAGS, ids=str)
def test_a_damaged_tag_file_makes_tagged_entries_misses_until_a_bump_rewrites_it(
    make_core: CoreFactory,
    cache_dir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    damage: str,
) -> None:
    core, reader, other = make_core(), make_core(), make_core("tests.pickle_core.other")
    core.bump_tags(["t"])
    entry = Entry("v", 1.0, (("t", 1), ("u", 0)))
    assert core.set("k", entry)
    assert core.get_tagged("k", ["t", "u"]) == (entry, (1, 0))
    # Damaged as a crash or another program leaves it: a new file in its place (in
    # place, a shorter file would fault every process mapping it, as documented).
    (cache_dir / "damaged").write_bytes(DAMAGED_TAGS[damage])
    os.replace(cache_dir / "damaged", cache_dir / TAGS_FILE)
    later = time.monotonic() + 2.0  # past the once-a-second check of the path
    monkeypatch.setattr(pickle_tags, "_monotonic", lambda: later)

    with caplog.at_level(logging.WARNING):
        first = core.tag_versions(["t", "u"])
        got, second = reader.get_tagged("k", ["t", "u"])
    assert got == entry  # the entry is read; its versions no longer match
    # Unknown versions: above every version handed out, and new at every read, so no
    # entry (neither an older one nor one computed meanwhile) matches them.
    assert min(first) > 1 and min(second) > max(first)
    assert len(set(first + second)) == 4
    damaged = [m for m in warnings_in(caplog) if TAGS_FILE in m]
    assert len(damaged) == 1, damaged  # rate-limited, per file

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        other.bump_tags(["t"])
    assert any("restart above every version" in m for m in warnings_in(caplog))
    after = core.tag_versions(["t", "u"])
    assert after == core.tag_versions(["t", "u"])  # readable again: stable
    assert after[0] == after[1] + 1  # "t" was bumped once since the restart
    assert after[1] > max(second)  # every tag moved past what was handed out
    assert (cache_dir / TAGS_FILE).read_bytes() == tag_file_bytes(
        seq=2, base=after[1], counts={"t": 1}
    )
    assert tmp_files(cache_dir) == []


def test_tag_files_are_neither_functions_nor_entries(
    make_core: CoreFactory, cache_dir: Path
) -> None:
    core = make_core("pkg.f")
    core.bump_tags(["a", "b"])
    for i in range(3):
        assert core.set(i, Entry(i, 1.0, (("a", 1),)))
    assert sorted(p.name for p in cache_dir.iterdir() if p.is_file()) == [
        TAGS_FILE,
        TAGS_FILE + ".lock",
    ]
    assert PickleCore.namespaces(cache_dir=cache_dir) == ["pkg.f"]
    assert sorted(info.key for info in core.entries()) == sorted(storage_name(i) for i in range(3))
    assert core.stats().entries == 3
    assert core.purge_stale(0.5, 2.0) == 3
    assert core.set(0, Entry(0, 1.0))
    assert core.clear() == 1
    assert (cache_dir / TAGS_FILE).exists()
    assert core.tag_versions(["a", "b", "c"]) == (1, 1, 0)


@pytest.mark.parametrize(("file_mode", "dir_mode"), [(0o600, 0o700), (0o640, 0o750)])
def test_tag_files_honour_the_file_mode(tmp_path: Path, file_mode: int, dir_mode: int) -> None:
    root = tmp_path / "fresh" / "cache"
    core = PickleCore("tests.pickle_core.modes", cache_dir=root, file_mode=file_mode)
    old_umask = os.umask(0o022)
    try:
        core.bump_tags(["t"])
    finally:
        os.umask(old_umask)
    assert root.stat().st_mode & 0o777 == dir_mode
    for name in (TAGS_FILE, TAGS_FILE + ".lock"):
        assert (root / name).stat().st_mode & 0o777 == file_mode, name
    assert tmp_files(root) == []


def test_a_bump_by_another_process_is_read_at_once_without_a_system_call(
    make_core: CoreFactory, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = make_core()
    tag = "\ud800 lone surrogate"  # kept, as the tags of entries are
    core.bump_tags([tag])
    assert core.tag_versions([tag, "x"]) == (1, 0)
    # Another process's view: a TagFile of its own, which bumps behind this one's back.
    pickle_tags.TagFile(str(cache_dir), pickle_files_module.FileModes()).bump(["x"])
    monkeypatch.setattr(pickle_tags, "os", fake_os(stat=no_space, open=no_space, pread=no_space))
    assert [core.tag_versions([tag, "x"]) for _ in range(50)] == [(1, 1)] * 50


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_tag_reads_and_bumps_do_not_leak_descriptors(make_core: CoreFactory) -> None:
    core = make_core()
    core.bump_tags(["t"])
    assert core.tag_versions(["t"]) == (1,)
    before = len(os.listdir("/proc/self/fd"))
    for i in range(50):
        core.bump_tags(["t"])
        assert core.tag_versions(["t"]) == (i + 2,)
    assert len(os.listdir("/proc/self/fd")) == before  # at most one held: the mapping
