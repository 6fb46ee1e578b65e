"""Calls whose arguments cannot be keyed, and calls that do not bind, on every core.

An argument with no content to hash (a generator, a lock, an object whose
``__reduce__`` raises) must not break the call: the function runs, its value is
returned and nothing is stored, with one warning naming the function, the parameter
and the type. A call that does not bind fails exactly as the undecorated call does.
Runs on each core of ``core_options`` (conftest), sync and async.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cachier_like import CachedFunction, UnkeyableArgumentError, cached
from tests.backends.types import CoreOptions
from tests.support import LIBRARY_LOGGER, warnings_in


class ReduceRaises:
    """An object that refuses to be reduced (so also to be pickled)."""

    def __reduce__(self) -> Any:
        raise RuntimeError("not reducible")


def _generator() -> Iterator[int]:
    return (i for i in range(3))


UNKEYABLE = [
    pytest.param(_generator, "generator", id="generator"),
    pytest.param(threading.Lock, "lock", id="lock"),
    pytest.param(ReduceRaises, "ReduceRaises", id="reduce-raises"),
]


def _library_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return warnings_in(caplog, LIBRARY_LOGGER)


def _describer(core_options: CoreOptions, calls: list[int], **options: Any) -> Any:
    @cached(**core_options(**options))
    def describe(n: int, thing: object = None) -> str:
        calls.append(n)
        return f"{n}:{type(thing).__name__}"

    return describe


def _assert_names(message: str, f: CachedFunction[..., Any], where: str, type_name: str) -> None:
    assert f.namespace in message, message
    assert where in message, message
    assert type_name in message, message


# -- unkeyable arguments fail open -------------------------------------------------------


@pytest.mark.parametrize(("make", "type_name"), UNKEYABLE)
def test_unkeyable_argument_is_computed_not_stored_and_warned_once(
    core_options: CoreOptions,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[], object],
    type_name: str,
) -> None:
    calls: list[int] = []
    describe = _describer(core_options, calls)
    expected = f"1:{type(make()).__name__}"
    with caplog.at_level(logging.WARNING, logger=LIBRARY_LOGGER):
        assert describe(1, make()) == expected
        assert describe(1, make()) == expected  # the inline hit path
        assert describe(1, thing=make(), cachier__verbose=True) == expected  # the general path
        assert describe.refresh(1, make()) == expected
    assert calls == [1, 1, 1, 1]  # nothing was stored: each call computed
    warnings = _library_warnings(caplog)
    assert len(warnings) == 1, warnings  # rate-limited per parameter and type
    _assert_names(warnings[0], describe, "'thing'", type_name)
    # Keyable calls of the same function are cached as usual.
    assert describe(2, "x") == describe(2, "x") == "2:str"
    assert calls == [1, 1, 1, 1, 2]


def test_unkeyable_warnings_are_per_parameter_and_type(
    core_options: CoreOptions, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(**core_options())
    def pair(a: object, b: object) -> int:
        calls.append(1)
        return 7

    with caplog.at_level(logging.WARNING, logger=LIBRARY_LOGGER):
        for _ in range(3):
            assert pair(_generator(), 1) == 7
            assert pair(1, _generator()) == 7
            assert pair(threading.Lock(), 1) == 7
    assert len(calls) == 9
    warnings = sorted(_library_warnings(caplog))
    assert len(warnings) == 3, warnings
    assert sum("'a'" in w and "generator" in w for w in warnings) == 1
    assert sum("'b'" in w and "generator" in w for w in warnings) == 1
    assert sum("'a'" in w and "lock" in w for w in warnings) == 1


def test_unkeyable_value_inside_a_container_names_the_parameter_and_the_value_type(
    core_options: CoreOptions, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(**core_options())
    def total(values: object, *extra: object, **options: object) -> int:
        calls.append(1)
        return 3

    with caplog.at_level(logging.WARNING, logger=LIBRARY_LOGGER):
        assert total({"rows": [1, _generator()]}) == 3
        assert total([1], 2, threading.Lock()) == 3
        assert total([1], flag=ReduceRaises()) == 3
    warnings = _library_warnings(caplog)
    assert len(warnings) == 3, warnings
    _assert_names(warnings[0], total, "'values'", "generator")
    _assert_names(warnings[1], total, "'extra'", "lock")
    _assert_names(warnings[2], total, "'options'", "ReduceRaises")


@pytest.mark.parametrize(("make", "type_name"), UNKEYABLE)
def test_unkeyable_argument_raises_a_type_error_with_raise_on_error(
    core_options: CoreOptions, make: Callable[[], object], type_name: str
) -> None:
    calls: list[int] = []
    describe = _describer(core_options, calls, raise_on_error=True)
    with pytest.raises(UnkeyableArgumentError) as raised:
        describe(1, make())
    assert isinstance(raised.value, TypeError)
    _assert_names(str(raised.value), describe, "'thing'", type_name)
    with pytest.raises(UnkeyableArgumentError):
        describe(1, thing=make(), cachier__verbose=True)
    assert calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize(("make", "type_name"), UNKEYABLE)
async def test_async_unkeyable_argument_fails_open_or_raises(
    core_options: CoreOptions,
    caplog: pytest.LogCaptureFixture,
    make: Callable[[], object],
    type_name: str,
) -> None:
    calls: list[int] = []

    @cached(**core_options())
    async def describe(n: int, thing: object) -> str:
        calls.append(n)
        return f"{n}:{type(thing).__name__}"

    with caplog.at_level(logging.WARNING, logger=LIBRARY_LOGGER):
        assert await describe(1, make()) == f"1:{type(make()).__name__}"
        assert await describe(1, make()) == f"1:{type(make()).__name__}"
    assert calls == [1, 1]
    warnings = _library_warnings(caplog)
    assert len(warnings) == 1, warnings
    _assert_names(warnings[0], describe, "'thing'", type_name)

    @cached(**core_options(raise_on_error=True))
    async def strict(n: int, thing: object) -> str:
        calls.append(n)
        return "never"

    with pytest.raises(UnkeyableArgumentError) as raised:
        await strict(2, make())
    _assert_names(str(raised.value), strict, "'thing'", type_name)
    assert calls == [1, 1]


def _user_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    return f"user-{kwargs['user']['id']}"


def test_raising_hash_func_fails_open_or_raises(
    core_options: CoreOptions, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[dict[str, Any]] = []

    @cached(**core_options(hash_func=_user_key))
    def profile(user: dict[str, Any]) -> str:
        calls.append(user)
        return str(user.get("name"))

    with caplog.at_level(logging.WARNING, logger=LIBRARY_LOGGER):
        assert profile({"id": 1, "name": "ann"}) == profile({"id": 1, "name": "ann"}) == "ann"
        assert len(calls) == 1
        assert profile({"name": "bob"}) == "bob"  # no "id": the hash_func raises KeyError
        assert profile({"name": "bob"}) == "bob"
    assert len(calls) == 3
    warnings = _library_warnings(caplog)
    assert len(warnings) == 1, warnings
    _assert_names(warnings[0], profile, "_user_key", "KeyError")

    @cached(**core_options(hash_func=_user_key, raise_on_error=True))
    def strict(user: dict[str, Any]) -> str:
        calls.append(user)
        return "never"

    with pytest.raises(UnkeyableArgumentError) as raised:
        strict({"name": "bob"})
    _assert_names(str(raised.value), strict, "_user_key", "KeyError")
    assert isinstance(raised.value.__cause__, KeyError)


# -- self-referential arguments are keyed ----------------------------------------------


def _self_list(head: int) -> list[Any]:
    items: list[Any] = [head]
    items.append(items)
    return items


def test_self_referential_argument_is_cached(
    core_options: CoreOptions, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @cached(**core_options())
    def head(items: list[Any]) -> int:
        calls.append(items[0])
        return int(items[0])

    with caplog.at_level(logging.WARNING, logger=LIBRARY_LOGGER):
        assert head(_self_list(1)) == 1
        assert head(_self_list(1)) == 1  # an equal structure, built again: a hit
        assert head(_self_list(2)) == 2
    assert calls == [1, 2]
    assert _library_warnings(caplog) == []


# -- calls that do not bind fail as the plain function does -------------------------------

BAD_CALLS = [
    pytest.param(lambda f: f(nope=1), id="unexpected-keyword"),
    pytest.param(lambda f: f(1, 2, 3), id="too-many-positional"),
    pytest.param(lambda f: f(), id="missing-argument"),
    pytest.param(lambda f: f(1, a=1), id="multiple-values"),
]


def _plain_error(call: Callable[[Any], Any], func: Callable[..., Any]) -> str:
    with pytest.raises(TypeError) as plain:
        call(func)
    return str(plain.value)


@pytest.mark.parametrize("call", BAD_CALLS)
@pytest.mark.parametrize("raise_on_error", [False, True])
def test_a_call_that_does_not_bind_raises_the_plain_functions_error(
    core_options: CoreOptions,
    caplog: pytest.LogCaptureFixture,
    call: Callable[[Any], Any],
    raise_on_error: bool,
) -> None:
    calls: list[int] = []

    @cached(**core_options(raise_on_error=raise_on_error))
    def f(a: int, b: int = 2) -> int:
        calls.append(a)
        return a + b

    expected = _plain_error(call, f.__wrapped__)
    assert "f()" in expected
    with caplog.at_level(logging.WARNING, logger=LIBRARY_LOGGER):
        with pytest.raises(TypeError) as cached_call:
            call(f)
        assert str(cached_call.value) == expected
        assert not isinstance(cached_call.value, UnkeyableArgumentError)
        # The general path (a per-call control keyword) fails the same way.
        with pytest.raises(TypeError) as general:
            call(lambda *a, **k: f(*a, cachier__verbose=True, **k))  # type: ignore[call-arg]
        assert str(general.value) == expected
    assert calls == []
    assert _library_warnings(caplog) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("call", BAD_CALLS)
async def test_async_call_that_does_not_bind_raises_the_plain_functions_error(
    core_options: CoreOptions, call: Callable[[Any], Any]
) -> None:
    calls: list[int] = []

    @cached(**core_options())
    async def f(a: int, b: int = 2) -> int:
        calls.append(a)
        return a + b

    expected = _plain_error(call, f.__wrapped__)
    with pytest.raises(TypeError) as cached_call:
        await call(f)
    assert str(cached_call.value) == expected
    assert calls == []
