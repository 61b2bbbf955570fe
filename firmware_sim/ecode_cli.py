"""``onecard code world|issue|render``: the issuing side of electronic-card codes."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from terminal.errors import ConfigError
from terminal.host.operatorfile import load_operator_json

ISSUERS = {"active": "issuer", "revoked": "revoked_issuer", "unknown": "unknown_issuer"}


def add_issuing_commands(code_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = code_sub.add_parser(
        "world",
        help="make test keys and a signed trust list for e-codes (secrets made now)",
        description=(
            "Write an e-code world into DIR: a root key pair (the back office's), an active, a "
            "revoked and an unknown issuer key pair, trust-list.json signed by the root, a card "
            "token key, and manifest.json naming them. Private keys are mode 0600."
        ),
    )
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument("--algorithm", choices=["sm2", "ecdsa-p256"], default="sm2")
    p.set_defaults(func=cmd_code_world)

    p = code_sub.add_parser(
        "issue",
        help="issue a signed dynamic code for a card",
        description="Print the text of a signed e-code (SC1:...) for a card, valid now or at --at.",
    )
    p.add_argument("--world", required=True, help="an e-code world made by `onecard code world`")
    p.add_argument(
        "--issuer", choices=sorted(ISSUERS), default="active", help="which issuer key signs"
    )
    p.add_argument("--region", help="issuing region, 6 digits (default: the world's card)")
    p.add_argument("--card-number", help="9-character card number (default: the world's card)")
    p.add_argument("--category", choices=["1", "2", "3", "4"], help="card category")
    p.add_argument("--at", help="issued-at, ISO 8601 (default: now)")
    p.add_argument("--validity", type=int, default=60, help="seconds, at most 120 (default 60)")
    p.add_argument("--scope", help="optional service scope")
    p.set_defaults(func=cmd_code_issue)

    p = code_sub.add_parser("render", help="render a code as a QR image (PNG)")
    p.add_argument("code", help="the code text")
    p.add_argument("out", help="output PNG path")
    p.add_argument("--box-size", type=int, default=8, help="pixels per module (default 8)")
    p.set_defaults(func=cmd_code_render)


def _manifest(world: str) -> dict:
    manifest = load_operator_json(Path(world) / "manifest.json", "e-code world manifest")
    if not isinstance(manifest, dict):
        raise ConfigError(f"{world}/manifest.json: an e-code world manifest is a JSON object")
    return manifest


def cmd_code_world(args: argparse.Namespace) -> int:
    from firmware_sim.ecode_issuing import issue_ecode_world
    from terminal.crypto.signing import Algorithm

    manifest = issue_ecode_world(args.out, Algorithm(args.algorithm))
    print(f"e-code world in {args.out}: trust list v{manifest['trust_list_version']}")
    for role in ISSUERS.values():
        print(f"  {role:<15} key id {manifest[role]['key_id']}")
    return 0


def cmd_code_issue(args: argparse.Namespace) -> int:
    from firmware_sim.ecode_issuing import issue_code, read_private_key
    from terminal.crypto.signing import Algorithm
    from terminal.errors import OneCardError

    manifest = _manifest(args.world)
    algorithm = Algorithm(manifest["algorithm"])
    issuer = manifest[ISSUERS[args.issuer]]
    card = manifest["card"]
    issued_at = int(dt.datetime.fromisoformat(args.at).timestamp()) if args.at else int(time.time())
    try:
        text = issue_code(
            read_private_key(issuer["private_key"], algorithm),
            bytes.fromhex(issuer["key_id"]),
            algorithm,
            args.region or card["region"],
            args.card_number or card["card_number"],
            args.category or card["category"],
            issued_at,
            validity=args.validity,
            scope=args.scope,
        )
    except (ValueError, OneCardError) as exc:
        reason = exc.reason if isinstance(exc, OneCardError) else str(exc)
        raise ConfigError(f"cannot issue this code: {reason}") from None
    print(text)
    return 0


def cmd_code_render(args: argparse.Namespace) -> int:
    from firmware_sim.qr_frames import qr_version, render_code

    render_code(args.code, args.out, box_size=args.box_size)
    print(f"{args.out}: QR version {qr_version(args.code)}, error correction M")
    return 0
