"""The wire's parsers for any input - a journal entry, a request body, an events batch, a
request time, a signed document - give their value or their typed error, never another
exception (hypothesis), and the personal-data rule holds for events as for the journal."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.errors import JournalEntryError, OneCardError
from terminal.wire.document import DocumentError, parse_document, sign_document, verify_document
from terminal.wire.events import EventError, TerminalEvent, events_body, parse_events_body
from terminal.wire.journal import ENTRY_FIELDS, ZERO_HASH, check_entry, entry_hash, ingest_body
from terminal.wire.personal import check_non_personal
from terminal.wire.requests import (
    BadRequestTimeError,
    BatchError,
    batch_envelope,
    parse_request_time,
)

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def good_entry() -> dict[str, object]:
    entry: dict[str, object] = {
        "terminal_id": "T0001",
        "seq": 1,
        "time": 1_795_000_000.5,
        "kind": "card",
        "service": "bus-fare",
        "decision": "accept",
        "reason": "ok",
        "amount": 200,
        "card_token": "ab" * 16,
        "region": "500100",
        "category": "3",
        "extra": {"tac": "0a0b0c0d"},
        "prev_hash": ZERO_HASH,
    }
    entry["hash"] = entry_hash(ZERO_HASH, entry)
    return entry


def test_a_good_entry_passes_and_its_extra_is_canonical():
    assert check_entry(good_entry()) == b'{"tac":"0a0b0c0d"}'
    assert tuple(good_entry()) == ENTRY_FIELDS


@settings(max_examples=400)
@given(st.dictionaries(st.sampled_from(ENTRY_FIELDS), _json, max_size=4))
def test_check_entry_is_total(changes):
    entry = {**good_entry(), **changes}
    try:
        check_entry(entry, "entries[0]")
    except JournalEntryError as exc:
        assert exc.reason.startswith("entries[0]: ")


@settings(max_examples=300)
@given(st.one_of(_json, st.binary(max_size=80).map(lambda b: {"terminal_id": b.hex()})))
def test_batch_envelope_is_total(obj):
    try:
        terminal_id, items = batch_envelope(obj, "entries", 3)
    except BatchError as exc:
        assert exc.reason
    else:
        assert isinstance(items, list) and len(items) <= 3 and terminal_id


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), _json))
def test_parse_events_body_is_total(raw):
    try:
        terminal_id, events = parse_events_body(raw)
    except EventError as exc:
        assert exc.reason
    else:
        assert events_body(terminal_id, list(events))  # what parses is sent again alike


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_parse_request_time_is_total(text):
    try:
        sent = parse_request_time(text)
    except BadRequestTimeError:
        return
    assert sent == sent and abs(sent) != float("inf")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), _json))
def test_documents_parse_or_refuse(raw):
    try:
        parse_document(raw)
    except DocumentError as exc:
        assert exc.reason


def test_a_document_with_any_contract_breach_is_a_document_error():
    key = signing.generate_private_key(Algorithm.SM2)
    public = signing.public_key_bytes(key)
    raw = sign_document({"kind": "applist", "version": 1, "services": []}, key, Algorithm.SM2)
    for member in (
        '"x":NaN',
        '"x":1e400',
        '"kind":"applist"',
        '"x":"\\ud800"',
        '"x":' + "9" * 4301,
    ):
        tampered = b"{" + member.encode() + b"," + raw[1:]
        with pytest.raises(DocumentError):
            verify_document(tampered, public, Algorithm.SM2, "applist")


def test_ingest_body_carries_entries_as_they_are():
    text = json.dumps(good_entry())
    body = json.loads(ingest_body("T0001", [text, good_entry()]))
    assert body == {"terminal_id": "T0001", "entries": [good_entry(), good_entry()]}
    with pytest.raises(JournalEntryError):
        ingest_body("bad id", [])


@pytest.mark.parametrize(
    "detail", [{"name": "x"}, {"holderPhone": "x"}, {"note": "110101199003071234"}]
)
def test_personal_data_is_refused_in_events_as_in_the_journal(detail):
    with pytest.raises(JournalEntryError):
        check_non_personal(detail)
    with pytest.raises(EventError) as caught:
        TerminalEvent(1, "call_staff", 1.0, detail)
    assert isinstance(caught.value, OneCardError)
