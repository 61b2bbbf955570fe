"""``onecard code verify|scan-image`` and ``onecard scan``: electronic-card codes at the terminal.

The verifier options are shared: a trust list and the root key that signs it (or an e-code
world directory naming both), a replay cache file, and the tolerated clock skew.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from terminal.crypto.signing import Algorithm
from terminal.ecode.replay import ReplayCache
from terminal.ecode.trustlist import load_trust_list
from terminal.ecode.verify import CodeResult, CodeVerifier
from terminal.ecode.world import load_world, read_hex_key_file
from terminal.errors import ConfigError
from terminal.host.clock import SystemClock


def default_replay_cache() -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return state / "onecard" / "replay.db"


def verifier_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    group = p.add_argument_group("verification")
    group.add_argument("--world", help="an e-code world directory (trust list + root key)")
    group.add_argument("--trust-list", help="the signed trust list (JSON)")
    group.add_argument("--root-key", help="the back office root public key (hex file)")
    group.add_argument(
        "--root-algorithm", choices=["sm2", "ecdsa-p256"], default="sm2", help="root key type"
    )
    group.add_argument(
        "--replay-cache",
        help=f"replay cache file, kept across restarts (default: {default_replay_cache()})",
    )
    group.add_argument("--skew", type=int, default=30, help="clock skew tolerated, seconds")
    p.set_defaults(verifier_required=required)


def open_verifier(args: argparse.Namespace) -> CodeVerifier | None:
    """The verifier the options describe; None when none is configured and none is needed."""
    trust_path, root_path, algorithm = args.trust_list, args.root_key, args.root_algorithm
    replay_path = args.replay_cache
    if args.world:
        world = load_world(args.world)
        trust_path = trust_path or world.trust_list
        root_path = root_path or world.root_public_key
        algorithm = world.algorithm.value
        replay_path = replay_path or str(Path(args.world) / "replay.db")
    if not trust_path or not root_path:
        if args.verifier_required:
            raise ConfigError("give --world DIR, or --trust-list FILE and --root-key FILE")
        return None
    root_key = read_hex_key_file(root_path, "root public key")
    clock = SystemClock()
    trust_list = load_trust_list(trust_path, root_key, Algorithm(algorithm))
    replay_file = Path(replay_path) if replay_path else default_replay_cache()
    replay_file.parent.mkdir(parents=True, exist_ok=True)
    return CodeVerifier(trust_list, ReplayCache(replay_file, clock), clock, args.skew)


def _result_json(result: CodeResult, text: str) -> dict[str, object]:
    data: dict[str, object] = {"text": text}
    data.update(result.to_json())
    return data


def cmd_code_verify(args: argparse.Namespace) -> int:
    verifier = open_verifier(args)
    assert verifier is not None
    result = verifier.verify(args.text)
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print(f"{result.verdict.value}: {result.reason}")
    return 0 if result.accepted else 13


def cmd_code_scan_image(args: argparse.Namespace) -> int:
    from drivers.camera import decode_image
    from terminal.errors import OneCardError

    verifier = open_verifier(args)
    failures = 0
    for image in args.images:
        line: dict[str, object] = {"image": image}
        try:
            texts = decode_image(image)
        except OneCardError as error:
            texts, line["error"] = [], error.reason
        if not texts:
            line.setdefault("error", "no QR code decoded")
            failures += 1
        else:
            line["text"] = texts[0]
            if verifier is not None:
                result = verifier.verify(texts[0])
                line.update(result.to_json())
                failures += not result.accepted
        if args.json:
            print(json.dumps(line, ensure_ascii=False), flush=True)
        else:
            verdict = line.get("verdict", "")
            print(f"{image}: {line.get('text') or line.get('error')} {verdict}".rstrip())
    return 0 if failures == 0 else 13


def cmd_scan(args: argparse.Namespace) -> int:
    import drivers

    verifier = open_verifier(args)
    if args.serial:
        scanner = drivers.scanner_backend("serial", port=args.serial, baudrate=args.baudrate)
    else:
        source: int | str = int(args.camera) if args.camera.isdigit() else args.camera
        scanner = drivers.scanner_backend("camera", source=source)
    try:
        while True:
            event = scanner.read(timeout=1.0)
            if event is None:
                if getattr(scanner, "exhausted", False):
                    return 0
                continue
            text = event.text.rstrip("\r\n")
            line: dict[str, object] = {"source": event.source, "symbology": event.symbology}
            line["text"] = text
            if verifier is not None:
                line.update(verifier.verify(text).to_json())
            if args.json:
                print(json.dumps(line, ensure_ascii=False), flush=True)
            else:
                verdict = f" -> {line['verdict']}" if "verdict" in line else ""
                print(f"[{event.source}] {text}{verdict}", flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        scanner.close()


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    code = sub.add_parser("code", help="electronic social security card codes (QR)")
    code_sub = code.add_subparsers(dest="code_command", metavar="CODE_COMMAND", required=True)

    p = code_sub.add_parser(
        "verify",
        help="verify one code text offline",
        description=(
            "Verify an e-code offline: format, issuer in the trust list, signature, time window "
            "(with --skew), replay cache. Verdicts: valid, expired, not_yet_valid, "
            "bad_signature, unknown_issuer, issuer_revoked, replayed, malformed, not_our_code. "
            "Exit 0 for valid, 13 otherwise."
        ),
    )
    p.add_argument("text", help="the scanned code text (SC1:...)")
    p.add_argument("--json", action="store_true", help="print JSON")
    verifier_options(p)
    p.set_defaults(func=cmd_code_verify)

    p = code_sub.add_parser(
        "scan-image",
        help="decode (zxing-cpp) and verify QR codes in image files",
        description=(
            "Decode each image and, when a trust list is configured, verify the code: one JSON "
            "line per image with the decoded text (even when verification fails), the verdict, "
            "or an error when nothing was decoded."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    verifier_options(p, required=False)
    p.set_defaults(func=cmd_code_scan_image)

    from firmware_sim.ecode_cli import add_issuing_commands

    add_issuing_commands(code_sub)

    p = sub.add_parser(
        "scan",
        help="print codes from a serial scanner or a camera as they come",
        description=(
            "Read codes from a serial QR scanner (--serial PORT) or a camera (--camera SOURCE: a "
            "device index, a video file or a URL) and print each as it comes, verified when a "
            "trust list is configured. Ctrl-C stops; a video file stops at its end."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--serial", metavar="PORT", help="serial port of the scanner")
    source.add_argument("--camera", metavar="SOURCE", help="camera index, video file or URL")
    p.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
    p.add_argument("--json", action="store_true", help="print JSON lines")
    verifier_options(p, required=False)
    p.set_defaults(func=cmd_scan)
