"""The shared wire vectors against the terminal: canonical JSON, journal entries, terminal
events, signed documents and request signatures - bytes in, bytes or a typed error out.
tests/unit/backoffice/test_wire_vectors.py runs the same files against the back office."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.wire_vectors import Vector, cases, load

from terminal.crypto.signing import Algorithm
from terminal.errors import JournalEntryError, OneCardError
from terminal.host.clock import FixedClock
from terminal.journal.entry import entry_from_json
from terminal.sync.downloads import DocumentStore, Downloader, Outcome
from terminal.wire.canonical import JsonError, canonical_json, parse_json
from terminal.wire.document import DocumentError, verify_document
from terminal.wire.events import EventError, events_body, parse_events_body
from terminal.wire.requests import check_signature, sign_request, string_to_sign

DOCUMENTS = load("documents.json")
PUBLIC_KEY = bytes.fromhex(DOCUMENTS["public_key"])


def _error_code(exc: BaseException) -> str:
    assert isinstance(exc, OneCardError), f"not a typed error: {exc!r}"
    return exc.code


# --- canonical JSON -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("canonical.json", ok=True), ids=str)
def test_canonical_bytes_out(vector: Vector) -> None:
    value = parse_json(vector.raw)
    assert canonical_json(value).decode("utf-8") == vector.out
    assert canonical_json(parse_json(canonical_json(value))) == canonical_json(value)


@pytest.mark.parametrize("vector", cases("canonical.json", ok=False), ids=str)
def test_canonical_error_out(vector: Vector) -> None:
    with pytest.raises(JsonError) as caught:
        parse_json(vector.raw)
    assert _error_code(caught.value) == vector.error and caught.value.reason


# --- journal entries ----------------------------------------------------------------------


def _entry(raw: bytes) -> object:
    return entry_from_json(parse_json(raw))


@pytest.mark.parametrize("vector", cases("journal.json", ok=True), ids=str)
def test_journal_entry_bytes_out(vector: Vector) -> None:
    entry = _entry(vector.raw)
    assert entry.canonical_body().decode("utf-8") == vector.fields["body"]  # type: ignore[attr-defined]
    assert entry.computed_hash() == vector.fields["hash"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("vector", cases("journal.json", ok=False), ids=str)
def test_journal_entry_error_out(vector: Vector) -> None:
    with pytest.raises((JsonError, JournalEntryError)) as caught:
        _entry(vector.raw)
    assert _error_code(caught.value) == vector.error


# --- terminal events ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("events.json", ok=True), ids=str)
def test_events_bytes_out(vector: Vector) -> None:
    terminal_id, events = parse_events_body(vector.raw)
    assert events_body(terminal_id, list(events)).decode("utf-8") == vector.out


@pytest.mark.parametrize("vector", cases("events.json", ok=False), ids=str)
def test_events_error_out(vector: Vector) -> None:
    with pytest.raises(EventError) as caught:
        parse_events_body(vector.raw)
    assert _error_code(caught.value) == vector.error


# --- signed documents ---------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("documents.json", ok=True), ids=str)
def test_document_body_out(vector: Vector) -> None:
    body = verify_document(vector.raw, PUBLIC_KEY, Algorithm.SM2, vector.fields["kind"])
    assert canonical_json(body).decode("utf-8") == vector.fields["body"]


@pytest.mark.parametrize("vector", cases("documents.json", ok=False), ids=str)
def test_document_error_out(vector: Vector) -> None:
    with pytest.raises(DocumentError) as caught:
        verify_document(vector.raw, PUBLIC_KEY, Algorithm.SM2, vector.fields["kind"])
    assert _error_code(caught.value) == vector.error
    cause = caught.value.__cause__
    assert (cause.code if isinstance(cause, JsonError) else None) == vector.fields["cause"]


@pytest.mark.parametrize("vector", cases("documents.json", ok=False), ids=str)
def test_a_refused_document_leaves_the_previous_one_in_force(
    vector: Vector, tmp_path: Path
) -> None:
    # The downloader's round, as the runtime's link runs it: a report, never an exception.
    store = DocumentStore(tmp_path, PUBLIC_KEY, Algorithm.SM2)
    [good] = cases("documents.json", ok=True)[:1]
    store.apply_application_list(good.raw)
    before = (tmp_path / "applist.json").read_bytes(), store.current_versions()
    serve = {"/v1/applist": vector.raw}
    report = Downloader(store, lambda path: serve[path], FixedClock()).run_once()
    result = report.results["applist"]
    if vector.fields["kind"] == "applist":
        assert result.outcome is Outcome.REFUSED and result.code == "bad_document"
    assert ((tmp_path / "applist.json").read_bytes(), store.current_versions()) == before


# --- request signatures -------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("requests.json"), ids=str)
def test_request_signature(vector: Vector) -> None:
    case = vector.fields
    secret, body = bytes.fromhex(case["secret"]), bytes.fromhex(case["body_hex"])
    args = (case["method"], case["path"], case["time"], body)
    assert string_to_sign(*args).decode() == case["string_to_sign"]
    assert sign_request(secret, *args) == case["signature"]
    now = float(case["time"])
    assert check_signature(secret, *args, case["signature"], now) is None
    assert check_signature(secret, *args, case["signature"].upper(), now) is None
    assert check_signature(secret, *args, case["signature"], now + 301) == "stale"
    assert check_signature(secret, *args[:3], body + b"x", case["signature"], now) == (
        "bad_signature"
    )


def test_the_vectors_are_the_contract_form() -> None:
    # The expected bytes themselves are json.dumps of docs/sync.md, so a vector file cannot
    # drift from the documented definition.
    for vector in cases("canonical.json", ok=True):
        value = json.loads(vector.out or "")
        expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert vector.out == expected
