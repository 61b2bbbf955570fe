"""``onecard readers|read|verify|pin|purse``: a card in a reader, read, verified, its PIN,
its e-purse. Each command connects through the reader back-end the options name (the
``drivers`` registry) and prints text or JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from terminal.devices.reader import ReaderBackend
from terminal.errors import (
    ConfigError,
)
from terminal.ssc.secure_module import SecureModule
from terminal.ssc.session import ReadMode

if TYPE_CHECKING:
    import datetime

    from terminal.trace.record import RecordingBackend

from onecard.exitcodes import EXIT_HELP, EXIT_NOT_GENUINE, EXIT_PIN_BLOCKED, EXIT_PIN_WRONG


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
    from terminal.trace.record import RecordingBackend

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
    from terminal.host.secretfile import write_secret_file
    from terminal.trace.format import Expectation, Flow, format_trace

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
    from terminal.trace.record import RecordingRandom

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


def cmd_pin(args: argparse.Namespace) -> int:
    from terminal.devices.pinpad import ConsolePinPad
    from terminal.devices.reader import CardChannel
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
    from terminal.devices.reader import CardChannel
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


def reader_options(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--protocol``: which reader back-end, which protocol."""
    p.add_argument("--backend", default="pcsc", help="reader back-end (default: pcsc)")
    p.add_argument("--protocol", choices=["T=0", "T=1"], help="force a protocol (default: any)")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register readers, read, verify, pin and purse."""
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
