"""Pure ingest: parsing an upload, chain checks, idempotency decisions, acked_up_to."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backoffice.errors import BadRequestError, ChainBrokenError, DuplicateConflictError
from backoffice.ingest import (
    StoredLink,
    advance_acked,
    neighbourhood,
    parse_entry,
    parse_ingest_body,
    plan_ingest,
)
from backoffice.testing import make_entries


def body(entries, terminal_id="T0001") -> bytes:
    return json.dumps({"terminal_id": terminal_id, "entries": entries}).encode()


def links(entries) -> dict[int, StoredLink]:
    return {e["seq"]: StoredLink(e["seq"], e["hash"], e["prev_hash"]) for e in entries}


def test_parse_valid_batch_computes_the_contract_hash():
    entries = make_entries("T0001", 5)
    batch = parse_ingest_body(body(entries))
    assert batch.terminal_id == "T0001"
    assert [e.seq for e in batch.entries] == [1, 2, 3, 4, 5]
    assert all(e.hash == e.computed_hash for e in batch.entries)
    # The stored body is exactly what was hashed, and re-reads as the entry.
    first = batch.entries[0]
    assert {**json.loads(first.body), "hash": first.hash} == entries[0]


def test_integer_time_keeps_its_form_in_the_body():
    entries = make_entries("T0001", 1)
    entries[0]["time"] = 1_795_000_000
    del entries[0]["hash"]
    from backoffice.testing import chain_hash

    entries[0]["hash"] = chain_hash(entries[0]["prev_hash"], entries[0])
    parsed = parse_entry(entries[0])
    assert parsed.hash == parsed.computed_hash
    assert '"time":1795000000' in parsed.body


@pytest.mark.parametrize(
    "field, value",
    [
        ("seq", 0),
        ("seq", True),
        ("seq", "1"),
        ("seq", 2**63),
        ("time", "now"),
        ("time", -1),
        ("kind", "cash"),
        ("decision", "maybe"),
        ("service", ""),
        ("reason", 5),
        ("amount", 1.5),
        ("amount", True),
        ("card_token", "zz" * 16),
        ("card_token", "ab" * 8),
        ("region", "50000"),
        ("category", "5"),
        ("category", 1),
        ("extra", []),
        ("extra", {"x": "y" * 5000}),
        ("prev_hash", "0" * 63),
        ("hash", None),
        ("terminal_id", "bad id!"),
    ],
)
def test_bad_field_is_a_400(field, value):
    entries = make_entries("T0001", 2)
    entries[1][field] = value
    with pytest.raises(BadRequestError):
        parse_ingest_body(body(entries))


def test_missing_and_unknown_fields_are_400():
    entries = make_entries("T0001", 1)
    del entries[0]["region"]
    with pytest.raises(BadRequestError, match="missing"):
        parse_ingest_body(body(entries))
    entries = make_entries("T0001", 1)
    entries[0]["name"] = "Zhang San"
    with pytest.raises(BadRequestError, match="unknown"):
        parse_ingest_body(body(entries))


def test_batch_shape_errors():
    entries = make_entries("T0001", 3)
    with pytest.raises(BadRequestError, match="increasing"):
        parse_ingest_body(body([entries[1], entries[0]]))
    with pytest.raises(BadRequestError, match="increasing"):
        parse_ingest_body(body([entries[0], entries[0]]))
    with pytest.raises(BadRequestError, match="batch"):
        parse_ingest_body(body(make_entries("T0002", 1), terminal_id="T0001"))
    with pytest.raises(BadRequestError, match="at most"):
        parse_ingest_body(body(entries), max_entries=2)
    with pytest.raises(BadRequestError):
        parse_ingest_body(b'{"terminal_id": "T0001"}')
    with pytest.raises(BadRequestError):
        parse_ingest_body(b'{"terminal_id": "T0001", "entries": {}}')


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe",
        b"[1, 2",
        b'{"a": NaN}',
        b'{"a": 1e400}',
        b'{"a": 1, "a": 2}',
        b"[" * 100_000 + b"]" * 100_000,
        b"1" * 5000,
    ],
)
def test_strict_json_refuses_what_would_not_round_trip(raw):
    with pytest.raises(BadRequestError):
        parse_ingest_body(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_bodies_give_bad_request_only(raw):
    with contextlib.suppress(BadRequestError):
        parse_ingest_body(raw)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(make_entries("T", 1)[0])), _json_values))
def test_mutated_entries_give_bad_request_or_parse(changes):
    entry = make_entries("T0001", 1)[0]
    entry.update(changes)
    try:
        batch = parse_ingest_body(body([entry]))
    except BadRequestError:
        return
    assert len(batch.entries) == 1


# --- plan_ingest ----------------------------------------------------------------------------


def parsed(entries):
    return parse_ingest_body(body(entries)).entries


def test_fresh_batch_is_stored_whole():
    entries = make_entries("T0001", 4)
    plan = plan_ingest(parsed(entries), {})
    assert [e.seq for e in plan.new] == [1, 2, 3, 4]
    assert plan.skipped == 0


def test_resend_is_idempotent_and_overlap_stores_only_the_new():
    entries = make_entries("T0001", 6)
    plan = plan_ingest(parsed(entries), links(entries[:4]))
    assert [e.seq for e in plan.new] == [5, 6]
    assert plan.skipped == 4
    assert plan_ingest(parsed(entries), links(entries)).new == ()


def test_conflicting_duplicate():
    stored = make_entries("T0001", 3)
    other = make_entries("T0001", 3, reason="other")
    with pytest.raises(DuplicateConflictError):
        plan_ingest(parsed(other), links(stored))


def test_wrong_hash_is_chain_broken():
    entries = make_entries("T0001", 3)
    entries[1]["reason"] = "edited"  # hash no longer matches
    with pytest.raises(ChainBrokenError, match="hash"):
        plan_ingest(parsed(entries), {})


def test_prev_hash_must_link_to_stored_predecessor():
    stored = make_entries("T0001", 3)
    forked = make_entries("T0001", 2, start=4, prev_hash="ab" * 32)
    with pytest.raises(ChainBrokenError, match="prev_hash"):
        plan_ingest(parsed(forked), links(stored))
    good = make_entries("T0001", 2, start=4, prev_hash=stored[-1]["hash"])
    assert len(plan_ingest(parsed(good), links(stored)).new) == 2


def test_prev_hash_must_link_within_the_batch_and_seq1_to_zeros():
    first = make_entries("T0001", 2)
    second = make_entries("T0001", 2, start=3, prev_hash="cd" * 32)
    with pytest.raises(ChainBrokenError):
        plan_ingest(parsed(first + second), {})
    with pytest.raises(ChainBrokenError, match="zeros"):
        plan_ingest(parsed(make_entries("T0001", 1, prev_hash="11" * 32)), {})


def test_gap_is_stored_and_checked_from_the_other_side_later():
    entries = make_entries("T0001", 6)
    # 4..6 arrive first: their predecessor is unknown, they are stored.
    assert len(plan_ingest(parsed(entries[3:]), {}).new) == 3
    # 1..3 then must link to the stored 4.
    assert len(plan_ingest(parsed(entries[:3]), links(entries[3:])).new) == 3
    impostor = make_entries("T0001", 3, reason="x")
    with pytest.raises(ChainBrokenError, match="link"):
        plan_ingest(parsed(impostor), links(entries[3:]))


def test_neighbourhood_and_advance_acked():
    entries = parsed(make_entries("T0001", 3, start=5, prev_hash="00" * 32))
    assert neighbourhood(entries) == [4, 5, 6, 7, 8]
    assert neighbourhood(parsed(make_entries("T0001", 1))) == [1, 2]
    assert advance_acked(0, [1, 2, 3, 5]) == 3
    assert advance_acked(3, [5, 6]) == 3
    assert advance_acked(3, [4, 5, 7]) == 5
    assert advance_acked(0, []) == 0
