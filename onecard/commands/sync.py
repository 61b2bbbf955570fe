"""``onecard sync`` and ``onecard hotlist``: the terminal's side of the back office link."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from terminal.errors import ConfigError, OneCardError

DEFAULT_DOCUMENTS = "/var/lib/onecard/documents"


def _documents(args: argparse.Namespace) -> Path:
    path = Path(args.documents or os.environ.get("ONECARD_DOCUMENTS", DEFAULT_DOCUMENTS))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cmd_sync(args: argparse.Namespace) -> int:
    from onecard.runtime import open_document_store
    from terminal.host.clock import SystemClock
    from terminal.journal.store import Journal
    from terminal.sync.auth import load_credentials
    from terminal.sync.client import BackOfficeClient
    from terminal.sync.downloads import Downloader
    from terminal.sync.uploader import Uploader

    clock = SystemClock()
    credentials = load_credentials(args.credentials)
    store = open_document_store(credentials, _documents(args))
    # One client for uploads and downloads, as the running terminal has.
    client = BackOfficeClient(credentials, clock)
    downloader = Downloader(store, client, clock)
    with Journal.open(args.journal, credentials.terminal_id, clock) as journal:
        uploader = Uploader(journal, credentials, clock, batch_size=args.batch_size, client=client)
        if args.once:
            summary: dict[str, object] = {}
            try:
                result = uploader.run_once()
                summary["upload"] = {"sent": result.sent, "acked_up_to": result.acked_up_to}
            except OneCardError as error:  # reported, and the downloads still run
                summary["upload"] = error.to_json()
            summary["purged"] = journal.purge(args.retention_days * 86400)
            report = downloader.run_once()
            summary["documents"] = {
                name: {"outcome": r.outcome.value, "version": r.version, "reason": r.reason}
                for name, r in report.results.items()
            }
            summary["versions"] = store.current_versions()
            print(json.dumps(summary, ensure_ascii=False))
            failed = "error" in summary["upload"] or any(
                r.outcome.value == "refused" for r in report.results.values()
            )
            return 14 if failed else 0
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        uploader.start()
        try:
            while not stop.is_set():
                # Acknowledged rows leave only after the retention period.
                journal.purge(args.retention_days * 86400)
                for name, result in downloader.run_once().results.items():
                    if result.outcome.value == "refused":
                        print(f"refused {name}: {result.reason}", file=sys.stderr)
                stop.wait(args.interval)
        finally:
            uploader.stop()
            client.close()
    return 0


def cmd_hotlist(args: argparse.Namespace) -> int:
    from terminal.hotlist import HotList
    from terminal.privacy.cardtoken import card_token
    from terminal.sync.downloads import HOTLIST_FILE

    path = _documents(args) / HOTLIST_FILE
    hotlist = HotList.load(path) if path.exists() else HotList.empty()
    if args.hotlist_command == "stats":
        print(json.dumps(hotlist.stats(), default=str))
        return 0
    if args.token:
        try:
            token = bytes.fromhex(args.token)
        except ValueError:
            raise ConfigError("--token must be hex") from None
    else:
        from terminal.sync.auth import load_credentials

        if not args.credentials or not args.card_number:
            raise ConfigError("give --token HEX, or a CARD_NUMBER and --credentials FILE")
        token = card_token(load_credentials(args.credentials).token_key, args.card_number)
    listed = hotlist.contains(token)
    print(json.dumps({"hotlisted": listed, "hotlist_version": hotlist.version}))
    return 15 if listed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sync",
        help="upload the journal and download hotlist, trust list and application list",
        description=(
            "Upload unacknowledged journal entries to the back office (batched, retried with "
            "back-off) and download the published documents, each verified against the back "
            "office's publication key; an older, unsigned or tampered document is refused and "
            "the previous one kept. --once does one round and prints a JSON summary (exit 14 "
            "if anything failed); without it, runs until SIGTERM."
        ),
    )
    p.add_argument("--credentials", required=True, help="terminal credentials file (TOML)")
    p.add_argument("--journal", required=True, help="the terminal's journal (SQLite)")
    p.add_argument(
        "--documents", help=f"directory of downloaded documents (default {DEFAULT_DOCUMENTS})"
    )
    p.add_argument("--once", action="store_true", help="one round, then exit")
    p.add_argument("--batch-size", type=int, default=1000, help="entries per upload")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between downloads")
    p.add_argument(
        "--retention-days",
        type=float,
        default=30.0,
        help="keep acknowledged journal entries this long before deleting them (default 30)",
    )
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("hotlist", help="look a card up in the downloaded hotlist")
    hot = p.add_subparsers(dest="hotlist_command", metavar="HOTLIST_COMMAND", required=True)
    q = hot.add_parser(
        "lookup",
        help="is this card hotlisted? (exit 15 if it is)",
        description="Exit 15 if listed.",
    )
    q.add_argument("card_number", nargs="?", help="card number (needs --credentials)")
    q.add_argument("--token", help="the card token, hex (instead of a card number)")
    q.add_argument("--credentials", help="credentials file (for the card-token key)")
    q.add_argument("--documents", help="directory of downloaded documents")
    q.set_defaults(func=cmd_hotlist)
    q = hot.add_parser("stats", help="version and size of the downloaded hotlist")
    q.add_argument("--documents", help="directory of downloaded documents")
    q.set_defaults(func=cmd_hotlist)
