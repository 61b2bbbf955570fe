"""The terminal's heartbeat: how it is, sent to the back office with its sync (docs/fleet.md).

:func:`heartbeat_from_status` turns the status page's snapshot
(:meth:`terminal.runtime.statuspage.RuntimeStatus.snapshot`) into a
:class:`terminal.wire.heartbeat.Heartbeat` - pure; names and states that a device gave in
forms the wire does not take are narrowed (printable ASCII, machine-code states), never
refused, so a strange reader name cannot silence a terminal. :class:`HeartbeatSender` is a
worker of the back office link (:class:`terminal.sync.link.BackOfficeLink`): every
``interval`` seconds one signed ``POST /v1/heartbeat`` on the terminal's one client. A
heartbeat that does not get through is logged and the next one is sent at the next interval:
a heartbeat is a sample, not a record - nothing queues, nothing is resent.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from terminal.errors import (
    OneCardError,
    SyncAnswerError,
    SyncRejectedError,
    SyncServerError,
)
from terminal.host.clock import Clock
from terminal.privacy.masking import mask_middle
from terminal.wire.canonical import JsonError, parse_json
from terminal.wire.heartbeat import (
    HEARTBEAT_PATH,
    MAX_NAMED,
    RECENT_WINDOW,
    SOFTWARE_VERSION,
    Heartbeat,
    heartbeat_body,
)
from terminal.wire.journal import MACHINE_CODE

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 60.0
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_NOT_STATE = re.compile(r"[^a-z0-9_]")
_DIGIT_RUN = re.compile(r"\d{17}[Xx]|\d{12,}")


def software_version() -> str:
    """The installed onecard version (``unknown`` when it runs from a tree not installed)."""
    try:
        version = importlib.metadata.version("onecard")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
    return version if SOFTWARE_VERSION.fullmatch(version) else "unknown"


def _name(text: object) -> str:
    # A long run of digits in a device name could be someone's number: masked as the log
    # masks it, so that the back office never receives it (nor refuses the heartbeat).
    name = _DIGIT_RUN.sub(lambda m: mask_middle(m.group()), _NOT_PRINTABLE.sub("?", str(text)))
    return name[:96] or "?"


def _state(text: object) -> str:
    state = _NOT_STATE.sub("_", str(text).lower())[:32]
    return state or "unknown"


def _states(pairs: list[tuple[object, object]]) -> dict[str, str]:
    return {_name(name): _state(state) for name, state in pairs[:MAX_NAMED]}


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def heartbeat_from_status(
    terminal_id: str, snapshot: Mapping[str, Any], now: float, version: str
) -> Heartbeat:
    """The heartbeat of a status snapshot taken at ``now`` (Unix seconds). ``recent_errors``
    counts the snapshot's warnings and errors of the last :data:`RECENT_WINDOW` seconds."""
    documents = {
        str(name): int(v)
        for name, v in dict(snapshot.get("documents") or {}).items()
        if MACHINE_CODE.fullmatch(str(name)) and _count(v) is not None
    }
    recent = [
        record
        for record in snapshot.get("recent_errors") or []
        if isinstance(record, Mapping)
        and isinstance(record.get("at"), int | float)
        and now - float(record["at"]) <= RECENT_WINDOW
    ]
    return Heartbeat(
        terminal_id=terminal_id,
        sent_at=now,
        software_version=version,
        journal_backlog=_count(snapshot.get("journal_unacked")),
        events_unsent=_count(snapshot.get("events_unsent")),
        recent_errors=len(recent),
        documents=dict(list(documents.items())[:MAX_NAMED]),
        readers=_states(list(dict(snapshot.get("readers") or {}).items())),
        scanners=_states(list(dict(snapshot.get("scanners") or {}).items())),
        links=_states(
            [(link.get("name"), link.get("state")) for link in snapshot.get("links") or []]
        ),
        workers=_states(
            [(worker.get("name"), worker.get("state")) for worker in snapshot.get("workers") or []]
        ),
    )


def check_heartbeat_answer(status: int, body: bytes) -> float:
    """``received_at`` of the back office's 200 answer ``{"received_at": T}``; the typed
    :class:`SyncError` of any other answer."""
    if status >= 500:
        raise SyncServerError(f"back office error {status} to a heartbeat", status)
    if status >= 400:
        code = ""
        try:
            answer = parse_json(body)
            if isinstance(answer, dict):
                code = str(answer.get("error", ""))[:64]
        except JsonError:
            pass
        raise SyncRejectedError(
            f"back office refused the heartbeat ({status} {code})", status, code
        )
    if status != 200:
        raise SyncAnswerError(f"unexpected HTTP status {status}", status)
    try:
        answer = parse_json(body)
    except JsonError:
        raise SyncAnswerError("the heartbeat answer is not JSON", status) from None
    received = answer.get("received_at") if isinstance(answer, dict) else None
    if isinstance(received, bool) or not isinstance(received, int | float):
        raise SyncAnswerError("the heartbeat answer has no received_at", status)
    return float(received)


class HeartbeatSender:
    """Sends the heartbeat of ``snapshot()`` every ``interval`` seconds through ``post``
    (the terminal's :meth:`terminal.sync.client.BackOfficeClient.post`) until stopped.
    ``last_error`` is ``code: reason`` of the last failed one, None after a success."""

    def __init__(
        self,
        terminal_id: str,
        snapshot: Callable[[], Mapping[str, Any]],
        post: Callable[[str, bytes], tuple[int, bytes]],
        clock: Clock,
        interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        version: str | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self.terminal_id = terminal_id
        self.interval = interval
        self.version = version or software_version()
        self._snapshot = snapshot
        self._post = post
        self._clock = clock
        self.sent = 0
        self.last_error: str | None = None

    def send_once(self) -> float:
        """Send one heartbeat; return the back office's ``received_at``. Raises the typed
        :class:`OneCardError` of a failure."""
        beat = heartbeat_from_status(
            self.terminal_id, self._snapshot(), self._clock.now(), self.version
        )
        status, answer = self._post(HEARTBEAT_PATH, heartbeat_body(beat))
        received = check_heartbeat_answer(status, answer)
        self.sent += 1
        return received

    def run(self, stop: threading.Event) -> None:
        """The worker: a heartbeat now, then every ``interval`` seconds, until ``stop``.
        Failures are logged, never raised: the next interval sends a fresh one."""
        while not stop.is_set():
            try:
                self.send_once()
                self.last_error = None
            except OneCardError as error:
                self.last_error = f"{error.code}: {error.reason}"
                log.warning("heartbeat not sent: %s", self.last_error)
            stop.wait(self.interval)
