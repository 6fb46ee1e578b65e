"""A pytest plugin for ``tests/test_workflow_selection.py``: which CI jobs select each test.

Loaded with ``-p tests.helpers.selection_dump`` into a ``--collect-only`` run of the whole
suite. It reads the jobs' ``-m`` and ``-k`` expressions (JSON, ``[{"name", "m", "k"}]``)
from the file named by ``$CACHIER_LIKE_SELECTION_JOBS`` and writes ``{test id: [names of
the jobs whose expressions select it]}`` to ``$CACHIER_LIKE_SELECTION_OUT``. The
expressions are evaluated by pytest's own matchers, as ``-m`` and ``-k`` would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _pytest.mark import KeywordMatcher
from _pytest.mark.expression import Expression

JOBS_ENV = "CACHIER_LIKE_SELECTION_JOBS"
OUT_ENV = "CACHIER_LIKE_SELECTION_OUT"


def _selects(item: pytest.Item, markexpr: str | None, keywordexpr: str | None) -> bool:
    marks = {mark.name for mark in item.iter_markers()}

    def has_mark(name: str, /, **kwargs: object) -> bool:
        # MarkMatcher's constructor changed within pytest 8; -m by name is all CI uses.
        assert not kwargs, "teach selection_dump.py about -m marker(arg=...) expressions"
        return name in marks

    if markexpr and not Expression.compile(markexpr).evaluate(has_mark):
        return False
    return not keywordexpr or Expression.compile(keywordexpr).evaluate(
        KeywordMatcher.from_item(item)
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Write, for every collected test, the jobs that select it."""
    if JOBS_ENV not in os.environ:
        return
    jobs = json.loads(Path(os.environ[JOBS_ENV]).read_text(encoding="utf-8"))
    selected = {
        item.nodeid: [job["name"] for job in jobs if _selects(item, job["m"], job["k"])]
        for item in session.items
    }
    Path(os.environ[OUT_ENV]).write_text(json.dumps(selected), encoding="utf-8")
