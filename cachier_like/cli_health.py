"""The CLI's ``health`` command: probe a store by writing, reading and deleting an entry.

``health TARGET`` probes an imported function's store (``async def`` functions through
their async client); ``health`` with store flags probes the store they name, nothing
imported. A healthy store prints its latency; an unhealthy one prints what is wrong
and the command exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from .cli_output import print_json, print_table
from .cli_stores import open_store
from .cli_targets import TargetError, import_function, is_script_target
from .errors import CachierLikeError
from .health import Health, probe

#: The namespace probes of a bare store go under (no function has it).
_PROBE_NAMESPACE = "cachier_like.cli.health"


class UnhealthyError(CachierLikeError):
    """The probed store did not answer as it should (the message says how)."""


def add_commands(
    commands: Any,
    common: argparse.ArgumentParser,
    add_store_flags: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``health`` to the CLI's subcommands."""
    health = commands.add_parser(
        "health",
        help="write, read and delete a probe entry; report the latency or what is wrong",
        parents=[common],
    )
    health.add_argument(
        "target", nargs="?", help="package.module:function (else the store flags name one)"
    )
    add_store_flags(health)
    health.add_argument("--json", action="store_true", help="print JSON")


def _report(args: argparse.Namespace) -> Health:
    if args.target:
        if is_script_target(args.target):
            raise TargetError("health takes an imported package.module:function or store flags")
        func = import_function(args.target)
        if func._is_async:
            return asyncio.run(func.ahealth())
        return func.health()
    store = open_store(args)
    return probe(store.target(args.function or _PROBE_NAMESPACE).core)


def cmd_health(args: argparse.Namespace) -> None:
    """``health``: one probe; exit 1 (one line on stderr) when the store is unhealthy."""
    report = _report(args)
    latency_ms = None if report.latency_s is None else round(report.latency_s * 1000, 3)
    if args.json:
        print_json(
            {
                "function": report.namespace,
                "backend": report.backend,
                "ok": report.ok,
                "latency_ms": latency_ms,
                "problem": report.problem,
            }
        )
    else:
        shown = "-" if latency_ms is None else f"{latency_ms:.2f}"
        print_table(
            ["function", "backend", "ok", "latency_ms"],
            [[report.namespace, report.backend, "yes" if report.ok else "no", shown]],
        )
    if not report.ok:
        raise UnhealthyError(str(report))


COMMANDS = {"health": cmd_health}
