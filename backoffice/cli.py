"""``onecard backoffice ...``: run the reference back office and act as its operator.

``init`` makes the key files, ``serve`` runs the HTTP(S) service, ``enrol``/``revoke``
manage terminals, ``hotlist add|remove`` change the hotlist, ``publish-trustlist``,
``publish-applist``, ``publish-fares``, ``publish-reservations`` and ``publish-passes`` sign
and store a new document version, ``events`` lists the events
terminals sent (a holder's "call staff"...). Output is one JSON object on standard output
(no secrets in it) - but ``events``, a table or JSON lines; errors are onecard errors,
reported by the main CLI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from backoffice import keys, publish
from backoffice.auth import new_secret
from backoffice.errors import PublicationError, ServeConfigError
from backoffice.fleet import DEFAULT_SILENT_AFTER
from backoffice.limits import ServeLimits
from backoffice.storage import open_storage
from terminal.crypto import signing
from terminal.host.clock import CST, SystemClock
from terminal.wire.events import EVENT_KINDS
from terminal.wire.journal import TERMINAL_ID

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "backoffice.sqlite"
PUBLICATION_KEY_NAME = "publication.key"
TOKEN_KEY_NAME = "token.key"


def _out(obj: dict[str, Any]) -> None:
    # The CLI's answer; library code logs instead.
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _positive_number(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError(text)
    return value


def _non_negative_number(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(text)
    return value


SERVE_LIMIT_OPTIONS = (
    ("idle_timeout", _positive_number, "seconds a kept-alive connection may wait for a request"),
    (
        "header_timeout",
        _positive_number,
        "seconds for a TLS handshake, and for a request line and headers from their first byte",
    ),
    ("body_grace", _positive_number, "seconds a body may lag behind --min-body-rate"),
    (
        "min_body_rate",
        _positive_number,
        "bytes a second a body must average after the grace; slower is dropped",
    ),
    (
        "send_timeout",
        _positive_number,
        "seconds an answer may lag behind --min-send-rate (a client not reading it)",
    ),
    (
        "min_send_rate",
        _positive_number,
        "bytes a second a client must take an answer at after the grace; slower is dropped",
    ),
    (
        "max_connections",
        _positive,
        "connections served at once; more are answered 503 with Retry-After",
    ),
    # Back-pressure (docs/sync.md "Back-pressure"): per worker process.
    ("terminal_rate", _positive_number, "requests a second one terminal may make; 429 beyond"),
    ("terminal_burst", _positive, "requests one terminal may make at once above its rate"),
    ("ingest_rate", _positive_number, "journal entries and events a second stored; 429 beyond"),
    ("ingest_burst", _positive, "entries and events taken at once above the ingest rate"),
    (
        "document_ttl",
        _non_negative_number,
        "seconds a document version check is reused before the database is asked again",
    ),
    (
        "key_ttl",
        _non_negative_number,
        "seconds a terminal's key is kept per worker: a revocation by another process "
        "takes effect within it",
    ),
)
"""``serve`` options: a :class:`ServeLimits` field each (``--idle-timeout``...)."""


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``backoffice`` and its sub-commands to the ``onecard`` parser's sub-parsers."""
    bo = sub.add_parser("backoffice", help="the reference back office (sync, hotlist, lists)")
    bo_sub = bo.add_subparsers(dest="backoffice_command", metavar="BACKOFFICE_COMMAND")
    bo_sub.required = True

    def storage_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--storage",
            default=DEFAULT_STORAGE,
            help="SQLite path, sqlite:///abs/path, or postgresql://... (optional &schema=NAME)"
            f" (default: {DEFAULT_STORAGE})",
        )

    p = bo_sub.add_parser(
        "init",
        help="make the publication key, the card-token key and optionally a TLS certificate",
        description=(
            "Write DIR/publication.key (SM2 by default) and DIR/token.key (the deployment's "
            "card-token key), both mode 0600; with --tls also a self-signed certificate for "
            "--hostname names (DIR/backoffice-cert.pem, DIR/backoffice-key.pem). Existing key "
            "files are kept unless --force."
        ),
    )
    p.add_argument("--dir", required=True, help="directory to write into")
    p.add_argument("--algorithm", choices=["sm2", "ecdsa-p256"], default="sm2")
    p.add_argument("--tls", action="store_true", help="also make a self-signed TLS certificate")
    p.add_argument(
        "--hostname",
        action="append",
        help="certificate name (repeatable; default 127.0.0.1 and localhost)",
    )
    p.add_argument("--force", action="store_true", help="replace existing key files")
    p.set_defaults(func=cmd_init)

    p = bo_sub.add_parser("serve", help="serve the back office over HTTP(S) until stopped")
    storage_option(p)
    p.add_argument("--publication-key", required=True, help="publication key file")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8443, help="port (default 8443; 0: any free)")
    p.add_argument("--tls-cert", help="certificate (PEM); with --tls-key, serve HTTPS")
    p.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    p.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes sharing the port; more than 1 needs PostgreSQL storage (default 1)",
    )
    p.add_argument(
        "--silent-after",
        type=_positive_number,
        default=DEFAULT_SILENT_AFTER,
        help="seconds without a heartbeat after which /metrics counts a terminal silent "
        f"(default {DEFAULT_SILENT_AFTER:g})",
    )
    p.add_argument(
        "--metrics-dir",
        help="with --workers N: the directory the workers share their metrics in "
        "(prometheus-client multiprocess mode; its metric files are cleared at start; "
        "default a new temporary directory, removed at shutdown)",
    )
    defaults = ServeLimits()
    for name, kind, text in SERVE_LIMIT_OPTIONS:
        default = getattr(defaults, name)
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=default,
            help=f"{text} (default {default:g})",
        )
    p.set_defaults(func=cmd_serve)

    p = bo_sub.add_parser(
        "enrol",
        help="enrol a terminal and write its credentials file (mode 0600)",
        description=(
            "Issue a fresh 32-byte secret for TERMINAL_ID, store it, and write the terminal's "
            "credentials file (docs/sync.md). An enrolled terminal is refused unless --force "
            "(a new secret; revocation lifted; its uploads stay)."
        ),
    )
    p.add_argument("terminal_id")
    storage_option(p)
    p.add_argument("--publication-key", required=True, help="publication key file")
    p.add_argument("--url", required=True, help="the back office URL the terminal uses")
    p.add_argument("--token-key", required=True, help="the deployment's card-token key file")
    p.add_argument("--ca-file", help="CA certificate the terminal should trust for TLS")
    p.add_argument("--out", required=True, help="credentials file to write")
    p.add_argument("--force", action="store_true", help="re-enrol, replace --out")
    p.set_defaults(func=cmd_enrol)

    p = bo_sub.add_parser("revoke", help="revoke a terminal: its requests are refused (403)")
    p.add_argument("terminal_id")
    storage_option(p)
    p.set_defaults(func=cmd_revoke)

    p = bo_sub.add_parser("hotlist", help="add a card to or remove it from the hotlist")
    hot_sub = p.add_subparsers(dest="hotlist_command", metavar="HOTLIST_COMMAND")
    hot_sub.required = True
    for action in ("add", "remove"):
        hp = hot_sub.add_parser(
            action,
            help=(
                f"{action} a card number or a T-Union e-purse (--tunion-serial), both with "
                "--token-key, or a raw token (--token)"
            ),
        )
        hp.add_argument("card_number", nargs="?", help="card number to tokenise")
        hp.add_argument(
            "--tunion-serial",
            metavar="HEX",
            help="a T-Union card known by its e-purse: application serial, 20 hex (file 0x15)",
        )
        hp.add_argument("--token-key", help="card-token key file (with a card number or serial)")
        hp.add_argument("--token", help="a card token (32 hex) or hotlist entry (16 hex)")
        storage_option(hp)
        hp.set_defaults(func=cmd_hotlist, added=action == "add")

    for kind in (publish.KIND_TRUSTLIST, publish.KIND_APPLIST, publish.KIND_FARES):
        p = bo_sub.add_parser(
            f"publish-{kind}",
            help=f"sign and store a new {kind} version from an unsigned JSON body",
        )
        p.add_argument("file", help="JSON object: the document body (kind/version are set)")
        storage_option(p)
        p.add_argument("--publication-key", required=True, help="publication key file")
        p.set_defaults(func=cmd_publish, kind=kind)

    p = bo_sub.add_parser(
        "publish-reservations",
        help="sign and store a venue's time-slot reservations from a CSV of identity numbers",
        description=(
            "CSV rows identity_number,slot_id (a header row is skipped). Identity numbers are "
            "turned into keyed tokens (--token-key) as they are read: none is stored, "
            "published or printed. Slots from --slots FILE (a JSON list of {id, start, end}) "
            "and/or --slot ID,START,END (ISO 8601 with offset)."
        ),
    )
    p.add_argument("csv", help="CSV file: identity_number,slot_id")
    p.add_argument("--venue", required=True, help="the venue's code (e.g. museum-1)")
    p.add_argument("--token-key", required=True, help="the deployment's card-token key file")
    p.add_argument("--slots", help="JSON file: a list of {id, start, end}")
    p.add_argument(
        "--slot", action="append", default=[], help="ID,START,END (repeatable)", metavar="SLOT"
    )
    storage_option(p)
    p.add_argument("--publication-key", required=True, help="publication key file")
    p.set_defaults(func=cmd_publish_reservations)

    p = bo_sub.add_parser(
        "publish-passes",
        help="sign and store a scenic area's card passes from a CSV of card numbers",
        description=(
            "CSV rows card_number,kind,valid_from,valid_to,entries_per_day (a header row is "
            "skipped). Card numbers are turned into card tokens (--token-key) as they are "
            "read: none is stored, published or printed."
        ),
    )
    p.add_argument("csv", help="CSV file: card_number,kind,valid_from,valid_to,entries_per_day")
    p.add_argument("--area", required=True, help="the scenic area's code")
    p.add_argument("--token-key", required=True, help="the deployment's card-token key file")
    storage_option(p)
    p.add_argument("--publication-key", required=True, help="publication key file")
    p.set_defaults(func=cmd_publish_passes)

    p = bo_sub.add_parser(
        "events",
        help="list the events terminals sent (a holder's call for staff...), newest first",
    )
    storage_option(p)
    p.add_argument("--terminal", help="only this terminal's events")
    p.add_argument("--kind", choices=sorted(EVENT_KINDS), help="only events of this kind")
    p.add_argument(
        "--since",
        type=_event_time,
        help="only events at or after this time: Unix seconds, or ISO 8601 (local time, "
        "China Standard Time, unless it has an offset)",
    )
    p.add_argument("--limit", type=_positive, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_events)

    from backoffice.cli_fleet import add_fleet_commands

    add_fleet_commands(bo_sub, storage_option)
    from backoffice.cli_venue import add_venue_commands

    add_venue_commands(bo_sub, storage_option)


def cmd_init(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    pub_path = directory / PUBLICATION_KEY_NAME
    token_path = directory / TOKEN_KEY_NAME
    out: dict[str, Any] = {}
    if pub_path.exists() and not args.force:
        key = keys.load_publication_key(pub_path)
    else:
        key = publish.generate_publication_key(signing.Algorithm(args.algorithm))
        keys.write_publication_key(key, pub_path, overwrite=True)
    if not token_path.exists() or args.force:
        keys.write_token_key(keys.new_token_key(), token_path, overwrite=True)
    out.update(
        publication_key_file=str(pub_path),
        publication_algorithm=key.algorithm.value,
        publication_key=key.public_key.hex(),
        key_id=key.key_id,
        token_key_file=str(token_path),
    )
    if args.tls:
        from backoffice.tls import make_self_signed

        cert, tls_key = make_self_signed(directory, args.hostname or ["127.0.0.1", "localhost"])
        out.update(tls_cert=str(cert), tls_key=str(tls_key))
    _out(out)
    return 0


def serve_limits(args: argparse.Namespace) -> ServeLimits:
    """The deadlines and connection limit the ``serve`` options ask for."""
    try:
        return ServeLimits(**{name: getattr(args, name) for name, _, _ in SERVE_LIMIT_OPTIONS})
    except ValueError as exc:  # e.g. an ingest burst smaller than one batch
        raise ServeConfigError(str(exc)) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from backoffice.server import BackOffice

    if (args.tls_cert is None) != (args.tls_key is None):
        raise PublicationError("--tls-cert and --tls-key go together")
    key = keys.load_publication_key(args.publication_key)
    if args.workers > 1:
        return _serve_workers(args, key)
    storage = open_storage(args.storage)
    stop = threading.Event()
    # SIGTERM as well as Ctrl-C: a service manager stops us cleanly.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        limits = serve_limits(args)
        office = BackOffice.serving(storage, key, limits, args.silent_after)
        server = office.serve(args.host, args.port, args.tls_cert, args.tls_key, limits)
        _out({"serving": server.url, "key_id": key.key_id})
        sys.stdout.flush()
        stop.wait()
        server.shutdown()
    finally:
        storage.close()
    return 0


def _serve_workers(args: argparse.Namespace, key: publish.PublicationKey) -> int:
    """``serve --workers N``: N uvicorn worker processes on one socket, one PostgreSQL."""
    from backoffice.metrics import multiprocess_directory
    from backoffice.stack import bind_socket
    from backoffice.workers import WorkerSettings, run_workers

    if not str(args.storage).startswith(("postgresql://", "postgres://")):
        raise ServeConfigError(
            f"--workers {args.workers} needs PostgreSQL storage (--storage postgresql://...): "
            "SQLite has one writer, so it is served by one worker (--workers 1)"
        )
    # Migrations and this month's partitions before any worker starts: a schema that cannot
    # be opened stops here with its error, not in N workers.
    open_storage(args.storage, pool_size=1).close()
    settings = WorkerSettings(
        str(args.storage),
        str(args.publication_key),
        serve_limits(args),
        silent_after=args.silent_after,
    )
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    url = f"{'https' if tls else 'http'}://{host}:{port}"
    # Before any worker starts: they find the directory in the environment they inherit.
    # A temporary one is removed when the workers have stopped.
    with multiprocess_directory(args.metrics_dir) as metrics_dir:
        _out({"serving": url, "key_id": key.key_id, "workers": args.workers,
              "metrics_dir": metrics_dir})  # fmt: skip
        sys.stdout.flush()
        run_workers(settings, args.workers, sock, tls)
    return 0


def _toml_string(value: str) -> str:
    # json.dumps gives a valid TOML basic string for any text (same escapes).
    return json.dumps(value, ensure_ascii=False)


def format_credentials(
    terminal_id: str,
    secret: bytes,
    url: str,
    key: publish.PublicationKey,
    token_key: bytes,
    ca_file: str | None,
) -> str:
    """The terminal credentials file (TOML, docs/sync.md)."""
    lines = [
        "# onecard terminal credentials: secret, mode 0600, never committed",
        f"terminal_id = {_toml_string(terminal_id)}",
        f'secret = "{secret.hex()}"',
        f"backoffice_url = {_toml_string(url)}",
        f'publication_key = "{key.public_key.hex()}"',
        f'publication_algorithm = "{key.algorithm.value}"',
        f'token_key = "{token_key.hex()}"',
    ]
    if ca_file:
        lines.append(f"ca_file = {_toml_string(str(Path(ca_file).resolve()))}")
    return "\n".join(lines) + "\n"


def cmd_enrol(args: argparse.Namespace) -> int:
    if not TERMINAL_ID.fullmatch(args.terminal_id):
        raise PublicationError("terminal id must match [A-Za-z0-9_-]{1,32}")
    if Path(args.out).exists() and not args.force:
        raise PublicationError(f"{args.out}: already exists; not replacing it (--force)")
    key = keys.load_publication_key(args.publication_key)
    token_key = keys.load_token_key(args.token_key)
    secret = new_secret()
    text = format_credentials(args.terminal_id, secret, args.url, key, token_key, args.ca_file)
    storage = open_storage(args.storage)
    try:
        storage.enrol(args.terminal_id, secret, SystemClock().now(), replace=args.force)
    finally:
        storage.close()
    keys.write_secret_file(args.out, text, overwrite=True)
    _out({"enrolled": args.terminal_id, "credentials": str(args.out)})
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    storage = open_storage(args.storage)
    try:
        storage.revoke(args.terminal_id, SystemClock().now())
    finally:
        storage.close()
    _out({"revoked": args.terminal_id})
    return 0


def cmd_hotlist(args: argparse.Namespace) -> int:
    given = [x for x in (args.card_number, args.tunion_serial, args.token) if x is not None]
    if len(given) != 1:
        raise PublicationError("give one of a card number, --tunion-serial or --token")
    if args.card_number is not None or args.tunion_serial is not None:
        if not args.token_key:
            raise PublicationError("a card number or serial needs --token-key to be tokenised")
        key = keys.load_token_key(args.token_key)
        if args.card_number is not None:
            entry = publish.hotlist_entry_for_card(key, args.card_number)
        else:
            entry = publish.hotlist_entry_for_tunion(key, args.tunion_serial)
    else:
        entry = publish.hotlist_entry_for_token(args.token)
    storage = open_storage(args.storage)
    try:
        version = storage.hotlist_change(entry, args.added)
    finally:
        storage.close()
    _out({"entry": entry, "action": "add" if args.added else "remove", "version": version})
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from terminal.wire.canonical import JsonError, parse_json

    key = keys.load_publication_key(args.publication_key)
    try:
        body = parse_json(Path(args.file).read_bytes())
    except OSError as exc:
        raise PublicationError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    except JsonError as exc:
        raise PublicationError(f"{args.file}: {exc.reason}") from None
    storage = open_storage(args.storage)
    try:
        document = storage.publish_document(
            args.kind,
            lambda version: publish.sign_document(
                publish.prepare_document(args.kind, body, version), key
            ),
        )
    finally:
        storage.close()
    _out({"published": args.kind, "version": document["version"], "key_id": key.key_id})
    return 0


def _read_text(path: str) -> str:
    """An operator's CSV or JSON file as text (UTF-8, a byte-order mark dropped)."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise PublicationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise PublicationError(f"{path}: not UTF-8 text") from None


def _publish_built(kind: str, body: dict[str, Any], args: argparse.Namespace) -> int:
    """Sign (after the terminal's parser accepted it) and store ``body`` as the next
    version of ``kind``; print the version and counts - never an entry of the body."""
    key = keys.load_publication_key(args.publication_key)
    storage = open_storage(args.storage)
    try:
        document = storage.publish_document(
            kind,
            lambda version: publish.sign_document(
                publish.prepare_document(kind, body, version), key
            ),
        )
    finally:
        storage.close()
    counts = {k: len(v) for k, v in body.items() if isinstance(v, list)}
    _out({"published": kind, "version": document["version"], "key_id": key.key_id, **counts})
    return 0


def cmd_publish_reservations(args: argparse.Namespace) -> int:
    from terminal.wire.canonical import JsonError, parse_json_text

    slots: list[Any] = []
    if args.slots:
        try:
            loaded = parse_json_text(_read_text(args.slots))
        except JsonError as exc:
            raise PublicationError(f"{args.slots}: {exc.reason}") from None
        if not isinstance(loaded, list):
            raise PublicationError(f"{args.slots}: a JSON list of {{id, start, end}}")
        slots.extend(loaded)
    slots.extend(publish.parse_slot_option(text) for text in args.slot)
    if not slots:
        raise PublicationError("give the slots: --slots FILE and/or --slot ID,START,END")
    token_key = keys.load_token_key(args.token_key)
    body = publish.reservations_body(args.venue, slots, _read_text(args.csv), token_key)
    return _publish_built(publish.KIND_RESERVATIONS, body, args)


def cmd_publish_passes(args: argparse.Namespace) -> int:
    token_key = keys.load_token_key(args.token_key)
    body = publish.passes_body(args.area, _read_text(args.csv), token_key)
    return _publish_built(publish.KIND_PASSES, body, args)


def _event_time(text: str) -> float:
    """``--since``: Unix seconds, or an ISO 8601 date/time (naive: China Standard Time)."""
    try:
        return float(text)
    except ValueError:
        pass
    when = dt.datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=CST)).timestamp()


def format_event_row(event: dict[str, Any]) -> tuple[str, str, str, str]:
    """Time (local, China Standard Time), terminal, kind and detail (``key=value``) of a
    stored event, for the table of ``backoffice events``."""
    when = dt.datetime.fromtimestamp(event["at"], CST).strftime("%Y-%m-%d %H:%M:%S")
    detail = " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in event["detail"].items()
    )
    return when, event["terminal_id"], event["kind"], detail


def cmd_events(args: argparse.Namespace) -> int:
    if args.terminal is not None and not TERMINAL_ID.fullmatch(args.terminal):
        raise PublicationError("terminal id must match [A-Za-z0-9_-]{1,32}")
    storage = open_storage(args.storage)
    try:
        events = storage.events(args.terminal, args.kind, args.since, args.limit)
    finally:
        storage.close()
    if args.json:
        for event in events:
            sys.stdout.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
        return 0
    rows = [("TIME", "TERMINAL", "KIND", "DETAIL"), *map(format_event_row, events)]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        sys.stdout.write(f"{line}  {row[3]}".rstrip() + "\n")
    return 0
