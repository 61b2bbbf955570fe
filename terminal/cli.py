"""``onecard``: the command line of the one-card terminal.

This module is the composition root: it alone picks concrete drivers (by name, through the
``drivers`` registry) and hands them to the domain code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from terminal import ldt33
from terminal.errors import (
    CardError,
    CardRemovedError,
    ConfigError,
    NoCardError,
    NoReaderError,
    NoTransitApplicationError,
    NotSocialSecurityCardError,
    OneCardError,
    ParseError,
    PcscUnavailableError,
)
from terminal.reader import ReaderBackend
from terminal.secure.module import SecureModule
from terminal.ssc.session import ReadMode

if TYPE_CHECKING:
    import datetime

    from terminal.tracerecord import RecordingBackend

# Distinct exit codes, so scripts can tell failures apart without parsing text.
EXIT_CODES: dict[type[OneCardError], int] = {
    NoReaderError: 3,
    NoCardError: 4,
    NotSocialSecurityCardError: 5,
    CardRemovedError: 6,
    PcscUnavailableError: 7,
    ParseError: 8,
    CardError: 9,
    ConfigError: 10,
    NoTransitApplicationError: 16,
}

EXIT_HELP = """\
exit codes:
  0 success            3 no reader          4 no card
  5 not a social security card               6 card removed during the read
  7 PC/SC service (pcscd) not running        8 malformed card answer
  9 card refused a command                   10 bad configuration or profile
  11 wrong PIN                               12 PIN blocked
  13 card not genuine (verify), code not valid (code verify)
  14 sync round failed (sync --once)         15 card is hotlisted (hotlist lookup)
  16 no T-Union e-purse on the card (purse)
  1 any other error
"""


def exit_code(error: OneCardError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def _reader_backend(args: argparse.Namespace) -> ReaderBackend:
    import drivers

    options = {"protocol": args.protocol} if getattr(args, "protocol", None) else {}
    return drivers.reader_backend(args.backend, **options)


# --- onecard readers ------------------------------------------------------------------------


def cmd_readers(args: argparse.Namespace) -> int:
    from drivers.pcsc import is_contactless_atr

    infos = _reader_backend(args).readers()
    rows = [
        {
            "reader": info.name,
            "card_present": info.card_present,
            "atr": info.atr.hex().upper() if info.atr else None,
            "interface": (
                ("contactless" if is_contactless_atr(info.atr) else "contact") if info.atr else None
            ),
        }
        for info in infos
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    elif not rows:
        print("no readers")
    else:
        for row in rows:
            card = f"card {row['atr']} ({row['interface']})" if row["card_present"] else "empty"
            print(f"{row['reader']}: {card}")
    return 0


# --- onecard read ---------------------------------------------------------------------------


def cmd_read(args: argparse.Namespace) -> int:
    from terminal.ssc.reading import read_card

    backend, recorder = _traced_backend(args)
    expect: list[str] = []
    try:
        reading = read_card(backend, args.reader, ReadMode(args.mode))
        expect = [f"holder={'none' if reading.ssc.holder is None else 'present'}"]
    finally:
        _write_trace(args, recorder, "read", expect=expect)
    if args.format == "ireadcardbas":
        print(reading.to_ireadcardbas(reveal=args.reveal, device_number=args.device_number))
    elif args.json or args.format == "json":
        print(json.dumps(reading.to_json(reveal=args.reveal), ensure_ascii=False))
    else:
        _print_reading(reading.to_json(reveal=args.reveal))
    return 0


def _print_reading(data: dict[str, object]) -> None:
    labels = [
        ("reader", "reader"),
        ("interface", "interface"),
        ("atr", "ATR"),
        ("uid", "UID"),
        ("region", "region"),
        ("card_number", "card number"),
        ("card_number_valid", "check character ok"),
        ("card_id", "card id"),
        ("category", "category"),
        ("spec_version", "spec version"),
        ("issue_date", "issued"),
        ("expiry_date", "expires"),
    ]
    for key, label in labels:
        if data.get(key) is not None:
            print(f"{label:>20}: {data[key]}")
    holder = data.get("holder")
    if isinstance(holder, dict):
        for key, value in holder.items():
            print(f"{key:>20}: {value}")
    else:
        print(f"{'holder':>20}: not readable")
    for item in data.get("unreadable") or []:
        print(f"{'unreadable':>20}: {item}")
    print(f"{'APDUs':>20}: {data['apdu_count']} ({data['read_mode']})")


# --- --trace: recording what the terminal exchanged (docs/traces.md) -----------------------


def _traced_backend(args: argparse.Namespace) -> tuple[ReaderBackend, RecordingBackend | None]:
    """The reader back-end, wrapped in a recorder when ``--trace`` asks for one."""
    backend = _reader_backend(args)
    if not getattr(args, "trace", None):
        return backend, None
    from terminal.tracerecord import RecordingBackend

    psam = getattr(args, "psam", None)
    recorder = RecordingBackend(backend, psam_reader=psam, raw=args.trace_raw)
    return recorder, recorder


def _write_trace(
    args: argparse.Namespace,
    recorder: RecordingBackend | None,
    flow: str,
    randoms: Sequence[bytes] = (),
    today: datetime.date | None = None,
    expect: Sequence[str] = (),
) -> None:
    """Write the recorded session to ``--trace`` FILE, also when the flow failed (a card that
    fails is the one worth a trace)."""
    if recorder is None:
        return
    from terminal.secretfile import write_secret_file
    from terminal.tracefile import Expectation, Flow, format_trace

    items = [Expectation(*item.split("=", 1)) for item in expect]
    extra = [("recorded-by", f"onecard {flow}")]
    if getattr(args, "keys", None):
        # Cryptograms of a key file leave no PSAM exchange a replay could answer from.
        extra.append(("secure-module", "software"))
    trace = recorder.trace(flow=Flow(flow), randoms=randoms, today=today, expect=items, extra=extra)
    # Mode 0600, atomically: a trace holds card identifiers even with holder data masked.
    write_secret_file(args.trace, format_trace(trace))


def trace_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trace",
        metavar="FILE",
        help="write what the terminal exchanged with the card (and PSAM) to FILE as an onecard "
        "trace (docs/traces.md); holder data (EF06) is replaced by a filler, PINs never written",
    )
    p.add_argument(
        "--trace-raw",
        action="store_true",
        help="with --trace: keep holder data as the card answered it (never commit such a file)",
    )


# --- onecard verify -------------------------------------------------------------------------


def open_secure_module(
    args: argparse.Namespace, backend: ReaderBackend | None = None
) -> SecureModule | None:
    """The secure module the options name: a key file, a PSAM reader (in ``backend``, by
    default the options' reader back-end), or none."""
    if getattr(args, "keys", None):
        from terminal.secure.software import SoftwareSecureModule

        return SoftwareSecureModule.from_file(args.keys)
    if getattr(args, "psam", None):
        from terminal.secure.psam import PsamSecureModule

        return PsamSecureModule.open(backend or _reader_backend(args), args.psam)
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    import datetime

    from terminal.pki.truststore import load_trust_store
    from terminal.ssc.auth import random_bytes
    from terminal.ssc.reading import verify_card_in_reader
    from terminal.tracerecord import RecordingRandom

    today = datetime.date.fromisoformat(args.today) if args.today else datetime.date.today()
    store = load_trust_store(args.trust, today) if args.trust else None
    backend, recorder = _traced_backend(args)
    random = RecordingRandom(random_bytes)  # the terminal's randoms, for --trace
    expect: list[str] = []
    try:
        module = open_secure_module(args, backend)
        try:
            reading, verification = verify_card_in_reader(
                backend, args.reader, module, store, today, random=random
            )
            expect = [f"verdict={verification.verdict.value}"] + [
                f"{name}={check.check.value}" for name, check in verification.checks.items()
            ]
        finally:
            if module is not None:
                module.close()
    finally:
        _write_trace(args, recorder, "verify", random.values, today, expect)
    data: dict[str, object] = reading.to_json(reveal=args.reveal) if reading else {}
    data.update(verification.to_json())
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        if reading is not None:
            _print_reading(reading.to_json(reveal=args.reveal))
        print(f"{'verdict':>20}: {verification.verdict.value}")
        print(f"{'reason':>20}: {verification.reason}")
        for name, check in verification.checks.items():
            print(f"{name:>20}: {check.check.value} - {check.detail}")
    return 0 if verification.verdict.value == "genuine" else EXIT_NOT_GENUINE


# --- onecard pin ----------------------------------------------------------------------------

EXIT_NOT_GENUINE = 13
EXIT_PIN_WRONG = 11
EXIT_PIN_BLOCKED = 12


def cmd_pin(args: argparse.Namespace) -> int:
    from terminal.pinpad import ConsolePinPad
    from terminal.reader import CardChannel
    from terminal.ssc.pin import PinOutcome, change_pin, verify_pin
    from terminal.ssc.reading import choose_reader

    pad = ConsolePinPad(sys.stdin if args.pin_stdin else None)
    backend = _reader_backend(args)
    reader = choose_reader(backend, args.reader)
    if args.pin_command == "verify":
        pins = [pad.read_pin("PIN: ")]
    else:
        old = pad.read_pin("current PIN: ")
        new = pad.read_pin("new PIN: ")
        if pad.read_pin("new PIN again: ") != new:
            raise ConfigError("the new PIN was not typed the same twice; nothing changed")
        pins = [old, new]
    connection = backend.connect(reader)
    try:
        channel = CardChannel(connection)
        result = verify_pin(channel, *pins) if len(pins) == 1 else change_pin(channel, *pins)
    finally:
        connection.close()
        pins.clear()
    if args.json:
        print(json.dumps(result.to_json()))
    elif result.outcome is PinOutcome.OK:
        print("PIN verified" if args.pin_command == "verify" else "PIN changed")
    elif result.outcome is PinOutcome.WRONG:
        print(f"wrong PIN: {result.tries_left} tries left")
    else:
        print("PIN blocked: the card must be unblocked at a service counter")
    return {PinOutcome.OK: 0, PinOutcome.WRONG: EXIT_PIN_WRONG}.get(
        result.outcome, EXIT_PIN_BLOCKED
    )


# --- onecard purse --------------------------------------------------------------------------


def cmd_purse(args: argparse.Namespace) -> int:
    from terminal.reader import CardChannel
    from terminal.ssc.reading import choose_reader
    from terminal.transit.purse import read_purse

    backend = _reader_backend(args)
    connection = backend.connect(choose_reader(backend, args.reader))
    try:
        reading = read_purse(CardChannel(connection))
    finally:
        connection.close()
    data = reading.to_json()
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    labels = [
        ("app_serial", "application serial"),
        ("issuer_code", "issuer code"),
        ("city_code", "city code"),
        ("industry_code", "industry code"),
        ("app_type", "application type"),
        ("app_version", "application version"),
        ("start_date", "valid from"),
        ("expiry_date", "expires"),
        ("card_type", "card type"),
    ]
    for key, label in labels:
        print(f"{label:>20}: {data[key]}")
    print(f"{'balance':>20}: {data['balance_yuan']} yuan ({data['balance_fen']} fen)")
    print(f"{'purchase log':>20}: {len(reading.purchase_log)} (ended: {data['purchase_log_end']})")
    for entry in data["purchase_log"]:
        print(
            f"{'#' + str(entry['number']):>20}: {entry['when']} {entry['type_name']} "
            f"{entry['amount_yuan']} yuan, counter {entry['counter']}, "
            f"terminal {entry['terminal']}, overdraft {entry['overdraft_fen']} fen"
        )
    print(f"{'trip records':>20}: {len(reading.trips)} (ended: {data['trips_end']})")
    for trip in data["trips"]:
        print(
            f"{'#' + str(trip['number']):>20}: {trip['when']} {trip['type_name']} "
            f"{trip['amount_yuan']} yuan, balance after {trip['balance_after_yuan']}, "
            f"line {trip['line']} station {trip['station']}, terminal {trip['terminal']}"
        )
    for odd in data["odd_records"]:
        print(f"{'odd record':>20}: {odd['file']} #{odd['number']}: {odd['reason']}")
    print(f"{'APDUs':>20}: {data['apdu_count']}")
    return 0


# --- onecard demo ---------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from terminal.demo import run_demo
    from terminal.demo_morning import run_morning

    failures = 0
    if args.part in ("cards", "all"):
        failures += run_demo(print)
        print()
    if args.part in ("morning", "all"):
        failures += run_morning(print, Path(args.screens) if args.screens else None)
    return 1 if failures else 0


# --- wiring ---------------------------------------------------------------------------------


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

    def reader_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", default="pcsc", help="reader back-end (default: pcsc)")
        p.add_argument("--protocol", choices=["T=0", "T=1"], help="force a protocol (default: any)")

    p = sub.add_parser(
        "readers",
        help="list card readers and the cards in them",
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reader_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_readers)

    p = sub.add_parser(
        "read",
        help="read the social security application of a card",
        description=(
            "Read the card's issuer data (EF05) and, where the card allows, holder data (EF06). "
            "Holder data is masked unless --reveal is given."
        ),
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reader_options(p)
    p.add_argument("--reader", help="reader name (default: the first reader with a card)")
    p.add_argument("--json", action="store_true", help="print JSON (same as --format json)")
    p.add_argument(
        "--format",
        choices=["text", "json", "ireadcardbas"],
        default="text",
        help="output format; ireadcardbas is the LD/T 33 pipe string hospital systems read",
    )
    p.add_argument("--reveal", action="store_true", help="show holder data unmasked")
    p.add_argument(
        "--mode",
        choices=[m.value for m in ReadMode],
        default="auto",
        help=(
            "record read strategy: multi-record (one READ RECORD per file), per-tag (SELECT the "
            "file, one READ RECORD per tag, as field readers do); default auto: multi-record, "
            "falling back to per-tag when the card does not offer it"
        ),
    )
    p.add_argument(
        "--device-number", default="", help="terminal device number for --format ireadcardbas"
    )
    trace_options(p)
    p.set_defaults(func=cmd_read)

    p = sub.add_parser(
        "verify",
        help="prove a card genuine: card authentication, PKI, verdict",
        description=(
            "Read the card and establish that it is genuine: internal authentication with a "
            "secure module (--keys key file or --psam reader), external authentication to "
            "unlock holder data on 3.0 cards, and for 3.0 cards the certificate chain and a "
            "dynamic signature against a trust store (--trust). Prints the identity and the "
            "verdict: genuine, forged, cloned, certificate_expired, issuer_revoked, "
            "unknown_issuer, blocked, unsupported_algorithm, unverified, not_ssc (no social "
            "security application) or card_error. "
            "Exit 0 only for genuine, 13 for any other verdict."
        ),
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reader_options(p)
    p.add_argument("--reader", help="reader name (default: the first reader with a card)")
    module = p.add_mutually_exclusive_group()
    module.add_argument("--keys", help="software secure module: operator key file (TOML)")
    module.add_argument("--psam", metavar="READER", help="secure module: the PSAM in READER")
    p.add_argument("--trust", help="trust store (JSON) for 3.0 card certificates")
    p.add_argument("--today", help="verify as of this date (YYYY-MM-DD; default: today)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--reveal", action="store_true", help="show holder data unmasked")
    trace_options(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "pin",
        help="verify or change the holder PIN on the PIN pad (console)",
        description=(
            "Verify or change the card holder's PIN. The PIN is typed without echo (or read "
            "one per line from standard input with --pin-stdin) and is never logged or kept. "
            "Exit 11: wrong PIN (tries left shown); 12: PIN blocked."
        ),
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pin_command", choices=["verify", "change"])
    reader_options(p)
    p.add_argument("--reader", help="reader name (default: the first reader with a card)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--pin-stdin", action="store_true", help="read PINs from standard input, one per line"
    )
    p.set_defaults(func=cmd_pin)

    p = sub.add_parser(
        "purse",
        help="read the T-Union e-purse: balance, purchase log, trip records",
        description=(
            "Read the card's T-Union (交通联合) e-purse without changing it: file 0x15 (serial, "
            "issuer, city, validity, card type), the balance, the purchase log (0x18) and the "
            "trip records (0x1E), newest first. Exit 16: the card has no e-purse."
        ),
        epilog=EXIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reader_options(p)
    p.add_argument("--reader", help="reader name (default: the first reader with a card)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_purse)

    p = sub.add_parser(
        "demo",
        help="simulated cards read and verified through pcscd, then a morning of three terminals",
        description=(
            "Part 'cards': sample cards read through pcscd, then one card of every verdict "
            "verified with a PSAM. Part 'morning': a museum gate, a bus validator and a "
            "hospital counter run with an embedded back office, against simulated cards and "
            "a pty scanner; a table of what happened and why, then the back office's count. "
            "Each terminal serves its holder screen; the gate's and the counter's are "
            "photographed after every transaction in headless Chromium (--screens)."
        ),
    )
    p.add_argument("--part", choices=["cards", "morning", "all"], default="all")
    p.add_argument(
        "--screens",
        metavar="DIR",
        default="demo-screens",
        help="where the holder screen's screenshots go (default: demo-screens; '' for none)",
    )
    p.set_defaults(func=cmd_demo)

    from firmware_sim.cli import add_sim_commands
    from terminal.ecode.cli import add_code_commands

    add_code_commands(sub)

    from terminal.journal.cli import add_journal_commands

    add_journal_commands(sub)

    from terminal.runtime.cli import add_run_commands

    add_run_commands(sub)

    from terminal.sync.cli import add_sync_commands

    add_sync_commands(sub)

    from terminal.screen.cli import add_screen_commands

    add_screen_commands(sub)

    from backoffice.cli import add_backoffice_commands

    add_backoffice_commands(sub)

    add_sim_commands(sub)
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
        from terminal.logformat import JsonFormatter

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
