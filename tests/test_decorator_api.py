"""The decorator's public API: spellings, methods, metadata, typing, options and imports."""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cachier_like
from cachier_like import (
    CachedFunction,
    ConfigurationError,
    MissingDriverError,
    cached,
    cachier,
    get_default_params,
    set_default_params,
)
from cachier_like import cores as cores_module
from cachier_like.default_dir import DEFAULT_CACHE_DIR
from cachier_like.option_table import DECORATOR_NAMES, OPTION, OPTIONS, markdown_table

REPO_ROOT = Path(__file__).resolve().parent.parent
TYPING_SAMPLE = Path(__file__).resolve().parent / "typing_sample.py"


# -- spellings ------------------------------------------------------------------------------


def test_cachier_is_an_alias_of_cached() -> None:
    assert cachier is cached
    assert cachier_like.cachier is cachier_like.cached


def test_bare_decorator_and_empty_call_both_work(cache_dir: Path) -> None:
    set_default_params(cache_dir=cache_dir)
    calls: list[str] = []

    @cached
    def bare(x: int) -> int:
        calls.append("bare")
        return x + 1

    @cached()
    def called(x: int) -> int:
        calls.append("called")
        return x + 2

    @cachier
    def alias(x: int) -> int:
        calls.append("alias")
        return x + 3

    for _ in range(2):
        assert bare(1) == 2
        assert called(1) == 3
        assert alias(1) == 4
    assert calls == ["bare", "called", "alias"]
    for func in (bare, called, alias):
        assert isinstance(func, CachedFunction)
        assert func.cache_dpath() == str(cache_dir)
        assert func.core.directory.parent == cache_dir


# -- methods --------------------------------------------------------------------------------


def test_instance_method_needs_allow_non_static_methods() -> None:
    with pytest.raises(TypeError, match="allow_non_static_methods"):

        class Service:
            @cached(backend="memory")
            def lookup(self, x: int) -> int:
                return x


def test_instance_method_with_allow_non_static_methods_shares_across_instances() -> None:
    calls: list[tuple[int, int]] = []

    class Service:
        def __init__(self, base: int) -> None:
            self.base = base

        @cached(backend="memory", allow_non_static_methods=True)
        def lookup(self, x: int) -> int:
            calls.append((self.base, x))
            return self.base + x

    first, second = Service(100), Service(200)
    assert first.lookup(1) == 101
    assert first.lookup(x=1) == 101
    assert calls == [(100, 1)]
    # As in cachier, ``self`` is left out of the key, so every instance shares one
    # cache: the second instance is served the first instance's result.
    assert second.lookup(1) == 101
    assert calls == [(100, 1)]
    assert second.lookup(2) == 202
    assert calls == [(100, 1), (200, 2)]


def test_allow_non_static_methods_as_a_global_default() -> None:
    set_default_params(allow_non_static_methods=True)

    class Service:
        @cached(backend="memory")
        def lookup(self, x: int) -> int:
            return x * 2

    assert Service().lookup(4) == 8


def test_staticmethod_and_classmethod_below_the_decorator_cache() -> None:
    calls: list[str] = []

    class Tools:
        @staticmethod
        @cached(backend="memory")
        def double(x: int) -> int:
            calls.append(f"double{x}")
            return 2 * x

        @classmethod
        @cached(backend="memory")
        def tag(cls, x: int) -> str:
            calls.append(f"{cls.__name__}.tag{x}")
            return f"{cls.__name__}:{x}"

    class MoreTools(Tools):
        pass

    assert Tools.double(3) == 6
    assert Tools.double(3) == 6
    assert Tools().double(3) == 6
    assert Tools.tag(1) == "Tools:1"
    assert Tools().tag(1) == "Tools:1"
    assert calls == ["double3", "Tools.tag1"]
    # The class is an argument of a classmethod, so a subclass has its own entries.
    assert MoreTools.tag(1) == "MoreTools:1"
    assert MoreTools.tag(1) == "MoreTools:1"
    assert calls == ["double3", "Tools.tag1", "MoreTools.tag1"]


def test_cached_on_top_of_staticmethod_or_classmethod_raises() -> None:
    with pytest.raises(TypeError, match="staticmethod"):

        class WithStatic:
            @cached(backend="memory")
            @staticmethod
            def f(x: int) -> int:
                return x

    def plain(x: int) -> int:
        return x

    def takes_class(cls: type[object], x: int) -> int:
        return x

    with pytest.raises(TypeError, match="staticmethod"):
        cached(staticmethod(plain))
    with pytest.raises(TypeError, match="classmethod"):
        # mypy already rejects this (a classmethod object is not callable).
        cached(backend="memory")(classmethod(takes_class))  # type: ignore[arg-type]


# -- one decorator object, many functions -------------------------------------------------------


def test_one_decorator_object_gives_independent_caches() -> None:
    decorator = cached(backend="memory")
    calls: list[str] = []

    @decorator
    def first(x: int) -> str:
        calls.append("first")
        return f"first{x}"

    @decorator
    def second(x: int) -> str:
        calls.append("second")
        return f"second{x}"

    assert first(1) == "first1"
    assert second(1) == "second1"
    assert first(1) == "first1"
    assert second(1) == "second1"
    assert calls == ["first", "second"]
    assert first.namespace != second.namespace
    assert first.core is not second.core
    assert first.clear_cache() == 1
    assert first.cached_entry(1) is None
    entry = second.cached_entry(1)
    assert entry is not None
    assert entry.value == "second1"


# -- metadata -------------------------------------------------------------------------------


def test_signature_name_doc_and_wrapped_are_preserved() -> None:
    def original(a: int, /, b: str = "x", *args: int, c: float = 1.0, **kw: Any) -> str:
        """Join the arguments."""
        return f"{a}{b}{args}{c}{kw}"

    wrapped = cached(backend="memory")(original)
    assert inspect.signature(wrapped) == inspect.signature(original)
    # CachedFunction does not declare __name__/__qualname__ for type checkers.
    assert getattr(wrapped, "__name__", None) == "original"
    assert getattr(wrapped, "__qualname__", None) == original.__qualname__
    assert wrapped.__module__ == original.__module__
    assert wrapped.__doc__ == "Join the arguments."
    assert wrapped.__wrapped__ is original
    assert wrapped(1) == original(1)


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["memory", "pickle"])
async def test_async_function_is_kept_and_awaitable(backend: str, cache_dir: Path) -> None:
    calls: list[int] = []

    async def original(x: int) -> int:
        calls.append(x)
        return x * x

    wrapped = cached(backend=backend, cache_dir=cache_dir)(original)
    assert inspect.iscoroutinefunction(wrapped.__wrapped__)
    assert wrapped.__wrapped__ is original
    if sys.version_info >= (3, 12):
        assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped(3) == 9
    assert await wrapped(3) == 9
    assert await wrapped(x=3) == 9
    assert calls == [3]
    assert await wrapped(4) == 16
    assert calls == [3, 4]
    entry = wrapped.cached_entry(3)
    assert entry is not None
    assert entry.value == 9


# -- typing -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per worker, shared by the typing tests."""
    return tmp_path_factory.mktemp("mypy-cache")


def _run_mypy(target: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    # Run from the repository root so mypy finds the package source (the editable
    # install's import hook is invisible to mypy). Errors inside cachier_like are
    # silenced, as they are for an installed package: these tests check what a
    # user's code sees of the public API; mypy over the package is a job of its own.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--cache-dir",
            str(cache),
            "--show-error-codes",
            str(target),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_typing_sample_passes_mypy_strict(mypy_cache: Path) -> None:
    result = _run_mypy(TYPING_SAMPLE, mypy_cache)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Success: no issues found" in output
    revealed = re.findall(r'Revealed type is "([^"]+)"', output)
    assert revealed[:4] == ["float", "float", "float", "cachier_like.entry.Entry | None"]


def test_mypy_reports_a_wrong_argument_type(tmp_path: Path, mypy_cache: Path) -> None:
    snippet = tmp_path / "wrong_arg.py"
    snippet.write_text(
        "from cachier_like import cached\n"
        "\n"
        "\n"
        '@cached(backend="memory")\n'
        "def square(x: int) -> int:\n"
        "    return x * x\n"
        "\n"
        "\n"
        'square("three")\n'
        'square.refresh(x="three")\n',
        encoding="utf-8",
    )
    result = _run_mypy(snippet, mypy_cache)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if ": error:" in line]
    assert len(errors) == 2, output
    assert all(line.endswith("[arg-type]") for line in errors), output
    assert "wrong_arg.py:9:" in errors[0]
    assert "wrong_arg.py:10:" in errors[1]


# -- options and defaults ------------------------------------------------------------------------


def test_set_default_params_warns_on_unknown_names_and_applies_the_rest() -> None:
    # A migrating program must not crash on a setting cachier took: warn, with the fix.
    with pytest.warns(UserWarning) as caught:
        set_default_params(stale_afterr=timedelta(hours=1))
    message = str(caught[0].message)
    assert "stale_afterr" in message
    for name in ("stale_after", "backend", "allow_none", "cache_dir", "next_time"):
        assert name in message
    with pytest.warns(UserWarning, match="bogus"):
        set_default_params(allow_none=True, bogus=1)
    assert get_default_params()["allow_none"] is True
    assert "bogus" not in get_default_params()
    assert not hasattr(get_default_params(), "bogus")
    assert "stale_afterr" not in vars(get_default_params())


def test_get_default_params_is_read_only() -> None:
    params = get_default_params()
    assert params["backend"] == "pickle"
    with pytest.raises(TypeError):
        params["backend"] = "memory"  # type: ignore[index]
    with pytest.raises(TypeError):
        del params["backend"]  # type: ignore[attr-defined]
    assert get_default_params()["backend"] == "pickle"
    set_default_params(backend="memory")
    assert get_default_params()["backend"] == "memory"


def test_the_built_in_defaults() -> None:
    assert dict(get_default_params()) == {
        "backend": "pickle",
        "hash_func": None,
        "cache_dir": DEFAULT_CACHE_DIR,
        "file_mode": 0o600,
        "stale_after": None,
        "next_time": False,
        "pickle_reload": True,
        "separate_files": False,
        "wait_for_calc_timeout": 0,
        "allow_none": False,
        "entry_size_limit": None,
        "cleanup_stale": False,
        "cleanup_interval": timedelta(days=1),
        "allow_non_static_methods": False,
        "raise_on_error": False,
        "lease": 10.0,
        "caching_enabled": True,
        "refresh_exit_timeout": 30.0,
        "max_entries": None,
        "track_code": False,
        "on_evict": None,
        "secret": None,
        "redis_client": None,
        "key_prefix": None,
        "server_ttl": None,
        "mongetter": None,
        "sql_engine": None,
        "table_name": None,
        "backend_options": None,
    }


@pytest.mark.parametrize("name", ["serializer", "namespace"])
def test_decorator_only_parameters_have_no_global_default(name: str) -> None:
    with pytest.warns(UserWarning, match=rf"{name}: set per function, in @cached"):
        set_default_params(**{name: None})
    assert name not in get_default_params()


def test_refresh_exit_timeout_is_not_a_decorator_parameter() -> None:
    with pytest.raises(TypeError, match="refresh_exit_timeout"):
        cached(refresh_exit_timeout=5)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "redis", "table_name": "t"}, "table_name do not apply to backend 'redis'"),
        ({"max_entries": 3, "backend": "pickle"}, "(it takes: cache_dir, file_mode)"),
        ({"backend_options": ["x"]}, "backend_options must be a mapping"),
        ({"lease": 0}, "lease must be a positive duration"),
        ({"lease": -1}, "lease must not be negative"),
        ({"allow_none": 1}, "allow_none must be True or False"),
        ({"caching_enabled": "no"}, "caching_enabled must be True or False"),
        ({"cleanup_interval": "1d"}, "cleanup_interval must be a timedelta"),
        ({"hash_func": 3}, "hash_func must be callable"),
        ({"on_evict": "close"}, "on_evict must be a callable taking the value"),
        ({"on_evict": print, "backend": "pickle"}, "on_evict do not apply to backend 'pickle'"),
        ({"entry_size_limit": "ten"}, "entry_size_limit must be an int or a string"),
    ],
    ids=repr,
)
def test_configuration_errors_name_the_option(options: dict[str, Any], message: str) -> None:
    explicit = dict(options)
    enabled = explicit.pop("caching_enabled", None)
    if enabled is not None:  # a global-only setting
        set_default_params(caching_enabled=enabled)
    with pytest.raises(ConfigurationError) as info:

        @cached(**{"backend": "memory", **explicit})
        def f(x: int) -> int:
            return x

    assert message in str(info.value)


def test_cache_dir_is_accepted_and_ignored_by_other_backends(cache_dir: Path) -> None:
    @cached(backend="memory", cache_dir=cache_dir)
    def f(x: int) -> int:
        return x

    assert f(1) == 1
    assert not any(cache_dir.iterdir())


def test_decorator_only_parameters_are_accepted(cache_dir: Path) -> None:
    from cachier_like import PickleSerializer

    @cached(
        backend="memory",
        namespace="tests.decorator_only",
        serializer=PickleSerializer(),
        pickle_reload=False,
        separate_files=True,
    )
    def f(x: int) -> int:
        return x

    assert f(2) == 2
    assert f.namespace == "tests.decorator_only"


@pytest.mark.parametrize(
    "options",
    [
        {"stale_after": -1},
        {"stale_after": timedelta(seconds=-1)},
        {"stale_after": "1h"},
        {"wait_for_calc_timeout": -0.5},
        {"lease": 0},
        {"entry_size_limit": -1},
        {"entry_size_limit": True},
        {"next_time": "yes"},
        {"backend": 3},
        {"hash_func": "not callable"},
    ],
    ids=repr,
)
def test_invalid_options_raise_at_decoration_time(options: dict[str, Any]) -> None:
    calls: list[int] = []
    with pytest.raises(ConfigurationError):

        @cached(**{"backend": "memory", **options})
        def f(x: int) -> int:
            calls.append(x)
            return x

    assert calls == []


@pytest.mark.parametrize(
    "limit", ["10XB", "XB", "KB", "ten MB", "-1MB", "", "1.2.3KB", "10K_B", "infKB", "nanKB"]
)
def test_bad_entry_size_limit_strings_raise_configuration_error(limit: str) -> None:
    with pytest.raises(ConfigurationError, match="entry_size_limit"):

        @cached(backend="memory", entry_size_limit=limit)
        def f(x: int) -> int:
            return x


@pytest.mark.parametrize("limit", ["10KB", "1.5 MB", "200mb", "1GB", "512", "7B", 1024])
def test_good_entry_size_limits_are_accepted(limit: str | int) -> None:
    @cached(backend="memory", entry_size_limit=limit)
    def f(x: int) -> int:
        return x

    assert f(1) == 1


def test_unknown_backend_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as info:

        @cached(backend="casandra")
        def f(x: int) -> int:
            return x

    message = str(info.value)
    assert "casandra" in message
    for name in cores_module.BACKENDS:
        assert repr(name) in message
    assert "'memory'" in message
    assert "'pickle'" in message


def test_unknown_backend_from_the_global_default() -> None:
    set_default_params(backend="nonexistent")
    with pytest.raises(ConfigurationError, match="valid backends"):

        @cached
        def f(x: int) -> int:
            return x


def test_missing_driver_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = "cachier_like_test_no_such_driver_module"
    monkeypatch.setitem(
        cores_module.BACKENDS,
        "fakedb",
        ("cachier_like.cores.memory", "MemoryCore", "fakedb", driver),
    )
    with pytest.raises(MissingDriverError) as info:
        cores_module.core_class("fakedb")
    assert isinstance(info.value, ImportError)
    message = str(info.value)
    assert "pip install" in message
    assert "cachier_like[fakedb]" in message
    assert driver in message
    # Caught as a plain ImportError too, and raised when decorating.
    with pytest.raises(ImportError, match=r"cachier_like\[fakedb\]"):

        @cached(backend="fakedb")
        def f(x: int) -> int:
            return x


def test_registered_backend_with_an_installed_driver_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        cores_module.BACKENDS,
        "fakedb",
        ("cachier_like.cores.memory", "MemoryCore", "fakedb", "json"),
    )
    assert cores_module.core_class("fakedb").__name__ == "MemoryCore"


# -- lazy imports ---------------------------------------------------------------------------------

_LAZY_IMPORT_CODE = """
import json
import sys

import cachier_like
from cachier_like import cached

@cached(backend="memory")
def in_memory(x):
    return [x, {"k": {x}}]

@cached(backend="pickle", cache_dir=sys.argv[1])
def on_disk(x):
    return (x, 2.5)

for _ in range(2):
    in_memory(1)
    on_disk(1)
    on_disk(x=1.5)
heavy = ("redis", "pymongo", "sqlalchemy", "numpy", "pandas", "mongomock")
print(json.dumps(sorted(
    name for name in sys.modules if name.split(".")[0] in heavy
)))
"""


def test_import_and_decorate_do_not_import_drivers_or_numpy(cache_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _LAZY_IMPORT_CODE, str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert any(cache_dir.iterdir())


# -- the option table ------------------------------------------------------------------------


def _cached_signatures() -> list[ast.FunctionDef]:
    tree = ast.parse((REPO_ROOT / "cachier_like" / "decorator.py").read_text(encoding="utf-8"))
    return [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "cached" and node.args.kwonlyargs
    ]


def test_cached_keywords_are_the_option_tables_decorator_names() -> None:
    # The typed overload and the implementation: same names as the table, same hints.
    overload, implementation = _cached_signatures()
    for signature in (overload, implementation):
        assert sorted(arg.arg for arg in signature.args.kwonlyargs) == sorted(DECORATOR_NAMES)
    hints = [
        [ast.unparse(arg.annotation) for arg in s.args.kwonlyargs if arg.annotation]
        for s in (overload, implementation)
    ]
    assert hints[0] == hints[1]
    assert len(hints[0]) == len(DECORATOR_NAMES)
    assert "refresh_exit_timeout" not in DECORATOR_NAMES
    assert "caching_enabled" not in DECORATOR_NAMES


def test_the_docs_tables_match_the_option_table() -> None:
    page = (REPO_ROOT / "docs" / "decorator.md").read_text(encoding="utf-8")
    for kind in ("decorator", "global"):
        table = markdown_table(kind)
        assert table in page, f"paste this table into docs/decorator.md:\n{table}"
    documented = re.findall(r"^\| `(\w+)` \|", page, flags=re.MULTILINE)
    decorator_table = [name for name in documented if name in OPTION]
    assert sorted(decorator_table) == sorted(OPTION)


def test_backend_options_and_defaults_come_from_the_option_table() -> None:
    assert set(cores_module.BACKEND_OPTIONS) == set(cores_module.BACKENDS)
    for option in OPTIONS:
        for backend in option.backends or ():
            assert backend in cores_module.BACKENDS, option
            assert option.name in cores_module.BACKEND_OPTIONS[backend]
    assert cores_module.BACKEND_OPTIONS["memory"] == ("max_entries", "on_evict")
    assert cores_module.BACKEND_OPTIONS["pickle"] == ("cache_dir", "file_mode")
    assert cores_module.BACKEND_OPTIONS["redis"] == ("redis_client", "key_prefix", "server_ttl")
    assert cores_module.BACKEND_OPTIONS["sql"] == ("sql_engine", "table_name")
    assert set(cores_module.BACKEND_OPTIONS["mongo"]) == {"mongetter", "server_ttl"}
    assert dict(get_default_params()) == {
        o.name: o.default for o in OPTIONS if o.scope != "decorator"
    }
