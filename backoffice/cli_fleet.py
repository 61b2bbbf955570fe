"""``onecard backoffice fleet``, ``clearing`` and ``tac-mismatches``: the operator's view of
the fleet and the day's clearing (docs/fleet.md, docs/clearing.md).

Output: a table for people, ``--json`` for tools (``fleet --json``: one JSON object a
line; ``clearing``: one JSON object, the run's report). Errors are onecard errors, reported
by the main CLI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from backoffice.clearing import VERDICTS, ClearingError, run_clearing
from backoffice.fleet import DEFAULT_SILENT_AFTER, TerminalState, fleet_view
from backoffice.issuer_keys import load_issuer_keys, load_operators
from backoffice.storage import open_storage
from terminal.host.clock import CST, SystemClock


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError(text)
    return value


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def add_fleet_commands(
    bo_sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    storage_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``fleet``, ``clearing`` and ``tac-mismatches`` to ``backoffice``'s sub-parsers."""
    p = bo_sub.add_parser(
        "fleet",
        help="list the terminals with their latest heartbeat, flagging the silent ones",
    )
    storage_option(p)
    p.add_argument(
        "--silent-after",
        type=_seconds,
        default=DEFAULT_SILENT_AFTER,
        help="seconds without a heartbeat that make a terminal silent "
        f"(default {DEFAULT_SILENT_AFTER:g})",
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_fleet)

    p = bo_sub.add_parser(
        "clearing",
        help="check the day's T-Union TACs and write a clearing file per operator",
        description=(
            "Check the TAC of every T-Union purchase journaled on DATE (China Standard Time) "
            "with the issuer master keys, store each verdict, and write "
            "OUT/clearing-<operator>-<YYYYMMDD>.txt per operator (docs/clearing.md)."
        ),
    )
    storage_option(p)
    p.add_argument("--date", type=_day, required=True, help="the day, YYYY-MM-DD")
    p.add_argument("--out", required=True, help="directory to write the files into")
    p.add_argument("--issuer-keys", required=True, help="issuer master key file (TOML, 0600)")
    p.add_argument("--operators", help="operators file: which terminals each operator runs")
    p.set_defaults(func=cmd_clearing)

    p = bo_sub.add_parser(
        "tac-mismatches",
        help="list purchases whose TAC clearing flagged (mismatch by default)",
    )
    storage_option(p)
    p.add_argument("--date", type=_day, help="only this day's (YYYY-MM-DD)")
    p.add_argument("--verdict", choices=[v for v in VERDICTS if v != "valid"], default="mismatch")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_tac_mismatches)


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def format_fleet_row(state: TerminalState) -> tuple[str, ...]:
    """The table row of one terminal: id, state (``!`` when silent), last seen, backlog,
    errors, version, what is down."""
    last = (
        "never"
        if state.last_seen is None
        else dt.datetime.fromtimestamp(state.last_seen, CST).strftime("%Y-%m-%d %H:%M:%S")
    )
    down = [*state.links_down, *(f"{w}:not running" for w in state.workers_not_running)]
    lag = ",".join(f"{k}-{v}" for k, v in state.document_lag.items() if v)
    return (
        state.terminal_id,
        ("!" if state.silent else "") + state.state,
        last,
        _ago(state.silent_for),
        "-" if state.journal_backlog is None else str(state.journal_backlog),
        "-" if state.recent_errors is None else str(state.recent_errors),
        state.software_version or "-",
        lag or "-",
        ",".join(down) or "-",
    )


def cmd_fleet(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage)
    try:
        states = fleet_view(
            storage.fleet(), storage.published_versions(), SystemClock().now(), args.silent_after
        )
    finally:
        storage.close()
    if args.json:
        for state in states:
            sys.stdout.write(json.dumps(state.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        return 0
    header = (
        "TERMINAL",
        "STATE",
        "LAST SEEN",
        "AGO",
        "BACKLOG",
        "ERRORS",
        "VERSION",
        "BEHIND",
        "DOWN",
    )
    _table([header, *map(format_fleet_row, states)])
    silent = sum(1 for s in states if s.silent)
    sys.stdout.write(
        f"{len(states)} terminals, {silent} silent for more than {args.silent_after:g}s\n"
    )
    return 0


def cmd_clearing(args: argparse.Namespace) -> int:
    keys = load_issuer_keys(args.issuer_keys)
    operators = load_operators(args.operators) if args.operators else None
    storage = open_storage(args.storage)
    try:
        report = run_clearing(storage, keys, args.date, args.out, SystemClock().now(), operators)
    finally:
        storage.close()
    sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n")
    return 0


def cmd_tac_mismatches(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ClearingError("--limit must be at least 1")
    storage = open_storage(args.storage)
    try:
        checks = storage.tac_checks(
            args.verdict, args.date.isoformat() if args.date else None, args.limit
        )
    finally:
        storage.close()
    rows: list[dict[str, Any]] = [
        {
            "terminal_id": c.terminal_id,
            "seq": c.seq,
            "day": c.day,
            "verdict": c.verdict,
            "reason": c.reason,
            "amount": c.amount,
        }
        for c in checks
    ]
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        return 0
    header = ("DAY", "TERMINAL", "SEQ", "AMOUNT", "VERDICT", "REASON")
    body = [
        (r["day"], r["terminal_id"], str(r["seq"]), str(r["amount"]), r["verdict"], r["reason"])
        for r in rows
    ]
    _table([header, *body])
    return 0
