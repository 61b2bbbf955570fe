"""``onecard``: the command line of the one-card terminal.

The application's entry point: global options, then the subcommands of every group in
:data:`COMMAND_GROUPS` - onecard's own, the simulator's and the back office's, each module
registering its commands with ``add_commands(subparsers)``. Failures of the error family
print ``{"error", "reason"}`` (with ``--json``) and exit with their code
(:mod:`onecard.exitcodes`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence

from onecard.exitcodes import EXIT_HELP, exit_code
from terminal import ldt33
from terminal.errors import OneCardError

COMMAND_GROUPS: tuple[str, ...] = (
    "onecard.commands.card",  # readers, read, verify, pin, purse
    "onecard.commands.demo",
    "onecard.commands.ecode",  # code world|issue|render|verify|scan-image, scan
    "onecard.commands.journal",
    "onecard.commands.run",
    "onecard.commands.sync",  # sync, hotlist
    "onecard.commands.screen",
    "backoffice.cli",  # backoffice init|serve|enrol|revoke|hotlist|publish-*|events
    "firmware_sim.cli",  # sim card|psam|issue|profiles
)
"""The one registry of subcommand groups: a module with ``add_commands(subparsers)``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onecard",
        description="Terminal runtime for social security card acceptance points.",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines as text or as one JSON object each (for log collectors)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        importlib.import_module(group).add_commands(sub)
    return parser


def _report(error: OneCardError, args: argparse.Namespace) -> None:
    if getattr(args, "format", None) == "ireadcardbas":
        print(ldt33.error_code(error))
        print(f"onecard: {error.reason}", file=sys.stderr)
    elif getattr(args, "json", False) or getattr(args, "format", None) == "json":
        print(json.dumps(error.to_json(), ensure_ascii=False))
    else:
        print(f"onecard: {error.code}: {error.reason}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_format == "json":
        from terminal.host.logformat import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except OneCardError as error:
        _report(error, args)
        return exit_code(error)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
