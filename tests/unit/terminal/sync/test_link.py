"""The runtime's back office link (terminal/sync/link.py) against a small in-test back office
that serves broken documents: each is refused with a typed error and the previous document
stays, while the uploader and the event sender go on - all over one shared connection."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers.journal_records import transaction_record

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.host.clock import SystemClock
from terminal.journal.store import Journal
from terminal.sync.auth import TerminalCredentials
from terminal.sync.downloads import DocumentStore, Downloader, Outcome
from terminal.sync.events import EventOutbox
from terminal.sync.link import back_office_link, download_round
from terminal.wire.document import sign_document

TERMINAL = "T-LINK"
WAIT = 30.0  # a bound on waits for events, never a sleep
KEY = signing.generate_private_key(Algorithm.SM2)
GOOD = sign_document(
    {
        "kind": "applist",
        "version": 1,
        "services": [
            {
                "code": "museum-entry",
                "name": "Museum",
                "scope": "chongqing",
                "valid_from": "2025-01-01",
            }
        ],
    },
    KEY,
    Algorithm.SM2,
)
# Broken after the parse, or in it: each used to escape verify_document as a bare
# ValueError (or be read differently by two readers), ending the link thread.
BROKEN = [
    b'{"x":NaN,' + GOOD[1:],
    b'{"x":1e400,' + GOOD[1:],
    GOOD[:-1] + b',"version":99}',
    b'{"x":"\\ud800",' + GOOD[1:],
    b'{"x":' + b"1" * 4301 + b"," + GOOD[1:],
]


class FakeBackOffice:
    """Serves ``documents`` (path -> bytes, one list entry per request, the last repeated),
    acknowledges every upload and event batch, and counts requests and connections."""

    def __init__(self, documents: dict[str, list[bytes]]) -> None:
        self.documents = documents
        self.seen: dict[str, int] = {}
        self.entries: list[dict[str, object]] = []
        self.events: list[dict[str, object]] = []
        self.connections: set[int] = set()
        self.changed = threading.Condition()
        office = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                with office.changed:
                    office.connections.add(self.client_address[1])
                    served = office.documents.get(path)
                    count = office.seen[path] = office.seen.get(path, 0) + 1
                    office.changed.notify_all()
                if not served:
                    return self.answer(404, b'{"error":"not_found","reason":"none"}')
                return self.answer(200, served[min(count, len(served)) - 1])

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                field = "entries" if self.path == "/v1/ingest" else "events"
                with office.changed:
                    office.connections.add(self.client_address[1])
                    getattr(office, field).extend(body[field])
                    last = body[field][-1]["seq" if field == "entries" else "id"]
                    office.changed.notify_all()
                return self.answer(200, json.dumps({"acked_up_to": last}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def wait(self, predicate: object) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, WAIT)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def office() -> Iterator[FakeBackOffice]:
    server = FakeBackOffice({"/v1/applist": [GOOD, *BROKEN]})
    yield server
    server.stop()


def test_broken_documents_never_stop_the_uploader_or_the_event_sender(
    office: FakeBackOffice, tmp_path: Path
) -> None:
    clock = SystemClock()
    credentials = TerminalCredentials(
        TERMINAL, bytes(32), office.url, signing.public_key_bytes(KEY), "sm2", bytes(32)
    )
    (tmp_path / "documents").mkdir()
    store = DocumentStore(tmp_path / "documents", credentials.publication_key, Algorithm.SM2)
    wake: list = []
    stop = threading.Event()
    with (
        Journal.open(tmp_path / "journal.db", TERMINAL, clock, min_free_bytes=0) as journal,
        EventOutbox.open(tmp_path / "events.db", TERMINAL, clock) as events,
    ):
        link = back_office_link(journal, events, wake, credentials, store, clock, 0.01)
        thread = threading.Thread(target=link, args=(stop,), daemon=True)
        thread.start()
        try:
            # The good list, then every broken one, refused in turn.
            assert office.wait(lambda: office.seen.get("/v1/applist", 0) > len(BROKEN) + 1)
            assert store.current_versions()["applist"] == 1
            assert (tmp_path / "documents" / "applist.json").read_bytes() == GOOD
            assert thread.is_alive()

            # A later transaction and a staff call still reach the back office.
            journal.append(transaction_record())
            events.add("call_staff", {"source": "holder_screen"})
            wake[0]()
            assert office.wait(lambda: office.entries and office.events)
        finally:
            stop.set()
            thread.join(WAIT)
    assert not thread.is_alive()
    assert [e["seq"] for e in office.entries] == [1]
    assert [e["kind"] for e in office.events] == ["call_staff"]
    # Uploads, events and downloads shared one client, hence one kept-alive connection.
    assert len(office.connections) == 1


def test_a_download_round_that_blows_up_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = DocumentStore(tmp_path, signing.public_key_bytes(KEY), Algorithm.SM2)
    store.apply_application_list(GOOD)

    class Exploding:
        def run_once(self) -> None:
            raise RuntimeError("a bug nobody foresaw")

    download_round(Exploding())  # no exception
    assert "unexpectedly" in caplog.text

    def parser_bug(body: object) -> None:
        raise KeyError("issuers")  # a trust list parser that is not total

    buggy = DocumentStore(tmp_path, signing.public_key_bytes(KEY), Algorithm.SM2, parser_bug)
    trust = sign_document({"kind": "trustlist", "version": 1}, KEY, Algorithm.SM2)
    serve = {"/v1/trustlist": trust, "/v1/applist": GOOD}
    report = Downloader(buggy, lambda path: serve[path], SystemClock()).run_once()
    assert report.results["trustlist"].outcome is Outcome.REFUSED
    assert report.results["trustlist"].code == "internal_error"
    assert report.results["applist"].outcome is Outcome.UNCHANGED  # the round went on
