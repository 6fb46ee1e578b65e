"""Parsers for option values: each checks one value and returns it normalised.

Every parser takes ``(value, name)`` and raises :class:`ConfigurationError` naming the
option, so the option table (:mod:`cachier_like.option_table`) can pair any option with
any parser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from .errors import ConfigurationError

Parser = Callable[[Any, str], Any]
"""``parser(value, option_name) -> normalised value``; raises ``ConfigurationError``."""


def signed_seconds(value: timedelta | float | int | None, name: str) -> float | None:
    """A duration in seconds that may be negative; ``None`` and ``timedelta.max`` are None.

    Example:
        >>> signed_seconds(timedelta(seconds=-2), "max_age")
        -2.0
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        if value == timedelta.max:
            return None
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigurationError(
        f"{name} must be a timedelta or a number of seconds, not {type(value).__name__}"
    )


def as_seconds(value: timedelta | float | int | None, name: str) -> float | None:
    """Normalise a duration option to seconds; ``None`` stays ``None``.

    Example:
        >>> as_seconds(timedelta(minutes=1), "stale_after")
        60.0
    """
    seconds = signed_seconds(value, name)
    if seconds is not None and seconds < 0:
        raise ConfigurationError(f"{name} must not be negative (got {value!r})")
    return seconds


def positive_seconds(value: timedelta | float | int | None, name: str) -> float:
    """A duration that must be more than zero.

    Example:
        >>> positive_seconds(timedelta(seconds=10), "lease")
        10.0
    """
    seconds = as_seconds(value, name)
    if not seconds:
        raise ConfigurationError(f"{name} must be a positive duration")
    return seconds


def flag(value: Any, name: str) -> bool:
    """A ``bool``, strictly: ``1`` or ``"yes"`` is a mistake, not a truthy value.

    Example:
        >>> flag(True, "allow_none")
        True
    """
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, not {value!r}")
    return value


def text(value: Any, name: str) -> str:
    """A string.

    Example:
        >>> text("memory", "backend")
        'memory'
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, not {value!r}")
    return value


def optional_callable(value: Any, name: str) -> Any:
    """``None`` or something callable.

    Example:
        >>> optional_callable(None, "hash_func") is None
        True
    """
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be callable, not {value!r}")
    return value


def optional_mapping(value: Any, name: str) -> Mapping[str, Any] | None:
    """``None`` or a mapping.

    Example:
        >>> optional_mapping({"database": "db"}, "backend_options")
        {'database': 'db'}
    """
    if value is not None and not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a mapping, not {value!r}")
    return value


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_size(value: int | str | None, name: str = "entry_size_limit") -> int | None:
    """Parse a size: bytes as an int, or a string like ``"10KB"``.

    Example:
        >>> parse_size("10KB"), parse_size("1.5 MB"), parse_size(500)
        (10240, 1572864, 500)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be bytes or a size string, not a bool")
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(f"{name} must not be negative (got {value})")
        return value
    if isinstance(value, str):
        cleaned = value.strip().upper().replace(" ", "")
        for unit in sorted(_SIZE_UNITS, key=len, reverse=True):
            if cleaned.endswith(unit):
                number = cleaned[: -len(unit)]
                try:
                    amount = float(number)
                except ValueError:
                    break
                if not math.isfinite(amount) or amount < 0:
                    break
                return int(amount * _SIZE_UNITS[unit])
        if cleaned.isdigit():
            return int(cleaned)
    raise ConfigurationError(
        f"{name} must be an int or a string like '10KB' or '200MB', not {value!r}"
    )


def version_label(value: str | int | None, name: str = "version") -> str | None:
    """``version=`` as the text it adds to the function's identity; None: no version.

    Example:
        >>> version_label(3), version_label("2024-06 schema")
        ('3', '2024-06 schema')
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigurationError(
            f"{name} must be a str or an int naming the function's version (e.g. 2 or "
            f'"2024-06"), not {type(value).__name__}'
        )
    label = str(value)
    if not label or len(label) > 64 or not label.isprintable():
        raise ConfigurationError(f"{name} must be 1 to 64 printable characters, not {value!r}")
    return label


def parameter_names(value: Any, name: str = "ignore") -> tuple[str, ...]:
    """Names of parameters (``ignore=``): a sequence of str, or one str for one name.

    Whether the function has them is checked as its keys are made (``ArgumentBinder``).

    Example:
        >>> parameter_names(["verbose", "logger"]), parameter_names("verbose")
        (('verbose', 'logger'), ('verbose',))
    """
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else value
    try:
        names = tuple(names)
    except TypeError:
        raise ConfigurationError(
            f"{name} must name parameters: a str or a sequence of str, not {type(value).__name__}"
        ) from None
    if not all(isinstance(item, str) and item for item in names):
        raise ConfigurationError(f"{name} must name parameters by str, not {value!r}")
    return tuple(dict.fromkeys(names))
