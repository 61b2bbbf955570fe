"""``onecard sim ...``: simulated cards in the real PC/SC stack."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from firmware_sim.profile import CardProfile, load_profile, sample_names, sample_profile_path
from firmware_sim.vpcd import VPCD_BASE_PORT, VpcdBridge, slot_port
from terminal.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = sub.add_parser("sim", help="simulated cards and devices (firmware_sim)")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    p = sim_sub.add_parser(
        "card",
        help="attach a simulated card to a vpcd reader slot until stopped",
        description=(
            "Insert a simulated card (social security or T-Union) into vsmartcard's vpcd "
            "reader and answer the terminal's APDUs until interrupted (Ctrl-C or SIGTERM "
            "removes the card). "
            "PROFILE is a card profile file (TOML) or the name of a shipped sample."
        ),
    )
    p.add_argument(
        "--profile",
        default="chongqing-2.0",
        help="profile file or sample name (default: chongqing-2.0; see `onecard sim profiles`)",
    )
    p.add_argument("--slot", type=int, default=0, help="vpcd slot: port 35963 + SLOT (default 0)")
    p.add_argument(
        "--contactless",
        action="store_true",
        help="present the card contactless (PC/SC part 3 pseudo-ATR, answers FF CA with its UID)",
    )
    p.add_argument("--port", type=int, default=VPCD_BASE_PORT, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sim_card)

    p = sim_sub.add_parser("profiles", help="list the shipped sample card profiles")
    p.set_defaults(func=cmd_sim_profiles)

    p = sim_sub.add_parser(
        "psam",
        help="attach a simulated PSAM, personalised from a key file, to a vpcd slot",
    )
    p.add_argument("--keys", required=True, help="key file (TOML) with the master keys")
    p.add_argument("--slot", type=int, default=2, help="vpcd slot (default 2)")
    p.add_argument("--port", type=int, default=VPCD_BASE_PORT, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sim_psam)

    p = sim_sub.add_parser(
        "issue",
        help="make test keys, trust material and personalised cards (secrets made now)",
        description=(
            "Make a test world into DIR: keys.toml (master keys: the software secure module's "
            "key file, and what `onecard sim psam` is personalised from), trust.json (root, "
            "issuers, a revoked issuer), pki/*.key and cards/*.toml - genuine Chongqing 2.0 "
            "(T=1 and a T=0 field-shaped card), Zhejiang 2.0, Sichuan 3.0 and Sichuan 3.0 "
            "transit cards, forged, cloned, expired-certificate, revoked-issuer, "
            "unknown-issuer, blocked and SSF33 cards, and two plain T-Union cards - with "
            "world.json saying which verdict each card should get and what it is for. Files "
            "holding secrets are mode 0600."
        ),
    )
    p.add_argument("what", choices=["world"], help="what to issue")
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument(
        "--algorithm", choices=["sm2", "ecdsa-p256"], default="sm2", help="PKI algorithm"
    )
    p.add_argument("--today", help="issue as of this date (YYYY-MM-DD; default: today)")
    p.add_argument(
        "--tac-scheme",
        choices=["dpk-variant", "separate-master"],
        default="dpk-variant",
        help="how the e-purses' TAC keys are made (unconfirmed, docs/transit.md): from the "
        "purchase key DPK (default), or a DTK from a separate issuer TAC master, written "
        "to issuer-keys.toml",
    )
    p.set_defaults(func=cmd_sim_issue)


def cmd_sim_card(args: argparse.Namespace) -> int:
    from firmware_sim.ssc_applet import build_card

    profile = resolve_profile(args.profile)
    card = build_card(profile, contactless=args.contactless)
    kind = "contactless" if args.contactless else "contact"
    return _serve_until_stopped(card, args.slot, args.port, f"card {args.profile} ({kind})")


def _serve_until_stopped(card, slot: int, port: int, what: str) -> int:
    bridge = VpcdBridge(card, slot=slot, base_port=port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    bridge.insert()
    print(
        f"{what} (ATR {card.atr.hex().upper()}) in vpcd slot {slot} "
        f"(port {slot_port(slot, port)}); Ctrl-C removes it",
        flush=True,
    )
    stop.wait()
    bridge.remove()
    return 0


def cmd_sim_psam(args: argparse.Namespace) -> int:
    from firmware_sim.keys import MasterKeys
    from firmware_sim.psam_applet import build_psam
    from terminal.secure.keyfile import load_key_file

    # The key file is the terminal's format; the PSAM takes the plain master keys in it.
    keys = MasterKeys.coerce(load_key_file(args.keys))
    return _serve_until_stopped(build_psam(keys), args.slot, args.port, "PSAM")


def cmd_sim_issue(args: argparse.Namespace) -> int:
    import datetime

    from firmware_sim.issuing import issue_world
    from terminal.crypto.signing import Algorithm

    today = datetime.date.fromisoformat(args.today) if args.today else None
    algorithm = Algorithm.SM2 if args.algorithm == "sm2" else Algorithm.ECDSA_P256
    manifest = issue_world(Path(args.out), today, algorithm, tac_scheme=args.tac_scheme)
    cards = manifest["cards"]
    assert isinstance(cards, dict)
    print(
        f"issued into {args.out}: keys.toml, issuer-keys.toml ({args.tac_scheme}), "
        f"trust.json, {len(cards)} cards"
    )
    for name, card in cards.items():
        expected = card["expected"] or f"({card['purpose']})"
        print(f"  {name:<24} -> {expected:<22} {card['story']}")
    return 0


def cmd_sim_profiles(args: argparse.Namespace) -> int:
    for name in sample_names():
        print(f"{name}\t{sample_profile_path(name)}")
    return 0


def resolve_profile(name_or_path: str) -> CardProfile:
    """A profile from a file path, or a shipped sample by name."""
    if Path(name_or_path).is_file():
        return load_profile(name_or_path)
    if name_or_path in sample_names():
        return load_profile(sample_profile_path(name_or_path))
    raise ConfigError(
        f"no profile file {name_or_path!r} and no sample of that name "
        f"(samples: {', '.join(sample_names())})"
    )
