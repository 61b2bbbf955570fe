"""How many visitors a venue holds, as one of its gates sees it (docs/venues.md, "Occupancy").

The entry and exit gates of one venue (a museum, a science centre) share the count through
the back office: each passage is a terminal event, ``venue_entry`` or ``venue_exit``
(:data:`terminal.wire.events.EVENT_KINDS`), with the flat, non-personal detail
``{"venue", "gate", "slot"?, "count"}`` - no card token, no name, no ID number. The back
office keeps the running count and answers ``GET /v1/occupancy?venue=ID`` with
``{"venue", "occupancy", "maximum", "at", "through_event"}``.

:class:`Occupancy` is one gate's view, pure and thread-safe (no I/O; time from an injected
:class:`terminal.host.clock.Clock`). Its estimate is the back office's last figure plus
what this gate let in or out since - the passages the back office had not counted when it
answered - never below zero. When the link is down the gate keeps counting from the last
figure it had. The back office's ``through_event`` (the highest event id of the asking
terminal it holds - and so has counted) tells which of this gate's passages the figure
already includes, so a passage whose event arrived just after the figure was computed is
neither lost nor counted twice.

Also here: the detail of a passage event and its strict parser (:func:`movement_detail`,
:func:`parse_movement`, shared with the back office), the strict parser of the back
office's answer (:func:`parse_occupancy_answer`) and :func:`fetch_occupancy`, one signed
poll through the terminal's back office client.
"""

from __future__ import annotations

import logging
import math
import threading
import urllib.parse
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from terminal.errors import (
    OneCardError,
    ParseError,
    SyncAnswerError,
    SyncRejectedError,
    SyncServerError,
)
from terminal.host.clock import Clock
from terminal.wire.canonical import JsonError, parse_json
from terminal.wire.events import TerminalEvent
from terminal.wire.journal import MACHINE_CODE

log = logging.getLogger(__name__)

VENUE_ENTRY = "venue_entry"
VENUE_EXIT = "venue_exit"
MOVEMENT_KINDS = (VENUE_ENTRY, VENUE_EXIT)
ROLES = ("entry", "exit", "both")
OCCUPANCY_PATH = "/v1/occupancy"
DEFAULT_STALE_SECONDS = 30.0
"""Without a back office figure for this long the link is ``stale``: the gate goes on
counting locally from the last figure (a few missed polls are not yet an outage)."""
MAX_COUNT = 100
"""The most visitors one passage event may carry (a gate sends 1; a group turnstile
could send more)."""
MAX_BIG = 2**63 - 1  # the back office's BIGINT columns
MAX_TIME = 1e15

_DETAIL_KEYS = frozenset({"venue", "gate", "slot", "count"})
_ANSWER_KEYS = frozenset({"venue", "occupancy", "maximum", "at", "through_event"})


class OccupancyError(OneCardError):
    """An :class:`Occupancy` configured or used against its role: an unknown role, a
    negative maximum, an exit counted at an entry-only gate."""

    code = "occupancy_error"


class VenueEventError(ParseError):
    """A ``venue_entry``/``venue_exit`` detail that breaks docs/venues.md: a missing or
    unknown field, a venue, gate or slot that is not a machine code, a bad count."""

    code = "bad_venue_event"


class OccupancyAnswerError(SyncAnswerError):
    """A back office answer to ``GET /v1/occupancy`` that does not follow docs/venues.md."""

    code = "bad_occupancy_answer"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_code(value: object, what: str) -> str:
    """``value`` if it is a machine code (``[A-Za-z0-9_.:-]{1,64}``: a venue, gate or slot
    id); :class:`VenueEventError` otherwise."""
    if not isinstance(value, str) or not MACHINE_CODE.fullmatch(value):
        raise VenueEventError(f"{what} must be a machine code ([A-Za-z0-9_.:-]{{1,64}})")
    return value


# --- passage events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Movement:
    """One passage through a venue's gate, as its event's detail says."""

    kind: str
    """:data:`VENUE_ENTRY` or :data:`VENUE_EXIT`."""
    venue: str
    gate: str
    slot: str | None
    """The visit's time slot (a reservation's, e.g. ``10:00-11:00``); None when none."""
    count: int = 1

    @property
    def delta(self) -> int:
        """What the passage does to the occupancy: +count or -count."""
        return self.count if self.kind == VENUE_ENTRY else -self.count

    def detail(self) -> dict[str, object]:
        """The event's detail: flat, non-personal (``slot`` absent when None)."""
        detail: dict[str, object] = {"venue": self.venue, "gate": self.gate, "count": self.count}
        if self.slot is not None:
            detail["slot"] = self.slot
        return detail


def movement_detail(
    venue: str, gate: str, slot: str | None = None, count: int = 1
) -> dict[str, object]:
    """The detail of a ``venue_entry`` or ``venue_exit`` event, checked. Raises
    :class:`VenueEventError`."""
    return parse_movement(
        VENUE_ENTRY, Movement(VENUE_ENTRY, venue, gate, slot, count).detail()
    ).detail()


def parse_movement(kind: object, detail: object) -> Movement:
    """The :class:`Movement` of an event of ``kind`` with ``detail``, strictly: exactly
    ``venue``, ``gate``, ``count`` and optionally ``slot``. Raises :class:`VenueEventError`."""
    if not isinstance(kind, str) or kind not in MOVEMENT_KINDS:
        raise VenueEventError(f"event kind {str(kind)[:40]!r} is not a venue passage")
    if not isinstance(detail, Mapping):
        raise VenueEventError("a venue passage's detail must be a mapping")
    keys = set(detail.keys())
    if not {"venue", "gate", "count"} <= keys <= _DETAIL_KEYS:
        missing = sorted({"venue", "gate", "count"} - keys)
        unknown = sorted(str(k)[:40] for k in keys - _DETAIL_KEYS)
        raise VenueEventError(f"venue detail: missing {missing}, unknown {unknown}")
    count = detail["count"]
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise VenueEventError(f"venue detail: count must be an integer in 1..{MAX_COUNT}")
    return Movement(
        kind,
        check_code(detail["venue"], "venue"),
        check_code(detail["gate"], "gate"),
        check_code(detail["slot"], "slot") if "slot" in detail else None,
        count,
    )


def movement_of(event: TerminalEvent) -> Movement:
    """The passage an event records. Raises :class:`VenueEventError` (not a passage, or a
    detail that breaks docs/venues.md)."""
    return parse_movement(event.kind, event.detail)


# --- the back office's answer ---------------------------------------------------------------


@dataclass(frozen=True)
class OccupancyAnswer:
    """The back office's answer to ``GET /v1/occupancy?venue=ID`` (docs/venues.md)."""

    venue: str
    occupancy: int
    """Visitors inside now, as the events the back office holds say (never below 0)."""
    maximum: int | None
    """The venue's maximum set at the back office (``onecard backoffice venue set-max``);
    None when none is set (the gate's own configured maximum applies)."""
    at: float
    """The back office's wall time of the figure, Unix seconds."""
    through_event: int
    """The highest event id of the asking terminal the back office holds: every passage of
    that terminal up to it is in ``occupancy``, none above it."""

    def to_json(self) -> dict[str, object]:
        """The answer as it travels, JSON-ready."""
        return {
            "venue": self.venue,
            "occupancy": self.occupancy,
            "maximum": self.maximum,
            "at": self.at,
            "through_event": self.through_event,
        }


def _count(obj: Mapping[str, object], key: str, low: int) -> int:
    value = obj[key]
    if not _is_int(value) or not low <= value <= MAX_BIG:  # type: ignore[operator]
        raise OccupancyAnswerError(f"occupancy answer: {key} must be an integer >= {low}")
    return int(value)  # type: ignore[call-overload]


def parse_occupancy_answer(body: bytes, venue: str | None = None) -> OccupancyAnswer:
    """Parse the body of a ``200`` answer to ``GET /v1/occupancy`` strictly: canonical-JSON
    rules (:func:`terminal.wire.canonical.parse_json`), exactly the five fields, and - given
    ``venue`` - the venue asked about. Raises only :class:`OccupancyAnswerError`."""
    try:
        obj = parse_json(body)
    except JsonError as exc:
        raise OccupancyAnswerError(f"occupancy answer is not strict JSON: {exc.reason}") from None
    if not isinstance(obj, dict):
        raise OccupancyAnswerError("occupancy answer must be a JSON object")
    if obj.keys() != _ANSWER_KEYS:
        missing = sorted(_ANSWER_KEYS - obj.keys())
        unknown = sorted(str(k)[:40] for k in obj.keys() - _ANSWER_KEYS)
        raise OccupancyAnswerError(f"occupancy answer: missing {missing}, unknown {unknown}")
    try:
        answered = check_code(obj["venue"], "venue")
    except VenueEventError as exc:
        raise OccupancyAnswerError(f"occupancy answer: {exc.reason}") from None
    if venue is not None and answered != venue:
        raise OccupancyAnswerError(f"occupancy answer for {answered!r}, asked {venue!r}")
    at = obj["at"]
    if not (_is_int(at) or isinstance(at, float)) or not math.isfinite(at):
        raise OccupancyAnswerError("occupancy answer: at must be a finite number")
    if not 0 <= at <= MAX_TIME:
        raise OccupancyAnswerError("occupancy answer: at out of range")
    maximum = None if obj["maximum"] is None else _count(obj, "maximum", 0)
    return OccupancyAnswer(
        answered,
        _count(obj, "occupancy", 0),
        maximum,
        float(at),
        _count(obj, "through_event", 0),
    )


def occupancy_path(venue: str) -> str:
    """The request target of a poll for ``venue`` (checked: a machine code)."""
    return f"{OCCUPANCY_PATH}?venue={urllib.parse.quote(check_code(venue, 'venue'), safe='')}"


class SignedClient(Protocol):
    """What a poll needs of the terminal's back office client
    (:class:`terminal.sync.client.BackOfficeClient`; named by its shape, so that the sync
    package, which reads venue documents, and this one do not import each other)."""

    def get(self, path: str) -> tuple[int, bytes]: ...


def fetch_occupancy(client: SignedClient, venue: str) -> OccupancyAnswer:
    """Ask the back office for ``venue``'s occupancy: one signed ``GET`` through the
    terminal's shared client. Raises the typed :class:`terminal.errors.SyncError` of a
    failure (unreachable, throttled: the client's; refused 4xx: :class:`SyncRejectedError`
    with the answer's ``error``; 5xx: :class:`SyncServerError`) or
    :class:`OccupancyAnswerError`."""
    status, body = client.get(occupancy_path(venue))
    if status == 200:
        return parse_occupancy_answer(body, venue)
    if 500 <= status <= 599:
        raise SyncServerError(f"back office error {status} on the occupancy poll", status)
    if 400 <= status <= 499:
        code, reason = _refusal(body)
        raise SyncRejectedError(
            f"back office refused the occupancy poll ({status} {code}): {reason}", status, code
        )
    raise SyncAnswerError(f"unexpected HTTP status {status}", status)


def _refusal(body: bytes) -> tuple[str, str]:
    """The ``error`` and ``reason`` of a refusal ``{"error", "reason"}``, bounded; empty
    when the body is not one (the status still says what happened)."""
    try:
        obj = parse_json(body)
    except JsonError:
        return "", ""
    if not isinstance(obj, dict):
        return "", ""
    return str(obj.get("error", ""))[:64], str(obj.get("reason", ""))[:200]


# --- one gate's view ------------------------------------------------------------------------


class EventRecorder(Protocol):
    """What records a passage event for the back office: the terminal's
    :class:`terminal.sync.events.EventOutbox`."""

    def add(self, kind: str, detail: Mapping[str, object] | None = None) -> TerminalEvent: ...


@dataclass(frozen=True)
class OccupancySnapshot:
    """An :class:`Occupancy` at one moment, for a status page."""

    venue: str
    role: str
    estimate: int
    maximum: int | None
    full: bool
    shared: int | None
    """The back office's last figure; None before the first."""
    shared_at: float | None
    """The back office's wall time of that figure."""
    age: float | None
    """Seconds since that figure arrived (the gate's monotonic clock)."""
    link: str
    """``fresh``, ``stale`` (no figure for longer than ``stale_seconds``) or ``never``."""
    uncounted: int
    """This gate's passages the back office had not counted in its last figure."""

    def to_json(self) -> dict[str, object]:
        return {
            "venue": self.venue,
            "role": self.role,
            "estimate": self.estimate,
            "maximum": self.maximum,
            "full": self.full,
            "shared": self.shared,
            "shared_at": self.shared_at,
            "age": None if self.age is None else round(self.age, 3),
            "link": self.link,
            "uncounted": self.uncounted,
        }


class Occupancy:
    """One gate's count of a venue's visitors: the back office's last figure (``shared``)
    plus this gate's own passages it had not counted yet.

    * ``estimate`` = ``shared`` + own entries since - own exits since, applied in order and
      never below 0 (an exit of a visitor this gate never saw enter - through another gate,
      or before the count began - cannot make the venue hold fewer than nobody).
    * A figure from the back office (:meth:`report`) replaces ``shared`` and forgets the own
      passages it already counts: those whose event id is at most its ``through_event``.
      Passages recorded after it was computed stay, so a passage is never lost nor counted
      twice however the poll and the event sender interleave. A passage the outbox could
      not record (no event id) is counted here until the next figure only: the back office
      will never learn of it, and the gate must not drift from the shared count for ever.
    * No figure for longer than ``stale_seconds``: the link is ``stale`` and the gate keeps
      counting from the last figure it had (before any: from 0). Other gates' passages are
      then unknown here, so an entry gate may let in a few too many or too few until the
      link is back; the next figure puts it right.
    * ``maximum``: the gate's configured limit (None: none); the back office's, when it
      reports one (``set-max``), overrides it. :meth:`can_enter` is ``estimate < maximum``.

    ``gate`` names this gate in its passage events (:meth:`record_entry`); ``clock``'s
    monotonic time measures the age of the last figure.

    Thread-safe: the gate's reader thread counts passages while the poller reports.
    """

    def __init__(
        self,
        venue: str,
        maximum: int | None,
        role: str,
        clock: Clock,
        *,
        gate: str = "gate",
        stale_seconds: float = DEFAULT_STALE_SECONDS,
    ) -> None:
        try:
            self.venue = check_code(venue, "venue")
            self.gate = check_code(gate, "gate")
        except VenueEventError as exc:
            raise OccupancyError(exc.reason) from None
        if role not in ROLES:
            raise OccupancyError(f"role must be one of {list(ROLES)}, not {role!r}")
        if maximum is not None and (not _is_int(maximum) or maximum < 0):
            raise OccupancyError("maximum must be a non-negative integer or None")
        if not stale_seconds > 0:
            raise OccupancyError("stale_seconds must be positive")
        self.role = role
        self.configured_maximum = maximum
        self.stale_seconds = float(stale_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._shared: int | None = None
        self._shared_at: float | None = None
        self._received: float | None = None
        self._through = 0
        self._reported_maximum: int | None = None
        # Own passages not in the shared figure, in order: (event id or None, delta).
        self._uncounted: deque[tuple[int | None, int]] = deque()
        self._estimate = 0

    # --- passages --------------------------------------------------------------------------

    def entered(self, slot: str | None = None, event_id: int | None = None) -> int:
        """Count a visitor let in (``slot``: the visit's time slot, checked; the event's
        detail carries it). ``event_id``: the outbox id of its ``venue_entry`` event.
        Returns the estimate after it."""
        if self.role == "exit":
            raise OccupancyError(f"gate {self.gate} is an exit gate: it lets nobody in")
        if slot is not None:
            check_code(slot, "slot")
        return self._move(event_id, +1)

    def exited(self, event_id: int | None = None) -> int:
        """Count a visitor let out (``event_id``: its ``venue_exit`` event's outbox id).
        Returns the estimate after it (never below 0)."""
        if self.role == "entry":
            raise OccupancyError(f"gate {self.gate} is an entry gate: it lets nobody out")
        return self._move(event_id, -1)

    def movement(self, kind: str, slot: str | None = None) -> Movement:
        """The passage of this gate to record as an event of ``kind``."""
        return parse_movement(kind, Movement(kind, self.venue, self.gate, slot).detail())

    def record_entry(self, outbox: EventRecorder, slot: str | None = None) -> int:
        """Record a ``venue_entry`` event in ``outbox`` (the back office's count) and count
        it here; returns the estimate after it. An outbox that refuses the event (disk
        full...) is logged: the entry is counted here alone (see the class)."""
        return self._record(outbox, self.movement(VENUE_ENTRY, slot))

    def record_exit(self, outbox: EventRecorder) -> int:
        """:meth:`record_entry` for a ``venue_exit``."""
        return self._record(outbox, self.movement(VENUE_EXIT))

    def _record(self, outbox: EventRecorder, movement: Movement) -> int:
        # The role first: a passage the gate may not make is not recorded either.
        if movement.kind == VENUE_ENTRY and self.role == "exit":
            raise OccupancyError(f"gate {self.gate} is an exit gate: it lets nobody in")
        if movement.kind == VENUE_EXIT and self.role == "entry":
            raise OccupancyError(f"gate {self.gate} is an entry gate: it lets nobody out")
        event_id: int | None
        try:
            event_id = outbox.add(movement.kind, movement.detail()).id
        except OneCardError as exc:
            log.warning(
                "%s not recorded for the back office (%s): counted here only",
                movement.kind,
                exc.code,
            )
            event_id = None
        if movement.kind == VENUE_ENTRY:
            return self.entered(movement.slot, event_id)
        return self.exited(event_id)

    def _move(self, event_id: int | None, delta: int) -> int:
        if event_id is not None and (not _is_int(event_id) or event_id < 1):
            raise OccupancyError("event_id must be a positive integer")
        with self._lock:
            # Already in the shared figure (the sender and the poll beat this call): the
            # figure counts it; counting it again would count the visitor twice.
            if event_id is None or event_id > self._through:
                self._uncounted.append((event_id, delta))
                self._estimate = max(0, self._estimate + delta)
            return self._estimate

    # --- the back office's figure ----------------------------------------------------------

    def report(self, count: int, at: float, through_event: int, maximum: int | None = None) -> int:
        """Take the back office's figure: ``count`` visitors at its time ``at``, counting
        this terminal's events up to ``through_event``; ``maximum`` its limit for the venue
        (None: none set there). Returns the new estimate."""
        if not _is_int(count) or count < 0 or not _is_int(through_event) or through_event < 0:
            raise OccupancyError("count and through_event must be non-negative integers")
        if maximum is not None and (not _is_int(maximum) or maximum < 0):
            raise OccupancyError("maximum must be a non-negative integer or None")
        with self._lock:
            if through_event < self._through:
                # Events the back office once held are gone (a restored database?): its
                # figure is still the best there is, but say so.
                log.warning(
                    "back office counts events through %d, earlier it said %d",
                    through_event,
                    self._through,
                )
            self._shared, self._shared_at = count, float(at)
            self._received = self._clock.monotonic()
            self._through = through_event
            self._reported_maximum = maximum
            kept = [
                (eid, delta)
                for eid, delta in self._uncounted
                if eid is not None and eid > through_event
            ]
            self._uncounted = deque(kept)
            estimate = count
            for _, delta in kept:
                estimate = max(0, estimate + delta)
            self._estimate = estimate
            return estimate

    def apply(self, answer: OccupancyAnswer) -> int:
        """:meth:`report` of a parsed back office answer (its venue must be this one)."""
        if answer.venue != self.venue:
            raise OccupancyError(f"an answer for venue {answer.venue!r}, not {self.venue!r}")
        return self.report(answer.occupancy, answer.at, answer.through_event, answer.maximum)

    # --- reading ---------------------------------------------------------------------------

    @property
    def estimate(self) -> int:
        with self._lock:
            return self._estimate

    @property
    def maximum(self) -> int | None:
        """The limit in force: the back office's when it reported one, else the gate's."""
        with self._lock:
            return self._maximum()

    def _maximum(self) -> int | None:
        if self._reported_maximum is not None:
            return self._reported_maximum
        return self.configured_maximum

    def can_enter(self) -> bool:
        """Whether an entry gate may let one more visitor in: estimate < maximum (always,
        without a maximum). False: "full, please wait"."""
        with self._lock:
            maximum = self._maximum()
            return maximum is None or self._estimate < maximum

    def link(self) -> str:
        """``fresh``, ``stale`` or ``never`` (no figure yet)."""
        with self._lock:
            return self._link(self._clock.monotonic())

    def _link(self, now: float) -> str:
        if self._received is None:
            return "never"
        return "stale" if now - self._received > self.stale_seconds else "fresh"

    def snapshot(self) -> OccupancySnapshot:
        """The gate's view now, for a status page."""
        with self._lock:
            now = self._clock.monotonic()
            maximum = self._maximum()
            return OccupancySnapshot(
                venue=self.venue,
                role=self.role,
                estimate=self._estimate,
                maximum=maximum,
                full=maximum is not None and self._estimate >= maximum,
                shared=self._shared,
                shared_at=self._shared_at,
                age=None if self._received is None else max(0.0, now - self._received),
                link=self._link(now),
                uncounted=len(self._uncounted),
            )
