"""Cache keys: the same call gives the same key everywhere, different calls never share one.

Covers ``cachier_like.keys``: argument binding (``ArgumentBinder``), content hashing
(``stable_hash``), key making (``KeyMaker``, stable and memory-local keys), custom
``hash_func`` and function identity (namespaces).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import threading
import uuid
from collections.abc import Hashable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cachier_like import CachedFunction, cached
from cachier_like.hashing import UnhashableValueError
from cachier_like.keys import LOCAL_KEY_MAX_LEN, ArgumentBinder, KeyMaker, stable_hash
from tests.support import run_code

pytestmark = pytest.mark.memory

_HEX_DIGEST_LEN = 32


def _all_distinct(values: list[Any]) -> None:
    """Assert that every value in ``values`` has its own stable hash."""
    hashes = [stable_hash(v) for v in values]
    collisions = [
        (values[i], values[j])
        for i in range(len(values))
        for j in range(i + 1, len(values))
        if hashes[i] == hashes[j]
    ]
    assert collisions == []


# -- binding: one call, one key -------------------------------------------------------


def test_positional_and_keyword_spellings_share_a_key() -> None:
    def f(a: int, b: int, c: int = 3) -> None: ...

    keys = KeyMaker(f)
    expected = keys.key((1, 2, 3), {})
    assert keys.key((1,), {"b": 2, "c": 3}) == expected
    assert keys.key((), {"a": 1, "b": 2, "c": 3}) == expected
    assert keys.key((1, 2), {"c": 3}) == expected
    assert keys.key((1, 2), {}) == expected  # default omitted
    assert keys.key((1, 2), {"c": 4}) != expected
    assert keys.key((2, 1), {}) != expected


def test_kwargs_order_does_not_matter() -> None:
    def f(a: int, b: str, c: float) -> None: ...

    keys = KeyMaker(f)
    assert keys.key((), {"a": 1, "b": "x", "c": 2.5}) == keys.key((), {"c": 2.5, "a": 1, "b": "x"})
    assert keys.key((), {"b": "x", "c": 2.5, "a": 1}) == keys.key((1, "x", 2.5), {})


def test_defaults_omitted_or_given_share_a_key() -> None:
    def f(a: int, b: str = "dflt", c: tuple[int, ...] = (1, 2)) -> None: ...

    binder = ArgumentBinder(f)
    full = (1, "dflt", (1, 2))
    assert binder.bind((1,), {}) == full
    assert binder.bind((1, "dflt"), {}) == full
    assert binder.bind((1,), {"c": (1, 2)}) == full
    assert binder.bind((), {"a": 1}) == full
    keys = KeyMaker(f)
    assert keys.key((1,), {}) == keys.key((1, "dflt", (1, 2)), {})
    assert keys.key((1,), {}) != keys.key((1, "other"), {})


def test_keyword_only_parameters() -> None:
    def f(a: int, *, b: int = 2, c: int) -> None: ...

    keys = KeyMaker(f)
    expected = keys.key((1,), {"c": 3})
    assert keys.key((1,), {"c": 3, "b": 2}) == expected
    assert keys.key((), {"c": 3, "a": 1}) == expected
    assert keys.key((1,), {"b": 3, "c": 2}) != expected

    def g(a: int, *, k: int = 5) -> None: ...

    # Keyword-only defaults take the fast path when no keywords are passed.
    g_keys = KeyMaker(g)
    assert ArgumentBinder(g).bind((1,), {}) == (1, 5)
    assert g_keys.key((1,), {}) == g_keys.key((1,), {"k": 5})
    assert g_keys.key((1,), {}) != g_keys.key((1,), {"k": 6})


def test_var_positional_and_var_keyword() -> None:
    def f(a: int, *args: int, **kwargs: int) -> None: ...

    keys = KeyMaker(f)
    base = keys.key((1, 2, 3), {"x": 1, "y": 2})
    assert keys.key((1, 2, 3), {"y": 2, "x": 1}) == base
    assert keys.key((1, 2, 3), {"x": 1}) != base
    assert keys.key((1, 3, 2), {"x": 1, "y": 2}) != base
    # Extra positionals and extra keywords are not interchangeable.
    assert keys.key((1, 2), {}) != keys.key((1,), {"args": 2})
    assert keys.key((1,), {}) == keys.key((), {"a": 1})

    def g(*args: Any, **kwargs: Any) -> None: ...

    g_keys = KeyMaker(g)
    assert g_keys.key((1, 2), {}) != g_keys.key(((1, 2),), {})
    assert g_keys.key((1,), {}) != g_keys.key((), {"a": 1})
    assert g_keys.key((), {}) != g_keys.key((None,), {})


def test_positional_only_parameters_on_fast_and_general_paths() -> None:
    def f(a: int, /, b: int = 2, *, c: int = 3) -> None: ...

    binder = ArgumentBinder(f)
    # No keywords: the precomputed-defaults fast path.
    fast_short = binder.bind((1,), {})
    fast_full = binder.bind((1, 2), {})
    # Keywords present: the general inspect.Signature.bind path.
    general = binder.bind((1,), {"b": 2})
    general_all = binder.bind((1,), {"c": 3, "b": 2})
    assert fast_short == fast_full == general == general_all == (1, 2, 3)
    keys = KeyMaker(f)
    assert keys.key((1,), {}) == keys.key((1,), {"c": 3, "b": 2})
    assert keys.key((1,), {}) != keys.key((2,), {})
    with pytest.raises(TypeError):
        keys.key((), {"a": 1})


def test_positional_only_through_the_decorator_cached_and_bypassed() -> None:
    calls: list[int] = []

    @cached(backend="memory")
    def f(a: int, /, b: int = 2) -> int:
        calls.append(a)
        return a * 10 + b

    assert f(1) == 12
    assert f(1, 2) == 12
    assert f(1, b=2) == 12
    assert calls == [1]
    # Bypassing the cache calls the function and leaves the stored entry alone.
    assert f(1, cachier__skip_cache=True) == 12  # type: ignore[call-arg]
    assert f.uncached(1, b=2) == 12
    assert calls == [1, 1, 1]
    entry = f.cached_entry(1)
    assert entry is not None
    assert entry.value == 12
    assert f(3, b=4) == 34
    assert calls == [1, 1, 1, 3]


def test_skip_first_drops_self_from_the_key() -> None:
    def method(self: object, x: int, y: int = 1) -> None: ...

    keys = KeyMaker(method, skip_first=True)
    assert keys.key((object(), 5), {}) == keys.key((object(),), {"x": 5, "y": 1})
    assert ArgumentBinder(method, skip_first=True).bind(("self", 5), {}) == (5, 1)


# -- PYTHONHASHSEED independence -------------------------------------------------------

# Built both in this process (via exec) and in child processes with other hash seeds.
_SEED_VALUES_CODE = """
import dataclasses
from datetime import datetime, timezone
from decimal import Decimal

@dataclasses.dataclass(frozen=True)
class Tagged:
    name: str
    tags: frozenset[str]

class Node:
    def __init__(self, parent=None):
        self.parent = parent
        self.children = []
        if parent is not None:
            parent.children.append(self)

CYCLE = [1, "x"]
CYCLE.append(CYCLE)
LOOP = {"name": "loop", "tags": {"a", "b", "c"}}
LOOP["self"] = [LOOP]
TREE = Node()
Node(TREE)

WORDS = [f"word-{i}" for i in range(40)]
VALUES = [
    set(WORDS),
    frozenset(WORDS),
    {w: i for i, w in enumerate(WORDS)},
    {w: i for i, w in reversed(list(enumerate(WORDS)))},
    {"outer": [set(WORDS[:10]), {"inner": frozenset(WORDS[10:20])}], "n": (1, 2.5, None)},
    {frozenset({"a", "b", "c"}): {"x", "y", "z"}, ("t", 1): {"k": {"v1", "v2", "v3"}}},
    [set(WORDS[i : i + 5]) for i in range(0, 40, 5)],
    ({b"raw", b"bytes", b"set"}, {1.5, 2.5, 3.5}, {"mixed", 1, None, (2, "two")}),
    Tagged("t", frozenset(WORDS[:15])),
    {"when": datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc), "amount": Decimal("1.50")},
    CYCLE,
    LOOP,
    TREE,
]
"""

_SEED_PRINT_CODE = """
import json
from cachier_like.keys import stable_hash
print(json.dumps({
    "hashes": [stable_hash(v) for v in VALUES],
    "set_order": list(set(WORDS)),
}))
"""


def _run_with_seed(code: str, seed: str) -> Any:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    result = run_code(code, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_stable_hash_is_independent_of_pythonhashseed() -> None:
    first = _run_with_seed(_SEED_VALUES_CODE + _SEED_PRINT_CODE, "1")
    second = _run_with_seed(_SEED_VALUES_CODE + _SEED_PRINT_CODE, "2024")
    # The seeds really do reorder sets, so the comparison below means something.
    assert first["set_order"] != second["set_order"]
    assert first["hashes"] == second["hashes"]

    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(_SEED_VALUES_CODE, namespace)
    in_process = [stable_hash(v) for v in namespace["VALUES"]]
    assert in_process == first["hashes"]
    # Dicts built in opposite insertion orders hash alike.
    assert in_process[2] == in_process[3]
    assert len(set(in_process)) == len(in_process) - 1


def test_plain_object_holding_a_set_is_independent_of_pythonhashseed() -> None:
    # Objects without a dedicated encoder fall back to their pickle; a set inside one
    # must still not make the key depend on the hash seed.
    code = """
import json
from cachier_like.keys import stable_hash

class Holder:
    def __init__(self):
        self.names = {f"name-{i}" for i in range(30)}
        self.label = "plain"

print(json.dumps({"hash": stable_hash(Holder()), "order": list(Holder().names)}))
"""
    first = _run_with_seed(code, "1")
    second = _run_with_seed(code, "2024")
    assert first["order"] != second["order"]
    assert first["hash"] == second["hash"]


# -- content hashing ----------------------------------------------------------------------


def test_sets_frozensets_and_dicts_hash_by_content() -> None:
    words = [f"w{i}" for i in range(25)]
    assert stable_hash(set(words)) == stable_hash(set(reversed(words)))
    assert stable_hash(frozenset(words)) == stable_hash(frozenset(reversed(words)))
    forward = {w: i for i, w in enumerate(words)}
    backward = {w: forward[w] for w in reversed(words)}
    assert list(forward) != list(backward)
    assert stable_hash(forward) == stable_hash(backward)
    assert stable_hash({"a": {1, 2}, "b": {3: "x"}}) == stable_hash({"b": {3: "x"}, "a": {2, 1}})
    assert stable_hash({1, 2, 3}) != stable_hash({1, 2, 4})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert stable_hash({"a": 1}) != stable_hash({"b": 1})
    # Key/value boundaries matter: {"ab": "c"} is not {"a": "bc"}.
    assert stable_hash({"ab": "c"}) != stable_hash({"a": "bc"})
    assert stable_hash({"a": 1, "b": 2}) != stable_hash({"a": 2, "b": 1})


def test_dataclasses_hash_by_value() -> None:
    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    @dataclasses.dataclass(frozen=True)
    class OtherPoint:
        x: int
        y: int

    @dataclasses.dataclass
    class Shape:
        name: str
        points: list[Point]
        tags: set[str]

    assert stable_hash(Point(1, 2)) == stable_hash(Point(1, 2))
    assert stable_hash(Point(1, 2)) != stable_hash(Point(2, 1))
    assert stable_hash(Point(1, 2)) != stable_hash(OtherPoint(1, 2))
    assert stable_hash(Point(1, 2)) != stable_hash((1, 2))
    a = Shape("tri", [Point(0, 0), Point(1, 0)], {"red", "big", "old"})
    b = Shape("tri", [Point(0, 0), Point(1, 0)], {"old", "red", "big"})
    assert stable_hash(a) == stable_hash(b)
    b.points[1].y = 1
    assert stable_hash(a) != stable_hash(b)


def test_datetimes_hash_by_value_and_zone_awareness() -> None:
    naive = datetime(2024, 1, 2, 3, 4, 5, 6)
    aware = naive.replace(tzinfo=timezone.utc)
    assert stable_hash(naive) == stable_hash(datetime(2024, 1, 2, 3, 4, 5, 6))
    assert stable_hash(aware) == stable_hash(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc))
    assert stable_hash(naive) != stable_hash(aware)
    plus_one = naive.replace(tzinfo=timezone(timedelta(hours=1)))
    assert stable_hash(aware) != stable_hash(plus_one)
    assert stable_hash(naive) != stable_hash(naive + timedelta(microseconds=1))
    _all_distinct([date(2024, 1, 2), datetime(2024, 1, 2), "2024-01-02", "2024-01-02T00:00:00"])
    assert stable_hash(timedelta(days=1)) == stable_hash(timedelta(hours=24))
    assert stable_hash(timedelta(days=1)) != stable_hash(timedelta(days=1, microseconds=1))


def test_decimal_uuid_path_and_enum_hash_by_value() -> None:
    class Color(enum.Enum):
        RED = 1
        GREEN = 2

    class Level(enum.IntEnum):
        LOW = 1
        HIGH = 2

    assert stable_hash(Decimal("1.25")) == stable_hash(Decimal("1.25"))
    assert stable_hash(Decimal("1.25")) != stable_hash(Decimal("1.26"))
    _all_distinct([Decimal("1.5"), 1.5, "1.5"])

    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert stable_hash(u) == stable_hash(uuid.UUID(str(u)))
    _all_distinct([u, uuid.UUID(int=u.int + 1), str(u), u.bytes])

    assert stable_hash(Path("a/b/c.txt")) == stable_hash(Path("a") / "b" / "c.txt")
    assert stable_hash(PurePosixPath("/x/y")) == stable_hash(PurePosixPath("/x/y"))
    _all_distinct([Path("a/b"), Path("a/c"), "a/b"])

    assert stable_hash(Color.RED) == stable_hash(Color(1))
    _all_distinct([Color.RED, Color.GREEN, Level.LOW, 1, "RED"])


# -- numpy ------------------------------------------------------------------------------


def test_numpy_arrays_hash_by_dtype_shape_and_content() -> None:
    a = np.arange(12, dtype=np.int64)
    assert stable_hash(a) == stable_hash(np.arange(12, dtype=np.int64))
    changed = a.copy()
    changed[5] = -1
    assert stable_hash(a) != stable_hash(changed)
    # Same bytes, different dtype or shape.
    as_int32 = a.view(np.int32)
    assert as_int32.tobytes() == a.tobytes()
    as_uint64 = a.view(np.uint64)
    _all_distinct([a, as_int32, as_uint64, a.reshape(3, 4), a.reshape(4, 3), a.reshape(12, 1)])
    # Arrays are not confused with their list or bytes.
    _all_distinct([a, a.tolist(), a.tobytes()])
    assert stable_hash(np.zeros(0, np.int64)) != stable_hash(np.zeros((0, 3), np.int64))


def test_numpy_views_hash_like_their_contiguous_copies() -> None:
    grid = np.arange(24, dtype=np.float64).reshape(4, 6)
    strided = grid[:, ::2]
    assert not strided.flags["C_CONTIGUOUS"]
    assert stable_hash(strided) == stable_hash(np.ascontiguousarray(strided))
    transposed = grid.T
    assert stable_hash(transposed) == stable_hash(transposed.copy())
    fortran = np.asfortranarray(grid)
    assert stable_hash(fortran) == stable_hash(grid)
    assert stable_hash(grid[1:3]) == stable_hash(grid[1:3].copy())
    assert stable_hash(strided) != stable_hash(grid[:, 1::2])


def test_numpy_object_arrays_and_scalars() -> None:
    objects = np.array([1, "a", None, (2, 3)], dtype=object)
    same = np.array([1, "a", None, (2, 3)], dtype=object)
    assert stable_hash(objects) == stable_hash(same)
    _all_distinct(
        [
            objects,
            np.array([1, "b", None, (2, 3)], dtype=object),
            np.array([1.0, "a", None, (2, 3)], dtype=object),
            [1, "a", None, (2, 3)],
        ]
    )
    _all_distinct([np.int64(1), np.int32(1), np.float64(1.0), 1, 1.0])
    assert stable_hash(np.float64(2.5)) == stable_hash(np.float64(2.5))


# -- pandas -----------------------------------------------------------------------------


def test_pandas_dataframes_hash_by_content() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    assert stable_hash(frame) == stable_hash(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    assert stable_hash(frame) == stable_hash(frame.copy())
    _all_distinct(
        [
            frame,
            pd.DataFrame({"a": [1, 2, 4], "b": ["x", "y", "z"]}),
            pd.DataFrame({"a": [1, 2, 3], "c": ["x", "y", "z"]}),  # column name
            pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]}),  # dtype
            pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}, index=[10, 11, 12]),  # index
            pd.DataFrame({"b": ["x", "y", "z"], "a": [1, 2, 3]}),  # column order
        ]
    )
    as_int32 = pd.DataFrame({"a": np.array([1, 2, 3], dtype=np.int32), "b": ["x", "y", "z"]})
    assert stable_hash(frame) != stable_hash(as_int32)


def test_pandas_column_labels_keep_their_type() -> None:
    # Column 1 (an int) and column "1" (a string) are different frames
    # (DataFrame.equals says so); so are columns None and "None".
    by_int = pd.DataFrame({1: [1, 2]})
    by_str = pd.DataFrame({"1": [1, 2]})
    assert not by_int.equals(by_str)
    assert stable_hash(by_int) != stable_hash(by_str)
    assert stable_hash(pd.DataFrame({None: [1]})) != stable_hash(pd.DataFrame({"None": [1]}))


def test_pandas_series_and_index_hash_by_content() -> None:
    series = pd.Series([1.5, 2.5], index=["a", "b"], name="s")
    assert stable_hash(series) == stable_hash(pd.Series([1.5, 2.5], index=["a", "b"], name="s"))
    _all_distinct(
        [
            series,
            pd.Series([1.5, 2.75], index=["a", "b"], name="s"),
            pd.Series([1.5, 2.5], index=["a", "c"], name="s"),
            pd.Series([1.5, 2.5], index=["a", "b"], name="t"),
            pd.Series([1.5, 2.5], index=["a", "b"]),
            pd.Series(np.array([1.5, 2.5], dtype=np.float32), index=["a", "b"], name="s"),
            pd.DataFrame({"s": [1.5, 2.5]}, index=["a", "b"]),
        ]
    )
    index = pd.Index([1, 2, 3], name="i")
    assert stable_hash(index) == stable_hash(pd.Index([1, 2, 3], name="i"))
    _all_distinct(
        [
            index,
            pd.Index([1, 2, 4], name="i"),
            pd.Index([1, 2, 3], name="j"),
            pd.Index([1.0, 2.0, 3.0], name="i"),
            pd.Index(["1", "2", "3"], name="i"),
            [1, 2, 3],
        ]
    )


# -- distinctness ---------------------------------------------------------------------------


def test_equal_looking_scalars_and_containers_differ() -> None:
    _all_distinct([1, 1.0, True, "1", b"1", [1], (1,), {1}, frozenset({1}), {1: None}])
    _all_distinct([0, 0.0, False, None, "", b"", [], (), "None", "0"])
    _all_distinct([[1, 2], (1, 2), [(1, 2)], ([1, 2],), [[1], [2]], [1, [2]]])
    _all_distinct([["ab", "c"], ["a", "bc"], ["abc"], "abc"])
    _all_distinct([complex(1, 0), 1.0, (1.0, 0.0)])
    assert stable_hash(None) != stable_hash("None")


def test_bulk_encoded_lists_keep_their_element_types() -> None:
    ints = [1] * 20
    bools = [True] * 20
    floats = [1.0] * 20
    _all_distinct([ints, bools, floats, ["1"] * 20, [b"1"] * 20, tuple(ints), [1] * 21])
    _all_distinct([[0] * 20, [False] * 20, [0.0] * 20, [-0.0] * 20])


def test_long_homogeneous_lists_hash_by_content() -> None:
    for short, long in ((list(range(15)), list(range(16))), (list(range(16)), list(range(64)))):
        assert stable_hash(short) != stable_hash(long)
    built = []
    for i in range(40):
        built.append(i * 3)
    assert stable_hash(built) == stable_hash([i * 3 for i in range(40)])
    assert stable_hash(built) == stable_hash(list(np.arange(0, 120, 3).tolist()))
    changed = built.copy()
    changed[39] += 1
    assert stable_hash(built) != stable_hash(changed)
    changed = built.copy()
    changed[0] = -1
    assert stable_hash(built) != stable_hash(changed)

    floats = [i / 7 for i in range(30)]
    assert stable_hash(floats) == stable_hash([float(i) / 7.0 for i in range(30)])
    assert stable_hash(floats) != stable_hash([*floats[:-1], 1e9])

    words = [f"item-{i}" for i in range(30)]
    assert stable_hash(words) == stable_hash(["item-" + str(i) for i in range(30)])
    assert stable_hash(words) != stable_hash([*words[:29], "item-X"])
    # Element boundaries survive the bulk join, for text and bytes alike.
    _all_distinct([["ab", "c"] * 10, ["a", "bc"] * 10, ["abc", ""] * 10])
    _all_distinct([[b"ab", b"c"] * 10, [b"a", b"bc"] * 10, [b"abc", b""] * 10])
    unicode = ["é", "ü", "日本"] * 8
    assert stable_hash(unicode) == stable_hash(list(("é", "ü", "日" + "本") * 8))
    assert stable_hash(unicode) != stable_hash(["e", "ü", "日本"] * 8)


def test_big_ints_in_long_lists_fall_back_correctly() -> None:
    big = [2**64 + i for i in range(20)]
    assert stable_hash(big) == stable_hash([2**64 + i for i in range(20)])
    _all_distinct(
        [
            big,
            [i for i in range(20)],  # equal modulo 2**64
            [2**64 + i + 1 for i in range(20)],
            [2**63] * 20,  # just past int64
            [2**63 - 1] * 20,  # the largest int64
            [-(2**63)] * 20,  # the smallest int64
            [-(2**63) - 1] * 20,  # just below int64
            [2**63 - 1] * 19 + [2**63],
        ]
    )
    mixed = [1] * 19 + [2**100]
    assert stable_hash(mixed) == stable_hash([1] * 19 + [2**100])
    assert stable_hash(mixed) != stable_hash([1] * 19 + [2**100 + 1])
    assert stable_hash(mixed) != stable_hash([1] * 20)


# -- values that contain themselves, and values with no content -------------------------------


def _cycle(*items: Any) -> list[Any]:
    """``[*items, <itself>]``."""
    values = list(items)
    values.append(values)
    return values


class _Node:
    def __init__(self, parent: _Node | None = None) -> None:
        self.parent = parent
        self.children: list[_Node] = []
        if parent is not None:
            parent.children.append(self)


def _at_depth(depth: int, func: Any) -> Any:
    return func() if depth == 0 else _at_depth(depth - 1, func)


def test_self_referential_containers_hash_by_structure() -> None:
    assert stable_hash(_cycle(1)) == stable_hash(_cycle(1))
    loop: dict[str, Any] = {"n": 1}
    loop["self"] = loop
    again: dict[str, Any] = {"self": None, "n": 1}
    again["self"] = again
    assert stable_hash(loop) == stable_hash(again)
    # Through a tuple, and a reference to an outer container rather than the inner one.
    through: list[Any] = [1]
    through.append((through,))
    outer: list[Any] = [[]]
    outer[0].append(outer)
    inner: list[Any] = [[]]
    inner[0].append(inner[0])
    _all_distinct(
        [_cycle(1), _cycle(2), _cycle(1, 1), [1, [1]], [1, []], loop, through, outer, inner, [[[]]]]
    )


def test_cyclic_objects_hash_the_same_at_any_call_depth() -> None:
    # Objects linked both ways (a tree with parent pointers) must not depend on how
    # deep the caller's stack is when the key is made.
    root = _Node()
    _Node(root)
    expected = stable_hash(root)
    assert {_at_depth(depth, lambda: stable_hash(root)) for depth in (10, 100, 400)} == {expected}
    other = _Node()
    _Node(_Node(other))
    assert stable_hash(other) != expected


def _tree(depth: int, fanout: int, parent: _Node | None = None) -> _Node:
    node = _Node(parent)
    if depth:
        for _ in range(fanout):
            _tree(depth - 1, fanout, node)
    return node


def test_a_tree_with_parent_links_hashes_by_structure() -> None:
    # Each node reaches the others both ways; this used to take exponential time.
    assert stable_hash(_tree(3, 3)) == stable_hash(_tree(3, 3))
    _all_distinct([_tree(3, 3), _tree(3, 2), _tree(2, 3)])


def test_a_nested_function_that_calls_itself_hashes() -> None:
    def make(step: int) -> Any:
        def countdown(n: int) -> int:
            return countdown(n - step) if n > 0 else 0

        return countdown

    assert stable_hash(make(1)) == stable_hash(make(1))
    assert stable_hash(make(1)) != stable_hash(make(2))


class _ReduceRaises:
    def __reduce__(self) -> Any:
        raise RuntimeError("not reducible")


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (lambda: (i for i in range(3)), "generator"),
        (threading.Lock, "_thread.lock"),
        (_ReduceRaises, "_ReduceRaises"),
    ],
    ids=["generator", "lock", "reduce-raises"],
)
def test_values_with_no_content_raise_a_type_error_naming_their_type(
    make: Any, type_name: str
) -> None:
    value = make()
    with pytest.raises(UnhashableValueError) as raised:
        stable_hash([1, {"k": (2, value)}])
    assert isinstance(raised.value, TypeError)
    assert raised.value.value_type is type(value)
    assert type_name in str(raised.value)


# -- stable and memory-local keys -------------------------------------------------------------


def test_stable_keys_are_hex_digests() -> None:
    def f(a: Any, b: Any = None) -> None: ...

    key = KeyMaker(f).key((1,), {})
    assert isinstance(key, str)
    assert len(key) == _HEX_DIGEST_LEN
    int(key, 16)


def test_local_keys_are_tuples_for_collision_free_types() -> None:
    def f(a: Any, b: Any = None, c: Any = "c") -> None: ...

    keys = KeyMaker(f, stable=False)
    assert keys.key((1,), {}) == (1, None, "c")
    assert keys.key((1, b"x", "y"), {}) == (1, b"x", "y")
    assert keys.key((), {"c": "z", "a": 2}) == (2, None, "z")
    for args in [(1.0,), (True,), (1, 2.5), ([1],), ((1,),), (1, None, {"k": 1})]:
        key = keys.key(args, {})
        assert isinstance(key, str), args
        assert len(key) == _HEX_DIGEST_LEN
    assert keys.key((1.0,), {}) == stable_hash((1.0, None, "c"))


def test_local_keys_never_share_between_one_one_point_zero_and_true() -> None:
    def f(a: Any) -> None: ...

    keys = KeyMaker(f, stable=False)
    local = [keys.key((value,), {}) for value in (1, 1.0, True, "1", b"1", 0, 0.0, False, None)]
    assert len(set(local)) == len(local)

    calls: list[object] = []

    @cached(backend="memory")
    def g(x: object) -> str:
        calls.append(x)
        return type(x).__name__

    assert [g(1), g(1.0), g(True)] == ["int", "float", "bool"]
    assert [g(True), g(1.0), g(1)] == ["bool", "float", "int"]
    assert len(calls) == 3


def test_local_keys_digest_long_str_and_bytes_instead_of_holding_them() -> None:
    def f(a: Any, b: Any = 0) -> None: ...

    keys = KeyMaker(f, stable=False)
    limit = LOCAL_KEY_MAX_LEN
    short = b"s" * limit
    assert keys.key((short,), {}) == (short, 0)  # at the limit: the value itself
    big = b"a" * (limit + 1)
    refs = sys.getrefcount(big)
    key = keys.key((big,), {})
    assert sys.getrefcount(big) == refs  # the key does not refer to the argument
    assert all(part is not big for part in key)  # type: ignore[attr-defined]
    assert keys.key((b"a" * (limit + 1),), {}) == key  # an equal copy: the same key
    candidates = [
        (b"a" * (limit + 1),),
        ("a" * (limit + 1),),
        (b"a" * (limit + 2),),
        (b"a" * limit + b"b",),
        (b"a" * (limit + 1), 1),
        ("é" * (limit + 1),),
        (short,),
        ("s" * limit,),
        (b"a" * (limit + 1), "a" * (limit + 1)),
        ("a" * (limit + 1), b"a" * (limit + 1)),
        (b"a" * (limit + 1), 1.5),  # a non-local type too: the stable digest
    ]
    local = [keys.key(args, {}) for args in candidates]
    assert len(set(local)) == len(candidates)
    hashable: Hashable = key
    assert hash(hashable) == hash(keys.key((b"a" * (limit + 1),), {}))


# -- custom hash_func --------------------------------------------------------------------------


def test_hash_func_receives_bound_named_arguments_with_defaults() -> None:
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        seen.append((args, dict(kwargs)))
        return "fixed"

    def f(a: int, b: int = 2, *rest: int, c: int = 3, **extra: int) -> None: ...

    keys = KeyMaker(f, hash_func=record)
    assert keys.key((1,), {}) == "fixed"
    keys.key((), {"a": 1})
    keys.key((1, 5, 6, 7), {"d": 4, "c": 9})
    assert seen == [
        ((), {"a": 1, "b": 2, "c": 3}),
        ((), {"a": 1, "b": 2, "c": 3}),
        ((6, 7), {"a": 1, "b": 5, "c": 9, "d": 4}),
    ]


def test_hash_func_is_used_by_the_decorator() -> None:
    calls: list[int] = []
    seen: list[dict[str, Any]] = []

    def by_last_digit(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        seen.append(dict(kwargs))
        return ("last-digit", kwargs["x"] % 10, kwargs["scale"])

    @cached(backend="memory", hash_func=by_last_digit)
    def f(x: int, scale: int = 1) -> int:
        calls.append(x)
        return x * scale

    assert f(1) == 1
    assert f(11) == 1  # shares the entry of f(1)
    assert f(x=21, scale=1) == 1
    assert calls == [1]
    assert f(1, scale=2) == 2
    assert f(2) == 2
    assert calls == [1, 1, 2]
    assert seen[0] == {"x": 1, "scale": 1}
    entry = f.cached_entry(31)
    assert entry is not None
    assert entry.value == 1


def test_hash_func_sees_positional_only_arguments_shadowed_by_kwargs() -> None:
    # f(1, a=2) and f(3, a=2) are different calls: the positional-only ``a`` and the
    # ``a`` collected by **kwargs are two values, and hash_func must see both.
    calls: list[tuple[int, dict[str, int]]] = []

    def everything(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        return stable_hash((args, kwargs))

    @cached(backend="memory", hash_func=everything)
    def f(a: int, /, **kwargs: int) -> int:
        calls.append((a, kwargs))
        return a + 100 * kwargs.get("a", 0)

    assert f(1, a=2) == 201
    assert f(3, a=2) == 203
    assert calls == [(1, {"a": 2}), (3, {"a": 2})]


# -- function identity ------------------------------------------------------------------------


@pytest.mark.pickle
def test_nested_functions_with_one_name_do_not_share_entries(cache_dir: Path) -> None:
    counts: dict[str, int] = {}

    def scope_a() -> CachedFunction[[int], str]:
        @cached(cache_dir=cache_dir)
        def f(x: int) -> str:
            counts["a"] = counts.get("a", 0) + 1
            return f"a{x}"

        return f

    def scope_b() -> CachedFunction[[int], str]:
        @cached(cache_dir=cache_dir)
        def f(x: int) -> str:
            counts["b"] = counts.get("b", 0) + 1
            return f"b{x}"

        return f

    class First:
        @staticmethod
        @cached(cache_dir=cache_dir)
        def f(x: int) -> str:
            counts["First"] = counts.get("First", 0) + 1
            return f"First{x}"

    class Second:
        @staticmethod
        @cached(cache_dir=cache_dir)
        def f(x: int) -> str:
            counts["Second"] = counts.get("Second", 0) + 1
            return f"Second{x}"

    functions: dict[str, CachedFunction[[int], str]] = {
        "a": scope_a(),
        "b": scope_b(),
        "First": First.f,
        "Second": Second.f,
    }
    for _ in range(2):
        for name, func in functions.items():
            assert func(1) == f"{name}1"
    assert counts == {"a": 1, "b": 1, "First": 1, "Second": 1}
    namespaces = {func.namespace for func in functions.values()}
    assert len(namespaces) == 4
    assert all(".<locals>." in ns and ns.endswith(".f") for ns in namespaces)
    # A fresh decoration of the same code finds the entries on disk again.
    assert scope_a()(1) == "a1"
    assert counts["a"] == 1
