"""Journal entries and the hash chain (docs/sync.md, "Journal entry")."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from helpers.journal_records import transaction_record
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.errors import JournalEntryError, OneCardError, ParseError
from terminal.journal.entry import (
    JournalEntry,
    TransactionRecord,
    check_extra,
    entry_from_json,
    make_entry,
    verify_chain,
)
from terminal.wire.canonical import canonical_json
from terminal.wire.journal import ZERO_HASH, entry_hash


def record(**changes: object) -> TransactionRecord:
    return transaction_record(**{"region": "510100", "extra": {"tac": "0a0b0c0d"}, **changes})


def chain(n: int, terminal_id: str = "T0001") -> list[JournalEntry]:
    out: list[JournalEntry] = []
    prev = ZERO_HASH
    for seq in range(1, n + 1):
        entry = make_entry(terminal_id, seq, 1_795_000_000.0 + seq, record(amount=seq), prev)
        out.append(entry)
        prev = entry.hash
    return out


# --- hashing ------------------------------------------------------------------------------


def test_canonical_json_is_the_contract_form() -> None:
    assert (
        canonical_json({"b": 1, "a": "社保", "c": None}) == '{"a":"社保","b":1,"c":null}'.encode()
    )


def test_hash_is_sha256_of_prev_hash_bytes_then_canonical_body() -> None:
    entry = make_entry("T0001", 1, 1_795_000_000.25, record(), ZERO_HASH)
    body = entry.to_json_dict()
    del body["hash"]
    expected = hashlib.sha256(bytes(32) + canonical_json(body)).hexdigest()
    assert entry.hash == expected == entry_hash(ZERO_HASH, body)
    assert entry.prev_hash == ZERO_HASH
    assert entry.card_token == bytes(range(16)).hex()


def test_entry_round_trips_through_json() -> None:
    for entry in chain(3):
        text = json.dumps(entry.to_json_dict(), ensure_ascii=False)
        again = entry_from_json(json.loads(text))
        assert again == entry
        assert again.computed_hash() == entry.hash


def test_entry_from_json_refuses_bad_shapes() -> None:
    good = chain(1)[0].to_json_dict()
    for change in (
        {"seq": "1"},
        {"seq": True},
        {"card_token": "XYZ"},
        {"hash": "00"},
        {"terminal_id": "has space"},
        {"extra": []},
    ):
        with pytest.raises(JournalEntryError):
            entry_from_json({**good, **change})
    with pytest.raises(JournalEntryError, match="missing fields"):
        entry_from_json({k: v for k, v in good.items() if k != "region"})
    with pytest.raises(JournalEntryError, match="unknown"):
        entry_from_json({**good, "name": "Zhang San"})
    with pytest.raises(JournalEntryError):
        entry_from_json([good])


# --- the record: no personal data ---------------------------------------------------------


def test_record_has_no_field_for_names_or_id_numbers() -> None:
    names = {f.name for f in dataclasses.fields(TransactionRecord)}
    assert names == {
        "kind",
        "service",
        "decision",
        "reason",
        "amount",
        "card_token",
        "region",
        "category",
        "extra",
    }
    with pytest.raises(TypeError):
        record(name="张三")
    with pytest.raises(TypeError):
        record(id_number="510104199001011234")


@pytest.mark.parametrize(
    "extra",
    [
        {"name": "张三"},
        {"Name": "x"},
        {"holder_name": "x"},
        {"patientName": "x"},
        {"ssn": "x"},
        {"id_number": "x"},
        {"ID-Number": "x"},
        {"idNumber": "x"},
        {"card_number": "x"},
        {"phone": "x"},
        {"姓名": "张三"},
        {"身份证号": "x"},
        {"nested": {"name": "x"}},
        {"list": [{"ssn": "x"}]},
        {"note": "510104199001011234"},  # an ID number under an innocent key
        {"note": "holder 11010519491231002X"},
    ],
)
def test_extra_refuses_personal_data(extra: dict[str, object]) -> None:
    with pytest.raises(JournalEntryError) as caught:
        record(extra=extra)
    assert isinstance(caught.value, ParseError | OneCardError)


def test_extra_allows_small_non_personal_details() -> None:
    r = record(extra={"tac": "0a0b0c0d", "verdict": "genuine", "psam_id": "000000000001"})
    assert dict(r.extra) == {"tac": "0a0b0c0d", "verdict": "genuine", "psam_id": "000000000001"}
    with pytest.raises(TypeError):
        r.extra["tac"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "extra",
    [
        {"blob": "x" * 2000},
        {"f": float("nan")},
        {"b": b"bytes"},
        {1: "int key"},
        {"deep": {"a": {"b": {"c": {"d": 1}}}}},
    ],
)
def test_extra_must_be_small_json(extra: dict[object, object]) -> None:
    with pytest.raises(JournalEntryError):
        check_extra(extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "cash"},
        {"decision": "maybe"},
        {"service": ""},
        {"reason": "has spaces"},
        {"amount": -1},
        {"amount": 1.5},
        {"amount": True},
        {"card_token": b"short"},
        {"card_token": "00" * 16},
        {"region": "51010"},
        {"category": "5"},
    ],
)
def test_record_fields_are_checked(change: dict[str, object]) -> None:
    with pytest.raises(JournalEntryError):
        record(**change)


def test_make_entry_checks_the_chain_fields() -> None:
    with pytest.raises(JournalEntryError):
        make_entry("bad id!", 1, 0.0, record(), ZERO_HASH)
    with pytest.raises(JournalEntryError):
        make_entry("T1", 0, 0.0, record(), ZERO_HASH)
    with pytest.raises(JournalEntryError):
        make_entry("T1", 1, 0.0, record(), "ab")
    with pytest.raises(JournalEntryError):
        make_entry("T1", 1, float("inf"), record(), ZERO_HASH)


# --- verification -------------------------------------------------------------------------


def test_sound_chain_verifies() -> None:
    entries = chain(20)
    report = verify_chain(entries, terminal_id="T0001", head=(20, entries[-1].hash))
    assert report.ok and report.checked == 20 and report.first_bad_seq is None


def test_verification_from_an_anchor() -> None:
    entries = chain(10)
    report = verify_chain(entries[4:], anchor_seq=4, anchor_hash=entries[3].hash)
    assert report.ok and report.checked == 6
    assert not verify_chain(entries[4:]).ok  # without the anchor the first entry is orphaned


def test_entries_of_another_terminal_are_refused() -> None:
    report = verify_chain(chain(3, "T0002"), terminal_id="T0001")
    assert not report.ok and report.first_bad_seq == 1


def test_deleting_the_last_entries_is_found_against_the_head() -> None:
    entries = chain(5)
    report = verify_chain(entries[:3], head=(5, entries[-1].hash))
    assert not report.ok and report.first_bad_seq == 4


_EDITABLE = {
    "terminal_id": st.sampled_from(["T0002", "X"]),
    "time": st.floats(0, 2e9, allow_nan=False),
    "kind": st.sampled_from(["card", "code"]),
    "service": st.text(min_size=1, max_size=10),
    "decision": st.sampled_from(["accept", "refuse"]),
    "reason": st.text(max_size=10),
    "amount": st.one_of(st.none(), st.integers(0, 10**9)),
    "card_token": st.binary(min_size=16, max_size=16).map(bytes.hex),
    "region": st.from_regex(r"[0-9]{6}", fullmatch=True),
    "category": st.sampled_from([None, "1", "2", "3", "4"]),
    "extra": st.dictionaries(st.sampled_from(["tac", "verdict"]), st.text(max_size=5)),
    "prev_hash": st.binary(min_size=32, max_size=32).map(bytes.hex),
    "hash": st.binary(min_size=32, max_size=32).map(bytes.hex),
    "seq": st.integers(1, 100),
}


@st.composite
def single_field_edits(draw: st.DrawFn) -> tuple[int, str, object]:
    index = draw(st.integers(0, 7))
    field = draw(st.sampled_from(sorted(_EDITABLE)))
    return index, field, draw(_EDITABLE[field])


@settings(max_examples=300)
@given(single_field_edits())
def test_any_single_field_edit_is_detected(edit: tuple[int, str, object]) -> None:
    index, field, value = edit
    entries = chain(8)
    original = entries[index]
    edited = dataclasses.replace(original, **{field: value})
    if edited == original:
        return  # the "edit" drew the value already there
    entries[index] = edited
    report = verify_chain(entries, terminal_id="T0001", head=(8, chain(8)[-1].hash))
    assert not report.ok
    # The break is found at the edited entry, or (a re-hashed edit) at the one after it.
    assert report.first_bad_seq in (original.seq, original.seq + 1, value)


@settings(max_examples=200)
@given(st.integers(2, 12), st.data())
def test_any_deletion_is_detected(n: int, data: st.DataObject) -> None:
    entries = chain(n)
    start = data.draw(st.integers(0, n - 1))
    stop = data.draw(st.integers(start + 1, n))
    kept = entries[:start] + entries[stop:]
    report = verify_chain(kept, terminal_id="T0001", head=(n, entries[-1].hash))
    assert not report.ok
    assert report.first_bad_seq == start + 1


@settings(max_examples=100)
@given(st.integers(2, 10), st.data())
def test_swapping_entries_is_detected(n: int, data: st.DataObject) -> None:
    entries = chain(n)
    i = data.draw(st.integers(0, n - 2))
    entries[i], entries[i + 1] = entries[i + 1], entries[i]
    assert not verify_chain(entries).ok


def test_rehashed_edit_breaks_the_next_link() -> None:
    entries = chain(4)
    forged_body = {**entries[1].body(), "decision": "refuse"}
    forged = entry_from_json({**forged_body, "hash": entry_hash(entries[1].prev_hash, forged_body)})
    report = verify_chain([entries[0], forged, entries[2], entries[3]])
    assert not report.ok and report.first_bad_seq == 3
    assert "prev_hash" in report.reason
