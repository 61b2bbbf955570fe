"""Ingest, the pure part: parse an upload, check the hash chain, decide what to store.

No I/O here. :func:`parse_ingest_body` turns request bytes into an :class:`IngestBatch` (or a
:class:`BadRequestError`) - the JSON, the request and every entry checked by the wire
contract the terminals write with (:mod:`terminal.wire`); :func:`plan_ingest` compares the
batch with the stored neighbourhood of its entries and returns what to insert (or a
:class:`ConflictError`); :func:`advance_acked` computes ``acked_up_to``. The storage layer
runs these inside one database transaction (docs/sync.md, "Upload").

Gaps: ``acked_up_to`` is defined over "every entry 1..N stored", so the contract allows an
entry whose predecessor is not stored yet (e.g. a terminal replaying after the back office
lost data). Such an entry is stored, and its link is checked from the other side when the
predecessor arrives: an entry is checked against its stored successor as well as its
predecessor, so every adjacent pair is checked exactly when both are known.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from backoffice.errors import BadRequestError, ChainBrokenError, DuplicateConflictError
from terminal.errors import ParseError
from terminal.wire.canonical import canonical_json, parse_json
from terminal.wire.journal import ENTRY_FIELDS, MAX_ENTRIES, ZERO_HASH, check_entry
from terminal.wire.requests import batch_envelope


class Entry(NamedTuple):
    """One journal entry as uploaded (docs/sync.md, "Journal entry"), validated.

    ``hash`` and ``prev_hash`` are lower-cased for comparisons; ``body`` is the canonical
    JSON of the entry without ``hash`` - the very bytes hashed - kept with the row so a
    stored chain can be re-verified exactly (an integer ``time`` stays an integer there).
    A named tuple rather than a dataclass: thousands are built per request, and a tuple is
    both the cheapest immutable record and, sliced, the row to insert.
    """

    terminal_id: str
    seq: int
    time: float
    kind: str
    service: str
    decision: str
    reason: str
    amount: int | None
    card_token: str
    region: str
    category: str | None
    extra_json: str
    prev_hash: str
    hash: str
    body: str
    computed_hash: str

    def row(self) -> tuple[object, ...]:
        """The values of :data:`ENTRY_COLUMNS`, in order."""
        return self[:15]


ENTRY_COLUMNS = (*ENTRY_FIELDS, "body")
"""The stored columns: the fields of docs/sync.md (``extra`` as its canonical JSON), and
``body``, the canonical JSON the hash covers."""


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """A parsed ``POST /v1/ingest`` body: entries in strictly increasing ``seq`` order."""

    terminal_id: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class StoredLink:
    """What the chain check needs of a stored entry."""

    seq: int
    hash: str
    prev_hash: str


@dataclass(frozen=True, slots=True)
class IngestPlan:
    """The decision for one batch: entries to insert, and how many were already stored."""

    new: tuple[Entry, ...]
    skipped: int


# --- parsing --------------------------------------------------------------------------------


class _Where:
    """``entries[i]``, formatted only when an error message needs it."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __str__(self) -> str:
        return f"entries[{self.index}]"


def parse_entry(raw: object, index: int = 0) -> Entry:
    """Validate one entry object (:func:`terminal.wire.journal.check_entry`); the hash is
    computed, not yet compared. Raises :class:`BadRequestError`."""
    # Error texts name the entry; formatted only on failure, this runs per entry.
    try:
        extra_json = check_entry(raw, _Where(index))
    except ParseError as exc:
        raise BadRequestError(exc.reason) from None
    assert isinstance(raw, dict)  # check_entry said so
    without_hash = dict(raw)
    del without_hash["hash"]
    body = canonical_json(without_hash)  # cannot fail: its parts passed check_entry
    prev_hash = raw["prev_hash"]
    # Positional: the field order of Entry (keywords cost measurably at 1,000 per request).
    return Entry(
        raw["terminal_id"],
        raw["seq"],
        float(raw["time"]),
        raw["kind"],
        raw["service"],
        raw["decision"],
        raw["reason"],
        raw["amount"],
        raw["card_token"].lower(),
        raw["region"],
        raw["category"],
        extra_json.decode("utf-8"),
        prev_hash.lower(),
        raw["hash"].lower(),
        body.decode("utf-8"),
        hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest(),
    )


def parse_ingest_request(obj: object, max_entries: int = MAX_ENTRIES) -> IngestBatch:
    """Validate a decoded ``{"terminal_id", "entries"}`` object (see :func:`parse_ingest_body`)."""
    try:
        terminal_id, raw_entries = batch_envelope(obj, "entries", max_entries)
    except ParseError as exc:
        raise BadRequestError(exc.reason) from None
    entries = tuple(parse_entry(raw, i) for i, raw in enumerate(raw_entries))
    previous = 0
    for i, entry in enumerate(entries):
        if entry.terminal_id != terminal_id:
            raise BadRequestError(f"entries[{i}]: terminal_id is not the batch's")
        if entry.seq <= previous:
            raise BadRequestError(f"entries[{i}]: seq not in strictly increasing order")
        previous = entry.seq
    return IngestBatch(terminal_id, entries)


def parse_ingest_body(body: bytes, max_entries: int = MAX_ENTRIES) -> IngestBatch:
    """Parse a ``POST /v1/ingest`` body. Raises only :class:`BadRequestError`."""
    try:
        obj = parse_json(body)
    except ParseError as exc:
        raise BadRequestError(exc.reason) from None
    return parse_ingest_request(obj, max_entries)


# --- deciding -------------------------------------------------------------------------------


def neighbourhood(entries: Iterable[Entry]) -> list[int]:
    """The seqs whose stored entries :func:`plan_ingest` needs: each entry's own, its
    predecessor's and its successor's."""
    seqs: set[int] = set()
    for entry in entries:
        seqs.update((entry.seq - 1, entry.seq, entry.seq + 1))
    seqs.discard(0)
    return sorted(seqs)


def plan_ingest(entries: Sequence[Entry], stored: Mapping[int, StoredLink]) -> IngestPlan:
    """Decide a batch against the stored entries around it (at least the seqs of
    :func:`neighbourhood`). Raises :class:`DuplicateConflictError` or
    :class:`ChainBrokenError`; the caller then stores nothing of the batch."""
    in_batch = {entry.seq: entry for entry in entries}
    new: list[Entry] = []
    skipped = 0
    for entry in entries:
        seq = entry.seq
        if entry.hash != entry.computed_hash:
            raise ChainBrokenError(f"seq {seq}: hash does not match the entry's content")
        have = stored.get(seq)
        if have is not None:
            if have.hash != entry.hash:
                raise DuplicateConflictError(
                    f"seq {seq}: already stored with another hash (journal rewritten?)"
                )
            skipped += 1
            continue
        if seq == 1:
            if entry.prev_hash != ZERO_HASH:
                raise ChainBrokenError("seq 1: prev_hash must be 64 zeros")
        else:
            before = in_batch.get(seq - 1) or stored.get(seq - 1)
            if before is not None and before.hash != entry.prev_hash:
                raise ChainBrokenError(f"seq {seq}: prev_hash is not the hash of seq {seq - 1}")
        after = stored.get(seq + 1)
        if after is not None and after.prev_hash != entry.hash:
            raise ChainBrokenError(f"seq {seq}: stored seq {seq + 1} does not link to it")
        new.append(entry)
    return IngestPlan(tuple(new), skipped)


def advance_acked(acked: int, stored_seqs_above: Iterable[int]) -> int:
    """The highest N with 1..N all stored, given the current ``acked`` and stored seqs
    above it in increasing order (the iteration stops at the first gap)."""
    for seq in stored_seqs_above:
        if seq == acked + 1:
            acked = seq
        elif seq > acked + 1:
            break
    return acked
