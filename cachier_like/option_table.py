"""The one list of options: decorator parameters, global defaults and core options.

Everything else derives from :data:`OPTIONS`: the global defaults
(:mod:`cachier_like.config`), which options each core takes
(:data:`cachier_like.cores.BACKEND_OPTIONS`), how a function's options are checked
(:mod:`cachier_like.options`) and the parameter table of ``docs/decorator.md``
(:func:`markdown_table`, compared with the page by ``tests/test_decorator_api.py``).

A new option is one record here, plus its keyword in ``cached``'s typed signature
(a test checks the two list the same names).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from . import parsers
from .default_dir import DEFAULT_CACHE_DIR
from .errors import ConfigurationError
from .parsers import Parser
from .serialize import DEFAULT_SERIALIZER, serializer_option
from .signing import parse_secret
from .tagging import tags_option

Scope = Literal["both", "decorator", "defaults", "process"]
"""Where an option is set.

- ``both``: a ``@cached`` keyword and a global default (most options);
- ``decorator``: a ``@cached`` keyword only;
- ``defaults``: ``set_default_params`` only, still resolved for each function;
- ``process``: ``set_default_params`` only, a setting of the whole process.
"""


def check_on_evict(value: Any, name: str) -> Any:
    """``None`` or a callable taking one value: what ``on_evict`` accepts.

    Example:
        >>> check_on_evict(print, "on_evict") is print
        True
    """
    if value is not None and not callable(value):
        raise ConfigurationError(
            f"{name} must be a callable taking the value whose entry leaves the cache "
            f"(e.g. {name}=lambda value: value.close()) or None, not {value!r}"
        )
    return value


# How the docs name each core.
_CORE_NAMES = {
    "memory": "memory",
    "pickle": "pickle",
    "redis": "Redis",
    "mongo": "MongoDB",
    "sql": "SQL",
}


@dataclass(frozen=True, slots=True)
class Option:
    """One option and everything the package says about it."""

    name: str
    default: Any
    meaning: str  # one line of Markdown, for the docs table
    parse: Parser | None = None  # None: passed on as given (cores check their own)
    backends: tuple[str, ...] | None = None  # None: every backend; else only these cores take it
    scope: Scope = "both"
    shown: str | None = None  # the default as the docs show it; None: the value's repr
    # Accepted, and ignored, by backends that do not take it (cachier compatibility).
    ignored_elsewhere: bool = False

    def doc_default(self) -> str:
        """The default column of the docs table.

        Example:
            >>> OPTION["backend"].doc_default()
            '`"pickle"`'
        """
        if self.shown is not None:
            return self.shown
        if isinstance(self.default, str):
            return f'`"{self.default}"`'
        return f"`{self.default!r}`"

    def doc_meaning(self) -> str:
        """The meaning column of the docs table, led by the cores that take the option.

        Example:
            >>> OPTION["server_ttl"].doc_meaning().split(":")[0]
            'Redis and MongoDB cores'
        """
        if self.backends is None:
            return self.meaning
        names = [_CORE_NAMES[backend] for backend in self.backends]
        which = " and ".join(names) + (" cores" if len(names) > 1 else " core")
        return f"{which}: {self.meaning}"


OPTIONS: tuple[Option, ...] = (
    Option(
        "backend",
        "pickle",
        'the core: `"pickle"`, `"memory"`, `"redis"`, `"mongo"` or `"sql"`',
        parsers.text,
    ),
    Option(
        "cache_dir",
        DEFAULT_CACHE_DIR,
        "where entries live",
        backends=("pickle",),
        ignored_elsewhere=True,
        shown="`$CACHIER_LIKE_CACHE_DIR`, else the per-user cache dir",
    ),
    Option(
        "file_mode",
        0o600,
        "permissions of entry files, set whatever the umask (directories get the matching "
        "search bits: `0o700` by default)",
        backends=("pickle",),
        shown="`0o600`",
    ),
    Option(
        "stale_after",
        None,
        "a `timedelta` or seconds; older entries are recomputed",
        parsers.as_seconds,
        shown="`None` (never)",
    ),
    Option(
        "next_time",
        False,
        "serve a stale entry at once and refresh it in the background (one refresh per key)",
        parsers.flag,
    ),
    Option(
        "wait_for_calc_timeout",
        0,
        "seconds a caller waits for another caller's calculation "
        "of the same key; `0` waits as long as the calculator holds its claim",
        parsers.as_seconds,
    ),
    Option("allow_none", False, "cache `None` results", parsers.flag),
    Option(
        "entry_size_limit",
        None,
        'bytes (`int`) or a string like `"10KB"`, `"200MB"`; '
        "larger results are returned but not stored",
        parsers.parse_size,
    ),
    Option(
        "cleanup_stale",
        False,
        "purge stale entries in the background, at most once per `cleanup_interval`",
        parsers.flag,
    ),
    Option(
        "cleanup_interval",
        timedelta(days=1),
        "a `timedelta` or seconds",
        parsers.as_seconds,
        shown="1 day",
    ),
    Option(
        "hash_func",
        None,
        "`hash_func(args, kwargs) -> key`; replaces the default key (see [keys](keys.md))",
        parsers.optional_callable,
    ),
    Option(
        "allow_non_static_methods",
        False,
        "allow an instance method (first parameter "
        "`self`); `self` is left out of keys, so every instance shares the cache, as in "
        "cachier",
    ),
    Option(
        "namespace",
        None,
        "the function identity entries are stored under",
        scope="decorator",
        shown="`module.qualname` (scripts: see [keys](keys.md#functions-in-scripts))",
    ),
    Option(
        "version",
        None,
        "a str or int, part of the function's identity: entries of another version are never "
        "served, and `cleanup_stale` and `clear --stale-only` remove them "
        "(see [invalidation](invalidation.md))",
        parsers.version_label,
        scope="decorator",
    ),
    Option(
        "track_code",
        False,
        "a fingerprint of the function's code and of the helpers of your own code it calls "
        "is part of its identity: editing them means recomputing "
        "(see [invalidation](invalidation.md#code-fingerprints-track_codetrue))",
        parsers.flag,
    ),
    Option(
        "ignore",
        None,
        "names of parameters left out of the key (a flag or a logger that does not change "
        "the result)",
        parsers.parameter_names,
        scope="decorator",
    ),
    Option(
        "tags",
        None,
        "tag names, or a callable of the call's arguments returning them; "
        "`invalidate_tags(...)` makes every entry carrying one stale "
        "(see [invalidation](invalidation.md#tags))",
        tags_option,
        scope="decorator",
    ),
    Option("max_entries", None, "LRU bound", backends=("memory",)),
    Option(
        "on_evict",
        None,
        "`on_evict(value)` is called with each value whose entry leaves the store "
        "(evicted by `max_entries`, replaced, deleted, purged or cleared), outside the "
        "core's lock; an exception from it is logged",
        check_on_evict,
        backends=("memory",),
    ),
    Option(
        "serializer",
        DEFAULT_SERIALIZER,
        '`"pickle"`, `"json"` (reading runs no code) or an object with '
        "`dumps(value) -> bytes` and `loads(bytes)`",
        serializer_option,
        scope="decorator",
        shown="pickle, highest protocol",
    ),
    Option(
        "secret",
        None,
        "str or bytes (or a sequence: the first signs, all verify) for HMAC-signed "
        "entries, checked before anything is deserialized",
        parse_secret,
        shown="`$CACHIER_LIKE_SECRET`, else none",
    ),
    Option(
        "raise_on_error",
        False,
        "raise `BackendError` when the core fails, instead of logging and calling through",
        parsers.flag,
    ),
    Option(
        "lease",
        10.0,
        "how long a calculation claim holds without renewal on cores whose "
        "claims are leases (server cores; renewed every third of a lease while the "
        "calculator lives, so a killed calculator's key is free about one lease later); "
        "memory and pickle claims end with their holder instead",
        parsers.positive_seconds,
        shown="10 s",
    ),
    Option(
        "redis_client",
        None,
        "a client, a callable returning one, or a URL ([Redis](cores/redis.md))",
        backends=("redis",),
        shown="`$CACHIER_LIKE_REDIS_URL`",
    ),
    Option(
        "key_prefix", None, "the prefix of every key", backends=("redis",), shown='`"cachier_like"`'
    ),
    Option(
        "server_ttl",
        None,
        "the store deletes entries this long after they are written",
        backends=("redis", "mongo"),
    ),
    Option(
        "mongetter",
        None,
        "a collection, a callable returning one, or a URL ([MongoDB](cores/mongo.md))",
        backends=("mongo",),
        shown="`$CACHIER_LIKE_MONGO_URL`",
    ),
    Option(
        "sql_engine",
        None,
        "an engine, a callable returning one, or a URL ([SQL](cores/sql.md))",
        backends=("sql",),
        shown="`$CACHIER_LIKE_SQL_URL`",
    ),
    Option("table_name", None, "the table", backends=("sql",), shown='`"cachier_like_entries"`'),
    Option(
        "backend_options",
        None,
        "further keyword options for the core, e.g. MongoDB's `database` and `collection`",
        parsers.optional_mapping,
    ),
    Option(
        "pickle_reload",
        True,
        "accepted for cachier compatibility, stored and reported, without effect: "
        "entries are always one file each",
        parsers.flag,
    ),
    Option(
        "separate_files",
        False,
        "accepted for cachier compatibility, stored and reported, without effect: "
        "entries are always one file each",
        parsers.flag,
    ),
    Option(
        "caching_enabled",
        True,
        "`False`: every cached function calls straight through, reading and writing nothing "
        "(set by `disable_caching()` and `enable_caching()`)",
        parsers.flag,
        scope="defaults",
    ),
    # Read at exit by cachier_like.refreshes, never per function.
    Option(
        "refresh_exit_timeout",
        30.0,
        "the longest the interpreter waits at exit for `next_time` refreshes still running, "
        "all together (see [staleness](staleness.md#refreshes-at-exit))",
        parsers.as_seconds,
        scope="process",
        shown="30 s",
    ),
)

OPTION: dict[str, Option] = {option.name: option for option in OPTIONS}
"""The options by name."""

DECORATOR_NAMES: tuple[str, ...] = tuple(
    option.name for option in OPTIONS if option.scope in ("both", "decorator")
)
"""The keyword parameters of ``@cached``, in the table's order."""

DEFAULTS: dict[str, Any] = {
    option.name: option.default for option in OPTIONS if option.scope != "decorator"
}
"""The built-in global defaults (``reset_default_params`` restores these)."""

DECORATOR_DEFAULTS: dict[str, Any] = {
    option.name: option.default for option in OPTIONS if option.scope == "decorator"
}
"""What a decorator-only keyword is when left out."""


def options_of(backend: str) -> tuple[str, ...]:
    """The core options ``backend``'s core is built with (besides ``backend_options``).

    Example:
        >>> options_of("redis")
        ('redis_client', 'key_prefix', 'server_ttl')
    """
    return tuple(o.name for o in OPTIONS if o.backends is not None and backend in o.backends)


def markdown_table(kind: Literal["decorator", "global"]) -> str:
    """A table of ``docs/decorator.md``: the ``@cached`` keywords, or the global-only settings.

    Example:
        >>> print(markdown_table("global").splitlines()[2][:30])
        | `caching_enabled` | `True` |
    """
    if kind == "decorator":
        header, scopes = "parameter", ("both", "decorator")
    else:
        header, scopes = "setting", ("defaults", "process")
    lines = [f"| {header} | default | meaning |", "|---|---|---|"]
    lines += [
        f"| `{o.name}` | {o.doc_default()} | {o.doc_meaning()} |"
        for o in OPTIONS
        if o.scope in scopes
    ]
    return "\n".join(lines)
