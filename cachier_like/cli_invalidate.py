"""The CLI's invalidation commands: ``invalidate`` (one call) and ``invalidate-tags``.

``invalidate package.module:function ARG... [--kw NAME=VALUE]`` removes the entry of
one call: each ARG and VALUE is read as a Python literal (``7``, ``'text'``,
``[1, 2]``, ``None``), and taken as a plain string when it is not one (``alice``).
``invalidate-tags TAG... [TARGET | store flags]`` makes every entry carrying a tag
stale, for every function on the store: an imported function's store, or the one the
store flags name (nothing imported).
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Callable
from typing import Any

from .cli_output import print_json, print_table
from .cli_stores import open_store
from .cli_targets import TargetError, import_function, is_script_target
from .tagging import check_tags

#: A namespace no function has: the tag versions belong to the store, not to it.
_ANY_FUNCTION = "cachier_like.cli"


def literal(text: str) -> Any:
    """A command-line argument as a Python literal, else as the string itself.

    Example:
        >>> literal("7"), literal("'7'"), literal("alice"), literal("[1, 2]")
        (7, '7', 'alice', [1, 2])
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _keyword(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise TargetError(f"--kw takes NAME=VALUE (e.g. --kw user_id=7), not {text!r}")
    return name, literal(value)


def add_commands(
    commands: Any,
    common: argparse.ArgumentParser,
    add_store_flags: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``invalidate`` and ``invalidate-tags`` to the CLI's subcommands."""
    one = commands.add_parser(
        "invalidate", help="remove the entry of one call of a function", parents=[common]
    )
    one.add_argument("target", help="package.module:function (imported, with its options)")
    one.add_argument("args", nargs="*", metavar="ARG", help="positional arguments (literals)")
    one.add_argument(
        "--kw", action="append", default=[], metavar="NAME=VALUE", help="a keyword argument"
    )
    one.add_argument("--json", action="store_true", help="print JSON")

    tags = commands.add_parser(
        "invalidate-tags",
        help="make every entry carrying one of the tags stale (every function of the store)",
        parents=[common],
    )
    tags.add_argument("tags", nargs="+", metavar="TAG")
    tags.add_argument(
        "--target", help="package.module:function: its store (else the store flags name one)"
    )
    add_store_flags(tags)
    tags.add_argument("--json", action="store_true", help="print JSON")


def cmd_invalidate(args: argparse.Namespace) -> None:
    """``invalidate``: remove one call's entry; say whether there was one."""
    if is_script_target(args.target):
        raise TargetError(
            "invalidate needs an imported package.module:function: a call's key is made "
            "by the function itself"
        )
    func = import_function(args.target)
    positional = [literal(text) for text in args.args]
    keywords = dict(_keyword(text) for text in args.kw)
    removed = func.invalidate(*positional, **keywords)
    if args.json:
        print_json({"function": func.namespace, "removed": removed})
    else:
        print_table(["function", "removed"], [[func.namespace, "yes" if removed else "no"]])


def cmd_invalidate_tags(args: argparse.Namespace) -> None:
    """``invalidate-tags``: advance each tag's version in the store."""
    names = check_tags(args.tags, "TAG")
    if args.function:
        raise TargetError("tags belong to the whole store, not to one function: drop --function")
    if args.target:
        func = import_function(args.target)
        func.invalidate_tags(*names)
        where = func.namespace
    else:
        store = open_store(args)
        store.target(_ANY_FUNCTION).core.bump_tags(names)
        where = f"{store.backend} store"
    if args.json:
        print_json({"store": where, "tags": list(names)})
    else:
        print_table(["store", "tags invalidated"], [[where, ", ".join(names)]])


COMMANDS = {"invalidate": cmd_invalidate, "invalidate-tags": cmd_invalidate_tags}
