"""``onecard demo``: what ``make demo`` runs - simulated cards read and verified through
pcscd, then a morning at a museum gate, on a bus and at a hospital counter."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> int:
    from onecard.demo import run_demo
    from onecard.demo_morning import run_morning

    failures = 0
    if args.part in ("cards", "all"):
        failures += run_demo(print)
        print()
    if args.part in ("morning", "all"):
        failures += run_morning(print, Path(args.screens) if args.screens else None)
    return 1 if failures else 0


# --- wiring ---------------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register demo."""
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
