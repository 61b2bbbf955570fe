"""Terminal events as they travel, ``POST /v1/events`` (docs/sync.md, "Terminal events"):
a holder's "call staff" request, its acknowledgement or cancellation.

A :class:`TerminalEvent` is small and non-personal: an ``id`` (1, 2, 3... per terminal), a
``kind`` from :data:`EVENT_KINDS`, the wall time ``at`` and a flat ``detail`` of machine
codes. :func:`event_from_json` is its strict parser and :func:`parse_events_body` the
parser of a whole request - the back office accepts exactly what a terminal may send.
Every failure is an :class:`EventError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from terminal.errors import JournalEntryError, ParseError
from terminal.wire.canonical import JsonError, canonical_json, parse_json
from terminal.wire.journal import MACHINE_CODE
from terminal.wire.personal import non_personal_copy
from terminal.wire.requests import BatchError, batch_envelope

EVENT_KINDS = frozenset(
    {
        "call_staff",
        "call_acknowledged",
        "call_cancelled",
        # A visitor through a venue's entry or exit gate (terminal.venue.occupancy; detail
        # {"venue", "gate", "slot"?, "count"}: no card, no person).
        "venue_entry",
        "venue_exit",
    }
)
MAX_EVENTS_PER_REQUEST = 1000
"""The back office takes at most this many events per request."""
MAX_DETAIL_BYTES = 512
"""``detail`` is a few machine codes; its canonical JSON may not exceed this."""
MAX_EVENT_ID = 2**63 - 1  # the back office's BIGINT column
MAX_EVENT_TIME = 1e15

_FIELDS = frozenset({"id", "kind", "at", "detail"})


class EventError(ParseError):
    """An event (or an event message) that breaks docs/sync.md: an unknown kind, a bad id
    or time, a ``detail`` that is nested, too large or names personal data."""

    code = "bad_event"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_detail(detail: Mapping[str, object] | None) -> dict[str, object]:
    """A JSON-ready copy of ``detail`` after checking it is flat (machine-code keys; values
    str, int, bool or None), at most :data:`MAX_DETAIL_BYTES` of canonical JSON, and free of
    personal data (:mod:`terminal.wire.personal`). Raises :class:`EventError`."""
    if detail is None:
        return {}
    if not isinstance(detail, Mapping):
        raise EventError("detail must be a mapping")
    # Personal data first, so that a refused name or ID number is reported as what it is.
    try:
        copied = non_personal_copy(detail, MAX_DETAIL_BYTES, "detail")
    except JournalEntryError as exc:
        raise EventError(exc.reason) from None
    for key, value in copied.items():
        if not MACHINE_CODE.fullmatch(key):
            raise EventError(f"detail key {key[:40]!r} is not a machine code")
        if value is not None and not isinstance(value, str | int):  # bool is an int
            raise EventError(f"detail {key}: {type(value).__name__} is not str, int, bool or None")
    return copied


@dataclass(frozen=True)
class TerminalEvent:
    """One event of a terminal, exactly as it travels (docs/sync.md, "Terminal events")."""

    id: int
    """1, 2, 3... per terminal, assigned by the terminal's outbox; never reused."""
    kind: str
    """One of :data:`EVENT_KINDS`."""
    at: float
    """Wall time of the event, Unix seconds (UTC), from the terminal's clock."""
    detail: Mapping[str, object] = field(default_factory=dict)
    """Small, flat, non-personal details (e.g. ``{"source": "holder_screen"}``)."""

    def __post_init__(self) -> None:
        if not _is_int(self.id) or not 1 <= self.id <= MAX_EVENT_ID:
            raise EventError("event id must be an integer in 1..2^63-1")
        # isinstance first: "in" on a frozenset hashes the value, and a list is unhashable.
        if not isinstance(self.kind, str) or self.kind not in EVENT_KINDS:
            raise EventError(f"event kind must be one of {sorted(EVENT_KINDS)}")
        at = self.at
        if not (_is_int(at) or isinstance(at, float)) or not math.isfinite(at):
            raise EventError("event time must be a finite number")
        if not 0 <= at <= MAX_EVENT_TIME:
            raise EventError("event time out of range")
        object.__setattr__(self, "at", float(at))
        object.__setattr__(self, "detail", MappingProxyType(check_detail(self.detail)))

    def to_json(self) -> dict[str, object]:
        """The event as it travels: ``{"id", "kind", "at", "detail"}``, JSON-ready."""
        return {"id": self.id, "kind": self.kind, "at": self.at, "detail": dict(self.detail)}


def event_from_json(obj: object) -> TerminalEvent:
    """Parse one event: a decoded JSON object, or its JSON text (str or UTF-8 bytes, read by
    :func:`terminal.wire.canonical.parse_json`). Exactly the fields ``id``, ``kind``, ``at``
    and ``detail``; raises only :class:`EventError`."""
    if isinstance(obj, str):
        # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, refused below.
        obj = obj.encode("utf-8", "surrogatepass")
    if isinstance(obj, bytes | bytearray | memoryview):
        try:
            obj = parse_json(obj)
        except JsonError as exc:
            raise EventError(f"event is not strict JSON: {exc.reason}") from None
    if not isinstance(obj, dict):
        raise EventError("an event must be a JSON object")
    if obj.keys() != _FIELDS:
        missing = sorted(_FIELDS - obj.keys())
        unknown = sorted(str(k)[:40] for k in obj.keys() - _FIELDS)
        raise EventError(f"event: missing fields {missing}, unknown fields {unknown}")
    if not isinstance(obj["detail"], dict):
        raise EventError("event detail must be a JSON object")
    return TerminalEvent(obj["id"], obj["kind"], obj["at"], obj["detail"])


def events_body(terminal_id: str, events: Sequence[TerminalEvent]) -> bytes:
    """The body of ``POST /v1/events``: canonical JSON ``{"terminal_id", "events"}``."""
    return canonical_json({"terminal_id": terminal_id, "events": [e.to_json() for e in events]})


def parse_events_body(
    body: bytes, max_events: int = MAX_EVENTS_PER_REQUEST
) -> tuple[str, tuple[TerminalEvent, ...]]:
    """The terminal id and the events of a ``POST /v1/events`` body, in strictly
    increasing ``id`` order. Raises only :class:`EventError`."""
    try:
        terminal_id, raw_events = batch_envelope(parse_json(body), "events", max_events)
    except (JsonError, BatchError) as exc:
        raise EventError(exc.reason) from None
    events = []
    previous = 0
    for index, raw in enumerate(raw_events):
        try:
            event = event_from_json(raw)
        except EventError as exc:
            raise EventError(f"events[{index}]: {exc.reason}") from None
        # In order and without repeats: the terminal sends its outbox in id order, and the
        # answer (the highest id stored) then says the whole batch is held.
        if event.id <= previous:
            raise EventError(f"events[{index}]: id not in strictly increasing order")
        previous = event.id
        events.append(event)
    return terminal_id, tuple(events)
