"""The store the CLI's store flags name: its backend's options, checked to exist.

A store flag that its backend does not use, a store that does not exist (a missing
cache directory, SQL table, Mongo collection or SQLite file) and a missing URL are
errors, never an empty answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from .cli_targets import Target, TargetError, flag
from .cores import Core, core_class

#: Each store flag (its ``argparse`` dest) and the backends that use it.
STORE_FLAG_BACKENDS: dict[str, tuple[str, ...]] = {
    "cache_dir": ("pickle",),
    "url": ("redis", "sql", "mongo"),
    "prefix": ("redis",),
    "table": ("sql",),
    "db": ("mongo",),
    "collection": ("mongo",),
}
_URL_EXAMPLES = {
    "redis": "redis://HOST:6379/0",
    "sql": "postgresql+psycopg://USER@HOST/DB or sqlite:////path/to/cache.db",
    "mongo": "mongodb://HOST:27017",
}


@dataclass(frozen=True)
class Store:
    """One store named by the CLI's flags: a core class and its options."""

    backend: str
    cls: type[Core]
    options: dict[str, Any]

    def namespaces(self) -> list[str]:
        """Every function with something stored."""
        return self.cls.namespaces(**self.options)

    def target(self, namespace: str) -> Target:
        """The storage of one function of this store."""
        return Target(namespace, self.cls(namespace, **self.options), None)


def check_store_flags(backend: str, args: Any, default: bool) -> None:
    """Refuse a store flag ``backend`` does not use (it would silently do nothing).

    ``default``: the backend was not given, so it is the pickle default.
    """
    for dest, owners in STORE_FLAG_BACKENDS.items():
        if getattr(args, dest, None) and backend not in owners:
            chosen = f"the default backend {backend}" if default else f"--backend {backend}"
            either = " or ".join(", ".join(owners).rsplit(", ", 1))
            fix = f"add --backend {either}" if default else f"drop it, or use --backend {either}"
            raise TargetError(
                f"{flag(dest)} is an option of --backend {' / '.join(owners)}, "
                f"not of {chosen}: {fix}"
            )


def _url(backend: str, args: Any, env: str) -> tuple[str, str]:
    """The URL of a server store and where it came from."""
    if args.url:
        return args.url, "--url"
    from_env = os.environ.get(env)
    if from_env:
        return from_env, f"${env}"
    what = "database" if backend == "sql" else "server"
    raise TargetError(
        f"--backend {backend} needs the {what}: pass --url {_URL_EXAMPLES[backend]} (or set ${env})"
    )


def _pickle_options(args: Any) -> dict[str, Any]:
    if args.cache_dir:
        root, source = Path(args.cache_dir).expanduser(), "--cache-dir"
    else:
        root = config.default_cache_dir()
        env = config.CACHE_DIR_ENV
        source = f"${env}" if os.environ.get(env) else "the default cache directory"
    if not root.exists():
        fix = (
            "check the path" if args.cache_dir else "pass --cache-dir if your functions use another"
        )
        raise TargetError(f"no cache directory {root} ({source}): {fix}")
    if not root.is_dir():
        raise TargetError(f"{root} ({source}) is not a directory")
    return {"cache_dir": root}


def _redis_options(args: Any) -> dict[str, Any]:
    from .cores.redis.link import URL_ENV  # noqa: PLC0415 (drivers are optional)

    url, source = _url("redis", args, URL_ENV)
    schemes = ("redis://", "rediss://", "unix://")
    if not url.startswith(schemes):
        raise TargetError(f"{source} {url!r} is not a Redis URL (it starts with redis://)")
    options: dict[str, Any] = {"redis_client": url}
    if args.prefix:
        options["key_prefix"] = args.prefix
    return options


def _sql_options(args: Any) -> dict[str, Any]:
    # Drivers are optional: imported for their backend only.
    import sqlalchemy as sa  # noqa: PLC0415

    from .cores.sql.async_engines import has_table_async  # noqa: PLC0415
    from .cores.sql.engines import SQL_URL_ENV, shared_engine  # noqa: PLC0415
    from .cores.sql.schema import DEFAULT_TABLE, split_table_name  # noqa: PLC0415

    text, source = _url("sql", args, SQL_URL_ENV)
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        raise TargetError(
            f"{source} {text!r} is not a database URL (e.g. {_URL_EXAMPLES['sql']})"
        ) from None
    shown = url.render_as_string(hide_password=True)
    # SQLite would create an empty file for a mistyped path.
    database = url.database or ""
    on_disk = database != ":memory:" and not url.query.get("uri")
    if url.get_backend_name() == "sqlite" and database and on_disk and not Path(database).is_file():
        raise TargetError(f"no SQLite database file {database} ({source})")
    name = args.table or DEFAULT_TABLE
    try:
        schema, table = split_table_name(name)
    except ValueError as exc:  # ConfigurationError
        raise TargetError(f"--table: {exc}") from None
    engine = shared_engine(url)
    if isinstance(engine, sa.Engine):
        exists = sa.inspect(engine).has_table(table, schema=schema)
    else:  # a URL naming an async driver
        exists = has_table_async(engine, table, schema)
    if not exists:
        hint = (
            "check --table" if args.table else "the default table; pass --table if yours is another"
        )
        raise TargetError(f"no table {name!r} in {shown} ({hint})")
    return {"sql_engine": text, "table_name": name}


def _mongo_options(args: Any) -> dict[str, Any]:
    import pymongo  # noqa: PLC0415 (drivers are optional)

    from .cores.mongo import DEFAULT_COLLECTION, DEFAULT_DATABASE, URL_ENV  # noqa: PLC0415

    url, source = _url("mongo", args, URL_ENV)
    if not url.startswith(("mongodb://", "mongodb+srv://")):
        raise TargetError(f"{source} {url!r} is not a MongoDB URL (it starts with mongodb://)")
    client: Any = pymongo.MongoClient(url, serverSelectionTimeoutMS=2000)
    try:
        database = client[args.db] if args.db else client.get_default_database(DEFAULT_DATABASE)
        collection = args.collection or DEFAULT_COLLECTION
        # Checked before the core touches it: the core creates its index, and so the
        # collection, on first use.
        if collection not in database.list_collection_names():
            raise TargetError(
                f"no collection {collection!r} in the database {database.name!r} "
                f"(check --db and --collection; the defaults are {DEFAULT_DATABASE} "
                f"and {DEFAULT_COLLECTION})"
            )
    finally:
        client.close()
    options: dict[str, Any] = {"mongetter": url}
    if args.db:
        options["database"] = args.db
    if args.collection:
        options["collection"] = args.collection
    return options


_OPTIONS = {
    "pickle": _pickle_options,
    "redis": _redis_options,
    "sql": _sql_options,
    "mongo": _mongo_options,
}


def open_store(args: Any) -> Store:
    """The store the flags name (``--backend``, pickle by default), checked to exist."""
    backend = args.backend or "pickle"
    if backend not in _OPTIONS:
        valid = ", ".join(_OPTIONS)
        raise TargetError(f"backend {backend!r} cannot be inspected from the CLI; use {valid}")
    check_store_flags(backend, args, default=args.backend is None)
    cls = core_class(backend)  # first: a missing driver names the extra to install
    return Store(backend, cls, _OPTIONS[backend](args))


def store_targets(store: Store, function: str | None) -> list[Target]:
    """Every function stored in ``store``, or only ``function`` (its namespace)."""
    names = store.namespaces()
    if function:
        names = [name for name in names if name == function]
        if not names:
            raise TargetError(f"no cached function named {function!r} in that store")
    return [store.target(name) for name in names]
