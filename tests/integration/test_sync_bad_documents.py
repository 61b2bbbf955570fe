"""The runtime's back office link against the real back office (SQLite and PostgreSQL) when
what the back office serves is broken: a published application list with NaN, 1e400 or a
duplicated key, written into its storage directly (the back office itself refuses to
publish such a body). The terminal refuses each with a typed error and keeps the list in
force, and it keeps syncing: a later transaction and a staff call still reach the back
office. The other way round, a terminal's request body holding them is a typed 400."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.backoffice_storage import KINDS, storage_for
from helpers.journal_records import transaction_record
from helpers.waiting import wait_for

from backoffice.cli import format_credentials
from backoffice.errors import PublicationError
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from backoffice.testing import make_entries
from terminal.host.clock import SystemClock
from terminal.journal.store import Journal
from terminal.sync.auth import load_credentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.downloads import DocumentStore
from terminal.sync.events import EventOutbox
from terminal.sync.link import back_office_link
from terminal.wire.canonical import canonical_json
from terminal.wire.document import DocumentError
from terminal.wire.requests import EVENTS_PATH, INGEST_PATH

pytestmark = pytest.mark.integration

TERMINAL = "T-BROKEN"
WAIT = 30.0  # a bound on waits for events, never a sleep
APPLIST = {
    "services": [
        {"code": "museum-entry", "name": "Museum", "scope": "chongqing", "valid_from": "2025-01-01"}
    ]
}
BROKEN = {
    "nan": b'"x":NaN',
    "1e400": b'"x":1e400',
    "duplicate key": b'"version":2',
    "4301 digits": b'"x":' + b"7" * 4301,
    "lone surrogate": b'"x":"\\ud800"',
}


class WatchedStore(DocumentStore):
    """The terminal's document store, telling the test of every application list the link
    tried to apply and how it ended."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.attempts: list[str] = []
        self.changed = threading.Condition()

    def apply_application_list(self, raw: bytes) -> dict:  # type: ignore[type-arg]
        try:
            body = super().apply_application_list(raw)
        except DocumentError as exc:
            self._saw(exc.code)
            raise
        self._saw("applied")
        return body

    def _saw(self, outcome: str) -> None:
        with self.changed:
            self.attempts.append(outcome)
            self.changed.notify_all()


def watch_uploads(storage: object) -> threading.Condition:
    """A condition notified whenever the back office stores a batch (entries or events)."""
    changed = threading.Condition()
    for name in ("ingest", "store_events"):
        stored = getattr(storage, name)

        def notifying(*args: object, _stored=stored) -> object:
            result = _stored(*args)
            with changed:
                changed.notify_all()
            return result

        setattr(storage, name, notifying)
    return changed


def tamper_applist(storage: object, text: bytes) -> None:
    """Put ``text`` in the back office's storage as the application list, as an intruder or
    a bad restore could: behind the back office's back, not through its publishing."""
    with storage._tx() as cur:  # type: ignore[attr-defined]
        cur.execute(
            storage._q("UPDATE documents SET document = ?, version = 2 WHERE kind = ?"),  # type: ignore[attr-defined]
            (text.decode(), "applist"),
        )


@pytest.mark.parametrize("broken", sorted(BROKEN))
@pytest.mark.parametrize("kind", KINDS)
def test_the_link_outlives_a_broken_document(kind: str, broken: str, tmp_path: Path) -> None:
    key, token_key, secret = generate_publication_key(), new_token_key(), os.urandom(32)
    clock = SystemClock()
    with storage_for(kind, tmp_path) as storage:
        storage.enrol(TERMINAL, secret, clock.now())
        office = BackOffice(storage, key)
        signed = office.publish("applist", APPLIST)
        good = canonical_json(signed)
        uploads = watch_uploads(storage)
        server = office.serve()
        credentials_file = tmp_path / "creds.toml"
        credentials_file.write_text(
            format_credentials(TERMINAL, secret, server.url, key, token_key, None)
        )
        credentials_file.chmod(0o600)
        credentials = load_credentials(credentials_file)
        (tmp_path / "documents").mkdir()
        store = WatchedStore(tmp_path / "documents", key.public_key, key.algorithm)
        stop = threading.Event()
        wake: list = []
        with (
            Journal.open(tmp_path / "journal.db", TERMINAL, clock) as journal,
            EventOutbox.open(tmp_path / "events.db", TERMINAL, clock) as events,
        ):
            link = back_office_link(journal, events, wake, credentials, store, clock, 0.05)
            thread = threading.Thread(target=link, args=(stop,), daemon=True)
            thread.start()
            try:
                with store.changed:
                    assert store.changed.wait_for(lambda: "applied" in store.attempts, WAIT)

                # Served by the back office from its storage: the terminal refuses it.
                tamper_applist(storage, b"{" + BROKEN[broken] + b"," + good[1:])
                with store.changed:
                    assert store.changed.wait_for(lambda: "bad_document" in store.attempts, WAIT), (
                        store.attempts
                    )
                assert store.current_versions()["applist"] == 1
                assert (tmp_path / "documents" / "applist.json").read_bytes() == good

                # ... and keeps syncing.
                journal.append(transaction_record())
                events.add("call_staff", {"source": "holder_screen"})
                wake[0]()
                with uploads:
                    assert uploads.wait_for(
                        lambda: (
                            storage.acked_up_to(TERMINAL) == 1
                            and len(storage.events(TERMINAL)) == 1
                        ),
                        WAIT,
                    )
                assert thread.is_alive()
            finally:
                stop.set()
                thread.join(WAIT)
                server.shutdown()
        assert not thread.is_alive()
        assert [e["kind"] for e in storage.events(TERMINAL)] == ["call_staff"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_back_office_refuses_to_publish_a_value_without_json(kind: str, tmp_path: Path) -> None:
    with storage_for(kind, tmp_path) as storage:
        office = BackOffice(storage, generate_publication_key())
        for value in (float("nan"), float("inf"), "\ud800"):
            with pytest.raises(PublicationError):
                office.publish("applist", {**APPLIST, "x": value})
        assert storage.document("applist") is None


@pytest.mark.parametrize("kind", KINDS)
def test_request_bodies_holding_them_are_typed_400s(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, secret = generate_publication_key(), os.urandom(32)
    with storage_for(kind, tmp_path) as storage:
        storage.enrol(TERMINAL, secret, SystemClock().now())
        office = BackOffice(storage, key)
        with office.serve() as server:
            path = tmp_path / "creds.toml"
            path.write_text(
                format_credentials(TERMINAL, secret, server.url, key, new_token_key(), None)
            )
            path.chmod(0o600)
            client = BackOfficeClient(load_credentials(path), SystemClock())
            entry = canonical_json(make_entries(TERMINAL, 1)[0])
            events = b'{"events":[{"at":1,"detail":{"lane":1},"id":1,"kind":"call_staff"}]'
            bodies = {
                INGEST_PATH: [
                    b'{"entries":[' + entry.replace(b'"time":', b'"time":NaN,"t":', 1) + b"]",
                    b'{"entries":[' + entry.replace(b'"amount":', b'"amount":1e400,"a":', 1) + b"]",
                    b'{"entries":[' + entry.replace(b'"seq":1', b'"seq":1,"seq":1', 1) + b"]",
                    b'{"entries":[' + entry.replace(b'"ok"', b'"\\ud800"', 1) + b"]",
                    b'{"entries":[' + entry.replace(b'"extra":{', b'"extra":{"\\udc00":1,') + b"]",
                ],
                EVENTS_PATH: [
                    events.replace(b'"at":1', b'"at":NaN'),
                    events.replace(b'"at":1', b'"at":1e400'),
                    events.replace(b'"id":1', b'"id":1,"id":1'),
                    events.replace(b'"lane":1', b'"lane":"\\ud800"'),
                ],
            }
            with caplog.at_level(logging.INFO, logger="backoffice"):
                for endpoint, items in bodies.items():
                    for item in items:
                        body = item + b',"terminal_id":"' + TERMINAL.encode() + b'"}'
                        status, answer = client.post(endpoint, body)
                        assert status == 400, (endpoint, body[:80], answer)
                        assert b'"error":"bad_request"' in answer
            client.close()
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert storage.acked_up_to(TERMINAL) == 0 and storage.events(TERMINAL) == []


def _sync_command(credentials: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "onecard.cli",
        "sync",
        "--credentials",
        str(credentials),
        "--journal",
        str(tmp_path / "journal.db"),
        "--documents",
        str(tmp_path / "documents"),
        *extra,
    ]


@pytest.mark.parametrize("broken", ["1e400", "4301 digits", "lone surrogate"])
def test_onecard_sync_reports_a_broken_document_and_keeps_polling(
    broken: str, tmp_path: Path
) -> None:
    """The command, as an operator runs it: ``--once`` exits 14 with its JSON summary;
    without it, the refusal is reported and the next good document is still taken."""
    key, token_key, secret = generate_publication_key(), new_token_key(), os.urandom(32)
    with storage_for("sqlite", tmp_path) as storage:
        storage.enrol(TERMINAL, secret, SystemClock().now())
        office = BackOffice(storage, key)
        good = canonical_json(office.publish("applist", APPLIST))
        tamper_applist(storage, b"{" + BROKEN[broken] + b"," + good[1:])
        with office.serve() as server:
            credentials = tmp_path / "creds.toml"
            credentials.write_text(
                format_credentials(TERMINAL, secret, server.url, key, token_key, None)
            )
            credentials.chmod(0o600)

            once = subprocess.run(
                _sync_command(credentials, tmp_path, "--once"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert once.returncode == 14, once.stderr
            assert "Traceback" not in once.stderr
            summary = json.loads(once.stdout)
            assert summary["documents"]["applist"]["outcome"] == "refused"
            assert summary["upload"]["acked_up_to"] == 0

            polling = subprocess.Popen(
                _sync_command(credentials, tmp_path, "--interval", "0.2"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            # The polling process's log, read as it comes: the fix is published only once it
            # has refused the broken document (however slowly the process started).
            lines: list[str] = []
            refused = threading.Event()

            def read_log() -> None:
                assert polling.stderr is not None
                for line in polling.stderr:
                    lines.append(line)
                    if "refused applist" in line:
                        refused.set()

            reader = threading.Thread(target=read_log, daemon=True)
            reader.start()
            try:
                applied = tmp_path / "documents" / "applist.json"
                deadline = time.monotonic() + WAIT
                # Refused at least once more (the process stays up), then a good one lands.
                assert refused.wait(WAIT), "".join(lines)
                assert polling.poll() is None
                fixed = {"services": [{**APPLIST["services"][0], "name": "Museum fixed"}]}
                office.publish("applist", fixed)
                assert wait_for(
                    lambda: (
                        (applied.exists() and b"Museum fixed" in applied.read_bytes())
                        or polling.poll() is not None
                    ),
                    max(0.0, deadline - time.monotonic()),
                ), "".join(lines)
                assert polling.poll() is None, "".join(lines)
            finally:
                polling.send_signal(signal.SIGTERM)
                polling.wait(timeout=WAIT)
                reader.join(timeout=WAIT)
            err = "".join(lines)
            assert polling.returncode == 0, err
            assert "refused applist" in err
            assert "Traceback" not in err
