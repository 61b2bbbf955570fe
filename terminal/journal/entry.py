"""Journal entries and their hash chain (docs/sync.md, "Journal entry"): pure functions, no I/O.

A :class:`TransactionRecord` is what the runtime hands the journal after a decision: the
credential reduced to its keyed token, region and category, and the outcome. It has explicit
fields only, so there is no place for a name or an ID number; ``extra`` (small details such
as a TAC) is checked against a deny-list of personal keys and ID-number-shaped values.

A :class:`JournalEntry` is a record placed in a terminal's chain: ``seq``, ``time``,
``prev_hash`` and ``hash``, where::

    hash = SHA-256(bytes.fromhex(prev_hash) || canonical JSON of the entry without "hash")

so any edit or deletion of an entry breaks the chain at that point (:func:`verify_chain`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from terminal.errors import JournalEntryError
from terminal.wire.canonical import JsonError, canonical_json, parse_json_text
from terminal.wire.journal import (
    CATEGORIES,
    DECISIONS,
    KINDS,
    MACHINE_CODE,
    ZERO_HASH,
    check_entry,
    check_terminal_id,
    hash_of_canonical,
)

# The deny-list is the wire's (events apply it too); named here for the record's readers.
from terminal.wire.personal import DENIED_EXTRA_KEYS as DENIED_EXTRA_KEYS
from terminal.wire.personal import DENIED_KEY_WORDS as DENIED_KEY_WORDS
from terminal.wire.personal import non_personal_copy

MAX_EXTRA_BYTES = 1024
"""``extra`` is for small details (a TAC, a verdict); its canonical JSON may not exceed this
in what a terminal records (the wire allows more: :data:`terminal.wire.journal.MAX_EXTRA_BYTES`)."""

_REGION = re.compile(r"[0-9]{6}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

# --- the record the runtime hands over ----------------------------------------------------


def check_extra(extra: Mapping[str, object]) -> dict[str, object]:
    """A JSON-ready copy of ``extra`` after checking it holds no personal data and is small.

    Raises :class:`JournalEntryError` for a denied key (``name``, ``id_number``, ``ssn``...),
    a value shaped like a resident ID number, a non-JSON value, or more than
    :data:`MAX_EXTRA_BYTES` of canonical JSON.
    """
    return non_personal_copy(extra, MAX_EXTRA_BYTES)


@dataclass(frozen=True, kw_only=True)
class TransactionRecord:
    """One transaction at the acceptance point, as the journal may know it.

    Explicit fields only - there is deliberately no field for a holder's name or ID number,
    and ``extra`` refuses keys and values that carry them (:func:`check_extra`).
    """

    kind: str
    """``card`` (the physical card) or ``code`` (the electronic card's QR code)."""
    service: str
    """Service item code from the application list, e.g. ``museum-entry``."""
    decision: str
    """``accept`` or ``refuse``."""
    reason: str
    """Machine code of why: ``ok``, ``hotlisted``, ``region_not_accepted``..."""
    amount: int | None
    """Amount in fen (fares), or None."""
    card_token: bytes
    """:func:`terminal.privacy.cardtoken.card_token` of the card number, 16 bytes."""
    region: str
    """Issuing region, 6 digits (GB/T 2260)."""
    category: str | None
    """Card category ``1``-``4``, or None when unknown."""
    extra: Mapping[str, object] = field(default_factory=dict)
    """Small non-personal details (a TAC, a verdict)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise JournalEntryError(f"kind must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.decision not in DECISIONS:
            raise JournalEntryError(f"decision must be accept or refuse, got {self.decision!r}")
        for name in ("service", "reason"):
            value = getattr(self, name)
            if not isinstance(value, str) or not MACHINE_CODE.fullmatch(value):
                raise JournalEntryError(f"{name} must be a machine code, got {value!r}")
        if self.amount is not None and (
            isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 0
        ):
            raise JournalEntryError("amount must be a whole number of fen >= 0, or None")
        if not isinstance(self.card_token, bytes | bytearray) or len(self.card_token) != 16:
            raise JournalEntryError("card_token must be the 16-byte keyed token")
        if not isinstance(self.region, str) or not _REGION.fullmatch(self.region):
            raise JournalEntryError(f"region must be 6 digits, got {self.region!r}")
        if self.category is not None and self.category not in CATEGORIES:
            raise JournalEntryError(f"category must be 1-4 or None, got {self.category!r}")
        object.__setattr__(self, "card_token", bytes(self.card_token))
        object.__setattr__(self, "extra", MappingProxyType(check_extra(self.extra)))


# --- the entry in the chain ---------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    """One entry of a terminal's journal, exactly as docs/sync.md lays it out."""

    terminal_id: str
    seq: int
    time: float
    kind: str
    service: str
    decision: str
    reason: str
    amount: int | None
    card_token: str
    """Hex, 32 digits."""
    region: str
    category: str | None
    extra: Mapping[str, object]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, object]:
        """The entry without ``hash``: what the hash covers."""
        return {
            "terminal_id": self.terminal_id,
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "service": self.service,
            "decision": self.decision,
            "reason": self.reason,
            "amount": self.amount,
            "card_token": self.card_token,
            "region": self.region,
            "category": self.category,
            "extra": dict(self.extra),
            "prev_hash": self.prev_hash,
        }

    def to_json_dict(self) -> dict[str, object]:
        """The entry as it travels: the body plus ``hash``."""
        out = self.body()
        out["hash"] = self.hash
        return out

    def canonical_body(self) -> bytes:
        return canonical_json(self.body())

    def computed_hash(self) -> str:
        """The hash the fields call for (equal to ``hash`` in a sound entry)."""
        return hash_of_canonical(self.prev_hash, self.canonical_body())


def make_entry(
    terminal_id: str, seq: int, time: float, record: TransactionRecord, prev_hash: str
) -> JournalEntry:
    """Place ``record`` in the chain as entry ``seq`` after the entry whose hash is
    ``prev_hash``, recorded at wall ``time``."""
    return make_entry_and_body(terminal_id, seq, time, record, prev_hash)[0]


def make_entry_and_body(
    terminal_id: str, seq: int, time: float, record: TransactionRecord, prev_hash: str
) -> tuple[JournalEntry, bytes]:
    """:func:`make_entry`, and the canonical body its hash covers (what the journal stores),
    encoded once."""
    check_terminal_id(terminal_id)
    if seq < 1:
        raise JournalEntryError("seq starts at 1")
    if not _HEX64.fullmatch(prev_hash):
        raise JournalEntryError("prev_hash must be 64 lower-case hex digits")
    if not math.isfinite(time):
        raise JournalEntryError("time must be a finite number")
    # Millisecond resolution is plenty for a tap, and keeps the JSON short and unambiguous.
    time = round(float(time), 3)
    body: dict[str, object] = {
        "terminal_id": terminal_id,
        "seq": seq,
        "time": time,
        "kind": record.kind,
        "service": record.service,
        "decision": record.decision,
        "reason": record.reason,
        "amount": record.amount,
        "card_token": record.card_token.hex(),
        "region": record.region,
        "category": record.category,
        "extra": dict(record.extra),
        "prev_hash": prev_hash,
    }
    canonical = canonical_json(body)
    entry = JournalEntry(hash=hash_of_canonical(prev_hash, canonical), **body)  # type: ignore[arg-type]
    return entry, canonical


def entry_from_json(obj: object) -> JournalEntry:
    """Parse one entry (a decoded JSON object, with ``hash``) into a :class:`JournalEntry`,
    checked against the wire contract (:func:`terminal.wire.journal.check_entry`) - not the
    hash, which is :func:`verify_chain`'s job, so a tampered entry can still be read and
    reported. Raises :class:`JournalEntryError`."""
    check_entry(obj)
    return JournalEntry(**obj)  # type: ignore[arg-type]


def entry_from_stored(canonical_body: str, hash_hex: str) -> JournalEntry:
    """The entry of a stored canonical body and hash (as the journal keeps them). A row is
    outside data like any other - a damaged file may hold a BLOB, a number or ``NULL``
    where the text should be - so anything but a sound entry is a
    :class:`JournalEntryError`: the body must be text (the journal writes ``TEXT``, and its
    readers hash the text they got), strict JSON, and an entry of the wire contract."""
    if not isinstance(canonical_body, str):
        raise JournalEntryError(f"stored entry is {type(canonical_body).__name__}, not text")
    try:
        obj = parse_json_text(canonical_body)
    except JsonError as exc:
        raise JournalEntryError(f"stored entry is not JSON: {exc.reason}") from None
    if isinstance(obj, dict):
        obj["hash"] = hash_hex
    return entry_from_json(obj)


# --- verification -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    """The outcome of walking a hash chain: ``ok``, how many entries were ``checked``, and
    for a broken chain the first ``seq`` that does not fit and why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""


class ChainWalker:
    """Checks entries one by one against the chain so far (streaming: constant memory).

    Start from an anchor - ``(0, ZERO_HASH)`` for a whole journal, or the last entry a
    journal purged - and :meth:`check` each entry in order; the first failure is kept.
    """

    def __init__(
        self, terminal_id: str | None = None, anchor_seq: int = 0, anchor_hash: str = ZERO_HASH
    ) -> None:
        self.terminal_id = terminal_id
        self.last_seq = anchor_seq
        self.last_hash = anchor_hash
        self.checked = 0
        self.failure: ChainReport | None = None

    def fail(self, seq: int, reason: str) -> ChainReport:
        if self.failure is None:
            self.failure = ChainReport(False, self.checked, seq, reason)
        return self.failure

    def check(self, entry: JournalEntry, canonical_body: bytes | None = None) -> bool:
        """Check the next entry; False (and :attr:`failure` set) when it breaks the chain.
        ``canonical_body`` saves re-encoding when the caller holds the stored bytes."""
        if self.failure is not None:
            return False
        expected = self.last_seq + 1
        if entry.seq != expected:
            if entry.seq > expected:
                self.fail(expected, f"entries {expected}..{entry.seq - 1} are missing")
            else:
                self.fail(entry.seq, f"seq {entry.seq} out of order after {self.last_seq}")
            return False
        if self.terminal_id is not None and entry.terminal_id != self.terminal_id:
            self.fail(entry.seq, f"entry of terminal {entry.terminal_id!r}")
            return False
        if entry.prev_hash != self.last_hash:
            self.fail(entry.seq, "prev_hash is not the hash of the previous entry")
            return False
        body = canonical_body if canonical_body is not None else entry.canonical_body()
        if hash_of_canonical(entry.prev_hash, body) != entry.hash:
            self.fail(entry.seq, "hash does not match the entry's contents")
            return False
        self.last_seq = entry.seq
        self.last_hash = entry.hash
        self.checked += 1
        return True

    def report(self) -> ChainReport:
        return self.failure if self.failure is not None else ChainReport(True, self.checked)


def verify_chain(
    entries: Iterable[JournalEntry],
    *,
    terminal_id: str | None = None,
    anchor_seq: int = 0,
    anchor_hash: str = ZERO_HASH,
    head: tuple[int, str] | None = None,
) -> ChainReport:
    """Walk ``entries`` (in ``seq`` order) from the anchor and report the first break.

    Detects an edited field (hash mismatch), an edited hash (the next ``prev_hash`` no longer
    fits), a deleted or reordered entry (a ``seq`` gap), and - when ``head`` (the last
    ``(seq, hash)`` known to have been written) is given - deleted entries at the end.
    """
    walker = ChainWalker(terminal_id, anchor_seq, anchor_hash)
    for entry in entries:
        if not walker.check(entry):
            return walker.report()
    if head is not None and (walker.last_seq, walker.last_hash) != tuple(head):
        head_seq, _ = head
        if head_seq > walker.last_seq:
            return walker.fail(walker.last_seq + 1, f"entries after {walker.last_seq} are missing")
        return walker.fail(head_seq, "the last entry is not the recorded head of the journal")
    return walker.report()
