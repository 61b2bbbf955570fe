"""``onecard backoffice venue``: the occupancy of each venue, its maximum and the day's
entries per time slot; ``venue set-max --venue ID N`` sets a venue's maximum (docs/venues.md,
"Occupancy").

Output: a table for people, ``--json`` for tools (one JSON object a line, a venue each).
Errors are onecard errors, reported by the main CLI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence

from backoffice.storage import open_storage
from backoffice.venue import NO_SLOT, VenueDay
from terminal.host.clock import SystemClock, today
from terminal.venue.occupancy import OccupancyError, VenueEventError, check_code


def _venue(text: str) -> str:
    try:
        return check_code(text, "venue")
    except VenueEventError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None


def _maximum(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**63:
        raise ValueError(text)
    return value


def add_venue_commands(
    bo_sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    storage_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``venue`` (and ``venue set-max``) to ``backoffice``'s sub-parsers."""
    p = bo_sub.add_parser(
        "venue",
        help="occupancy of each venue, its maximum and the day's entries per time slot",
        description=(
            "The venues' occupancy (entries - exits, never below 0) on a day (default today, "
            "China Standard Time), their maximum and entries per time slot, from the "
            "venue_entry/venue_exit events their gates sent."
        ),
    )
    storage_option(p)
    p.add_argument("--date", type=dt.date.fromisoformat, help="the day, YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_venue)
    venue_sub = p.add_subparsers(dest="venue_command", metavar="VENUE_COMMAND")

    sp = venue_sub.add_parser(
        "set-max",
        help="set a venue's maximum: its entry gates refuse at it (full, please wait)",
    )
    storage_option(sp)
    sp.add_argument("--venue", type=_venue, required=True, help="the venue id")
    sp.add_argument("maximum", type=_maximum, nargs="?", help="visitors at most (0: closed)")
    sp.add_argument("--clear", action="store_true", help="remove the venue's maximum")
    sp.set_defaults(func=cmd_set_max)


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")


def format_venue_row(day: VenueDay) -> tuple[str, ...]:
    """The table row of one venue: id, occupancy (``!`` when full), maximum, entries,
    exits, unmatched exits, entries per slot."""
    slots = [f"{slot}={n}" for slot, n in sorted(day.slots.items()) if slot != NO_SLOT]
    if day.slots.get(NO_SLOT):
        slots.append(f"none={day.slots[NO_SLOT]}")
    return (
        day.venue,
        ("!" if day.full else "") + str(day.count.occupancy),
        "-" if day.maximum is None else str(day.maximum),
        str(day.count.entries),
        str(day.count.exits),
        str(day.count.unmatched_exits),
        " ".join(slots) or "-",
    )


def cmd_venue(args: argparse.Namespace) -> int:
    day = (args.date or today(SystemClock())).isoformat()
    storage = open_storage(args.storage)
    try:
        venues = storage.venue_days(day)
    finally:
        storage.close()
    if args.json:
        for venue in venues:
            sys.stdout.write(json.dumps(venue.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        return 0
    header = ("VENUE", "OCCUPANCY", "MAXIMUM", "ENTRIES", "EXITS", "UNMATCHED", "SLOTS")
    _table([header, *map(format_venue_row, venues)])
    full = sum(1 for v in venues if v.full)
    sys.stdout.write(f"{len(venues)} venues on {day} (China Standard Time), {full} full\n")
    return 0


def cmd_set_max(args: argparse.Namespace) -> int:
    if args.clear == (args.maximum is not None):
        raise OccupancyError("give either a maximum or --clear")
    storage = open_storage(args.storage)
    try:
        storage.set_venue_maximum(args.venue, args.maximum, SystemClock().now())
    finally:
        storage.close()
    sys.stdout.write(json.dumps({"venue": args.venue, "maximum": args.maximum}) + "\n")
    return 0
