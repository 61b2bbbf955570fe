"""``onecard sim ...``: simulated cards in the real PC/SC stack."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from firmware_sim.profile import CardProfile, load_profile, sample_names, sample_profile_path
from firmware_sim.vpcd import VPCD_BASE_PORT, VpcdBridge, slot_port
from terminal.errors import ConfigError


def add_sim_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sim = sub.add_parser("sim", help="simulated cards and devices (firmware_sim)")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    p = sim_sub.add_parser(
        "card",
        help="attach a simulated card to a vpcd reader slot until stopped",
        description=(
            "Insert a simulated social security card into vsmartcard's vpcd reader and answer "
            "the terminal's APDUs until interrupted (Ctrl-C or SIGTERM removes the card). "
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


def cmd_sim_card(args: argparse.Namespace) -> int:
    from firmware_sim.ssc_applet import build_card

    profile = resolve_profile(args.profile)
    card = build_card(profile, contactless=args.contactless)
    bridge = VpcdBridge(card, slot=args.slot, base_port=args.port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    bridge.insert()
    kind = "contactless" if args.contactless else "contact"
    print(
        f"card {args.profile} ({kind}, ATR {card.atr.hex().upper()}) in vpcd slot {args.slot} "
        f"(port {slot_port(args.slot, args.port)}); Ctrl-C removes it",
        flush=True,
    )
    stop.wait()
    bridge.remove()
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
