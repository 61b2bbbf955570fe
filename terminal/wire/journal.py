"""The journal entry as it travels (docs/sync.md, "Journal entry" and "Upload"): its fields
and their formats, its hash, and the body of ``POST /v1/ingest``.

The terminal checks with it the entries it reads back from its journal; the back office
checks with it every uploaded entry before it stores it. An entry is the JSON object::

    {"terminal_id", "seq", "time", "kind", "service", "decision", "reason", "amount",
     "card_token", "region", "category", "extra", "prev_hash", "hash"}

and ``hash`` is SHA-256 hex of the 32 ``prev_hash`` bytes followed by the canonical JSON of
the entry without ``hash`` (:func:`entry_hash`), so any edit or deletion breaks the chain.
What a terminal may *record* is narrower (machine-code service and reason, no personal
data, a small ``extra``: :class:`terminal.journal.entry.TransactionRecord`); this module is
what both ends accept on the wire.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence

from terminal.errors import JournalEntryError
from terminal.wire.canonical import JsonError, canonical_json

ZERO_HASH = "0" * 64
"""``prev_hash`` of entry ``seq`` 1."""
MAX_SEQ = 2**63 - 1
"""Largest ``seq`` (and largest ``amount``): the back office's BIGINT column."""
MAX_TIME = 1e15
"""``time`` is Unix seconds; beyond this it is not a time."""
MAX_TEXT = 128
"""Characters of ``service`` and ``reason``."""
MAX_EXTRA_BYTES = 4096
"""``extra`` holds small details: at most this many bytes of canonical JSON."""
MAX_ENTRIES = 5000
"""Entries per ``POST /v1/ingest`` request."""

KINDS = frozenset({"card", "code"})
DECISIONS = frozenset({"accept", "refuse"})
CATEGORIES = frozenset({"1", "2", "3", "4"})

TERMINAL_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""A terminal id: what ``terminal_id`` and the ``X-Onecard-Terminal`` header hold."""
MACHINE_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""A machine code: a service item, a reason, a key of an event's detail."""
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_REGION = re.compile(r"[0-9]{6}")

ENTRY_FIELDS = (
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
)
"""The fields of an entry, in the order of docs/sync.md (JSON key order is free)."""
_FIELD_SET = frozenset(ENTRY_FIELDS)


def entry_hash(prev_hash: str, body: Mapping[str, object]) -> str:
    """The ``hash`` of an entry: SHA-256 hex of ``prev_hash`` (32 bytes) followed by the
    canonical JSON of ``body`` (the entry without ``hash``)."""
    return hash_of_canonical(prev_hash, canonical_json(body))


def hash_of_canonical(prev_hash: str, canonical_body: bytes) -> str:
    """:func:`entry_hash` over an already canonical body."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_body).hexdigest()


def check_terminal_id(terminal_id: object) -> str:
    """``terminal_id`` if it has the form of docs/sync.md (``[A-Za-z0-9_-]{1,32}``)."""
    if not isinstance(terminal_id, str) or not TERMINAL_ID.fullmatch(terminal_id):
        raise JournalEntryError("terminal_id must be 1-32 of A-Z a-z 0-9 _ -")
    return terminal_id


def check_terminal_id_in(terminal_id: object, where: object) -> None:
    """:func:`check_terminal_id` with ``where`` in the error."""
    if not isinstance(terminal_id, str) or not TERMINAL_ID.fullmatch(terminal_id):
        raise JournalEntryError(f"{where}: terminal_id must match [A-Za-z0-9_-]{{1,32}}")


def _is_int(value: object) -> bool:
    # bool is an int subclass: true/false is not a number here.
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object, name: str, where: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        raise JournalEntryError(f"{where}: {name} must be a non-empty string of <= {MAX_TEXT}")


def check_entry(obj: object, where: object = "entry") -> bytes:
    """Check a decoded entry (with ``hash``) against docs/sync.md and return the canonical
    JSON of its ``extra``. The hash itself is not compared: that is the chain's job, so a
    tampered entry can still be read and reported. ``where`` names the entry in errors
    (formatted only on failure: this runs for every entry of an upload).

    Hex fields may be upper- or lower-case. Raises :class:`JournalEntryError`.
    """
    if not isinstance(obj, dict):
        raise JournalEntryError(f"{where}: an entry must be a JSON object")
    keys = obj.keys()
    if keys != _FIELD_SET:
        missing = sorted(_FIELD_SET - keys)
        unknown = sorted(str(k)[:40] for k in keys - _FIELD_SET)
        problems = [f"missing fields {missing}"] if missing else []
        problems += [f"unknown fields {unknown}"] if unknown else []
        raise JournalEntryError(f"{where}: {', '.join(problems)}")
    check_terminal_id_in(obj["terminal_id"], where)
    seq = obj["seq"]
    if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:
        raise JournalEntryError(f"{where}: seq must be an integer in 1..2^63-1")
    time = obj["time"]
    if not (_is_int(time) or isinstance(time, float)) or not math.isfinite(time):
        raise JournalEntryError(f"{where}: time must be a number")
    if not 0 <= time <= MAX_TIME:
        raise JournalEntryError(f"{where}: time out of range")
    # isinstance first: "in" on a frozenset hashes the value, and a list is unhashable.
    kind = obj["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise JournalEntryError(f"{where}: kind must be 'card' or 'code'")
    decision = obj["decision"]
    if not isinstance(decision, str) or decision not in DECISIONS:
        raise JournalEntryError(f"{where}: decision must be 'accept' or 'refuse'")
    _text(obj["service"], "service", where)
    _text(obj["reason"], "reason", where)
    amount = obj["amount"]
    if amount is not None and (not _is_int(amount) or not -MAX_SEQ <= amount <= MAX_SEQ):
        raise JournalEntryError(f"{where}: amount must be an integer (fen) or null")
    token = obj["card_token"]
    if not isinstance(token, str) or not _HEX32.fullmatch(token):
        raise JournalEntryError(f"{where}: card_token must be 32 hex digits")
    region = obj["region"]
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise JournalEntryError(f"{where}: region must be 6 digits")
    category = obj["category"]
    if category is not None and (not isinstance(category, str) or category not in CATEGORIES):
        raise JournalEntryError(f"{where}: category must be '1'..'4' or null")
    for name in ("prev_hash", "hash"):
        value = obj[name]
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise JournalEntryError(f"{where}: {name} must be 64 hex digits")
    extra = obj["extra"]
    if not isinstance(extra, dict):
        raise JournalEntryError(f"{where}: extra must be a JSON object")
    try:
        extra_json = canonical_json(extra)
    except JsonError as exc:
        raise JournalEntryError(f"{where}: extra: {exc.reason}") from None
    if len(extra_json) > MAX_EXTRA_BYTES:
        raise JournalEntryError(f"{where}: extra is over {MAX_EXTRA_BYTES} bytes")
    return extra_json


def ingest_body(terminal_id: str, entries: Sequence[str | Mapping[str, object]]) -> bytes:
    """The body of ``POST /v1/ingest``: ``{"terminal_id", "entries"}``, the entries in
    ``seq`` order, each its JSON text (as the journal stores it) or its fields. Not
    canonical - nothing hashes the request as JSON - so a backlog read from the journal
    travels without being parsed and encoded again."""
    head = canonical_json({"terminal_id": check_terminal_id(terminal_id)})[:-1].decode()
    texts = [e if isinstance(e, str) else canonical_json(e).decode() for e in entries]
    return f'{head},"entries":[{",".join(texts)}]}}'.encode()
