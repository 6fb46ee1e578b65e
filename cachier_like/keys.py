"""Argument binding and call keys: the same call gives the same key everywhere.

A call is first *bound*: positional and keyword spellings, keyword order and omitted
defaults all normalise to one tuple of values in signature order. That tuple is then
hashed by :func:`cachier_like.hashing.stable_hash`.

When making a key raises, the wrapper asks :meth:`KeyMaker.failure` which argument
was at fault; that work is done on the failure path only, never per call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from xxhash import xxh3_128_intdigest

from .cores.shared import SAFE_KEY as _SAFE_KEY  # hash_func results used verbatim
from .errors import ConfigurationError
from .hashing import UnhashableValueError, stable_hash, type_label
from .identity import unwrap_partial

__all__ = [
    "LOCAL_KEY_MAX_LEN",
    "ArgumentBinder",
    "HashFunc",
    "KeyFailure",
    "KeyMaker",
    "stable_hash",
]

HashFunc = Callable[[tuple[Any, ...], dict[str, Any]], Hashable]

#: ``str`` and ``bytes`` arguments longer than this are keyed by digest on the memory
#: core, so an entry never keeps a large argument alive. Measured on fresh argument
#: objects: the argument itself is the cheaper key up to ~1 KB, the digest beyond (a
#: hit on 1 MB: ~195 us -> ~16 us); from 256 to 1 KB a hit costs up to ~0.5 us more,
#: the price of an entry holding no more arguments than about its own fixed cost.
LOCAL_KEY_MAX_LEN = 256


class ArgumentBinder:
    """Normalises a call's arguments to one tuple of values in signature order.

    ``skip_first`` drops the first parameter (``self`` of a method) from keys. A
    ``functools.partial`` binds as the function it wraps, its arguments merged into each
    call's, so ``partial(f, 1)()`` binds like ``f(1)``.

    ``ignore`` names parameters left out of the values (``ignore=`` of ``@cached``): a
    ``verbose`` flag or a logger that does not change the result must not split the
    cache. A name the signature does not have is a ``ConfigurationError``.

    Example:
        >>> import functools
        >>> def f(a, b=2, *, c=3): ...
        >>> binder = ArgumentBinder(f)
        >>> binder.bind((1,), {}) == binder.bind((), {"c": 3, "b": 2, "a": 1})
        True
        >>> ArgumentBinder(functools.partial(f, c=4)).bind((1,), {})
        (1, 2, 4)
        >>> ArgumentBinder(f, ignore=("b",)).bind((1, 5), {})
        (1, 3)
    """

    def __init__(
        self, func: Callable[..., Any], skip_first: bool = False, ignore: tuple[str, ...] = ()
    ) -> None:
        base, self._given_args, self._given_kwargs = unwrap_partial(func)
        self._partial = base is not func
        self.signature = inspect.signature(base)
        params = list(self.signature.parameters.values())
        self.skip_first = skip_first and bool(params)
        self.ignore = _checked_ignore(base, params, ignore)
        #: The positions of the values kept in keys (None: all of them).
        self._kept: tuple[int, ...] | None = None
        if self.ignore:
            keyed = params[1:] if self.skip_first else params
            self._kept = tuple(i for i, p in enumerate(keyed) if p.name not in self.ignore)
        kinds = inspect.Parameter
        named_kinds = (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        positional = [p for p in params if p.kind in named_kinds]
        self._n_positional = len(positional)
        self._has_var_positional = any(p.kind is kinds.VAR_POSITIONAL for p in params)
        self._has_var_keyword = any(p.kind is kinds.VAR_KEYWORD for p in params)
        kwonly = [p for p in params if p.kind is kinds.KEYWORD_ONLY]
        kwonly_defaults = tuple(p.default for p in kwonly)
        self._simple = not (self._has_var_positional or self._has_var_keyword) and all(
            d is not inspect.Parameter.empty for d in kwonly_defaults
        )
        # _fill[i]: the values that complete a call given i positional arguments and no
        # keywords, or None when a parameter after i has no default.
        self._fill: list[tuple[Any, ...] | None] = []
        for i in range(self._n_positional + 1):
            rest = positional[i:]
            if all(p.default is not inspect.Parameter.empty for p in rest):
                self._fill.append(tuple(p.default for p in rest) + kwonly_defaults)
            else:
                self._fill.append(None)
        # A call with exactly this many positional arguments and no keywords is already
        # in canonical form (-1: never, e.g. with *args, a skipped ``self`` or a partial).
        canonical = (
            self._simple
            and not self.skip_first
            and not kwonly
            and not self._partial
            and not self.ignore
        )
        self.exact_positional = self._n_positional if canonical else -1
        # The names a caller may pass: for a partial, those its own signature lists.
        callable_params = inspect.signature(func).parameters.values() if self._partial else params
        self.declared_names = frozenset(
            p.name
            for p in callable_params
            if p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)
        )

    def _merge(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A partial's call as a call of its function: its arguments first, keywords under."""
        return self._given_args + args, {**self._given_kwargs, **kwargs}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Return the call's values in signature order, defaults applied, ignored left out."""
        values = self._bind_all(args, kwargs)
        kept = self._kept
        return values if kept is None else tuple(values[i] for i in kept)

    def _bind_all(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if self._partial:
            args, kwargs = self._merge(args, kwargs)
        if not kwargs and self._simple and len(args) <= self._n_positional:
            fill = self._fill[len(args)]
            if fill is not None:
                values = args + fill if fill else args
                return values[1:] if self.skip_first else values
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values_list: list[Any] = []
        for param in self.signature.parameters.values():
            value = bound.arguments[param.name]
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                value = dict(sorted(value.items()))
            values_list.append(value)
        values = tuple(values_list)
        return values[1:] if self.skip_first else values

    def named(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Return the ``(args, kwargs)`` a custom ``hash_func`` receives.

        ``args`` holds the positional-only parameters' values, then any ``*args``;
        ``kwargs`` every other parameter by name (defaults applied), then ``**kwargs``.
        Positional-only values stay positional so a ``**kwargs`` entry of the same
        name cannot overwrite them.
        """
        if self._partial:
            args, kwargs = self._merge(args, kwargs)
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        named: dict[str, Any] = {}
        positional: list[Any] = []
        kinds = inspect.Parameter
        for index, param in enumerate(self.signature.parameters.values()):
            if (index == 0 and self.skip_first) or param.name in self.ignore:
                continue
            value = bound.arguments[param.name]
            if param.kind is kinds.POSITIONAL_ONLY:
                positional.append(value)
            elif param.kind is kinds.VAR_POSITIONAL:
                positional.extend(value)
            elif param.kind is kinds.VAR_KEYWORD:
                named.update(value)
            else:
                named[param.name] = value
        return tuple(positional), named


class KeyMaker:
    """Turns a call into a cache key for one function.

    ``stable=True`` keys are hex digests valid across processes; ``stable=False`` keys
    (the memory core's) may be a plain tuple of the arguments when that is already
    collision-free, which makes an in-process hit much cheaper; ``str`` and ``bytes``
    longer than :data:`LOCAL_KEY_MAX_LEN` are replaced there by their digest.

    Example:
        >>> def add(a, b=0): return a + b
        >>> keys = KeyMaker(add)
        >>> keys.key((1,), {}) == keys.key((), {"b": 0, "a": 1})
        True
        >>> keys.key((1,), {}) == keys.key((1.0,), {})
        False
    """

    def __init__(
        self,
        func: Callable[..., Any],
        hash_func: HashFunc | None = None,
        skip_first: bool = False,
        stable: bool = True,
        ignore: tuple[str, ...] = (),
    ) -> None:
        self.binder = ArgumentBinder(func, skip_first=skip_first, ignore=ignore)
        self.hash_func = hash_func
        self.stable = stable
        #: ``key(args, kwargs)``: the key of the call ``func(*args, **kwargs)``.
        self.key: Callable[[tuple[Any, ...], dict[str, Any]], Hashable] = self._key_function()

    def _key_function(self) -> Callable[[tuple[Any, ...], dict[str, Any]], Hashable]:
        # Built once per function so a call pays for no branch it cannot take.
        binder = self.binder
        hash_func = self.hash_func
        if hash_func is not None:
            stable = self.stable

            def custom_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
                extra, named = binder.named(args, kwargs)
                key = hash_func(extra, named)
                if stable and not (isinstance(key, str) and _SAFE_KEY.fullmatch(key)):
                    return stable_hash(key)  # cores need a file- and URL-safe string
                return key

            return custom_key
        bind = binder.bind
        if self.stable:
            return lambda args, kwargs: stable_hash(bind(args, kwargs))
        exact = binder.exact_positional
        limit = LOCAL_KEY_MAX_LEN

        def local_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
            values = args if not kwargs and len(args) == exact else bind(args, kwargs)
            # int, str, bytes and None never compare equal across types (unlike 1, 1.0
            # and True), so a tuple of them is already a collision-free dict key.
            for value in values:
                cls = type(value)
                if cls is int:
                    continue
                if cls is str or cls is bytes:
                    if len(value) > limit:
                        return _digest_long_values(values)
                elif value is not None:
                    return stable_hash(values)
            return values

        return local_key

    def failure(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], error: Exception
    ) -> KeyFailure | None:
        """Say why ``key(args, kwargs)`` raised ``error``; None if the call does not bind.

        A call that does not bind is the caller's mistake, best reported by Python
        itself: calling the function raises its own ``TypeError``. Slow: for the
        failure path only.

        Example:
            >>> def f(x, n=1): ...
            >>> keys = KeyMaker(f)
            >>> args = ((i for i in "ab"),)
            >>> try:
            ...     keys.key(args, {})
            ... except TypeError as error:
            ...     print(keys.failure(args, {}, error))
            argument 'x' is a generator
            >>> keys.failure((), {"nope": 1}, TypeError()) is None
            True
        """
        binder = self.binder
        try:
            values = binder.bind(args, kwargs)
        except TypeError:
            return None
        if self.hash_func is not None:
            name = getattr(self.hash_func, "__qualname__", repr(self.hash_func))
            return KeyFailure(f"hash_func {name!r} raised {type(error).__name__}", error)
        params = list(binder.signature.parameters.values())[1 if binder.skip_first else 0 :]
        params = [param for param in params if param.name not in binder.ignore]
        for param, value in zip(params, values, strict=True):
            try:
                stable_hash(value)
            except Exception as value_error:
                culprit = _culprit(value_error)
                verb = "is" if culprit == type_label(type(value)) else "holds"
                return KeyFailure(f"argument {param.name!r} {verb} {_a(culprit)}", value_error)
        return KeyFailure(f"the arguments hold {_a(_culprit(error))}", error)


@dataclass(frozen=True)
class KeyFailure:
    """Why a call could not be keyed, for the warning or the error that reports it."""

    summary: str  #: e.g. ``argument 'x' is a generator``
    error: Exception  #: what hashing (or the ``hash_func``) raised

    def __str__(self) -> str:
        return self.summary


def _checked_ignore(
    func: Callable[..., Any], params: list[inspect.Parameter], ignore: tuple[str, ...]
) -> frozenset[str]:
    """``ignore`` as a set of parameter names, or a ``ConfigurationError`` saying which are not."""
    names = [p.name for p in params]
    unknown = [name for name in ignore if name not in names]
    if unknown:
        label = getattr(func, "__qualname__", repr(func))
        raise ConfigurationError(
            f"ignore= names {', '.join(map(repr, unknown))}, which {label}() does not take "
            f"(its parameters: {', '.join(names) or 'none'})"
        )
    return frozenset(ignore)


def _a(type_name: str) -> str:
    return f"{'an' if type_name[:1].lower() in 'aeiou' else 'a'} {type_name}"


def _culprit(error: Exception) -> str:
    if isinstance(error, UnhashableValueError):
        return type_label(error.value_type)
    return type(error).__name__


def _digest_long_values(values: tuple[Any, ...]) -> Hashable:
    """The memory key of ``values`` with each long str or bytes replaced by its digest.

    A replaced value becomes ``(type, 128-bit digest)``: a tuple, which never occurs in a
    plain local key, so the two kinds of key cannot be equal. Anything but int, str,
    bytes and None means the stable digest of the whole call, as usual.
    """
    limit = LOCAL_KEY_MAX_LEN
    key: list[Any] = []
    for value in values:
        cls = type(value)
        if cls is bytes:
            key.append(value if len(value) <= limit else (bytes, xxh3_128_intdigest(value)))
        elif cls is str:
            if len(value) <= limit:
                key.append(value)
            else:
                key.append((str, xxh3_128_intdigest(value.encode("utf-8", "surrogatepass"))))
        elif cls is int or value is None:
            key.append(value)
        else:
            return stable_hash(values)
    return tuple(key)
