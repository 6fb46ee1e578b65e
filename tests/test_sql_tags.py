"""The SQL core's tag versions table: one statement per get_tagged, kept across clears,
added to a table made by an older version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cachier_like import Entry
from cachier_like.cores.sql import SQLCore
from cachier_like.cores.sql.schema import tags_table_name

pytestmark = pytest.mark.sql


def _engine(tmp_path: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{tmp_path / 'tags.sqlite'}")


def test_get_tagged_is_one_statement(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    core = SQLCore("tags.f", sql_engine=engine, table_name="entries")
    assert core.set("k", Entry(1, 1.0, (("a", 0),)))
    core.bump_tags(["b"])
    assert core.get("k") is not None  # the clock offset is measured: not counted below
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    assert core.get_tagged("k", ["a", "b", "c"]) == (Entry(1, 1.0, (("a", 0),)), (0, 1, 0))
    assert core.get_tagged("missing", ["b"]) == (None, (1,))
    assert len(sent) == 2, sent


def test_tag_versions_survive_clear_and_stay_out_of_listings(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    core = SQLCore("tags.f", sql_engine=engine, table_name="entries")
    core.bump_tags(["x", "x2"])
    assert core.set("k", Entry(1, 1.0))
    assert core.clear() == 1
    assert core.tag_versions(["x", "x2"]) == (1, 1)
    assert [info.key for info in core.entries()] == []
    assert SQLCore.namespaces(sql_engine=engine, table_name="entries") == []


def test_a_table_made_by_an_older_version_gains_its_tags_table(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with engine.begin() as connection:  # the entries table as an older version made it
        connection.execute(
            sa.text(
                "CREATE TABLE entries (namespace VARCHAR(191) NOT NULL, cache_key VARCHAR(64) "
                "NOT NULL, value BLOB, calculated_at DOUBLE, claim_token VARCHAR(32), "
                "claim_expires DOUBLE, PRIMARY KEY (namespace, cache_key))"
            )
        )
    assert not sa.inspect(engine).has_table(tags_table_name("entries"))
    core = SQLCore("tags.f", sql_engine=engine, table_name="entries")
    core.bump_tags(["t"])
    assert sa.inspect(engine).has_table(tags_table_name("entries"))
    assert core.tag_versions(["t"]) == (1,)
