"""Code fingerprints (cachier_like.fingerprint): real module files, read in fresh processes.

Each case writes a small package ``app`` under ``tmp_path``, edits it, and compares the
fingerprints printed by separate interpreters, as two runs of a program would.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cachier_like import code_origin, fingerprint
from cachier_like.fingerprint import code_fingerprint

pytestmark = pytest.mark.memory

ROOT = Path(__file__).resolve().parent.parent

HELPERS = '''\
import json

FACTOR = 2


def scale(x):
    """Scale x."""
    return x * FACTOR + deep(x)


def deep(x):
    return x - 1


def unrelated(x):
    return x * 100


def ping(n):
    return 0 if n <= 0 else pong(n - 1)


def pong(n):
    return 1 if n <= 0 else ping(n - 1)
'''

MAIN = '''\
import functools
import json

import xxhash

from app import helpers
from app.helpers import ping, scale
from cachier_like import cached


def f(x):
    return scale(x) + 1


def via_module(x):
    return helpers.scale(x)


def recursive(n):
    return ping(n)


def uses_json(x):
    return json.dumps(x)


def uses_xxhash(x):
    return xxhash.xxh3_64(x).hexdigest()


class Model:
    """A model."""

    def predict(self, x):
        return self.transform(x) + 1

    def transform(self, x):
        return scale(x)


square = lambda x: scale(x) * x


def _base(a, b):
    return scale(a) + b


part = functools.partial(_base, 1)


def tracing(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)

    return wrapper


@tracing
def traced(x):
    return scale(x)


@cached(backend="memory")
def memoized(x):
    return scale(x)


def make_nested():
    offset = 3

    def nested(x):
        return scale(x) + offset

    return nested


nested = make_nested()
'''

#: Every kind of callable the main module offers, each reaching ``scale``.
REACHING_SCALE = [
    "m.f",
    "m.via_module",
    "m.Model.predict",
    "m.Model().predict",
    "m.square",
    "m.part",
    "m.traced",
    "m.memoized",
    "m.nested",
]


class App:
    """The package ``app`` in a directory, and fingerprints of its code in new processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "app").mkdir()
        (root / "app" / "__init__.py").write_text("")
        self.write("helpers", HELPERS)
        self.write("main", MAIN)

    def write(self, module: str, text: str) -> None:
        (self.root / "app" / f"{module}.py").write_text(text)

    def edit(self, module: str, old: str, new: str) -> None:
        path = self.root / "app" / f"{module}.py"
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))

    def run(self, body: str, seed: int = 0) -> Any:
        """Run ``body`` (with ``m`` the main module) and return the JSON it prints."""
        code = "import json\nimport app.main as m\n" + textwrap.dedent(body)
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(self.root), str(ROOT)]),
            PYTHONHASHSEED=str(seed),
            # An edit within the same second that keeps the size would reuse a stale .pyc.
            PYTHONDONTWRITEBYTECODE="1",
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def fingerprints(self, *exprs: str, seed: int = 0, setup: str = "") -> dict[str, str]:
        return dict(
            self.run(
                setup
                + "\nfrom cachier_like.fingerprint import code_fingerprint\n"
                + f"print(json.dumps({{e: code_fingerprint(eval(e)) for e in {list(exprs)!r}}}))",
                seed,
            )
        )


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path)


def test_the_same_in_every_process_under_any_hash_seed(app: App) -> None:
    exprs = [*REACHING_SCALE, "m.recursive", "m.uses_json", "m.uses_xxhash", "m.Model"]
    runs = [app.fingerprints(*exprs, seed=seed) for seed in (0, 1, 4242)]
    assert runs[0] == runs[1] == runs[2]
    assert all(len(digest) == 16 and int(digest, 16) >= 0 for digest in runs[0].values())
    # Different code, different fingerprints (a partial is its function's code).
    assert len(set(runs[0].values())) == len(exprs) - 1


def test_a_helper_body_edit_changes_every_caller(app: App) -> None:
    before = app.fingerprints(*REACHING_SCALE, "m.uses_json")
    app.edit("helpers", "return x * FACTOR + deep(x)", "return x * FACTOR - deep(x)")
    after = app.fingerprints(*REACHING_SCALE, "m.uses_json")
    assert [e for e in REACHING_SCALE if before[e] == after[e]] == []
    assert before["m.uses_json"] == after["m.uses_json"]


def test_a_body_edit_changes_the_function(app: App) -> None:
    before = app.fingerprints("m.f", "m.via_module")
    app.edit("main", "return scale(x) + 1", "return scale(x) + 2")
    after = app.fingerprints("m.f", "m.via_module")
    assert before["m.f"] != after["m.f"]
    assert before["m.via_module"] == after["m.via_module"]


def test_a_helper_of_a_helper_edit_changes_it(app: App) -> None:
    before = app.fingerprints("m.f")
    app.edit("helpers", "return x - 1", "return x - 2")
    assert app.fingerprints("m.f") != before


def test_comments_docstrings_blank_lines_and_formatting_are_ignored(app: App) -> None:
    exprs = [*REACHING_SCALE, "m.Model"]
    before = app.fingerprints(*exprs)
    app.edit("helpers", '    """Scale x."""\n', '    """Scale x.\n\n    More words.\n    """\n\n')
    app.edit(
        "helpers", "return x * FACTOR + deep(x)", "return (x * FACTOR  # why\n        + deep(x))"
    )
    app.edit("helpers", "def deep(x):\n", "\n\n# A comment.\ndef deep(x):\n    'Docs.'\n")
    app.edit("main", "def f(x):\n", "def f(x):  # the entry point\n    '''Doc.'''\n\n")
    app.edit("main", '    """A model."""\n', '    """A better model."""\n')
    app.edit("main", "def transform(self, x):\n", "def transform(self, x):\n        'Doc.'\n")
    assert app.fingerprints(*exprs) == before


def test_an_unrelated_function_edit_changes_nothing(app: App) -> None:
    before = app.fingerprints("m.f", "m.recursive")
    app.edit("helpers", "return x * 100", "return x * 101")
    app.write("main", MAIN + "\n\ndef added(x):\n    return x\n")
    assert app.fingerprints("m.f", "m.recursive") == before


def test_a_constant_edit_changes_it(app: App) -> None:
    before = app.fingerprints("m.f", "m.uses_json")
    app.edit("helpers", "FACTOR = 2", "FACTOR = 3")
    after = app.fingerprints("m.f", "m.uses_json")
    assert after["m.f"] != before["m.f"]
    assert after["m.uses_json"] == before["m.uses_json"]


def test_mutual_recursion_terminates_and_sees_both_functions(app: App) -> None:
    before = app.fingerprints("m.recursive", "m.f")
    app.edit(
        "helpers", "return 1 if n <= 0 else ping(n - 1)", "return 2 if n <= 0 else ping(n - 1)"
    )
    after = app.fingerprints("m.recursive", "m.f")
    assert after["m.recursive"] != before["m.recursive"]
    assert after["m.f"] == before["m.f"]


def test_library_code_counts_by_name_and_version_only(app: App) -> None:
    read = app.run(
        """
        import linecache
        from cachier_like.fingerprint import code_fingerprint
        files = []
        real = linecache.getlines
        linecache.getlines = lambda name, *rest: files.append(name) or real(name, *rest)
        code_fingerprint(m.uses_json), code_fingerprint(m.uses_xxhash)
        print(json.dumps(sorted(set(files))))
        """
    )
    assert read == [str(app.root / "app" / "main.py")]  # no library source is read

    patch_version = """
        from importlib import metadata
        real_version = metadata.version
        metadata.version = lambda name: "0.0.1" if name == "xxhash" else real_version(name)
        """
    before = app.fingerprints("m.uses_xxhash", "m.uses_json")
    after = app.fingerprints("m.uses_xxhash", "m.uses_json", setup=textwrap.dedent(patch_version))
    assert after["m.uses_xxhash"] != before["m.uses_xxhash"]
    assert after["m.uses_json"] == before["m.uses_json"]


def test_cachier_like_decorator_options_are_not_code(app: App) -> None:
    before = app.fingerprints("m.memoized", "m.traced")
    app.edit("main", '@cached(backend="memory")', '@cached(backend="memory", stale_after=60)')
    assert app.fingerprints("m.memoized", "m.traced") == before


def test_other_decorators_are_code(app: App) -> None:
    before = app.fingerprints("m.traced", "m.memoized")
    app.edit("main", "return fn(*args)", "return fn(*args) * 2")
    after = app.fingerprints("m.traced", "m.memoized")
    assert after["m.traced"] != before["m.traced"]
    assert after["m.memoized"] == before["m.memoized"]


def test_a_method_covers_its_class(app: App) -> None:
    before = app.fingerprints("m.Model.predict")
    app.edit("main", "return scale(x)\n\n\nsquare", "return scale(x) + 0\n\n\nsquare")
    assert app.fingerprints("m.Model.predict") != before


def test_a_closure_value_is_part_of_it(app: App) -> None:
    before = app.fingerprints("m.nested")
    app.edit("main", "offset = 3", "offset = 4")
    assert app.fingerprints("m.nested") != before


NO_SOURCE = """
ns = {{"m": m}}
exec({code!r}, ns)
from cachier_like.fingerprint import code_fingerprint
print(json.dumps([code_fingerprint(ns["h"]), code_fingerprint(ns["k"])]))
"""


def test_a_function_without_source_is_read_from_its_bytecode(app: App) -> None:
    code = "def h(x):\n    'Doc.'\n    return {x} + m.helpers.FACTOR\nk = lambda y: y * {y}\n"
    first = [app.run(NO_SOURCE.format(code=code.format(x="x + 1", y=2)), seed) for seed in (1, 2)]
    assert first[0] == first[1]
    second = app.run(NO_SOURCE.format(code=code.format(x="x + 5", y=3)))
    assert second[0] != first[0][0] and second[1] != first[0][1]


# -- in this process: memoization, threads, builtins ---------------------------------------


def _count_computations(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    computed: list[object] = []
    real = fingerprint._compute

    def counting(target: object) -> str:
        computed.append(target)
        return real(target)

    monkeypatch.setattr(fingerprint, "_compute", counting)
    return computed


def test_computed_once_per_function_and_released_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    computed = _count_computations(monkeypatch)

    def local(x: int) -> int:
        return x + 1

    digest = code_fingerprint(local)
    assert code_fingerprint(local) == digest
    assert code_fingerprint(functools.partial(local, 1)) == digest  # the same function
    assert computed == [local]
    alive = weakref.ref(local)
    computed.clear()
    del local
    gc.collect()
    assert alive() is None


def test_threads_agree_and_compute_it_without_errors() -> None:
    def work(x: int) -> int:
        return json.dumps(x).count("1")

    results: list[str] = []
    start = threading.Barrier(8)

    def compute() -> None:
        start.wait()
        results.append(code_fingerprint(work))

    threads = [threading.Thread(target=compute) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1


@pytest.mark.parametrize("func", [len, json.dumps, print], ids=["len", "json.dumps", "print"])
def test_library_and_builtin_functions_get_one(func: Callable[..., Any]) -> None:
    assert code_fingerprint(func) == code_fingerprint(func)
    assert len(code_fingerprint(func)) == 16


def test_user_code_is_what_lies_outside_the_install_locations(tmp_path: Path) -> None:
    sites, _ = code_origin._install_dirs()
    assert code_origin.library_label("app.main", str(tmp_path / "app" / "main.py")) is None
    in_site = os.path.join(sites[-1], "xxhash", "__init__.py")
    assert code_origin.library_label("xxhash", in_site) == code_origin.distribution_label("xxhash")
    assert code_origin.library_label("json", json.__file__) == code_origin.STDLIB_LABEL
    assert code_origin.library_label("cachier_like.keys", None) is not None  # ours: a library
