"""Terminal events through the real back office over HTTP on loopback, SQLite and
PostgreSQL: the outbox and sender on one side, ``POST /v1/events`` and its storage on the
other (docs/sync.md, "Terminal events")."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers.backoffice_storage import KINDS, storage_for

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import PublicationKey, generate_publication_key
from backoffice.server import BackOffice, RunningServer
from onecard.cli import main as onecard
from terminal.errors import SyncRejectedError, SyncUnreachableError
from terminal.host.clock import FixedClock, SystemClock
from terminal.sync.auth import TerminalCredentials, load_credentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.events import EventOutbox, EventSender
from terminal.wire.events import TerminalEvent, events_body
from terminal.wire.requests import EVENTS_PATH

pytestmark = pytest.mark.integration

TERMINAL = "T-EVENTS"
WAIT = 30.0  # seconds: a bound on waits for events, never a sleep


@dataclass
class Office:
    storage: object
    backoffice: BackOffice
    key: PublicationKey
    token_key: bytes
    directory: Path
    secrets: dict[str, bytes]

    def enrol(self, terminal_id: str) -> bytes:
        secret = os.urandom(32)
        self.storage.enrol(terminal_id, secret, SystemClock().now())
        self.secrets[terminal_id] = secret
        return secret

    def credentials(self, url: str, terminal_id: str = TERMINAL) -> TerminalCredentials:
        secret = self.secrets.get(terminal_id) or os.urandom(32)
        path = self.directory / f"{terminal_id}.toml"
        path.write_text(
            format_credentials(terminal_id, secret, url, self.key, self.token_key, None)
        )
        path.chmod(0o600)
        return load_credentials(path)

    def storage_url(self) -> str:
        # What `onecard backoffice ... --storage` takes for this very storage.
        if getattr(self.storage, "schema", None):
            url = self.storage.url
            return f"{url}{'&' if '?' in url else '?'}schema={self.storage.schema}"
        return self.storage.path


@pytest.fixture(params=KINDS)
def office(request, tmp_path):
    with storage_for(request.param, tmp_path) as storage:
        key = generate_publication_key()
        office = Office(storage, BackOffice(storage, key), key, new_token_key(), tmp_path, {})
        office.enrol(TERMINAL)
        yield office


@pytest.fixture
def server(office):
    running = office.backoffice.serve("127.0.0.1", 0)
    yield running
    running.shutdown()


@pytest.fixture
def outbox(tmp_path):
    with EventOutbox.open(tmp_path / "events.db", TERMINAL, FixedClock()) as box:
        yield box


def stored_ids(office: Office, terminal_id: str = TERMINAL) -> list[int]:
    return sorted(e["id"] for e in office.storage.events(terminal_id, limit=10_000))


def test_events_are_stored_once_and_a_repeat_is_ignored(office, server, outbox):
    credentials = office.credentials(server.url)
    sender = EventSender(outbox, credentials, SystemClock(), batch_size=2)
    added = [
        outbox.add("call_staff", {"source": "holder_screen", "lane": 1}),
        outbox.add("call_acknowledged", {"by": "counter"}),
        outbox.add("call_staff", {"source": "holder_screen", "lane": 2}),
    ]
    result = sender.run_once()
    assert (result.requests, result.sent, result.sent_up_to, result.unsent) == (2, 3, 3, 0)
    stored = office.storage.events(TERMINAL)
    assert [e["id"] for e in stored] == [3, 2, 1]  # newest first (equal times: by id)
    assert stored[2] == {
        "terminal_id": TERMINAL,
        "id": 1,
        "kind": "call_staff",
        "at": added[0].at,
        "detail": {"lane": 1, "source": "holder_screen"},
        "received_at": stored[2]["received_at"],
    }
    assert abs(stored[2]["received_at"] - SystemClock().now()) < WAIT

    # The answer was lost, say: the terminal sends the same events again.
    client = BackOfficeClient(credentials, SystemClock())
    body = events_body(TERMINAL, added)
    assert client.post(EVENTS_PATH, body) == (200, b'{"acked_up_to":3}')
    assert office.storage.events(TERMINAL) == stored  # nothing twice, nothing changed
    # Part of a batch already held, part new: the new part is stored.
    fourth = outbox.add("call_cancelled")
    status, answer = client.post(EVENTS_PATH, events_body(TERMINAL, [added[2], fourth]))
    assert (status, json.loads(answer)) == (200, {"acked_up_to": 4})
    assert stored_ids(office) == [1, 2, 3, 4]
    # Same id, other content: an outbox that was replaced is refused, not acknowledged.
    impostor = TerminalEvent(2, "call_cancelled", added[1].at, {})
    status, answer = client.post(EVENTS_PATH, events_body(TERMINAL, [impostor]))
    assert (status, json.loads(answer)["error"]) == (409, "duplicate_conflict")
    assert office.storage.events(TERMINAL, kind="call_cancelled")[0]["id"] == 4
    client.close()
    sender.stop()


def test_a_sender_delivers_everything_exactly_once_after_an_outage(office, outbox):
    down = office.backoffice.serve("127.0.0.1", 0)
    url, port = down.url, down.port
    down.shutdown()  # the back office is unreachable from the start

    failed = threading.Event()
    back = threading.Event()

    def backoff_sleep(delay: float) -> None:
        failed.set()
        back.wait(delay)  # the back-off, cut short once the back office is up again

    sender = EventSender(
        outbox,
        office.credentials(url),
        SystemClock(),
        base_backoff=0.01,
        max_backoff=0.05,
        idle_interval=WAIT,
        backoff_sleep=backoff_sleep,
    )
    for lane in range(5):
        outbox.add("call_staff", {"lane": lane})
    with pytest.raises(SyncUnreachableError):
        sender.run_once()
    sender.start()
    sender.notify()
    assert failed.wait(WAIT), "the sender never tried"
    assert outbox.unsent() == 5 and sender.last_error
    outbox.add("call_cancelled", {"lane": 4})  # the terminal goes on while the office is down
    assert not sender.wait_sent(timeout=0)

    up: RunningServer = office.backoffice.serve("127.0.0.1", port)
    try:
        back.set()
        assert sender.wait_sent(timeout=WAIT)
        assert outbox.unsent() == 0 and stored_ids(office) == [1, 2, 3, 4, 5, 6]
        # A call made while all is well goes at once, on notify.
        outbox.add("call_staff", {"lane": 9})
        sender.notify()
        assert sender.wait_sent(timeout=WAIT)
    finally:
        sender.stop(timeout=WAIT)
        up.shutdown()
    assert sender.last_error is None
    assert stored_ids(office) == [1, 2, 3, 4, 5, 6, 7]
    assert len(office.storage.events(TERMINAL, limit=100)) == 7  # each exactly once


def test_authentication_is_that_of_ingest(office, server, outbox, tmp_path):
    outbox.add("call_staff")
    with EventOutbox.open(tmp_path / "stranger.db", "T-STRANGER", FixedClock()) as strange:
        strange.add("call_staff")
        unknown = EventSender(strange, office.credentials(server.url, "T-STRANGER"), SystemClock())
        with pytest.raises(SyncRejectedError) as info:
            unknown.run_once()
        assert (info.value.status, info.value.server_code) == (401, "unauthenticated")
        assert strange.unsent() == 1

    stale = EventSender(outbox, office.credentials(server.url), FixedClock(1_000_000_000.0))
    with pytest.raises(SyncRejectedError) as info:
        stale.run_once()
    assert (info.value.status, info.value.server_code) == (401, "clock_skew")

    office.storage.revoke(TERMINAL, SystemClock().now())
    revoked = EventSender(outbox, office.credentials(server.url), SystemClock())
    with pytest.raises(SyncRejectedError) as info:
        revoked.run_once()
    assert (info.value.status, info.value.server_code) == (403, "revoked")
    assert outbox.unsent() == 1 and stored_ids(office) == []
    for sender in (unknown, stale, revoked):
        sender.stop()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"terminal_id":"T-EVENTS"}',
        b'{"terminal_id":"T-EVENTS","events":{}}',
        b'{"terminal_id":"T-EVENTS","events":[{"id":1}]}',
        b'{"terminal_id":"T-EVENTS","events":[{"id":1,"kind":"call_staff","at":1,'
        b'"detail":{"name":"x"}}]}',
        b'{"terminal_id":"T-EVENTS","events":[{"id":1,"kind":"call_police","at":1,"detail":{}}]}',
        b'{"terminal_id":"T-EVENTS","events":[{"id":2,"kind":"call_staff","at":1,"detail":{}},'
        b'{"id":2,"kind":"call_staff","at":1,"detail":{}}]}',
        events_body(TERMINAL, [TerminalEvent(i, "call_staff", 1.0, {}) for i in range(1, 1002)]),
    ],
)
def test_malformed_requests_are_400(office, server, body):
    client = BackOfficeClient(office.credentials(server.url), SystemClock())
    status, answer = client.post(EVENTS_PATH, body)
    assert (status, json.loads(answer)["error"]) == (400, "bad_request")
    assert stored_ids(office) == []
    client.close()


def test_a_terminal_sends_only_its_own_events(office, server):
    office.enrol("T-OTHER")
    client = BackOfficeClient(office.credentials(server.url), SystemClock())
    status, answer = client.post(
        EVENTS_PATH, events_body("T-OTHER", [TerminalEvent(1, "call_staff", 1.0, {})])
    )
    assert (status, json.loads(answer)["error"]) == (403, "forbidden")
    assert stored_ids(office, "T-OTHER") == []
    client.close()


def test_cli_lists_events(office, server, outbox, capsys):
    office.enrol("T-SECOND")
    second = EventOutbox.open(office.directory / "second.db", "T-SECOND", FixedClock(1.8e9))
    try:
        for box, kinds in ((outbox, ["call_staff", "call_acknowledged"]), (second, ["call_staff"])):
            for kind in kinds:
                box.add(kind, {"source": "holder_screen"})
            sender = EventSender(
                box, office.credentials(server.url, box.terminal_id), SystemClock()
            )
            assert sender.run_once().unsent == 0
            sender.stop()
    finally:
        second.close()
    storage = ["--storage", office.storage_url()]

    assert onecard(["backoffice", "events", *storage, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["terminal_id"], e["id"], e["kind"]) for e in lines] == [
        ("T-SECOND", 1, "call_staff"),  # newest first
        (TERMINAL, 2, "call_acknowledged"),
        (TERMINAL, 1, "call_staff"),
    ]
    assert lines[0]["detail"] == {"source": "holder_screen"}

    assert onecard(["backoffice", "events", *storage, "--terminal", TERMINAL,
                    "--kind", "call_staff", "--json"]) == 0  # fmt: skip
    [only] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (only["terminal_id"], only["id"]) == (TERMINAL, 1)

    # ISO 8601 in China Standard Time, or Unix seconds.
    assert onecard(["backoffice", "events", *storage, "--since", "2027-01-01", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert onecard(["backoffice", "events", *storage, "--since", "1795000000", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert onecard(["backoffice", "events", *storage, "--limit", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["TIME", "TERMINAL", "KIND", "DETAIL"] and len(table) == 3
    assert "T-SECOND" in table[1] and 'source="holder_screen"' in table[1]
    assert table[1].startswith("2027-01-15 ")  # 1.8e9 in China Standard Time
