"""The shared wire vectors against the back office, through its own entry points: request
bodies into ``BackOffice.handle`` (a typed 400 for every refusal, never a 500), what it
stores, what it serves, and what it refuses to publish. The terminal's side runs the same
files in tests/unit/terminal/wire/test_vectors.py."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.wire_vectors import Vector, cases

from backoffice.auth import TerminalKey, authenticate
from backoffice.cli import cmd_publish
from backoffice.errors import AuthenticationError, BadRequestError, PublicationError
from backoffice.ingest import parse_ingest_body
from backoffice.keys import write_publication_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice, Response
from backoffice.storage import open_storage
from backoffice.testing import chain_hash, make_entries
from terminal.host.clock import FixedClock
from terminal.wire.canonical import JsonError, canonical_json, parse_json
from terminal.wire.requests import request_headers

TERMINAL = "T-VECTOR"
SECRET = bytes(range(32))


@pytest.fixture
def office(tmp_path: Path) -> Iterator[BackOffice]:
    storage = open_storage(tmp_path / "bo.sqlite")
    storage.enrol(TERMINAL, SECRET, 0)
    yield BackOffice(storage, generate_publication_key(), FixedClock())
    storage.close()


def post(office: BackOffice, path: str, body: bytes) -> Response:
    headers = request_headers(TERMINAL, SECRET, "POST", path, body, office.clock.now())
    return office.handle("POST", path, headers, body)


def assert_typed_400(response: Response) -> None:
    assert response.status == 400, response.body
    assert response.body["error"] == "bad_request" and response.body["reason"]


def ingest_body(*entry_texts: str) -> bytes:
    return f'{{"terminal_id":"{TERMINAL}","entries":[{",".join(entry_texts)}]}}'.encode()


def entry_with_extra(extra_text: str) -> str:
    """One valid entry (seq 1) whose ``extra`` is ``{"v": <extra_text>}``, hashed as the
    back office will hash it - so the only thing under test is the JSON inside."""
    [entry] = make_entries(TERMINAL, 1)
    value = parse_json(extra_text.encode("utf-8", "surrogatepass"))
    entry["extra"] = {"v": value}
    del entry["hash"]
    entry["hash"] = chain_hash(entry["prev_hash"], entry)
    return canonical_json(entry).decode("utf-8")


# --- canonical JSON -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("canonical.json", ok=False), ids=str)
def test_canonical_refusals_are_typed_400s(office: BackOffice, vector: Vector) -> None:
    with pytest.raises(JsonError) as terminal_side:
        parse_json(vector.raw)
    with pytest.raises(BadRequestError) as caught:
        parse_ingest_body(vector.raw)
    assert caught.value.reason == terminal_side.value.reason  # one parser, one verdict
    for path in ("/v1/ingest", "/v1/events"):
        assert_typed_400(post(office, path, vector.raw))


def _fits_an_entry(vector: Vector) -> bool:
    # An entry's extra holds at most 4,096 bytes, and sits 4 levels down in an upload.
    out = vector.out or ""
    return len(out) < 1000 and out.count("[") + out.count("{") < 50


@pytest.mark.parametrize(
    "vector", [v for v in cases("canonical.json", ok=True) if _fits_an_entry(v)], ids=str
)
def test_canonical_bytes_are_what_the_back_office_stores(
    office: BackOffice, vector: Vector
) -> None:
    out = vector.out or ""
    answer = post(office, "/v1/ingest", ingest_body(entry_with_extra(vector.raw.decode())))
    assert answer.status == 200, answer.body
    [stored] = office.storage.entries(TERMINAL)
    with sqlite3.connect(office.storage.path) as db:  # type: ignore[attr-defined]
        [(extra,)] = db.execute("SELECT extra FROM entries").fetchall()
    assert extra == f'{{"v":{out}}}'
    assert canonical_json(stored["extra"]["v"]).decode() == out


# --- journal entries ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("journal.json", ok=True), ids=str)
def test_journal_entry_body_and_hash(vector: Vector) -> None:
    [entry] = parse_ingest_body(ingest_body(vector.raw.decode())).entries
    assert entry.body == vector.fields["body"]
    assert entry.computed_hash == vector.fields["hash"]


@pytest.mark.parametrize("vector", cases("journal.json", ok=False), ids=str)
def test_journal_entry_refusals_are_typed_400s(office: BackOffice, vector: Vector) -> None:
    body = ingest_body(vector.raw.decode("utf-8", "surrogatepass"))
    with pytest.raises(BadRequestError):
        parse_ingest_body(body)
    assert_typed_400(post(office, "/v1/ingest", body))
    assert office.storage.entries(TERMINAL) == []


def test_a_chain_of_vector_entries_is_stored_as_hashed(office: BackOffice) -> None:
    chain = [v for v in cases("journal.json", ok=True) if "of a chain" in v.name]
    answer = post(office, "/v1/ingest", ingest_body(*(v.raw.decode() for v in chain)))
    assert (answer.status, answer.body) == (200, {"acked_up_to": len(chain)})
    stored = office.storage.entries(TERMINAL)
    assert [e["hash"] for e in stored] == [v.fields["hash"] for v in chain]


# --- terminal events ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("events.json", ok=True), ids=str)
def test_events_are_stored(office: BackOffice, vector: Vector) -> None:
    answer = post(office, "/v1/events", vector.raw)
    assert answer.status == 200, answer.body
    expected = json.loads(vector.out or "")["events"]
    stored = sorted(office.storage.events(TERMINAL), key=lambda e: e["id"])
    assert [{k: e[k] for k in ("id", "kind", "at", "detail")} for e in stored] == expected


@pytest.mark.parametrize("vector", cases("events.json", ok=False), ids=str)
def test_event_refusals_are_typed_400s(office: BackOffice, vector: Vector) -> None:
    assert_typed_400(post(office, "/v1/events", vector.raw))
    assert office.storage.events(TERMINAL) == []


# --- signed documents ---------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("documents.json"), ids=str)
def test_a_stored_document_is_served_byte_for_byte(office: BackOffice, vector: Vector) -> None:
    # What storage holds is what terminals get - they verify it, the back office does not
    # read it again (so a document altered in its storage reaches them, and is refused).
    office.publish("applist", {"services": []})
    with sqlite3.connect(office.storage.path) as db:  # type: ignore[attr-defined]
        db.execute(
            "UPDATE documents SET document = ?", (vector.raw.decode("utf-8", "surrogatepass"),)
        )
    headers = request_headers(TERMINAL, SECRET, "GET", "/v1/applist", b"", office.clock.now())
    answer = office.handle("GET", "/v1/applist", headers, b"")
    assert (answer.status, answer.payload()) == (200, vector.raw)


@pytest.mark.parametrize("vector", cases("canonical.json", ok=False), ids=str)
def test_a_body_without_canonical_json_is_not_published(
    office: BackOffice, vector: Vector, tmp_path: Path
) -> None:
    key_file = tmp_path / "publication.key"
    write_publication_key(office.publication_key, key_file)
    body = tmp_path / "applist.json"
    body.write_bytes(vector.raw)
    args = argparse.Namespace(
        file=str(body),
        kind="applist",
        publication_key=str(key_file),
        storage=office.storage.path,  # type: ignore[attr-defined]
    )
    with pytest.raises(PublicationError):
        cmd_publish(args)
    assert office.storage.document("applist") is None


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 10**4301, "\ud800"],
    ids=["nan", "infinity", "4,302 digits", "lone surrogate"],
)
def test_a_value_without_canonical_json_is_not_published(office: BackOffice, value: object) -> None:
    with pytest.raises(PublicationError):
        office.publish("applist", {"services": [], "x": value})
    assert office.storage.document("applist") is None


# --- request signatures -------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("requests.json"), ids=str)
def test_request_signatures_authenticate(vector: Vector) -> None:
    case = vector.fields
    secret = bytes.fromhex(case["secret"])
    headers = {
        "X-Onecard-Terminal": TERMINAL,
        "X-Onecard-Time": case["time"],
        "X-Onecard-Signature": case["signature"],
    }
    lookup = {TERMINAL: TerminalKey(TERMINAL, secret)}.get
    now = float(case["time"])
    args = (case["method"], case["path"], headers, vector.raw, lookup)
    assert authenticate(*args, now) == TERMINAL
    with pytest.raises(AuthenticationError, match="bad signature"):
        authenticate(case["method"], case["path"], headers, vector.raw + b"x", lookup, now)
