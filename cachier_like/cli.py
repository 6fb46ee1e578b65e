"""The ``cachier-like`` command: clear and inspect caches from a shell.

Targets are an importable cached function (``package.module:function``), a script's
function named by its path (``path/to/run.py:function``, never run), or, without
importing user code, a store named by ``--backend`` and its connection flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from .cli_health import COMMANDS as HEALTH_COMMANDS
from .cli_health import add_commands as add_health_commands
from .cli_invalidate import COMMANDS as INVALIDATION_COMMANDS
from .cli_invalidate import add_commands as add_invalidation_commands
from .cli_output import format_age, format_size, parse_duration, print_json, print_table
from .cli_stores import STORE_FLAG_BACKENDS, open_store, store_targets
from .cli_targets import (
    Target,
    TargetError,
    flag,
    function_target,
    is_script_target,
    script_target,
)
from .errors import CachierLikeError

_DRIVER_MODULES = ("redis", "sqlalchemy", "pymongo", "psycopg", "pymysql")


def _add_store_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "store (for a script TARGET, or instead of a TARGET; nothing is imported)"
    )
    group.add_argument("--backend", choices=["pickle", "redis", "sql", "mongo"])
    group.add_argument("--cache-dir", help="pickle: the cache directory (default: as the library)")
    group.add_argument("--url", help="redis/sql/mongo: the server URL (default: its env var)")
    group.add_argument("--prefix", help="redis: the key prefix")
    group.add_argument("--table", help="sql: the table name")
    group.add_argument("--db", help="mongo: the database name")
    group.add_argument("--collection", help="mongo: the collection name")
    group.add_argument(
        "--function", help="only this function of the store (its namespace, module.qualname)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="cachier-like", description="Clear and inspect cachier_like caches."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    target_help = "package.module:function, or path/to/script.py:function"
    # --debug is accepted after the command too; SUPPRESS keeps the top-level value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    clear = commands.add_parser("clear", help="remove cached entries", parents=[common])
    clear.add_argument("target", nargs="?", help=target_help)
    _add_store_flags(clear)
    which = clear.add_mutually_exclusive_group()
    which.add_argument("--stale-only", action="store_true", help="only entries past stale_after")
    which.add_argument(
        "--older-than", metavar="AGE", help="only entries older than AGE (3d, 12h, '90 minutes')"
    )
    clear.add_argument("--yes", action="store_true", help="clear a whole store without asking")
    clear.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    clear.add_argument("--json", action="store_true", help="print JSON")

    claims = commands.add_parser(
        "clear-claims", help="reset stuck in-progress markers", parents=[common]
    )
    claims.add_argument("target", nargs="?", help=target_help)
    _add_store_flags(claims)
    claims.add_argument("--json", action="store_true", help="print JSON")

    listing = commands.add_parser(
        "ls", help="list cached functions: count, size, ages", parents=[common]
    )
    listing.add_argument("target", nargs="?", help=target_help)
    _add_store_flags(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")

    show = commands.add_parser("show", help="list one function's entries", parents=[common])
    show.add_argument("target", nargs="?", help=target_help)
    _add_store_flags(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    add_invalidation_commands(commands, common, _add_store_flags)
    add_health_commands(commands, common, _add_store_flags)
    return parser


_STORE_FLAGS = ("backend", *STORE_FLAG_BACKENDS, "function")


def _targets(args: argparse.Namespace) -> list[Target]:
    target = args.target
    if target and is_script_target(target):
        if args.function:
            raise TargetError("give either a TARGET or --function, not both")
        return [script_target(target, open_store(args))]
    if target:
        given = [flag(name) for name in _STORE_FLAGS if getattr(args, name)]
        if given:
            raise TargetError(
                f"give either a TARGET or store flags ({', '.join(given)}), not both: "
                "an imported function uses its own storage options"
            )
        return [function_target(target)]
    return store_targets(open_store(args), args.function)


def _confirm_whole_store(args: argparse.Namespace, targets: list[Target]) -> None:
    if args.target or args.function or args.yes or args.dry_run or not targets:
        return
    question = f"Clear the caches of {len(targets)} function(s)? [y/N] "
    if not sys.stdin.isatty():
        raise TargetError(f"refusing to clear {len(targets)} function(s) without --yes")
    if input(question).strip().lower() not in {"y", "yes"}:
        raise TargetError("nothing cleared")


def _bound(args: argparse.Namespace, older_than: float | None, target: Target) -> float | None:
    if older_than is not None:
        return older_than
    if args.stale_only:
        if target.stale_after is None and not target.retired:
            raise TargetError(
                f"{target.namespace} has no stale_after and no other version stored, so "
                "nothing is stale; use --older-than"
            )
        return target.stale_after
    return None


def cmd_clear(args: argparse.Namespace) -> None:
    """``clear``: remove entries (all, stale, or older than an age)."""
    older_than = parse_duration(args.older_than) if args.older_than is not None else None
    if args.stale_only and (not args.target or is_script_target(args.target)):
        raise TargetError(
            "--stale-only needs an imported package.module:function, whose stale_after the "
            "CLI reads; for a store or a script's function use --older-than AGE"
        )
    targets = _targets(args)
    bounds = [_bound(args, older_than, target) for target in targets]
    _confirm_whole_store(args, targets)
    now = time.time()
    results: list[dict[str, Any]] = []
    for target, bound in zip(targets, bounds, strict=True):
        if bound is None and args.stale_only:
            count = 0  # no stale_after: only its other versions go
        elif args.dry_run:
            ages = [now - info.timestamp for info in target.core.entries()]
            count = sum(1 for age in ages if bound is None or age > bound)
        elif bound is None:
            count = target.core.clear()
        else:
            count = target.core.purge_stale(bound, now)
        results.append({"function": target.namespace, "removed": count})
        if args.stale_only:  # the function's other versions can never be read again
            for other in target.retired:
                gone = sum(1 for _ in other.entries()) if args.dry_run else other.clear()
                results.append({"function": other.namespace, "removed": gone})
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        print_json({"dry_run": args.dry_run, "functions": results})
    else:
        rows = [[r["function"], str(r["removed"])] for r in results]
        print_table(["function", verb], rows)


def cmd_clear_claims(args: argparse.Namespace) -> None:
    """``clear-claims``: drop in-progress markers."""
    results: list[dict[str, Any]] = [
        {"function": t.namespace, "claims_dropped": t.core.clear_claims()} for t in _targets(args)
    ]
    if args.json:
        print_json({"functions": results})
    else:
        print_table(
            ["function", "claims dropped"],
            [[r["function"], str(r["claims_dropped"])] for r in results],
        )


def cmd_ls(args: argparse.Namespace) -> None:
    """``ls``: every function in a store with entry count, size and ages."""
    rows: list[dict[str, Any]] = []
    for target in _targets(args):
        stats = target.core.stats()
        rows.append(
            {
                "function": target.namespace,
                "entries": stats.entries,
                "bytes": stats.total_bytes,
                "oldest": stats.oldest,
                "newest": stats.newest,
            }
        )
    if args.json:
        print_json({"functions": rows})
        return
    print_table(
        ["function", "entries", "size", "oldest", "newest"],
        [
            [
                r["function"],
                str(r["entries"]),
                format_size(r["bytes"]),
                format_age(r["oldest"]),
                format_age(r["newest"]),
            ]
            for r in rows
        ],
    )


def cmd_show(args: argparse.Namespace) -> None:
    """``show``: one function's entries with key, age, size and staleness."""
    targets = _targets(args)
    if len(targets) != 1:
        raise TargetError("show needs one function: a TARGET, or store flags with --function")
    target = targets[0]
    now = time.time()
    rows: list[dict[str, Any]] = []
    for info in sorted(target.core.entries(), key=lambda i: i.timestamp, reverse=True):
        age = now - info.timestamp
        stale = None if target.stale_after is None else age > target.stale_after
        rows.append(
            {"key": info.key, "timestamp": info.timestamp, "size": info.size, "stale": stale}
        )
    if args.json:
        print_json({"function": target.namespace, "entries": rows})
        return
    print_table(
        ["key", "age", "size", "stale"],
        [
            [
                str(r["key"]),
                format_age(r["timestamp"], now),
                format_size(r["size"]),
                "-" if r["stale"] is None else ("yes" if r["stale"] else "no"),
            ]
            for r in rows
        ],
    )


_COMMANDS = {
    "clear": cmd_clear,
    "clear-claims": cmd_clear_claims,
    "ls": cmd_ls,
    "show": cmd_show,
    **INVALIDATION_COMMANDS,
    **HEALTH_COMMANDS,
}


def _explain(exc: BaseException) -> str:
    module = type(exc).__module__.split(".")[0]
    if module in _DRIVER_MODULES:
        return (
            f"cannot reach the store: {type(exc).__name__}: {exc} "
            "(check --url or the backend's URL variable, and that the server is running)"
        )
    if isinstance(exc, (TargetError, CachierLikeError, ValueError, ImportError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 success, 1 error, 2 usage, 130 interrupted).

    Example:
        >>> import tempfile
        >>> main(["ls", "--cache-dir", tempfile.mkdtemp()])
        function  entries  size  oldest  newest
        --------  -------  ----  ------  ------
        0
        >>> main(["ls", "--cache-dir", "/nonexistent/cachier-like-doc"])  # one line on stderr
        1
    """
    args = build_parser().parse_args(argv)
    try:
        _COMMANDS[args.command](args)
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write("cachier-like: interrupted\n")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        sys.stderr.write(f"cachier-like: error: {' '.join(_explain(exc).split())}\n")
        return 1
    return 0
