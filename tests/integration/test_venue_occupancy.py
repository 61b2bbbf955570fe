"""Venue occupancy through the real back office over HTTP on loopback, SQLite and
PostgreSQL (docs/venues.md, "Occupancy"): an entry gate and an exit gate, each with its own
enrolment, outbox and event sender, record their passages as ``venue_entry``/``venue_exit``
events; ``GET /v1/occupancy`` answers the shared count, each gate's :class:`Occupancy`
takes it, and the entry gate refuses at the maximum and reopens as visitors leave."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.backoffice_storage import KINDS, storage_for

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from onecard.cli import main as onecard
from terminal.errors import SyncRejectedError
from terminal.host.clock import FixedClock, SystemClock
from terminal.sync.auth import TerminalCredentials, load_credentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.events import EventOutbox, EventSender
from terminal.venue.occupancy import Occupancy, fetch_occupancy

pytestmark = pytest.mark.integration

VENUE = "museum-1"
ENTRY, EXIT = "MUSEUM-IN-1", "MUSEUM-OUT-1"
PERSONAL = ("110101", "card_token", "name")


class Gate:
    """One gate terminal: credentials, outbox, sender, client and its Occupancy."""

    def __init__(self, directory: Path, credentials: TerminalCredentials, role: str) -> None:
        self.outbox = EventOutbox.open(
            directory / f"{credentials.terminal_id}.db", credentials.terminal_id, SystemClock()
        )
        self.sender = EventSender(self.outbox, credentials, SystemClock())
        self.client = BackOfficeClient(credentials, SystemClock())
        self.occupancy = Occupancy(
            VENUE, 3, role, FixedClock(), gate=credentials.terminal_id.lower()
        )

    def send(self) -> None:
        assert self.sender.run_once().unsent == 0

    def poll(self) -> int:
        return self.occupancy.apply(fetch_occupancy(self.client, VENUE))

    def close(self) -> None:
        self.sender.stop()
        self.client.close()
        self.outbox.close()


@pytest.fixture(params=KINDS)
def office(request, tmp_path):
    with storage_for(request.param, tmp_path) as storage:
        key, token_key = generate_publication_key(), new_token_key()
        backoffice = BackOffice(storage, key)
        running = backoffice.serve("127.0.0.1", 0)
        gates = {}
        try:
            for terminal, role in ((ENTRY, "entry"), (EXIT, "exit")):
                secret = os.urandom(32)
                storage.enrol(terminal, secret, SystemClock().now())
                path = tmp_path / f"{terminal}.toml"
                path.write_text(
                    format_credentials(terminal, secret, running.url, key, token_key, None)
                )
                path.chmod(0o600)
                gates[role] = Gate(tmp_path, load_credentials(path), role)
            yield storage, gates
        finally:
            for gate in gates.values():
                gate.close()
            running.shutdown()


def storage_url(storage) -> str:
    if getattr(storage, "schema", None):
        url = storage.url
        return f"{url}{'&' if '?' in url else '?'}schema={storage.schema}"
    return storage.path


def test_two_gates_share_the_count_through_the_back_office(office, capsys) -> None:
    storage, gates = office
    entry, exit_ = gates["entry"], gates["exit"]

    # An exit before anyone came in: the venue does not go below zero.
    assert exit_.occupancy.record_exit(exit_.outbox) == 0
    exit_.send()
    assert exit_.poll() == 0 and entry.poll() == 0

    # Three visitors in; the third not yet delivered when the exit gate polls.
    for slot in ("10:00-11:00", "10:00-11:00"):
        entry.occupancy.record_entry(entry.outbox, slot)
    entry.send()
    entry.occupancy.record_entry(entry.outbox)
    assert exit_.poll() == 2  # the back office holds two
    assert entry.poll() == 3  # the entry gate adds its own undelivered third (the race)
    assert not entry.occupancy.can_enter()  # maximum 3: full, please wait
    entry.send()
    assert entry.poll() == 3 and entry.occupancy.snapshot().uncounted == 0

    # The maximum set at the back office is what the gates apply.
    assert onecard(["backoffice", "venue", "set-max", "--storage", storage_url(storage),
                    "--venue", VENUE, "4"]) == 0  # fmt: skip
    capsys.readouterr()
    assert entry.poll() == 3 and entry.occupancy.maximum == 4 and entry.occupancy.can_enter()
    entry.occupancy.record_entry(entry.outbox)
    entry.send()
    answer = fetch_occupancy(exit_.client, VENUE)
    assert (answer.occupancy, answer.maximum) == (4, 4)  # maximum reached, as reported
    assert entry.poll() == 4 and not entry.occupancy.can_enter()

    # One leaves: the entry gate reopens.
    exit_.occupancy.record_exit(exit_.outbox)
    exit_.send()
    assert entry.poll() == 3 and entry.occupancy.can_enter()
    assert exit_.poll() == 3

    # The operator's view.
    assert onecard(["backoffice", "venue", "--storage", storage_url(storage), "--json"]) == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["venue"] == VENUE and line["occupancy"] == 3 and line["maximum"] == 4
    assert (line["entries"], line["exits"], line["unmatched_exits"]) == (4, 2, 1)
    assert line["slots"] == {"10:00-11:00": 2} and line["entries_without_slot"] == 2

    # Nothing personal reached the back office: gates, venues, slots and counts only.
    stored = storage.events(limit=100)
    assert {e["kind"] for e in stored} == {"venue_entry", "venue_exit"}
    for event in stored:
        assert set(event["detail"]) <= {"venue", "gate", "slot", "count"}
        assert not any(p in json.dumps(event) for p in PERSONAL)


def test_the_route_is_signed_like_the_others(office, tmp_path) -> None:
    storage, gates = office
    stranger = gates["entry"].client
    storage.revoke(ENTRY, SystemClock().now())
    with pytest.raises(SyncRejectedError) as info:
        fetch_occupancy(stranger, VENUE)
    assert (info.value.status, info.value.server_code) == (403, "revoked")
    status, body = gates["exit"].client.get("/v1/occupancy?venue=a%20b")
    assert (status, json.loads(body)["error"]) == (400, "bad_request")
