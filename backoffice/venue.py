"""Venue occupancy at the back office (docs/venues.md, "Occupancy"): how many visitors each
venue holds, from the ``venue_entry`` and ``venue_exit`` events its gates send
(:mod:`terminal.venue.occupancy`), its maximum, and the answer to
``GET /v1/occupancy?venue=ID``.

The count is kept as events arrive, not computed per request: :meth:`VenueStorage.
count_venue_events` runs inside the transaction that stores a batch of terminal events
(:meth:`backoffice.storage._SqlStorage.store_events`), so an event is stored and counted
together or neither, and exactly once (a repeat is not stored, so not counted). The
counters are per venue and per day (China Standard Time, of the event's time): a venue is
empty at the start of each day, so an exit a gate missed yesterday does not stay in the
count, and a gate that was offline and sends yesterday's passages this morning moves
yesterday's figures, not today's. Exits are applied in order of arrival and never take a
day below zero (an exit of a visitor no gate saw enter); such exits are counted apart
(``unmatched_exits``).

:func:`apply_movements` is the arithmetic, pure; :class:`VenueStorage` is the SQL (a mixin
of the storage classes like :class:`backoffice.fleet_storage.FleetStorage`, in the shared
``?`` SQL; tables :data:`VENUE_SCHEMA`: SQLite at open, PostgreSQL migration 4 of
:mod:`backoffice.migrations`). No card token, name or ID number is involved anywhere: the
events carry none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from backoffice.errors import BadRequestError
from terminal.host.clock import CST
from terminal.venue.occupancy import (
    MOVEMENT_KINDS,
    Movement,
    OccupancyAnswer,
    VenueEventError,
    check_code,
    movement_of,
)
from terminal.wire.events import TerminalEvent

log = logging.getLogger(__name__)

VENUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS venue_limits (
    venue TEXT PRIMARY KEY,
    maximum BIGINT NOT NULL,
    set_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS venue_days (
    venue TEXT NOT NULL,
    day TEXT NOT NULL,
    occupancy BIGINT NOT NULL,
    entries BIGINT NOT NULL,
    exits BIGINT NOT NULL,
    unmatched_exits BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (venue, day)
);
CREATE INDEX IF NOT EXISTS venue_days_day ON venue_days (day);
CREATE TABLE IF NOT EXISTS venue_slots (
    venue TEXT NOT NULL,
    day TEXT NOT NULL,
    slot TEXT NOT NULL,
    entries BIGINT NOT NULL,
    PRIMARY KEY (venue, day, slot)
)
"""
"""The running counters: per venue and day (``YYYY-MM-DD``, China Standard Time), entries
per time slot (``slot`` ``''``: entries without one), and the maxima set by operators."""

NO_SLOT = ""
"""``venue_slots.slot`` of entries without a time slot."""


def day_of(when: float) -> str:
    """The day (``YYYY-MM-DD``, China Standard Time) of Unix time ``when``."""
    return dt.datetime.fromtimestamp(when, CST).date().isoformat()


# --- the arithmetic, pure -------------------------------------------------------------------


@dataclass(frozen=True)
class DayCount:
    """One venue's figures for one day."""

    occupancy: int = 0
    entries: int = 0
    exits: int = 0
    unmatched_exits: int = 0
    """Exits that found fewer visitors inside than they let out (the count stayed at 0)."""


def apply_movements(start: DayCount, movements: Iterable[Movement]) -> DayCount:
    """``start`` after ``movements``, in order: an entry adds its count, an exit takes its
    count off but never below 0 (what it could not take off is ``unmatched_exits``)."""
    occupancy, entries, exits, unmatched = (
        start.occupancy,
        start.entries,
        start.exits,
        start.unmatched_exits,
    )
    for movement in movements:
        if movement.delta > 0:
            occupancy += movement.count
            entries += movement.count
        else:
            exits += movement.count
            taken = min(occupancy, movement.count)
            unmatched += movement.count - taken
            occupancy -= taken
    return DayCount(occupancy, entries, exits, unmatched)


def group_movements(
    terminal_id: str, events: Iterable[TerminalEvent]
) -> dict[tuple[str, str], list[Movement]]:
    """The passages among ``events`` by (venue, day), each list in event order. Other
    kinds are not passages; a passage whose detail breaks docs/venues.md is logged and
    left out of the count (it is stored like any event: refusing the batch would block the
    terminal's staff calls behind it)."""
    groups: dict[tuple[str, str], list[Movement]] = defaultdict(list)
    for event in events:
        if event.kind not in MOVEMENT_KINDS:
            continue
        try:
            movement = movement_of(event)
        except VenueEventError as exc:
            log.warning("event %d of %s not counted: %s", event.id, terminal_id, exc.reason)
            continue
        groups[(movement.venue, day_of(event.at))].append(movement)
    return groups


def slot_entries(movements: Iterable[Movement]) -> dict[str, int]:
    """Entries per slot (:data:`NO_SLOT` for entries without one)."""
    counts: dict[str, int] = defaultdict(int)
    for movement in movements:
        if movement.delta > 0:
            counts[movement.slot or NO_SLOT] += movement.count
    return dict(counts)


def parse_venue_query(query: str) -> str:
    """The venue of ``/v1/occupancy?venue=ID``: exactly one ``venue``, a machine code.
    Raises :class:`BadRequestError`."""
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequestError("malformed query string") from None
    if len(params) != 1 or params[0][0] != "venue":
        raise BadRequestError("the only query parameter is one 'venue'")
    try:
        return check_code(params[0][1], "venue")
    except VenueEventError as exc:
        raise BadRequestError(exc.reason) from None


# --- what the CLI shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class VenueDay:
    """A venue on one day, as ``onecard backoffice venue`` shows it."""

    venue: str
    day: str
    count: DayCount
    maximum: int | None
    slots: dict[str, int] = field(default_factory=dict)
    """Entries per time slot (``""``: without one)."""

    @property
    def full(self) -> bool:
        return self.maximum is not None and self.count.occupancy >= self.maximum

    def to_json(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "day": self.day,
            "occupancy": self.count.occupancy,
            "maximum": self.maximum,
            "full": self.full,
            "entries": self.count.entries,
            "exits": self.count.exits,
            "unmatched_exits": self.count.unmatched_exits,
            "slots": {slot: n for slot, n in sorted(self.slots.items()) if slot != NO_SLOT},
            "entries_without_slot": self.slots.get(NO_SLOT, 0),
        }


# --- the SQL --------------------------------------------------------------------------------


class VenueStorage:
    """Venue counters and maxima (mixed into :class:`backoffice.storage._SqlStorage`)."""

    for_update: str

    def _tx(self, write: bool = True) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    def _q(self, sql: str) -> str:
        raise NotImplementedError

    def _snapshot_begin(self, cur: Any) -> None:
        raise NotImplementedError

    def count_venue_events(
        self, cur: Any, terminal_id: str, events: Sequence[TerminalEvent], now: float
    ) -> None:
        """Count the passages among ``events`` (newly stored, in id order) into the running
        counters, inside the caller's transaction ``cur``."""
        groups = group_movements(terminal_id, events)
        # One row lock per (venue, day), taken in one order: two terminals' batches for
        # the same venues queue instead of deadlocking.
        for venue, day in sorted(groups):
            movements = groups[(venue, day)]
            cur.execute(
                self._q(
                    "INSERT INTO venue_days (venue, day, occupancy, entries, exits, "
                    "unmatched_exits, updated_at) VALUES (?, ?, 0, 0, 0, 0, ?) "
                    "ON CONFLICT DO NOTHING"
                ),
                (venue, day, now),
            )
            cur.execute(
                self._q(
                    "SELECT occupancy, entries, exits, unmatched_exits FROM venue_days "
                    "WHERE venue = ? AND day = ?" + self.for_update
                ),
                (venue, day),
            )
            row = cur.fetchone()
            after = apply_movements(DayCount(*(int(v) for v in row)), movements)
            cur.execute(
                self._q(
                    "UPDATE venue_days SET occupancy = ?, entries = ?, exits = ?, "
                    "unmatched_exits = ?, updated_at = ? WHERE venue = ? AND day = ?"
                ),
                (
                    after.occupancy,
                    after.entries,
                    after.exits,
                    after.unmatched_exits,
                    now,
                    venue,
                    day,
                ),
            )
            slots = slot_entries(movements)
            if slots:
                cur.executemany(
                    self._q(
                        "INSERT INTO venue_slots (venue, day, slot, entries) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (venue, day, slot) DO UPDATE SET "
                        "entries = venue_slots.entries + excluded.entries"
                    ),
                    [(venue, day, slot, n) for slot, n in sorted(slots.items())],
                )

    def set_venue_maximum(self, venue: str, maximum: int | None, now: float) -> None:
        """Set (or, with None, clear) ``venue``'s maximum: its entry gates refuse at it."""
        check_code(venue, "venue")
        with self._tx() as cur:
            if maximum is None:
                cur.execute(self._q("DELETE FROM venue_limits WHERE venue = ?"), (venue,))
                return
            cur.execute(
                self._q(
                    "INSERT INTO venue_limits (venue, maximum, set_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (venue) DO UPDATE SET maximum = excluded.maximum, "
                    "set_at = excluded.set_at"
                ),
                (venue, maximum, now),
            )

    def venue_occupancy(
        self, venue: str, day: str, terminal_id: str
    ) -> tuple[int, int | None, int]:
        """``venue``'s occupancy on ``day``, its maximum (None: none set), and the highest
        event id of ``terminal_id`` stored - all from one statement, so one snapshot: the
        occupancy counts exactly that terminal's events up to that id (the marker a gate
        needs, :class:`terminal.venue.occupancy.Occupancy`)."""
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT (SELECT occupancy FROM venue_days WHERE venue = ? AND day = ?), "
                    "(SELECT maximum FROM venue_limits WHERE venue = ?), "
                    "(SELECT max(event_id) FROM terminal_events WHERE terminal_id = ?)"
                ),
                (venue, day, venue, terminal_id),
            )
            occupancy, maximum, through = cur.fetchone()
        return (
            0 if occupancy is None else int(occupancy),
            None if maximum is None else int(maximum),
            0 if through is None else int(through),
        )

    def venue_days(self, day: str) -> list[VenueDay]:
        """Every venue with passages on ``day`` or a maximum set, by venue."""
        with self._tx(write=False) as cur:
            self._snapshot_begin(cur)
            cur.execute(
                self._q(
                    "SELECT venue, occupancy, entries, exits, unmatched_exits FROM venue_days "
                    "WHERE day = ?"
                ),
                (day,),
            )
            counts = {str(v): DayCount(*(int(x) for x in rest)) for v, *rest in cur.fetchall()}
            cur.execute("SELECT venue, maximum FROM venue_limits")
            maxima = {str(v): int(m) for v, m in cur.fetchall()}
            cur.execute(
                self._q("SELECT venue, slot, entries FROM venue_slots WHERE day = ?"), (day,)
            )
            slots: dict[str, dict[str, int]] = defaultdict(dict)
            for v, slot, n in cur.fetchall():
                slots[str(v)][str(slot)] = int(n)
        return [
            VenueDay(v, day, counts.get(v, DayCount()), maxima.get(v), dict(slots.get(v, {})))
            for v in sorted(counts.keys() | maxima.keys())
        ]


class OccupancyReader(Protocol):
    def venue_occupancy(
        self, venue: str, day: str, terminal_id: str
    ) -> tuple[int, int | None, int]: ...


def occupancy_answer(
    store: OccupancyReader, venue: str, terminal_id: str, now: float
) -> OccupancyAnswer:
    """The answer to ``GET /v1/occupancy?venue=ID`` asked by ``terminal_id`` at back office
    time ``now``: today's (China Standard Time) occupancy, the maximum, and
    ``through_event``."""
    occupancy, maximum, through = store.venue_occupancy(venue, day_of(now), terminal_id)
    return OccupancyAnswer(venue, occupancy, maximum, round(now, 3), through)
