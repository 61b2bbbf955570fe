"""``onecard journal list|verify|export``: look into a terminal's journal.

The journal is opened read-only (never created, never written), so these commands are safe
while the runtime is running. Wire them in with :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import IO

from terminal.host.clock import CST
from terminal.journal.store import Journal

DEFAULT_JOURNAL = os.environ.get("ONECARD_JOURNAL", "/var/lib/onecard/journal.db")
EXIT_CHAIN_BROKEN = 2


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``journal`` with its sub-commands ``list``, ``verify`` and ``export``; each sets
    ``func`` (``args -> exit code``)."""
    p = subparsers.add_parser(
        "journal",
        help="list, verify or export the transaction journal",
        description="Read the terminal's transaction journal (read-only).",
    )
    sub = p.add_subparsers(dest="journal_command", metavar="ACTION", required=True)

    def journal_option(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--journal",
            default=DEFAULT_JOURNAL,
            help=f"journal file (default: $ONECARD_JOURNAL or {DEFAULT_JOURNAL})",
        )

    q = sub.add_parser("list", help="list entries, oldest first")
    journal_option(q)
    q.add_argument("--after", type=int, default=0, metavar="SEQ", help="entries after SEQ")
    q.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    q.add_argument("--unacked", action="store_true", help="only entries not yet uploaded")
    q.add_argument("--json", action="store_true", help="print JSON lines")
    q.set_defaults(func=cmd_journal_list)

    q = sub.add_parser("verify", help="walk the hash chain; exit 2 if it is broken")
    journal_option(q)
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_journal_verify)

    q = sub.add_parser("export", help="write the entries as JSON lines")
    journal_option(q)
    q.add_argument("--after", type=int, default=0, metavar="SEQ", help="entries after SEQ")
    q.add_argument("-o", "--output", help="file to write (default: standard output)")
    q.set_defaults(func=cmd_journal_export)


def _open(args: argparse.Namespace) -> Journal:
    # Opening checks the file's structure (a damaged one raises JournalCorruptError for the
    # CLI to report) but not the chain: these are the tools to look at a broken chain.
    return Journal.open_read_only(args.journal, check_entries=0)


def _out(text: str, stream: IO[str] | None = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def cmd_journal_list(args: argparse.Namespace) -> int:
    with _open(args) as journal:
        stats = journal.stats()
        if args.unacked:
            entries = journal.unacked(limit=max(0, args.limit), after_seq=args.after)
        else:
            entries = list(journal.entries(after_seq=args.after, limit=max(0, args.limit)))
        for entry in entries:
            if args.json:
                _out(json.dumps(entry.to_json_dict(), sort_keys=True, ensure_ascii=False))
                continue
            when = datetime.datetime.fromtimestamp(entry.time, CST).strftime("%Y-%m-%d %H:%M:%S")
            state = "acked" if entry.seq <= stats.acked_up_to else "pending"
            amount = "-" if entry.amount is None else f"{entry.amount / 100:.2f}"
            # The token is already keyed; its prefix is enough to tell cards apart on screen.
            _out(
                f"{entry.seq:>8} {when} {entry.kind:<4} {entry.service:<20} "
                f"{entry.decision:<6} {entry.reason:<22} {amount:>8} {entry.region} "
                f"{entry.category or '-'} {entry.card_token[:8]}… {state}"
            )
        if not args.json:
            _out(
                f"# {stats.entries} entries retained, last seq {stats.last_seq}, "
                f"acked up to {stats.acked_up_to}, {stats.unacked} pending",
                sys.stderr,
            )
    return 0


def cmd_journal_verify(args: argparse.Namespace) -> int:
    with _open(args) as journal:
        stats = journal.stats()
        report = journal.verify()
    if args.json:
        _out(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "first_bad_seq": report.first_bad_seq,
                    "reason": report.reason,
                    "anchor_seq": stats.anchor_seq,
                    "last_seq": stats.last_seq,
                }
            )
        )
    elif report.ok:
        _out(
            f"ok: {report.checked} entries ({stats.anchor_seq + 1}..{stats.last_seq}) "
            "chain unbroken"
        )
    else:
        _out(
            f"BROKEN at seq {report.first_bad_seq}: {report.reason} "
            f"({report.checked} entries good before it)"
        )
    return 0 if report.ok else EXIT_CHAIN_BROKEN


def cmd_journal_export(args: argparse.Namespace) -> int:
    with _open(args) as journal:
        if args.output:
            # 0600 as the journal itself: the export holds the same entries.
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as fp:
                count = journal.export(fp, after_seq=args.after)
        else:
            count = journal.export(sys.stdout, after_seq=args.after)
    _out(f"# exported {count} entries", sys.stderr)
    return 0
