"""Terminal events, the pure part: parse a ``POST /v1/events`` body (docs/sync.md,
"Terminal events").

Each event is checked by the terminal's own parser (:func:`terminal.sync.events.event_from_json`:
known kind, flat non-personal ``detail``), so what the back office accepts is exactly what a
terminal may send; the request around the events is checked here. Every failure is a
:class:`BadRequestError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from backoffice.canonical import loads_strict
from backoffice.errors import BadRequestError
from backoffice.ingest import batch_envelope
from terminal.sync.events import MAX_EVENTS_PER_REQUEST, EventError, TerminalEvent, event_from_json

MAX_EVENTS = MAX_EVENTS_PER_REQUEST


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A parsed ``POST /v1/events`` body: events in strictly increasing ``id`` order."""

    terminal_id: str
    events: tuple[TerminalEvent, ...]


def parse_events_body(body: bytes, max_events: int = MAX_EVENTS) -> EventBatch:
    """Parse ``{"terminal_id": ..., "events": [{"id", "kind", "at", "detail"}, ...]}``.
    Raises only :class:`BadRequestError`."""
    terminal_id, raw_events = batch_envelope(loads_strict(body), "events", max_events)
    events = []
    previous = 0
    for index, raw in enumerate(raw_events):
        try:
            event = event_from_json(raw)
        except EventError as exc:
            raise BadRequestError(f"events[{index}]: {exc.reason}") from None
        # In order and without repeats: the terminal sends its outbox in id order, and the
        # answer (the highest id stored) then says the whole batch is held.
        if event.id <= previous:
            raise BadRequestError(f"events[{index}]: id not in strictly increasing order")
        previous = event.id
        events.append(event)
    return EventBatch(terminal_id, tuple(events))
