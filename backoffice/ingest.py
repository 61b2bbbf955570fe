"""Ingest, the pure part: parse an upload, check the hash chain, decide what to store.

No I/O here. :func:`parse_ingest_body` turns request bytes into an :class:`IngestBatch` (or a
:class:`BadRequestError`); :func:`plan_ingest` compares the batch with the stored
neighbourhood of its entries and returns what to insert (or a :class:`ConflictError`);
:func:`advance_acked` computes ``acked_up_to``. The storage layer runs these inside one
database transaction (docs/sync.md, "Upload").

Gaps: ``acked_up_to`` is defined over "every entry 1..N stored", so the contract allows an
entry whose predecessor is not stored yet (e.g. a terminal replaying after the back office
lost data). Such an entry is stored, and its link is checked from the other side when the
predecessor arrives: an entry is checked against its stored successor as well as its
predecessor, so every adjacent pair is checked exactly when both are known.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from backoffice.canonical import canonical_json, canonical_text, loads_strict
from backoffice.errors import BadRequestError, ChainBrokenError, DuplicateConflictError

ZERO_HASH = "0" * 64
MAX_ENTRIES = 5000
"""At most this many entries per request (docs/sync.md)."""
MAX_SEQ = 2**63 - 1  # the BIGINT column
MAX_EXTRA_BYTES = 4096  # "small non-personal details"
MAX_TEXT = 128

TERMINAL_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_HASH_RE = re.compile(r"[0-9a-fA-F]{64}")
_TOKEN_RE = re.compile(r"[0-9a-fA-F]{32}")
_REGION_RE = re.compile(r"[0-9]{6}")

KINDS = frozenset({"card", "code"})
DECISIONS = frozenset({"accept", "refuse"})
CATEGORIES = frozenset({"1", "2", "3", "4"})


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


ENTRY_COLUMNS = (
    "terminal_id",
    "seq",
    "time",
    "kind",
    "service",
    "decision",
    "reason",
    "amount",
    "card_token",
    "region",
    "category",
    "extra",
    "prev_hash",
    "hash",
    "body",
)
ENTRY_FIELDS = frozenset(ENTRY_COLUMNS) - {"body"}
"""The fields of an uploaded entry (docs/sync.md): the stored columns but our ``body``."""


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


def _is_int(value: object) -> bool:
    # bool is an int subclass: true/false is not a number here.
    return isinstance(value, int) and not isinstance(value, bool)


def _text(entry: Mapping[str, Any], name: str, where: object) -> str:
    value = entry[name]
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise BadRequestError(f"{where}: {name} must be a non-empty string of <= {MAX_TEXT}")
    return value


def entry_hash(prev_hash: str, entry_without_hash: Mapping[str, Any]) -> str:
    """SHA-256 hex of the 32 ``prev_hash`` bytes followed by the canonical JSON of the entry
    without ``hash`` (docs/sync.md)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_json(entry_without_hash)).hexdigest()


class _Where:
    """``entries[i]``, formatted only when an error message needs it."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __str__(self) -> str:
        return f"entries[{self.index}]"


def parse_entry(raw: object, index: int = 0) -> Entry:
    """Validate one entry object; the hash is computed, not yet compared."""
    # Error texts name the entry; formatted only on failure, this runs per entry.
    where = _Where(index)
    if not isinstance(raw, dict):
        raise BadRequestError(f"{where}: an entry must be a JSON object")
    keys = raw.keys()
    if keys != ENTRY_FIELDS:
        missing = sorted(ENTRY_FIELDS - keys)
        unknown = sorted(str(k)[:40] for k in keys - ENTRY_FIELDS)
        raise BadRequestError(f"{where}: missing fields {missing}, unknown fields {unknown}")
    terminal_id = raw["terminal_id"]
    if not isinstance(terminal_id, str) or not TERMINAL_ID_RE.fullmatch(terminal_id):
        raise BadRequestError(f"{where}: terminal_id must match [A-Za-z0-9_-]{{1,32}}")
    seq = raw["seq"]
    if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:
        raise BadRequestError(f"{where}: seq must be an integer in 1..2^63-1")
    time = raw["time"]
    if not (_is_int(time) or isinstance(time, float)) or not math.isfinite(time) or time < 0:
        raise BadRequestError(f"{where}: time must be a non-negative number")
    if abs(time) > 1e15:
        raise BadRequestError(f"{where}: time out of range")
    # isinstance first: "in" on a frozenset hashes the value, and a list is unhashable.
    kind = raw["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise BadRequestError(f"{where}: kind must be 'card' or 'code'")
    decision = raw["decision"]
    if not isinstance(decision, str) or decision not in DECISIONS:
        raise BadRequestError(f"{where}: decision must be 'accept' or 'refuse'")
    service = _text(raw, "service", where)
    reason = _text(raw, "reason", where)
    amount = raw["amount"]
    if amount is not None and (not _is_int(amount) or not -MAX_SEQ <= amount <= MAX_SEQ):
        raise BadRequestError(f"{where}: amount must be an integer (fen) or null")
    token = raw["card_token"]
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise BadRequestError(f"{where}: card_token must be 32 hex digits")
    region = raw["region"]
    if not isinstance(region, str) or not _REGION_RE.fullmatch(region):
        raise BadRequestError(f"{where}: region must be 6 digits")
    category = raw["category"]
    if category is not None and (not isinstance(category, str) or category not in CATEGORIES):
        raise BadRequestError(f"{where}: category must be '1'..'4' or null")
    extra = raw["extra"]
    if not isinstance(extra, dict):
        raise BadRequestError(f"{where}: extra must be a JSON object")
    extra_json = canonical_text(extra)
    if len(extra_json.encode("utf-8")) > MAX_EXTRA_BYTES:
        raise BadRequestError(f"{where}: extra is over {MAX_EXTRA_BYTES} bytes")
    prev_hash = raw["prev_hash"]
    claimed = raw["hash"]
    for name, value in (("prev_hash", prev_hash), ("hash", claimed)):
        if not isinstance(value, str) or not _HASH_RE.fullmatch(value):
            raise BadRequestError(f"{where}: {name} must be 64 hex digits")
    without_hash = dict(raw)
    del without_hash["hash"]
    body = canonical_text(without_hash)
    # Positional: the field order of Entry (keywords cost measurably at 1,000 per request).
    return Entry(
        terminal_id,
        seq,
        float(time),
        kind,
        service,
        decision,
        reason,
        amount,
        token.lower(),
        region,
        category,
        extra_json,
        prev_hash.lower(),
        claimed.lower(),
        body,
        hashlib.sha256(bytes.fromhex(prev_hash) + body.encode("utf-8")).hexdigest(),
    )


def batch_envelope(obj: object, field: str, max_items: int) -> tuple[str, list[Any]]:
    """The ``terminal_id`` and the ``field`` array of a decoded ``{"terminal_id", field}``
    request body - an upload (``entries``) or a batch of terminal events (``events``) -
    checked for shape and size. Raises :class:`BadRequestError`."""
    if not isinstance(obj, dict):
        raise BadRequestError("body must be a JSON object")
    if obj.keys() != {"terminal_id", field}:
        raise BadRequestError(f"body must have exactly the fields terminal_id and {field}")
    terminal_id = obj["terminal_id"]
    if not isinstance(terminal_id, str) or not TERMINAL_ID_RE.fullmatch(terminal_id):
        raise BadRequestError("terminal_id must match [A-Za-z0-9_-]{1,32}")
    items = obj[field]
    if not isinstance(items, list):
        raise BadRequestError(f"{field} must be a JSON array")
    if len(items) > max_items:
        raise BadRequestError(f"at most {max_items} {field} per request")
    return terminal_id, items


def parse_ingest_request(obj: object, max_entries: int = MAX_ENTRIES) -> IngestBatch:
    """Validate a decoded ``{"terminal_id", "entries"}`` object (see :func:`parse_ingest_body`)."""
    terminal_id, raw_entries = batch_envelope(obj, "entries", max_entries)
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
    return parse_ingest_request(loads_strict(body), max_entries)


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
