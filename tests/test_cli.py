"""The ``cachier-like`` command, run as a real console script in subprocesses.

Each test writes a small module of cached functions (pickle core, cache directory
under ``tmp_path``) into ``tmp_path``, fills caches from separate interpreters, and
then runs the installed ``cachier-like`` script with ``cwd=tmp_path``.

Entries of a known age are written through the function's core with an explicit
timestamp (``f.core.set(key, Entry(value, timestamp))``), so age-dependent commands
are deterministic; the tests that let real time pass poll with a deadline instead of
sleeping for a fixed time.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import cachier_like
from cachier_like.cores.pickle import namespace_dirname
from cachier_like.serialize import DEFAULT_SERIALIZER

pytestmark = pytest.mark.pickle

CLI = Path(sys.executable).parent / "cachier-like"
PACKAGE_ROOT = Path(cachier_like.__file__).resolve().parent.parent
MODULE = "clitarget_mod"
#: Generous bounds: they only matter when something hangs.
TIMEOUT_S = 60.0
DEADLINE_S = 30.0
ERROR_PREFIX = "cachier-like: error:"

MODULE_SOURCE = '''
"""Cached functions for the CLI tests (written by tests/test_cli.py)."""

import os
import time
from pathlib import Path

from cachier_like import cached

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"

# Every import of this module leaves a line here, so tests can tell whether the CLI
# imported user code.
with open(HERE / "imports.log", "a", encoding="utf-8") as _log:
    _log.write(f"{os.getpid()}\\n")


@cached(cache_dir=CACHE)
def f(x: int) -> int:
    return x * 2


@cached(cache_dir=CACHE, stale_after=600)
def f_extra(x: int) -> int:
    return x * 3


@cached(cache_dir=CACHE)
def f2(x: int) -> int:
    return x * 4


@cached(cache_dir=CACHE, stale_after=1.0)
def quick(x: int) -> int:
    return x


@cached()
def g(x: int) -> int:
    """On the default cache directory ($CACHIER_LIKE_CACHE_DIR)."""
    return x


@cached(cache_dir=CACHE)
def slow(x: int) -> int:
    """Hold the calculation claim until the test creates the file ``go``."""
    (HERE / "started").write_text("started", encoding="utf-8")
    deadline = time.monotonic() + 60
    while not (HERE / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return x


class Box:
    @staticmethod
    @cached(cache_dir=CACHE)
    def calc(x: int) -> int:
        return x + 1


def plain(x: int) -> int:
    return x


NOT_A_FUNCTION = 3
'''


SCRIPT_SOURCE = '''
"""A script with cached functions (written by tests/test_cli.py); run, never imported."""

import sys
from pathlib import Path

from cachier_like import cached

HERE = Path(__file__).resolve().parent

# Every run leaves a line here, so tests can tell whether the CLI ran the script.
with open(HERE / "runs.log", "a", encoding="utf-8") as _log:
    _log.write("run\\n")


@cached()
def featurize(x: int) -> dict[str, object]:
    """On the default cache directory ($CACHIER_LIKE_CACHE_DIR)."""
    return {"x": x, "by": HERE.name}


@cached(cache_dir=HERE / "cache")
def local(x: int) -> int:
    return x


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(featurize(int(arg))["by"], local(int(arg)))
'''


@dataclass(frozen=True)
class Project:
    """A directory holding the test module, its cache and the default cache."""

    root: Path
    cache: Path  # the module's explicit cache_dir
    default_cache: Path  # $CACHIER_LIKE_CACHE_DIR for every subprocess

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CACHIER_LIKE_CACHE_DIR"] = str(self.default_cache)
        # Only the package under test (this checkout's, not whichever one the console
        # script's environment has installed) and the working directory are importable.
        env["PYTHONPATH"] = str(PACKAGE_ROOT)
        return env

    def cli(
        self,
        *args: str,
        stdin: int | None = subprocess.DEVNULL,
        cwd: Path | None = None,
        env: dict[str, str | None] | None = None,
    ) -> CLIResult:
        """Run the console script in ``root`` (or ``cwd``); ``env`` changes (None: unset)."""
        environment = self.env()
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        completed = subprocess.run(
            [str(CLI), *args],
            cwd=cwd or self.root,
            env=environment,
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        return CLIResult(completed.returncode, completed.stdout, completed.stderr)

    def cli_json(self, *args: str) -> Any:
        """Run the console script with ``--json``; it must succeed."""
        result = self.cli(*args, "--json")
        result.assert_ok()
        return json.loads(result.stdout)

    def python(self, code: str) -> str:
        """Run ``code`` in a fresh interpreter in ``root``; return its stdout."""
        return self.interpreter("-c", textwrap.dedent(code))

    def interpreter(self, *argv: str) -> str:
        """Run ``python ARGV`` in ``root``; return its stdout (it must succeed)."""
        completed = subprocess.run(
            [sys.executable, *argv],
            cwd=self.root,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    def store(self, entries: dict[str, dict[str, tuple[Any, float]]]) -> None:
        """Write entries ``{function: {key: (value, timestamp)}}`` through each core."""
        lines = [f"import {MODULE} as m", "from cachier_like import Entry"]
        for function, items in entries.items():
            for key, (value, stamp) in items.items():
                lines.append(f"assert m.{function}.core.set({key!r}, Entry({value!r}, {stamp!r}))")
        self.python("\n".join(lines))

    def call(self, function: str, *xs: int) -> None:
        """Fill ``function``'s cache by calling it (timestamps: now)."""
        self.python(f"import {MODULE} as m\nfor x in {list(xs)!r}:\n    m.{function}(x)\n")

    def entry_files(self, namespace: str, cache: Path | None = None) -> list[str]:
        """The keys with an entry file for ``namespace``, sorted."""
        directory = (cache or self.cache) / namespace_dirname(namespace)
        if not directory.is_dir():
            return []
        return sorted(p.name.removesuffix(".entry") for p in directory.glob("*.entry"))

    def imports(self) -> int:
        """How many times the test module has been imported so far."""
        log = self.root / "imports.log"
        return len(log.read_text(encoding="utf-8").splitlines()) if log.exists() else 0


@dataclass(frozen=True)
class CLIResult:
    """Exit status and output of one run of the console script."""

    returncode: int
    stdout: str
    stderr: str

    def assert_ok(self) -> None:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stdout}\n{self.stderr}"
        assert self.stderr == "", self.stderr

    def assert_one_line_error(self) -> str:
        """A failure reported as one actionable line: return that line."""
        assert self.returncode != 0, self.stdout
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith(ERROR_PREFIX), self.stderr
        return lines[0]

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Headers and rows of a table printed by the command (cells have no spaces)."""
        lines = self.stdout.splitlines()
        assert len(lines) >= 2, self.stdout
        assert set(lines[1].replace(" ", "")) <= {"-"}, self.stdout
        return lines[0].split(), [line.split() for line in lines[2:]]


def ns(function: str) -> str:
    return f"{MODULE}.{function}"


def payload_size(value: Any) -> int:
    return len(DEFAULT_SERIALIZER.dumps(value))


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``DEADLINE_S``."""
    deadline = time.monotonic() + DEADLINE_S
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def make_project(tmp_path: Path, module: str, source: str) -> Project:
    """A :class:`Project` in ``tmp_path`` whose module ``module`` holds ``source``."""
    (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
    default_cache = tmp_path / "default-cache"
    default_cache.mkdir()
    return Project(root=tmp_path, cache=tmp_path / "cache", default_cache=default_cache)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, MODULE, MODULE_SOURCE)


HOUR = 3600.0


def aged_entries(now: float) -> dict[str, dict[str, tuple[Any, float]]]:
    """f: two old, one fresh; f_extra (stale_after 600 s): one old, one fresh; f2: one."""
    return {
        "f": {
            "old1": ("a" * 100, now - 2 * HOUR),
            "old2": ("b" * 200, now - HOUR),
            "new1": ("c" * 300, now),
        },
        "f_extra": {"old1": ("d" * 10, now - HOUR), "new1": ("e" * 20, now)},
        "f2": {"k1": (1, now - HOUR)},
    }


# -- help ---------------------------------------------------------------------------

STORE_FLAGS = ["--backend", "--cache-dir", "--url", "--prefix", "--table", "--db"]
HELP_FLAGS = {
    "clear": [
        *STORE_FLAGS,
        "--collection",
        "--function",
        "--stale-only",
        "--older-than",
        "--yes",
        "--dry-run",
        "--json",
    ],
    "clear-claims": [*STORE_FLAGS, "--collection", "--function", "--json"],
    "ls": [*STORE_FLAGS, "--collection", "--function", "--json"],
    "show": [*STORE_FLAGS, "--collection", "--function", "--json"],
}


@pytest.mark.parametrize("command", sorted(HELP_FLAGS))
def test_help_of_every_command_lists_its_flags(project: Project, command: str) -> None:
    result = project.cli(command, "--help")
    result.assert_ok()
    assert f"usage: cachier-like {command}" in result.stdout
    for flag in HELP_FLAGS[command]:
        assert flag in result.stdout, (flag, result.stdout)


def test_top_level_help_lists_commands(project: Project) -> None:
    result = project.cli("--help")
    result.assert_ok()
    for word in ["clear", "clear-claims", "ls", "show", "--debug"]:
        assert word in result.stdout


def test_python_dash_m_runs_the_same_command(project: Project) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "cachier_like", "--help"],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "usage: cachier-like" in completed.stdout
    for command in HELP_FLAGS:
        assert command in completed.stdout


def test_no_command_is_a_usage_error(project: Project) -> None:
    result = project.cli()
    assert result.returncode == 2
    assert "usage: cachier-like" in result.stderr


def test_stale_only_and_older_than_are_exclusive(project: Project) -> None:
    result = project.cli("clear", f"{MODULE}:f", "--stale-only", "--older-than", "1h")
    assert result.returncode == 2
    assert "not allowed with" in result.stderr


# -- clear by import path ----------------------------------------------------------


def test_clear_removes_exactly_that_functions_entries(project: Project) -> None:
    project.store(aged_entries(time.time()))
    project.call("Box.calc", 1)
    result = project.cli("clear", f"{MODULE}:f")
    result.assert_ok()
    _, rows = result.table()
    assert rows == [[ns("f"), "3"]]
    assert project.entry_files(ns("f")) == []
    # Same cache directory, a name that shares the prefix, and another function.
    assert project.entry_files(ns("f_extra")) == ["new1", "old1"]
    assert project.entry_files(ns("f2")) == ["k1"]
    assert len(project.entry_files(ns("Box.calc"))) == 1
    # Nothing left: a second clear removes nothing.
    assert project.cli_json("clear", f"{MODULE}:f")["functions"] == [
        {"function": ns("f"), "removed": 0}
    ]


def test_clear_json(project: Project) -> None:
    project.store(aged_entries(time.time()))
    data = project.cli_json("clear", f"{MODULE}:f_extra")
    assert data == {"dry_run": False, "functions": [{"function": ns("f_extra"), "removed": 2}]}
    assert project.entry_files(ns("f_extra")) == []
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]


def test_clear_a_static_method_by_class_path(project: Project) -> None:
    project.call("Box.calc", 1, 2)
    data = project.cli_json("clear", f"{MODULE}:Box.calc")
    assert data["functions"] == [{"function": ns("Box.calc"), "removed": 2}]


def test_clear_stale_only_uses_the_functions_stale_after(project: Project) -> None:
    project.store(aged_entries(time.time()))
    data = project.cli_json("clear", f"{MODULE}:f_extra", "--stale-only")
    assert data["functions"] == [{"function": ns("f_extra"), "removed": 1}]
    assert project.entry_files(ns("f_extra")) == ["new1"]
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]


def test_clear_stale_only_without_stale_after_is_an_error(project: Project) -> None:
    project.store(aged_entries(time.time()))
    line = project.cli("clear", f"{MODULE}:f", "--stale-only").assert_one_line_error()
    assert "stale_after" in line and "--older-than" in line
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]


def test_clear_older_than(project: Project) -> None:
    project.store(aged_entries(time.time()))
    data = project.cli_json("clear", f"{MODULE}:f", "--older-than", "90m")
    assert data["functions"] == [{"function": ns("f"), "removed": 1}]
    assert project.entry_files(ns("f")) == ["new1", "old2"]
    data = project.cli_json("clear", f"{MODULE}:f", "--older-than", "30m")
    assert data["functions"] == [{"function": ns("f"), "removed": 1}]
    assert project.entry_files(ns("f")) == ["new1"]
    assert project.entry_files(ns("f_extra")) == ["new1", "old1"]


def test_clear_dry_run_removes_nothing_and_counts(project: Project) -> None:
    project.store(aged_entries(time.time()))
    result = project.cli("clear", f"{MODULE}:f", "--dry-run", "--older-than", "30m")
    result.assert_ok()
    headers, rows = result.table()
    assert headers == ["function", "would", "remove"]
    assert rows == [[ns("f"), "2"]]
    data = project.cli_json("clear", f"{MODULE}:f", "--dry-run")
    assert data == {"dry_run": True, "functions": [{"function": ns("f"), "removed": 3}]}
    data = project.cli_json("clear", f"{MODULE}:f_extra", "--dry-run", "--stale-only")
    assert data["functions"] == [{"function": ns("f_extra"), "removed": 1}]
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]
    assert project.entry_files(ns("f_extra")) == ["new1", "old1"]


def _ages(project: Project, function: str) -> list[float]:
    data = project.cli_json("show", f"{MODULE}:{function}")
    now = time.time()
    return [now - row["timestamp"] for row in data["entries"]]


def test_clear_stale_only_after_real_time_passes(project: Project) -> None:
    """``quick`` has stale_after=1 s: entries made by calls become stale as time passes."""
    project.call("quick", 1, 2)
    project.call("f2", 1)

    def all_stale() -> bool:
        rows = project.cli_json("show", f"{MODULE}:quick")["entries"]
        return len(rows) == 2 and all(row["stale"] is True for row in rows)

    wait_until(all_stale, "quick's entries to become stale")
    data = project.cli_json("clear", f"{MODULE}:quick", "--stale-only")
    assert data["functions"] == [{"function": ns("quick"), "removed": 2}]
    assert project.entry_files(ns("quick")) == []
    assert len(project.entry_files(ns("f2"))) == 1


def test_clear_older_than_after_real_time_passes(project: Project) -> None:
    project.call("f", 1, 2)
    wait_until(lambda: min(_ages(project, "f")) > 1.0, "f's entries to be more than a second old")
    data = project.cli_json("clear", f"{MODULE}:f", "--older-than", "1s")
    assert data["functions"] == [{"function": ns("f"), "removed": 2}]
    assert project.entry_files(ns("f")) == []


def test_clear_on_the_default_cache_dir_from_the_environment(project: Project) -> None:
    project.call("g", 1, 2)
    assert len(project.entry_files(ns("g"), project.default_cache)) == 2
    data = project.cli_json("clear", f"{MODULE}:g")
    assert data["functions"] == [{"function": ns("g"), "removed": 2}]
    assert project.entry_files(ns("g"), project.default_cache) == []


# -- clear a store, without importing user code --------------------------------------


def test_store_clear_one_function_imports_nothing(project: Project) -> None:
    project.store(aged_entries(time.time()))
    before = project.imports()
    store = ["--backend", "pickle", "--cache-dir", str(project.cache)]
    result = project.cli("clear", *store, "--function", ns("f"), "--yes")
    result.assert_ok()
    _, rows = result.table()
    assert rows == [[ns("f"), "3"]]
    assert project.imports() == before
    assert project.entry_files(ns("f")) == []
    assert project.entry_files(ns("f_extra")) == ["new1", "old1"]
    assert project.entry_files(ns("f2")) == ["k1"]


def test_store_clear_one_function_needs_no_yes(project: Project) -> None:
    project.store(aged_entries(time.time()))
    data = project.cli_json("clear", "--cache-dir", str(project.cache), "--function", ns("f2"))
    assert data["functions"] == [{"function": ns("f2"), "removed": 1}]
    assert project.entry_files(ns("f2")) == []


def test_store_clear_older_than_and_dry_run(project: Project) -> None:
    project.store(aged_entries(time.time()))
    cache = str(project.cache)
    data = project.cli_json("clear", "--cache-dir", cache, "--older-than", "30m", "--dry-run")
    assert data["dry_run"] is True
    assert sorted(data["functions"], key=lambda r: r["function"]) == [
        {"function": ns("f"), "removed": 2},
        {"function": ns("f2"), "removed": 1},
        {"function": ns("f_extra"), "removed": 1},
    ]
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]
    data = project.cli_json("clear", "--cache-dir", cache, "--older-than", "30m", "--yes")
    assert sum(row["removed"] for row in data["functions"]) == 4
    assert project.entry_files(ns("f")) == ["new1"]
    assert project.entry_files(ns("f_extra")) == ["new1"]
    assert project.entry_files(ns("f2")) == []


def test_store_clear_stale_only_needs_a_target(project: Project) -> None:
    """A store does not know stale_after; --stale-only says to use --older-than."""
    project.store(aged_entries(time.time()))
    args = ["clear", "--cache-dir", str(project.cache), "--function", ns("f_extra")]
    line = project.cli(*args, "--stale-only").assert_one_line_error()
    assert "--older-than" in line
    assert project.entry_files(ns("f_extra")) == ["new1", "old1"]


def test_store_clear_everything_without_yes_is_refused(project: Project) -> None:
    project.store(aged_entries(time.time()))
    result = project.cli("clear", "--backend", "pickle", "--cache-dir", str(project.cache))
    line = result.assert_one_line_error()
    assert "--yes" in line and "3 function(s)" in line
    assert result.stdout == ""
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]
    assert project.entry_files(ns("f_extra")) == ["new1", "old1"]
    assert project.entry_files(ns("f2")) == ["k1"]


def test_store_clear_everything_with_yes(project: Project) -> None:
    project.store(aged_entries(time.time()))
    before = project.imports()
    data = project.cli_json(
        "clear", "--backend", "pickle", "--cache-dir", str(project.cache), "--yes"
    )
    assert sorted(data["functions"], key=lambda r: r["function"]) == [
        {"function": ns("f"), "removed": 3},
        {"function": ns("f2"), "removed": 1},
        {"function": ns("f_extra"), "removed": 2},
    ]
    assert project.imports() == before
    for function in ["f", "f_extra", "f2"]:
        assert project.entry_files(ns(function)) == []


def test_store_clear_everything_dry_run_needs_no_yes(project: Project) -> None:
    project.store(aged_entries(time.time()))
    result = project.cli("clear", "--cache-dir", str(project.cache), "--dry-run")
    result.assert_ok()
    headers, rows = result.table()
    assert headers == ["function", "would", "remove"]
    assert sorted(rows) == [[ns("f"), "3"], [ns("f2"), "1"], [ns("f_extra"), "2"]]
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]


def _clear_at_a_terminal(project: Project, answer: bytes) -> CLIResult:
    """Run ``clear`` of a whole store with a pseudo-terminal as stdin; type ``answer``."""
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(CLI), "clear", "--cache-dir", str(project.cache)],
            cwd=project.root,
            env=project.env(),
            stdin=secondary,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(secondary)
        os.write(primary, answer)
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        os.close(primary)
    return CLIResult(process.returncode, stdout, stderr)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminals")
def test_store_clear_everything_asks_at_a_terminal(project: Project) -> None:
    project.store(aged_entries(time.time()))
    refused = _clear_at_a_terminal(project, b"n\n")
    assert "[y/N]" in refused.stdout
    assert "nothing cleared" in refused.assert_one_line_error()
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]

    accepted = _clear_at_a_terminal(project, b"y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "[y/N]" in accepted.stdout
    for function in ["f", "f_extra", "f2"]:
        assert project.entry_files(ns(function)) == []


def test_store_default_cache_dir_comes_from_the_environment(project: Project) -> None:
    project.call("g", 1, 2, 3)
    project.call("f", 1)  # explicit cache_dir: not in the default store
    data = project.cli_json("ls")
    assert [(r["function"], r["entries"]) for r in data["functions"]] == [(ns("g"), 3)]
    data = project.cli_json("clear", "--function", ns("g"))
    assert data["functions"] == [{"function": ns("g"), "removed": 3}]
    assert project.entry_files(ns("g"), project.default_cache) == []
    assert project.entry_files(ns("f")) != []


# -- ls and show ---------------------------------------------------------------------


def test_ls_json_lists_functions_with_counts_and_ages(project: Project) -> None:
    now = time.time()
    project.store(aged_entries(now))
    before = project.imports()
    data = project.cli_json("ls", "--cache-dir", str(project.cache))
    assert project.imports() == before
    rows = {row["function"]: row for row in data["functions"]}
    assert sorted(rows) == [ns("f"), ns("f2"), ns("f_extra")]
    assert rows[ns("f")]["entries"] == 3
    assert rows[ns("f")]["oldest"] == now - 2 * HOUR
    assert rows[ns("f")]["newest"] == now
    assert rows[ns("f_extra")]["entries"] == 2
    assert rows[ns("f_extra")]["oldest"] == now - HOUR
    assert rows[ns("f2")]["entries"] == 1
    assert rows[ns("f2")]["oldest"] == rows[ns("f2")]["newest"] == now - HOUR
    for row in rows.values():
        assert isinstance(row["bytes"], int) and row["bytes"] > 0


def test_ls_table(project: Project) -> None:
    project.store(aged_entries(time.time()))
    result = project.cli("ls", "--cache-dir", str(project.cache))
    result.assert_ok()
    headers, rows = result.table()
    assert headers == ["function", "entries", "size", "oldest", "newest"]
    by_name = {row[0]: row for row in rows}
    assert sorted(by_name) == [ns("f"), ns("f2"), ns("f_extra")]
    assert by_name[ns("f")][1] == "3"
    assert by_name[ns("f")][3] == "2h"
    assert by_name[ns("f")][4].endswith("s")  # seconds old
    assert by_name[ns("f_extra")][1] == "2"
    assert by_name[ns("f2")][1] == "1"
    assert by_name[ns("f2")][3:] == ["1h", "1h"]
    for row in rows:
        assert row[2].endswith("B"), row


def test_ls_total_size_is_the_sum_of_the_entry_sizes_show_lists(project: Project) -> None:
    """ls's size and show's sizes measure the same thing (the serialized payload)."""
    project.store(aged_entries(time.time()))
    listed = project.cli_json("ls", "--cache-dir", str(project.cache))
    totals = {row["function"]: row["bytes"] for row in listed["functions"]}
    for function, items in aged_entries(0.0).items():
        shown = project.cli_json("show", f"{MODULE}:{function}")["entries"]
        sizes = {row["key"]: row["size"] for row in shown}
        assert sizes == {key: payload_size(value) for key, (value, _) in items.items()}
        assert totals[ns(function)] == sum(sizes.values()), function


def test_ls_empty_store(project: Project) -> None:
    (project.root / "empty").mkdir()
    result = project.cli("ls", "--cache-dir", str(project.root / "empty"))
    result.assert_ok()
    headers, rows = result.table()
    assert headers == ["function", "entries", "size", "oldest", "newest"]
    assert rows == []
    assert project.cli_json("ls", "--cache-dir", str(project.root / "empty")) == {"functions": []}


def test_ls_of_one_imported_function(project: Project) -> None:
    project.store(aged_entries(time.time()))
    data = project.cli_json("ls", f"{MODULE}:f_extra")
    assert [(row["function"], row["entries"]) for row in data["functions"]] == [(ns("f_extra"), 2)]


def test_show_table_lists_keys_with_age_size_and_staleness(project: Project) -> None:
    project.store(aged_entries(time.time()))
    result = project.cli("show", f"{MODULE}:f_extra")
    result.assert_ok()
    headers, rows = result.table()
    assert headers == ["key", "age", "size", "stale"]
    # Newest first.
    assert [row[0] for row in rows] == ["new1", "old1"]
    new, old = rows
    assert new[1].endswith("s") and old[1] == "1h"
    assert new[2] == f"{payload_size('e' * 20)}B"
    assert old[2] == f"{payload_size('d' * 10)}B"
    assert (new[3], old[3]) == ("no", "yes")

    result = project.cli("show", f"{MODULE}:f")
    result.assert_ok()
    _, rows = result.table()
    assert [row[0] for row in rows] == ["new1", "old2", "old1"]
    assert [row[1] for row in rows][1:] == ["1h", "2h"]
    assert {row[3] for row in rows} == {"-"}  # no stale_after: staleness does not apply


def test_show_json(project: Project) -> None:
    now = time.time()
    project.store(aged_entries(now))
    data = project.cli_json("show", f"{MODULE}:f_extra")
    assert data == {
        "function": ns("f_extra"),
        "entries": [
            {"key": "new1", "timestamp": now, "size": payload_size("e" * 20), "stale": False},
            {"key": "old1", "timestamp": now - HOUR, "size": payload_size("d" * 10), "stale": True},
        ],
    }
    data = project.cli_json("show", f"{MODULE}:f")
    assert [row["stale"] for row in data["entries"]] == [None, None, None]
    assert [row["timestamp"] for row in data["entries"]] == [now, now - HOUR, now - 2 * HOUR]


def test_show_of_a_store_function(project: Project) -> None:
    now = time.time()
    project.store(aged_entries(now))
    before = project.imports()
    data = project.cli_json("show", "--cache-dir", str(project.cache), "--function", ns("f"))
    assert project.imports() == before
    assert data["function"] == ns("f")
    assert [(row["key"], row["timestamp"]) for row in data["entries"]] == [
        ("new1", now),
        ("old2", now - HOUR),
        ("old1", now - 2 * HOUR),
    ]
    assert {row["stale"] for row in data["entries"]} == {None}  # the store has no stale_after
    line = project.cli("show", "--cache-dir", str(project.cache)).assert_one_line_error()
    assert "one function" in line


def test_show_of_an_empty_function(project: Project) -> None:
    result = project.cli("show", f"{MODULE}:f2")
    result.assert_ok()
    assert result.table() == (["key", "age", "size", "stale"], [])
    assert project.cli_json("show", f"{MODULE}:f2") == {"function": ns("f2"), "entries": []}


# -- clear-claims ----------------------------------------------------------------------


def test_clear_claims_drops_a_stuck_calculation(project: Project) -> None:
    calculator = subprocess.Popen(
        [sys.executable, "-c", f"import {MODULE} as m; print(m.slow(7))"],
        cwd=project.root,
        env=project.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until((project.root / "started").exists, "the calculation to start")
        assert project.cli_json("clear-claims", f"{MODULE}:f")["functions"] == [
            {"function": ns("f"), "claims_dropped": 0}
        ]
        data = project.cli_json("clear-claims", f"{MODULE}:slow")
        assert data == {"functions": [{"function": ns("slow"), "claims_dropped": 1}]}
        # The marker is gone: nothing is left to drop.
        result = project.cli("clear-claims", f"{MODULE}:slow")
        result.assert_ok()
        assert result.table() == (["function", "claims", "dropped"], [[ns("slow"), "0"]])
    finally:
        (project.root / "go").write_text("go", encoding="utf-8")
        stdout, stderr = calculator.communicate(timeout=TIMEOUT_S)
    assert calculator.returncode == 0, stderr
    assert stdout.strip() == "7"
    # The calculator still stores its result as usual.
    assert len(project.entry_files(ns("slow"))) == 1


def test_clear_claims_of_a_store(project: Project) -> None:
    project.store(aged_entries(time.time()))
    args = ["clear-claims", "--backend", "pickle", "--cache-dir", str(project.cache)]
    data = project.cli_json(*args, "--function", ns("f"))
    assert data == {"functions": [{"function": ns("f"), "claims_dropped": 0}]}
    data = project.cli_json(*args)
    assert sorted(row["function"] for row in data["functions"]) == [
        ns("f"),
        ns("f2"),
        ns("f_extra"),
    ]
    # Claims only: the entries stay.
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]


# -- errors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorCase:
    args: list[str]
    expect: list[str]  # fragments of the error line
    files: dict[str, str]  # extra modules to write


ERROR_CASES: dict[str, ErrorCase] = {
    "module raises at import": ErrorCase(
        ["clear", "broken_mod:f"],
        ["cannot import 'broken_mod'", "RuntimeError", "no database configured", "PYTHONPATH"],
        {"broken_mod.py": 'raise RuntimeError("no database configured")\n'},
    ),
    "multi-line import error": ErrorCase(
        ["show", "multiline_mod:f"],
        ["cannot import 'multiline_mod'", "first line", "second line"],
        {"multiline_mod.py": 'raise ValueError("first line\\nsecond line")\n'},
    ),
    "syntax error in module": ErrorCase(
        ["clear", "syntax_mod:f"],
        ["cannot import 'syntax_mod'", "SyntaxError"],
        {"syntax_mod.py": "def f(:\n"},
    ),
    "missing module": ErrorCase(
        ["clear", "no_such_module_here:f"],
        ["cannot import 'no_such_module_here'", "PYTHONPATH"],
        {},
    ),
    "not a cached function": ErrorCase(
        ["clear", f"{MODULE}:plain"], [f"{MODULE}:plain is not a cached function", "@cached"], {}
    ),
    "not a function at all": ErrorCase(
        ["show", f"{MODULE}:NOT_A_FUNCTION"], ["is not a cached function"], {}
    ),
    "missing attribute": ErrorCase(
        ["clear-claims", f"{MODULE}:nope"], [f"'{MODULE}' has no attribute 'nope'"], {}
    ),
    "missing method": ErrorCase(["show", f"{MODULE}:Box.nope"], ["has no attribute"], {}),
    "target without a colon": ErrorCase(
        ["clear", MODULE], ["is not of the form package.module:function"], {}
    ),
    "backend and target together": ErrorCase(
        ["clear", f"{MODULE}:f", "--backend", "pickle"], ["either a TARGET or store flags"], {}
    ),
    "store flag with a target": ErrorCase(
        ["clear", f"{MODULE}:f", "--cache-dir", "/nonexistent"],
        ["either a TARGET or store flags (--cache-dir)"],
        {},
    ),
    "bad duration": ErrorCase(
        ["clear", f"{MODULE}:f", "--older-than", "3 fortnights"],
        ["not a duration: '3 fortnights'", "seconds (90)", "3d", "'90 minutes'"],
        {},
    ),
    "missing cache directory": ErrorCase(
        ["clear", "--cache-dir", "nowhere", "--yes"], ["no cache directory nowhere"], {}
    ),
    "redis prefix on the default backend": ErrorCase(
        ["ls", "--prefix", "shop"], ["--prefix is an option of --backend redis"], {}
    ),
    "typo in a script's function": ErrorCase(
        ["show", "script_run.py:featurise"],
        ["defines no function 'featurise'", "featurize"],
        {"script_run.py": SCRIPT_SOURCE},
    ),
    "unknown function in a store": ErrorCase(
        ["clear", "--cache-dir", "cache", "--function", "nobody.here", "--yes"],
        ["no cached function named 'nobody.here'"],
        {},
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_errors_are_one_line_without_traceback(project: Project, case: ErrorCase) -> None:
    project.store(aged_entries(time.time()))
    for name, source in case.files.items():
        (project.root / name).write_text(source, encoding="utf-8")
    result = project.cli(*case.args)
    line = result.assert_one_line_error()
    assert result.stdout == ""
    for fragment in case.expect:
        assert fragment in line, (fragment, line)
    # Nothing was removed, and no script was run.
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]
    assert not (project.root / "runs.log").exists()

    debug = project.cli("--debug", *case.args)
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr, debug.stderr
    assert project.entry_files(ns("f")) == ["new1", "old1", "old2"]


def test_unreachable_redis_is_one_line(project: Project) -> None:
    """Port 1 is closed; whether or not the Redis core exists, the error is one line."""
    args = ["clear", "--backend", "redis", "--url", "redis://127.0.0.1:1", "--yes"]
    result = project.cli(*args)
    result.assert_one_line_error()
    assert result.stdout == ""
    debug = project.cli("--debug", *args)
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr, debug.stderr


# -- wrong inputs: one-line errors, never an empty answer ------------------------------

COMMANDS = ["ls", "show", "clear", "clear-claims"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_cache_dir_is_an_error(project: Project, command: str) -> None:
    project.store(aged_entries(time.time()))
    missing = project.root / "nowhere"
    result = project.cli(command, "--cache-dir", str(missing), "--function", ns("f"))
    line = result.assert_one_line_error()
    assert f"no cache directory {missing} (--cache-dir)" in line
    assert result.stdout == ""
    assert not missing.exists()


def test_a_missing_default_cache_dir_is_an_error_naming_where_it_came_from(
    project: Project,
) -> None:
    missing = project.root / "unset-cache"
    result = project.cli("ls", env={"CACHIER_LIKE_CACHE_DIR": str(missing)})
    line = result.assert_one_line_error()
    assert f"no cache directory {missing} ($CACHIER_LIKE_CACHE_DIR)" in line
    assert "--cache-dir" in line


def test_a_cache_dir_that_is_a_file_is_an_error(project: Project) -> None:
    a_file = project.root / "a-file"
    a_file.write_text("not a directory", encoding="utf-8")
    line = project.cli("ls", "--cache-dir", str(a_file)).assert_one_line_error()
    assert f"{a_file} (--cache-dir) is not a directory" in line


#: Each store flag, a value for it, and the backends that use it.
FLAG_OWNERS: dict[str, tuple[str, list[str]]] = {
    "--cache-dir": ("cache", ["pickle"]),
    # Port 1 is closed: a flag check that came after connecting would show.
    "--url": ("redis://127.0.0.1:1", ["redis", "sql", "mongo"]),
    "--prefix": ("shop", ["redis"]),
    "--table": ("entries", ["sql"]),
    "--db": ("shop", ["mongo"]),
    "--collection": ("entries", ["mongo"]),
}
MISPLACED_FLAGS = [
    (flag, backend)
    for flag, (_, owners) in FLAG_OWNERS.items()
    for backend in [None, "pickle", "redis", "sql", "mongo"]
    if (backend or "pickle") not in owners
]


@pytest.mark.parametrize(
    ("flag", "backend"),
    MISPLACED_FLAGS,
    ids=[f"{flag}-{backend or 'default'}" for flag, backend in MISPLACED_FLAGS],
)
def test_a_store_flag_of_another_backend_is_an_error_naming_its_backend(
    project: Project, flag: str, backend: str | None
) -> None:
    value, owners = FLAG_OWNERS[flag]
    chosen = ["--backend", backend] if backend else []
    line = project.cli("ls", flag, value, *chosen).assert_one_line_error()
    assert f"{flag} is an option of --backend {' / '.join(owners)}" in line, line
    either = " or ".join(", ".join(owners).rsplit(", ", 1))
    if backend is None:
        assert f"not of the default backend pickle: add --backend {either}" in line
    else:
        assert f"not of --backend {backend}: drop it, or use --backend {either}" in line


def test_clear_with_a_redis_prefix_but_no_backend_clears_nothing(project: Project) -> None:
    """It used to clear the whole default pickle store."""
    project.call("g", 1, 2)
    line = project.cli("clear", "--prefix", "shop", "--yes").assert_one_line_error()
    assert "--prefix" in line and "add --backend redis" in line
    assert len(project.entry_files(ns("g"), project.default_cache)) == 2


SERVER_URLS = {
    "redis": ("CACHIER_LIKE_REDIS_URL", "server: pass --url redis://"),
    "sql": ("CACHIER_LIKE_SQL_URL", "database: pass --url postgresql+psycopg://"),
    "mongo": ("CACHIER_LIKE_MONGO_URL", "server: pass --url mongodb://"),
}


@pytest.mark.parametrize("backend", sorted(SERVER_URLS))
def test_a_server_backend_without_a_url_says_to_pass_url(project: Project, backend: str) -> None:
    variable, example = SERVER_URLS[backend]
    result = project.cli("ls", "--backend", backend, env={variable: None})
    line = result.assert_one_line_error()
    assert f"--backend {backend} needs the {example}" in line, line
    assert f"${variable}" in line
    for decorator_option in ("redis_client", "sql_engine", "mongetter"):
        assert decorator_option not in line


@pytest.mark.parametrize(
    ("backend", "url", "expect"),
    [
        ("redis", "http://127.0.0.1:6379", "--url 'http://127.0.0.1:6379' is not a Redis URL"),
        ("sql", "not a url", "--url 'not a url' is not a database URL"),
        ("mongo", "http://127.0.0.1:27017", "is not a MongoDB URL"),
    ],
)
def test_a_malformed_url_is_an_error(project: Project, backend: str, url: str, expect: str) -> None:
    line = project.cli("ls", "--backend", backend, "--url", url).assert_one_line_error()
    assert expect in line, line


def _sqlite_store(project: Project) -> str:
    """A SQLite database holding two entries of ``sqldemo.f``; return its URL."""
    url = f"sqlite:///{project.root / 'cache.db'}"
    project.python(
        f"""
        from cachier_like import cached

        @cached(backend="sql", sql_engine={url!r}, namespace="sqldemo.f")
        def f(x: int) -> int:
            return x

        f(1)
        f(2)
        """
    )
    return url


@pytest.mark.sql
def test_a_missing_sql_table_is_an_error(project: Project) -> None:
    url = _sqlite_store(project)
    store = ["--backend", "sql", "--url", url]
    data = project.cli_json("ls", *store)
    assert [(row["function"], row["entries"]) for row in data["functions"]] == [("sqldemo.f", 2)]
    for command in COMMANDS:
        result = project.cli(command, *store, "--table", "nope", "--function", "sqldemo.f")
        line = result.assert_one_line_error()
        assert "no table 'nope' in sqlite:///" in line and "check --table" in line, line
    assert project.cli_json("show", *store, "--function", "sqldemo.f")["entries"] != []


@pytest.mark.sql
def test_a_url_naming_an_async_driver_lists_and_clears(project: Project) -> None:
    pytest.importorskip("aiosqlite")
    url = f"sqlite+aiosqlite:///{project.root / 'cache.db'}"
    project.python(
        f"""
        import asyncio

        from cachier_like import cached

        @cached(backend="sql", sql_engine={url!r}, namespace="sqldemo.af")
        async def af(x: int) -> int:
            return x

        async def main() -> None:
            await af(1)
            await af(2)

        asyncio.run(main())
        """
    )
    store = ["--backend", "sql", "--url", url]
    data = project.cli_json("ls", *store)
    assert [(row["function"], row["entries"]) for row in data["functions"]] == [("sqldemo.af", 2)]
    project.cli("clear", *store, "--function", "sqldemo.af", "--yes")
    assert project.cli_json("ls", *store)["functions"] == []
    missing = project.cli("ls", *store, "--table", "nope").assert_one_line_error()
    assert "no table 'nope'" in missing, missing


@pytest.mark.sql
def test_a_sqlite_database_without_the_cache_table_is_an_error(project: Project) -> None:
    other = project.root / "other.db"
    project.python(
        f"import sqlite3; sqlite3.connect({str(other)!r}).execute('CREATE TABLE t (x INT)')"
    )
    result = project.cli("ls", "--backend", "sql", "--url", f"sqlite:///{other}")
    line = result.assert_one_line_error()
    assert "no table 'cachier_like_entries'" in line and "pass --table" in line, line


@pytest.mark.sql
def test_a_missing_sqlite_file_is_an_error_and_is_not_created(project: Project) -> None:
    missing = project.root / "missing.db"
    result = project.cli("ls", "--backend", "sql", "--url", f"sqlite:///{missing}")
    line = result.assert_one_line_error()
    assert f"no SQLite database file {missing} (--url)" in line
    assert not missing.exists()


@pytest.mark.sql
def test_a_missing_postgres_table_is_an_error(project: Project, postgres_engine: Any) -> None:
    import sqlalchemy as sa

    from tests.backends.sql_backend import server_url, unique_table

    table = unique_table()
    store = ["--backend", "sql", "--url", server_url("postgres"), "--table", table]
    line = project.cli("ls", *store).assert_one_line_error()
    assert f"no table {table!r} in postgresql" in line, line
    assert not sa.inspect(postgres_engine).has_table(table)


@pytest.mark.mongo
def test_a_missing_mongo_collection_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No MongoDB server here: mongomock stands in for pymongo, so the CLI runs in-process."""
    mongomock = pytest.importorskip("mongomock")
    import pymongo

    from cachier_like import cached
    from cachier_like.cli import main

    monkeypatch.delenv("CACHIER_LIKE_MONGO_URL", raising=False)
    url = "mongodb://mongo.test:27017"
    with mongomock.patch(servers=(("mongo.test", 27017),)):

        @cached(backend="mongo", mongetter=url, namespace="mongodemo.f")
        def f(x: int) -> int:
            return x

        f(1)
        assert main(["ls", "--backend", "mongo", "--url", url, "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["functions"]
        assert [(row["function"], row["entries"]) for row in rows] == [("mongodemo.f", 1)]
        for wrong in (["--db", "shop"], ["--collection", "nope"]):
            assert main(["ls", "--backend", "mongo", "--url", url, *wrong]) == 1
            captured = capsys.readouterr()
            assert captured.out == ""
            assert captured.err.count("\n") == 1, captured.err
            assert "no collection" in captured.err and "check --db and --collection" in captured.err
        client: Any = pymongo.MongoClient(url)
        assert "shop" not in client.list_database_names()  # nothing was created
        assert client["cachier_like"].list_collection_names() == ["entries"]


# -- --older-than ----------------------------------------------------------------------

#: An age, and how many of f's entries (2 h, 1 h and 0 s old) are older than it.
AGES = {
    "3 days": 0,
    "3d": 0,
    "2 weeks": 0,
    "12h": 0,
    "90 minutes": 1,
    "1.5 hours": 1,
    "5400": 1,
    "30m": 2,
    "1800 seconds": 2,
    "0.5 Hours": 2,
}


def test_older_than_accepts_units_in_words_and_plain_seconds(project: Project) -> None:
    project.store(aged_entries(time.time()))
    for age, older in AGES.items():
        data = project.cli_json("clear", f"{MODULE}:f", "--older-than", age, "--dry-run")
        assert data["functions"] == [{"function": ns("f"), "removed": older}], age
    data = project.cli_json("clear", f"{MODULE}:f", "--older-than", "90 minutes")
    assert data["functions"] == [{"function": ns("f"), "removed": 1}]
    assert project.entry_files(ns("f")) == ["new1", "old2"]


def test_a_bad_age_is_an_error_even_when_nothing_would_be_cleared(project: Project) -> None:
    (project.root / "empty").mkdir()
    args = ["clear", "--cache-dir", str(project.root / "empty"), "--yes"]
    line = project.cli(*args, "--older-than", "1 month").assert_one_line_error()
    assert "not a duration: '1 month'" in line and "'90 minutes'" in line, line


# -- a script's functions, named by the script's path -----------------------------------


def write_script(project: Project, relative: str) -> Path:
    """Write the test script at ``root/relative``; return its path."""
    path = project.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT_SOURCE, encoding="utf-8")
    return path


def run_script(project: Project, script: Path, *args: str) -> list[str]:
    """Run ``python script ARGS`` in ``root``; return which script computed each value."""
    stdout = project.interpreter(str(script.relative_to(project.root)), *args)
    return [line.split()[0] for line in stdout.splitlines()]


def script_runs(script: Path) -> int:
    log = script.parent / "runs.log"
    return len(log.read_text(encoding="utf-8").splitlines()) if log.exists() else 0


def test_a_scripts_function_is_named_by_its_path_and_never_run(project: Project) -> None:
    script = write_script(project, "jobs/train/run.py")
    assert run_script(project, script, "1", "2") == ["train", "train"]
    namespace = f"{script.resolve()}:featurize"
    runs = script_runs(script)

    data = project.cli_json("ls", "jobs/train/run.py:featurize")
    assert [(row["function"], row["entries"]) for row in data["functions"]] == [(namespace, 2)]
    assert namespace in [row["function"] for row in project.cli_json("ls")["functions"]]
    shown = project.cli_json("show", f"{script}:featurize")  # an absolute path
    assert shown["function"] == namespace
    assert len(shown["entries"]) == 2
    result = project.cli("show", "train/run.py:featurize", cwd=project.root / "jobs")
    result.assert_ok()  # relative to the command's working directory
    assert len(result.table()[1]) == 2

    cleared = project.cli_json("clear", "jobs/train/run.py:featurize")
    assert cleared["functions"] == [{"function": namespace, "removed": 2}]
    assert project.cli_json("show", "jobs/train/run.py:featurize")["entries"] == []
    assert script_runs(script) == runs  # the CLI read the script, never ran it


def test_a_scripts_function_on_the_store_the_flags_name(project: Project) -> None:
    script = write_script(project, "jobs/run.py")
    run_script(project, script, "1", "2", "3")
    cache = str(project.root / "jobs" / "cache")
    target = "jobs/run.py:local"
    data = project.cli_json("ls", target, "--cache-dir", cache)
    assert [row["entries"] for row in data["functions"]] == [3]
    data = project.cli_json("clear", target, "--cache-dir", cache, "--older-than", "1h")
    assert data["functions"] == [{"function": f"{script.resolve()}:local", "removed": 0}]
    data = project.cli_json("clear", target, "--cache-dir", cache)
    assert data["functions"] == [{"function": f"{script.resolve()}:local", "removed": 3}]
    # The function defined in the script, but nothing stored on this store: empty.
    assert project.cli_json("show", target)["entries"] == []


def test_two_scripts_with_a_function_of_the_same_name_keep_apart(project: Project) -> None:
    train = write_script(project, "train/run.py")
    evaluate = write_script(project, "eval/run.py")
    assert run_script(project, train, "1") == ["train"]
    assert run_script(project, evaluate, "1") == ["eval"]  # not train's value
    assert run_script(project, train, "1", "2") == ["train", "train"]
    counts = {row["function"]: row["entries"] for row in project.cli_json("ls")["functions"]}
    assert counts == {f"{train.resolve()}:featurize": 2, f"{evaluate.resolve()}:featurize": 1}
    data = project.cli_json("clear", "train/run.py:featurize")
    assert data["functions"] == [{"function": f"{train.resolve()}:featurize", "removed": 2}]
    assert len(project.cli_json("show", "eval/run.py:featurize")["entries"]) == 1


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["show", "run.py:featurise"], ["run.py defines no function 'featurise'", "featurize"]),
        (["show", "nowhere/run.py:featurize"], ["no script nowhere/run.py"]),
        (["clear", "run.py:featurize", "--function", "x"], ["either a TARGET or --function"]),
        (["clear", "run.py:featurize", "--stale-only"], ["stale_after", "--older-than"]),
        (["ls", "run.py:featurize", "--prefix", "shop"], ["--prefix is an option of"]),
        (["ls", "run.py:featurize", "--cache-dir", "nowhere"], ["no cache directory nowhere"]),
        (["show", "jobs/run:featurize"], ["is not a module name", "jobs/run.py:featurize"]),
    ],
)
def test_script_target_errors(project: Project, args: list[str], expect: list[str]) -> None:
    script = write_script(project, "run.py")
    result = project.cli(*args)
    line = result.assert_one_line_error()
    for fragment in expect:
        assert fragment in line, (fragment, line)
    assert script_runs(script) == 0


# -- temporary files of interrupted writes ----------------------------------------------


def _temporaries(project: Project, function: str) -> tuple[Path, Path]:
    """An abandoned (two hours old) and a fresh temporary file in ``function``'s directory."""
    directory = project.cache / namespace_dirname(ns(function))
    abandoned = directory / "old1.123-abcd0123.456.tmp"
    fresh = directory / "new1.123-abcd0123.789.tmp"
    for path in (abandoned, fresh):
        path.write_bytes(b"half a write")
    stamp = time.time() - 2 * HOUR
    os.utime(abandoned, (stamp, stamp))
    return abandoned, fresh


@pytest.mark.parametrize(
    ("how", "removed"),
    [(["--stale-only"], 1), (["--older-than", "1d"], 0), ([], 2)],
    ids=["stale-only", "older-than", "all"],
)
def test_clear_removes_temporary_files_over_an_hour_old(
    project: Project, how: list[str], removed: int
) -> None:
    project.store(aged_entries(time.time()))
    abandoned, fresh = _temporaries(project, "f_extra")
    data = project.cli_json("clear", f"{MODULE}:f_extra", *how)
    assert data["functions"] == [{"function": ns("f_extra"), "removed": removed}]  # entries only
    assert not abandoned.exists()
    assert fresh.exists()  # it may be a write in progress


def test_stale_only_of_an_empty_store_is_still_an_error(project: Project) -> None:
    (project.root / "empty").mkdir()
    args = ["clear", "--cache-dir", str(project.root / "empty"), "--stale-only", "--yes"]
    line = project.cli(*args).assert_one_line_error()
    assert "--stale-only needs an imported package.module:function" in line
    assert "--older-than" in line
