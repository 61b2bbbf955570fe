"""A journal row is outside data like any other: whatever a damaged file holds where an
entry's body and hash should be, reading it gives the entry or a JournalEntryError - within
a time and memory bound - and the journal reports the row as damage (issue 17: a row
holding a BLOB raised ``AttributeError`` out of ``entry_from_stored``)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, LARGE_INPUTS, bounded, hostile_json, nested, total
from helpers.journal_records import transaction_record
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.errors import JournalEntryError
from terminal.host.clock import FixedClock
from terminal.journal.entry import entry_from_stored, make_entry_and_body
from terminal.journal.store import Journal
from terminal.wire.journal import ZERO_HASH

ENTRY, BODY = make_entry_and_body("T0001", 1, 1_795_000_000.0, transaction_record(), ZERO_HASH)
GOOD = json.loads(BODY)


def test_a_good_row_reads_back() -> None:
    assert entry_from_stored(BODY.decode(), ENTRY.hash) == ENTRY


@pytest.mark.parametrize(
    ("body", "hash_hex"),
    [
        (BODY, ENTRY.hash),  # a BLOB where the text should be: was AttributeError
        (None, ENTRY.hash),
        (12, ENTRY.hash),
        (BODY.decode(), None),
        (BODY.decode(), b"\x00" * 32),
        (BODY.decode().replace('"extra":{}', '"extra":{"a":1e400}'), ENTRY.hash),
        (BODY.decode().replace('"seq":1', '"seq":' + "1" * 4301), ENTRY.hash),
        (BODY.decode().replace('"reason":"ok"', '"reason":"\\ud800"'), ENTRY.hash),
        (BODY.decode().replace('"reason":"ok"', '"reason":"\ud800"'), ENTRY.hash),
        (BODY.decode().replace('"extra":{}', '"extra":' + nested(100_000, kind="{")), ENTRY.hash),
        (BODY.decode().replace('"seq":1', '"seq":1,"seq":2'), ENTRY.hash),
    ],
    ids=[
        "blob",
        "null",
        "integer",
        "null hash",
        "blob hash",
        "1e400",
        "4301 digits",
        "escaped surrogate",
        "raw surrogate",
        "deep",
        "key twice",
    ],
)
def test_rows_that_leaked_are_journal_entry_errors(body: object, hash_hex: object) -> None:
    with pytest.raises(JournalEntryError):
        entry_from_stored(body, hash_hex)  # type: ignore[arg-type]


_HASHES = st.sampled_from([ENTRY.hash, None, 1, b"\x00", "0" * 64, "z" * 64])


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(GOOD), _HASHES, st.booleans())
def test_entry_from_stored_is_total(raw: bytes, hash_hex: object, as_text: bool) -> None:
    body = raw.decode("utf-8", "surrogateescape") if as_text else raw
    total(lambda b: entry_from_stored(b, hash_hex), body, JournalEntryError)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_rows_are_refused_within_bounds(name: str) -> None:
    text = LARGE_INPUTS[name].decode()
    bounded(lambda: total(lambda b: entry_from_stored(b, ENTRY.hash), text, JournalEntryError))


@pytest.mark.parametrize("body", [BODY, 7, nested(100_000)], ids=["blob", "int", "deep"])
def test_a_damaged_row_is_reported_by_the_journal(tmp_path: Path, body: object) -> None:
    path = tmp_path / "journal.db"
    with contextlib.closing(Journal.open(path, "T0001", FixedClock(1_795_000_000.0))) as journal:
        journal.append(transaction_record())
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE entries SET body = ? WHERE seq = 1", (body,))
    with contextlib.closing(Journal.open_read_only(path, check_entries=0)) as journal:
        report = journal.verify()
    assert not report.ok and report.first_bad_seq == 1
