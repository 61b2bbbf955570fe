"""The fleet as the back office sees it (docs/fleet.md): the heartbeats terminals send, and
the state of each terminal derived from its latest one.

:func:`receive_heartbeat` is the ``POST /v1/heartbeat`` endpoint's work: the strict parse
(:func:`terminal.wire.heartbeat.parse_heartbeat_body`), the sender check, and the store of
the latest heartbeat. :func:`fleet_view` is pure: from what storage holds, the time and the
silence threshold, each terminal's :class:`TerminalState` - what ``onecard backoffice
fleet`` lists and ``/metrics`` counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from backoffice.errors import ForbiddenError
from backoffice.fleet_storage import StoredHeartbeat
from terminal.sync.downloads import DEFAULT_DOCUMENTS
from terminal.wire.canonical import canonical_json
from terminal.wire.heartbeat import parse_heartbeat_body

DEFAULT_SILENT_AFTER = 600.0
"""Seconds without a heartbeat after which a terminal counts as silent (ten heartbeats at
the terminal's default interval of 60 s)."""

STATE_OK = "ok"
STATE_DEGRADED = "degraded"
"""It speaks, but says a link is down, a worker is not running, or it logged errors."""
STATE_SILENT = "silent"
STATE_NEW = "new"
"""Enrolled less than the threshold ago and no heartbeat yet: not silent yet."""
STATE_REVOKED = "revoked"
STATES = (STATE_OK, STATE_DEGRADED, STATE_SILENT, STATE_NEW, STATE_REVOKED)


class HeartbeatStore(Protocol):
    def record_heartbeat(
        self, terminal_id: str, received_at: float, sent_at: float, heartbeat_json: str
    ) -> None: ...


def receive_heartbeat(store: HeartbeatStore, terminal_id: str, body: bytes, now: float) -> float:
    """Parse and keep the heartbeat ``body`` sent by the authenticated ``terminal_id`` at
    back office time ``now``; return ``now`` (the answer's ``received_at``). Raises
    :class:`terminal.wire.heartbeat.HeartbeatError` (400) for a malformed one,
    :class:`ForbiddenError` (403) for another terminal's."""
    beat = parse_heartbeat_body(body)
    if beat.terminal_id != terminal_id:
        raise ForbiddenError("a terminal sends its own heartbeat only")
    # Stored as the canonical JSON of what was parsed: only fields the contract knows.
    text = canonical_json(beat.to_json()).decode("utf-8")
    store.record_heartbeat(terminal_id, now, beat.sent_at, text)
    return now


@dataclass(frozen=True)
class TerminalState:
    """One terminal in the fleet view."""

    terminal_id: str
    state: str
    """One of :data:`STATES`."""
    silent: bool
    last_seen: float | None
    """Back office time of its latest heartbeat (None: never)."""
    silent_for: float | None
    """Seconds since its latest heartbeat (or since enrolment when it never sent one)."""
    acked_up_to: int
    software_version: str | None = None
    journal_backlog: int | None = None
    events_unsent: int | None = None
    recent_errors: int | None = None
    clock_offset: float | None = None
    """The terminal's clock minus the back office's at the latest heartbeat (transit time
    included: a rough figure, enough to see a terminal whose clock drifted by minutes)."""
    documents: Mapping[str, int] = field(default_factory=dict)
    document_lag: Mapping[str, int] = field(default_factory=dict)
    """Published version minus the version the terminal holds, per document."""
    links_down: tuple[str, ...] = ()
    workers_not_running: tuple[str, ...] = ()
    readers: Mapping[str, str] = field(default_factory=dict)
    scanners: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "state": self.state,
            "silent": self.silent,
            "last_seen": self.last_seen,
            "silent_for": self.silent_for,
            "acked_up_to": self.acked_up_to,
            "software_version": self.software_version,
            "journal_backlog": self.journal_backlog,
            "events_unsent": self.events_unsent,
            "recent_errors": self.recent_errors,
            "clock_offset": self.clock_offset,
            "documents": dict(self.documents),
            "document_lag": dict(self.document_lag),
            "links_down": list(self.links_down),
            "workers_not_running": list(self.workers_not_running),
            "readers": dict(self.readers),
            "scanners": dict(self.scanners),
        }


def _state_of(
    stored: StoredHeartbeat, beat: Mapping[str, Any] | None, silent: bool, troubled: bool
) -> str:
    if stored.revoked:
        return STATE_REVOKED
    if silent:
        return STATE_SILENT
    if beat is None:
        return STATE_NEW
    return STATE_DEGRADED if troubled else STATE_OK


EVERY_TERMINAL_DOCUMENTS = frozenset(DEFAULT_DOCUMENTS)
"""Documents every terminal downloads (:data:`terminal.sync.downloads.DEFAULT_DOCUMENTS`):
a terminal that does not report one lags behind it."""


def terminal_state(
    stored: StoredHeartbeat, published: Mapping[str, int], now: float, silent_after: float
) -> TerminalState:
    """The state of one terminal (see :func:`fleet_view`)."""
    beat = stored.heartbeat
    since = stored.received_at if stored.received_at is not None else stored.enrolled_at
    silent_for = max(0.0, now - since)
    # A revoked terminal is expected to be quiet: it is not counted as silent.
    silent = not stored.revoked and silent_for > silent_after
    if beat is None:
        return TerminalState(
            terminal_id=stored.terminal_id,
            state=_state_of(stored, None, silent, False),
            silent=silent,
            last_seen=None,
            silent_for=silent_for,
            acked_up_to=stored.acked_up_to,
        )
    documents = dict(beat.get("documents") or {})
    # Every terminal holds the hotlist, the trust list and the application list; the fare
    # table, reservations and passes only the terminals that use them, which report them.
    lag = {
        name: max(0, version - int(documents.get(name, 0)))
        for name, version in sorted(published.items())
        if name in EVERY_TERMINAL_DOCUMENTS or name in documents
    }
    links_down = tuple(sorted(n for n, s in (beat.get("links") or {}).items() if s == "down"))
    not_running = tuple(sorted(n for n, s in (beat.get("workers") or {}).items() if s != "running"))
    recent = beat.get("recent_errors")
    troubled = bool(links_down or not_running or recent)
    return TerminalState(
        terminal_id=stored.terminal_id,
        state=_state_of(stored, beat, silent, troubled),
        silent=silent,
        last_seen=stored.received_at,
        silent_for=silent_for,
        acked_up_to=stored.acked_up_to,
        software_version=beat.get("software_version"),
        journal_backlog=beat.get("journal_backlog"),
        events_unsent=beat.get("events_unsent"),
        recent_errors=recent,
        clock_offset=(
            None if stored.received_at is None else float(beat["sent_at"]) - stored.received_at
        ),
        documents=documents,
        document_lag=lag,
        links_down=links_down,
        workers_not_running=not_running,
        readers=dict(beat.get("readers") or {}),
        scanners=dict(beat.get("scanners") or {}),
    )


def fleet_view(
    stored: Sequence[StoredHeartbeat],
    published: Mapping[str, int],
    now: float,
    silent_after: float = DEFAULT_SILENT_AFTER,
) -> list[TerminalState]:
    """Every terminal's state at ``now``: silent when its latest heartbeat (or, never having
    sent one, its enrolment) is more than ``silent_after`` seconds old; degraded when it
    reports a link down, a worker not running or recent errors; revoked ones as such."""
    return [terminal_state(s, published, now, silent_after) for s in stored]


def count_states(states: Sequence[TerminalState]) -> dict[str, int]:
    """How many terminals are in each state (every state present, 0 included)."""
    counts = dict.fromkeys(STATES, 0)
    for state in states:
        counts[state.state] += 1
    return counts
