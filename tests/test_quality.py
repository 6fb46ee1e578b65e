"""Lint, format and strict typing are part of the test suite, so ``pytest`` is the gate."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ruff_check_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy")  # files and --strict come from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


#: The one module of the library that prints: ``cachier__verbose=True`` asks for it on
#: the call itself (the CLI writes through ``sys.stdout`` in ``cli_output.py``).
PRINTING_MODULES = {"cachier_like/verbose.py"}


def test_the_library_prints_only_for_verbose_calls() -> None:
    printing = set()
    for path in sorted((ROOT / "cachier_like").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
            for node in ast.walk(tree)
        ):
            printing.add(path.relative_to(ROOT).as_posix())
    assert printing == PRINTING_MODULES
