"""A terminal's heartbeat as it travels, ``POST /v1/heartbeat`` (docs/fleet.md).

A :class:`Heartbeat` says how a terminal is, not what it did: the software it runs, the
versions of the documents it holds, its journal backlog and unsent events, the states of its
readers, scanners, links and background workers, and how many warnings and errors it logged
lately. Nothing personal: names are device and link names, states machine codes, counts
integers; a value shaped like an ID number is refused like anywhere else
(:mod:`terminal.wire.personal`).

:func:`heartbeat_body` writes the request body (canonical JSON) and
:func:`parse_heartbeat_body` is its strict reader - the back office accepts exactly what a
terminal may send, every failure a :class:`HeartbeatError` (a ``400 bad_request``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from terminal.errors import JournalEntryError, ParseError
from terminal.wire.canonical import JsonError, canonical_json, parse_json
from terminal.wire.journal import MACHINE_CODE, TERMINAL_ID
from terminal.wire.personal import check_non_personal

HEARTBEAT_PATH = "/v1/heartbeat"
MAX_HEARTBEAT_BYTES = 16 * 1024
"""A heartbeat is a few hundred bytes; a terminal with many readers stays far below this."""
MAX_NAMED = 64
"""Entries at most in each table (documents, readers, scanners, links, workers)."""
MAX_COUNT = 2**63 - 1  # a BIGINT column
MAX_TIME = 1e15
SOFTWARE_VERSION = re.compile(r"[A-Za-z0-9.+_-]{1,64}")
DEVICE_NAME = re.compile(r"[\x20-\x7e]{1,96}")
"""A reader, scanner, link or worker name as the terminal's status page shows it (printable
ASCII: PC/SC reader names, serial ports, ``camera 0``)."""
STATE = re.compile(r"[a-z0-9_]{1,32}")

TABLES = ("documents", "readers", "scanners", "links", "workers")
_FIELDS = frozenset(
    {
        "terminal_id",
        "sent_at",
        "software_version",
        "journal_backlog",
        "events_unsent",
        "recent_errors",
        *TABLES,
    }
)


class HeartbeatError(ParseError):
    """A heartbeat that breaks docs/fleet.md: a missing or unknown field, a value of the
    wrong type or range, a name or state that is not one, personal data."""

    code = "bad_heartbeat"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat, exactly as it travels (docs/fleet.md)."""

    terminal_id: str
    sent_at: float
    """The terminal's wall time when it sent it, Unix seconds."""
    software_version: str
    journal_backlog: int | None
    """Journal entries the back office has not acknowledged (None: the journal did not say)."""
    events_unsent: int | None
    recent_errors: int
    """Warnings and errors the terminal logged in the last :data:`RECENT_WINDOW` seconds."""
    documents: Mapping[str, int] = field(default_factory=dict)
    """Document name -> version in force (``applist``, ``hotlist``, ``trustlist``)."""
    readers: Mapping[str, str] = field(default_factory=dict)
    scanners: Mapping[str, str] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    """Link name -> ``up``, ``down`` or ``unknown``."""
    workers: Mapping[str, str] = field(default_factory=dict)
    """Background worker name -> its supervisor state."""

    def __post_init__(self) -> None:
        for name in TABLES:
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def to_json(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "sent_at": self.sent_at,
            "software_version": self.software_version,
            "journal_backlog": self.journal_backlog,
            "events_unsent": self.events_unsent,
            "recent_errors": self.recent_errors,
            **{name: dict(getattr(self, name)) for name in TABLES},
        }


RECENT_WINDOW = 900.0
"""Seconds of log a heartbeat's ``recent_errors`` counts."""


def _count(obj: Mapping[str, Any], name: str, optional: bool) -> int | None:
    value = obj[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise HeartbeatError(f"{name} must be an integer 0..{MAX_COUNT}")
    return value


def _table(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = obj[name]
    if not isinstance(value, dict):
        raise HeartbeatError(f"{name} must be a JSON object")
    if len(value) > MAX_NAMED:
        raise HeartbeatError(f"{name}: at most {MAX_NAMED} entries")
    for key, item in value.items():
        if name == "documents":
            if not MACHINE_CODE.fullmatch(key):
                raise HeartbeatError(f"documents: {key[:40]!r} is not a document name")
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= MAX_COUNT:
                raise HeartbeatError(f"documents.{key}: the version must be an integer")
            continue
        if not DEVICE_NAME.fullmatch(key):
            raise HeartbeatError(f"{name}: {key[:40]!r} is not a printable name of 1-96 chars")
        if not isinstance(item, str) or not STATE.fullmatch(item):
            raise HeartbeatError(f"{name}.{key[:40]}: the state must be a code [a-z0-9_]{{1,32}}")
    return value


def heartbeat_from_json(obj: object) -> Heartbeat:
    """The :class:`Heartbeat` of a decoded JSON value; :class:`HeartbeatError` otherwise."""
    if not isinstance(obj, dict):
        raise HeartbeatError("a heartbeat is a JSON object")
    if obj.keys() != _FIELDS:
        missing = sorted(_FIELDS - obj.keys())
        unknown = sorted(str(k)[:40] for k in obj.keys() - _FIELDS)
        raise HeartbeatError(f"heartbeat fields: missing {missing}, unknown {unknown}")
    terminal_id = obj["terminal_id"]
    if not isinstance(terminal_id, str) or not TERMINAL_ID.fullmatch(terminal_id):
        raise HeartbeatError("terminal_id must match [A-Za-z0-9_-]{1,32}")
    sent_at = obj["sent_at"]
    if (
        isinstance(sent_at, bool)
        or not isinstance(sent_at, int | float)
        or not math.isfinite(sent_at)
        or not 0 <= sent_at <= MAX_TIME
    ):
        raise HeartbeatError("sent_at must be Unix seconds")
    version = obj["software_version"]
    if not isinstance(version, str) or not SOFTWARE_VERSION.fullmatch(version):
        raise HeartbeatError("software_version must match [A-Za-z0-9.+_-]{1,64}")
    tables = {name: _table(obj, name) for name in TABLES}
    try:
        # Names are free text from devices: one shaped like an ID number is not taken.
        # (As values: the deny-list of personal keys is for field names, not device names.)
        check_non_personal({"names": [name for table in tables.values() for name in table]})
    except JournalEntryError as exc:
        raise HeartbeatError(exc.reason) from None
    recent = _count(obj, "recent_errors", optional=False)
    assert recent is not None
    return Heartbeat(
        terminal_id=terminal_id,
        sent_at=float(sent_at),
        software_version=version,
        journal_backlog=_count(obj, "journal_backlog", optional=True),
        events_unsent=_count(obj, "events_unsent", optional=True),
        recent_errors=recent,
        **tables,
    )


def parse_heartbeat_body(body: bytes) -> Heartbeat:
    """The heartbeat of a ``POST /v1/heartbeat`` body (strict JSON, at most
    :data:`MAX_HEARTBEAT_BYTES`); :class:`HeartbeatError` otherwise."""
    if len(body) > MAX_HEARTBEAT_BYTES:
        raise HeartbeatError(f"a heartbeat is at most {MAX_HEARTBEAT_BYTES} bytes")
    try:
        obj = parse_json(body)
    except JsonError as exc:
        raise HeartbeatError(f"heartbeat: {exc.reason}") from None
    return heartbeat_from_json(obj)


def heartbeat_body(heartbeat: Heartbeat) -> bytes:
    """The request body of ``heartbeat``: canonical JSON, checked by the reader the back
    office uses (a terminal never sends what would be refused)."""
    try:
        body = canonical_json(heartbeat.to_json())
    except JsonError as exc:
        raise HeartbeatError(f"heartbeat: {exc.reason}") from None
    parse_heartbeat_body(body)
    return body
