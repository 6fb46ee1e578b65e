"""``cachier-like invalidate``, ``invalidate-tags`` and ``clear --stale-only`` on versions.

As in ``tests/test_cli.py``: a module of cached functions written to ``tmp_path``,
caches filled from separate interpreters, the installed console script run there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import CLIResult, Project, make_project

pytestmark = pytest.mark.pickle

MODULE = "invtarget_mod"
SOURCE = """
import os
from pathlib import Path

from cachier_like import cached

HERE = Path(__file__).resolve().parent
with open(HERE / "imports.log", "a", encoding="utf-8") as _log:
    _log.write(f"{os.getpid()}\\n")
CACHE = HERE / "cache"
VERSION = int((HERE / "version.txt").read_text()) if (HERE / "version.txt").exists() else 1


@cached(cache_dir=CACHE, ignore=["verbose"])
def price(item: str, currency: str = "EUR", verbose: bool = False) -> str:
    return f"{item} in {currency}"


@cached(cache_dir=CACHE, tags=lambda user_id, **_: [f"user:{user_id}"])
def profile(user_id: int) -> str:
    return f"profile {user_id}"


@cached(cache_dir=CACHE, tags=lambda user_id, **_: [f"user:{user_id}"])
def orders(user_id: int, limit: int = 10) -> str:
    return f"orders {user_id}"


@cached(cache_dir=CACHE, version=VERSION)
def versioned(x: int) -> str:
    return f"v{VERSION}:{x}"
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path, MODULE, SOURCE)


def entry(project: Project, call: str) -> str:
    """``repr`` of the stored value of ``call`` (e.g. ``price('book')``), or ``'None'``."""
    function, arguments = call.split("(", 1)
    out = project.python(
        f"import {MODULE} as m\n"
        f"e = m.{function}.cached_entry({arguments}\n"
        "print(repr(None if e is None else e.value))"
    )
    return out.strip()


def test_invalidate_removes_one_call_read_as_literals(project: Project) -> None:
    project.python(f"import {MODULE} as m\nm.price('book')\nm.price('book', 'USD')\nm.price('7')\n")
    result = project.cli_json("invalidate", f"{MODULE}:price", "book", "--kw", "currency='EUR'")
    assert result == {"function": f"{MODULE}.price", "removed": True}
    assert entry(project, "price('book')") == "None"
    assert entry(project, "price('book', 'USD')") == "'book in USD'"
    again = project.cli("invalidate", f"{MODULE}:price", "book")
    again.assert_ok()
    assert again.table()[1] == [[f"{MODULE}.price", "no"]]
    # '7' is the literal 7, an int: not the str call; "'7'" is the str.
    assert project.cli_json("invalidate", f"{MODULE}:price", "7")["removed"] is False
    assert project.cli_json("invalidate", f"{MODULE}:price", "'7'", "--kw", "verbose=True") == {
        "function": f"{MODULE}.price",
        "removed": True,
    }


def test_invalidate_needs_an_imported_function_and_names_bad_keywords(project: Project) -> None:
    error = project.cli("invalidate", "jobs/run.py:f", "1").assert_one_line_error()
    assert "imported package.module:function" in error
    error = project.cli("invalidate", f"{MODULE}:price", "--kw", "nope").assert_one_line_error()
    assert "NAME=VALUE" in error


def test_invalidate_tags_by_target_and_by_store_flags(project: Project) -> None:
    fill = f"import {MODULE} as m\nm.profile(7); m.orders(7); m.profile(8)\n"
    project.python(fill)
    out = project.cli_json("invalidate-tags", "user:7", "--target", f"{MODULE}:profile")
    assert out == {"store": f"{MODULE}.profile", "tags": ["user:7"]}
    recomputed = f"import {MODULE} as m\nprint(m.profile.core.tag_versions(['user:7', 'user:8']))\n"
    assert project.python(recomputed).strip() == "(1, 0)"
    # The store flags name the same store: nothing is imported.
    before = project.imports()
    result = project.cli("invalidate-tags", "user:8", "user:7", "--cache-dir", str(project.cache))
    result.assert_ok()
    assert project.imports() == before
    assert project.python(recomputed).strip() == "(2, 1)"
    error = project.cli(
        "invalidate-tags", "user:7", "--cache-dir", str(project.cache), "--function", "x"
    ).assert_one_line_error()
    assert "drop --function" in error


def test_clear_stale_only_removes_the_other_versions(project: Project) -> None:
    project.python(f"import {MODULE} as m\nm.versioned(1); m.versioned(2)\n")
    (project.root / "version.txt").write_text("2")
    project.python(f"import {MODULE} as m\nm.versioned(1)\n")
    dry = project.cli_json("clear", f"{MODULE}:versioned", "--stale-only", "--dry-run")
    assert dry["functions"] == [
        {"function": f"{MODULE}.versioned", "removed": 0},
        {"function": f"{MODULE}.versioned@v1", "removed": 2},
    ]
    done = project.cli_json("clear", f"{MODULE}:versioned", "--stale-only")
    assert done["functions"] == dry["functions"]
    listing = project.cli_json("ls", "--cache-dir", str(project.cache))
    stored = {row["function"]: row["entries"] for row in listing["functions"]}
    assert stored[f"{MODULE}.versioned@v2"] == 1
    assert stored.get(f"{MODULE}.versioned@v1", 0) == 0


def test_the_new_commands_have_help(project: Project) -> None:
    for command, flags in {
        "invalidate": ["--kw", "--json"],
        "invalidate-tags": ["--target", "--backend", "--cache-dir", "--json"],
    }.items():
        result: CLIResult = project.cli(command, "--help")
        result.assert_ok()
        for flag in flags:
            assert flag in result.stdout, (command, flag)
