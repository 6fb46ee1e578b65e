"""Drop-in for cachier: global settings and decorator parameters behave as cachier's do.

Each test is one requirement of the migration path (docs/migrating.md): cachier's
names for the global settings, its ``Params`` dataclass shape, ``None`` meaning "the
global default" for every parameter, and cachier's wording for an invalid core.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import cachier_like
from cachier_like import cached, cachier
from cachier_like.default_dir import CACHE_DIR_ENV, DefaultCacheDir

CACHIER_FIELDS = (
    "caching_enabled",
    "hash_func",
    "backend",
    "mongetter",
    "stale_after",
    "next_time",
    "cache_dir",
    "pickle_reload",
    "separate_files",
    "wait_for_calc_timeout",
    "allow_none",
    "cleanup_stale",
    "cleanup_interval",
    "entry_size_limit",
    "allow_non_static_methods",
)


class Calls:
    """Counts the calls of a function body."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, value: Any = None) -> Any:
        self.n += 1
        return value


# -- the global settings object ------------------------------------------------------


def test_cachiers_names_return_the_one_live_params_dataclass() -> None:
    params = cachier_like.get_global_params()
    assert params is cachier_like.get_default_params()
    assert dataclasses.is_dataclass(params)
    assert hasattr(params, "__dict__"), "a slots dataclass breaks vars()"
    names = [field.name for field in dataclasses.fields(params)]
    assert tuple(names[: len(CACHIER_FIELDS)]) == CACHIER_FIELDS
    assert set(vars(params)) == set(names)
    copy = dataclasses.replace(params, backend="memory")
    assert copy.backend == "memory"
    assert params.backend == "pickle", "replace() must not touch the live defaults"


def test_the_params_fields_are_the_option_tables_defaults() -> None:
    from cachier_like.option_table import DEFAULTS

    params = cachier_like.get_global_params()
    assert {field.name for field in dataclasses.fields(params)} == set(DEFAULTS)
    assert dict(params) == DEFAULTS


def test_assigning_an_attribute_changes_the_default_of_decorated_functions() -> None:
    calls = Calls()

    @cached(backend="memory")
    def nothing(x: int) -> None:
        calls()

    nothing(1)
    nothing(1)
    assert calls.n == 2  # None is not cached by default
    cachier_like.get_global_params().allow_none = True
    nothing(1)
    nothing(1)
    assert calls.n == 3
    assert cachier_like.get_default_params()["allow_none"] is True


def test_assigning_an_unknown_attribute_warns_and_stores_nothing() -> None:
    params = cachier_like.get_global_params()
    with pytest.warns(UserWarning, match="valid names are"):
        params.stale_afterr = 5  # type: ignore[attr-defined]
    assert "stale_afterr" not in vars(params)


def test_setting_every_value_back_changes_nothing(tmp_path: Path) -> None:
    calls = Calls()

    @cached(backend="memory")
    def f(x: int) -> int:
        return int(calls(x))

    f(1)
    before = vars(cachier_like.get_global_params()).copy()
    cachier_like.set_global_params(**vars(cachier_like.get_global_params()))
    assert vars(cachier_like.get_global_params()) == before
    assert isinstance(cachier_like.get_global_params().cache_dir, DefaultCacheDir)
    f(1)
    assert calls.n == 1, "the round trip rebuilt the core and lost its entries"


def test_the_default_cache_dir_is_a_lazy_path_never_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = cachier_like.get_global_params().cache_dir
    assert cache_dir is not None
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "first"))
    assert os.fspath(cache_dir) == str(tmp_path / "first")
    assert Path(cache_dir) == tmp_path / "first"
    # Passed back, it stays "the default": a later change of the variable still applies.
    cachier_like.set_global_params(cache_dir=cache_dir)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "second"))
    assert os.fspath(cachier_like.get_global_params().cache_dir) == str(tmp_path / "second")

    @cached()
    def f(x: int) -> int:
        return x

    f(1)
    assert any((tmp_path / "second").rglob("*.entry")), "not written to the directory in effect"
    assert not (tmp_path / "first").exists()


def test_an_explicit_cache_dir_default_is_reported_as_given(tmp_path: Path) -> None:
    cachier_like.set_global_params(cache_dir=str(tmp_path))
    assert cachier_like.get_global_params().cache_dir == str(tmp_path)

    @cached()
    def f(x: int) -> int:
        return x

    f(1)
    assert any(tmp_path.rglob("*.entry"))


def test_pickle_reload_and_separate_files_are_stored_and_reported() -> None:
    params = cachier_like.get_global_params()
    assert (params.pickle_reload, params.separate_files) == (True, False)  # cachier's
    cachier_like.set_global_params(pickle_reload=False, separate_files=True)
    assert (params.pickle_reload, params.separate_files) == (False, True)
    calls = Calls()

    @cachier(backend="memory", pickle_reload=True, separate_files=False)
    def f(x: int) -> int:
        return int(calls(x))

    assert (f(1), f(1), calls.n) == (1, 1, 1)


# -- None means the global default -----------------------------------------------------


@pytest.mark.parametrize(
    "name",
    # cachier's decorator parameters: its settings but the global switch, and two stores.
    [name for name in CACHIER_FIELDS if name != "caching_enabled"] + ["sql_engine", "redis_client"],
)
def test_an_explicit_none_is_accepted_for_every_cachier_parameter(
    name: str, tmp_path: Path
) -> None:
    cachier_like.set_global_params(cache_dir=str(tmp_path))
    calls = Calls()

    @cachier(**{name: None})
    def f(x: int) -> int:
        return int(calls(x))

    assert (f(2), f(2), calls.n) == (2, 2, 1)


def test_stale_after_none_follows_the_global_default() -> None:
    calls = Calls()

    @cachier(backend="memory", stale_after=None)
    def f(x: int) -> int:
        return int(calls(x))

    f(1)
    f(1)
    assert calls.n == 1
    cachier_like.set_global_params(stale_after=timedelta(0))  # every entry is stale
    f(1)
    assert calls.n == 2, "stale_after=None pinned 'never stale' over the global default"


def test_wait_for_calc_timeout_none_follows_the_global_default() -> None:
    @cachier(backend="memory", wait_for_calc_timeout=None)
    def f(x: int) -> int:
        return x

    cachier_like.set_global_params(wait_for_calc_timeout=7)
    assert f._current().wait_timeout == 7.0


def test_allow_non_static_methods_none_follows_the_global_default() -> None:
    cachier_like.set_global_params(allow_non_static_methods=True)
    calls = Calls()

    class Shop:
        @cachier(backend="memory", allow_non_static_methods=None)
        def price(self, item: str) -> str:
            return str(calls(item))

    assert Shop().price("tea") == "tea"
    assert Shop().price("tea") == "tea"
    assert calls.n == 1


# -- decorator objects and core names ---------------------------------------------------


def test_one_decorator_applied_twice_to_a_function_shares_its_memory_cache() -> None:
    calls = Calls()

    def fn(x: int) -> int:
        return int(calls(x))

    decorator = cachier(backend="memory")
    assert decorator(fn)(1) == 1
    assert decorator(fn)(1) == 1
    assert calls.n == 1
    # Another decorator object is another cache, as in cachier.
    assert cachier(backend="memory")(fn)(1) == 1
    assert calls.n == 2


def test_an_invalid_core_raises_a_value_error_in_cachiers_words() -> None:
    with pytest.raises(ValueError, match="specified an invalid core: nope") as info:

        @cachier(backend="nope")
        def f(x: int) -> int:
            return x

    assert "memory" in str(info.value), "the valid names follow"
