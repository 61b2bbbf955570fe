"""Signed documents the back office publishes (docs/sync.md, "Published documents").

Pure: the publication key, signing a document, the hotlist delta between two versions
(netted), and the operator's hotlist entries (a card number tokenised with the deployment's
token key, or a raw token). Key files are read and written by :mod:`backoffice.keys`.

The rail fare table, a venue's reservations and a scenic area's passes are checked with the
terminal's own parser before they are signed (:func:`prepare_document`): the back office
never publishes a document every terminal would refuse. Reservations and passes are built
here from the operator's CSV rows (:func:`reservations_body`, :func:`passes_body`): an
identity or card number is turned into its token as the row is read and goes no further -
not into the document, the storage, an error message or a log.

The document format - its signature over the canonical JSON of the object without
``signature``, the key id, the hotlist delta's fields - is the wire's
(:mod:`terminal.wire.document`), the very code terminals verify with: a body that has no
canonical form (a NaN, say) is refused here, before anything is signed or stored.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from backoffice.errors import PublicationError
from terminal.crypto import signing
from terminal.errors import ConfigError
from terminal.privacy.cardtoken import card_token, tunion_card_token
from terminal.transit.fares import parse_fare_table
from terminal.venue.passes import parse_passes
from terminal.venue.reservations import TOKEN_BYTES, identity_token, parse_reservations
from terminal.wire.document import (
    HOTLIST_ENTRY_HEX,
    KIND_APPLIST,
    KIND_FARES,
    KIND_HOTLIST,
    KIND_PASSES,
    KIND_RESERVATIONS,
    KIND_TRUSTLIST,
    DocumentError,
    document_signature,
    key_id,
)

STORED_KINDS = frozenset({KIND_TRUSTLIST, KIND_APPLIST, KIND_FARES, KIND_RESERVATIONS, KIND_PASSES})
CHECKED_KINDS: Mapping[str, Callable[[Mapping[str, Any]], object]] = {
    KIND_FARES: parse_fare_table,
    KIND_RESERVATIONS: parse_reservations,
    KIND_PASSES: parse_passes,
}
"""Kinds whose body is checked with the terminal's parser before it is signed."""

_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX20 = re.compile(r"[0-9a-fA-F]{20}")


@dataclass(frozen=True, repr=False)
class PublicationKey:
    """The back office's signing key. ``repr`` names the algorithm and key id only."""

    algorithm: signing.Algorithm
    private_key: signing.PrivateKey

    @property
    def public_key(self) -> bytes:
        """``04 || X || Y``: what terminals hold (``publication_key`` in credentials)."""
        return signing.public_key_bytes(self.private_key)

    @property
    def key_id(self) -> str:
        """First 8 bytes, hex, of SM3 of the public key (:func:`terminal.wire.document.key_id`)."""
        return key_id(self.public_key)

    def __repr__(self) -> str:
        return f"PublicationKey({self.algorithm.value}, key_id={self.key_id})"


def generate_publication_key(
    algorithm: signing.Algorithm = signing.Algorithm.SM2,
) -> PublicationKey:
    """A fresh publication key (SM2 unless told otherwise)."""
    return PublicationKey(algorithm, signing.generate_private_key(algorithm))


def sign_document(document: Mapping[str, Any], key: PublicationKey) -> dict[str, Any]:
    """A copy of ``document`` (any ``signature`` dropped) with a fresh signature
    (:func:`terminal.wire.document.document_signature`). Raises :class:`PublicationError`
    for a body that cannot be signed: no canonical JSON (a NaN, an infinity...)."""
    body = {k: copy.deepcopy(v) for k, v in document.items() if k != "signature"}
    try:
        body["signature"] = document_signature(body, key.private_key, key.algorithm)
    except DocumentError as exc:
        raise PublicationError(exc.reason) from exc
    return body


# --- stored documents: trust list, application list -----------------------------------------


def prepare_document(kind: str, body: object, version: int) -> dict[str, Any]:
    """The unsigned document for an operator's ``body`` (a JSON object): ``kind`` set (a
    ``kind`` already there must agree), ``version`` set (any given one is replaced: the
    back office numbers its publications), no ``signature``. A fare table, reservations or
    passes the terminal's parser refuses is refused here (:class:`PublicationError` with
    the parser's reason)."""
    if kind not in STORED_KINDS:
        raise PublicationError(f"unknown document kind {kind!r}")
    if not isinstance(body, dict):
        raise PublicationError("a document body must be a JSON object")
    if "kind" in body and body["kind"] != kind:
        raise PublicationError(f"the body says kind {body['kind']!r}, not {kind!r}")
    doc = {k: v for k, v in body.items() if k != "signature"}
    doc["kind"] = kind
    doc["version"] = version
    check = CHECKED_KINDS.get(kind)
    if check is not None:
        try:
            check(doc)
        except DocumentError as exc:
            raise PublicationError(f"{kind} refused: {exc.reason}") from exc
    return doc


# --- reservations and passes from the operator's CSV ----------------------------------------

_IDENTITY = re.compile(r"[0-9A-Z]{6,32}")
"""An identity number, upper-cased: the resident identity card's 18 characters, or another
document's number."""


def _csv_rows(text: str, columns: int, what: str) -> Iterable[tuple[int, list[str]]]:
    """``(line, cells)`` of each row of ``text`` with ``columns`` cells; blank lines and
    lines starting with ``#`` skipped, a header row (its first cell not starting with a
    digit or letter we expect) is the caller's to skip. Errors name the line only."""
    reader = csv.reader(io.StringIO(text))
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
                continue
            if len(cells) != columns:
                raise PublicationError(f"{what} line {line}: {columns} columns, not {len(cells)}")
            yield line, [c.strip() for c in cells]
    except csv.Error as exc:
        raise PublicationError(f"{what} line {reader.line_num}: {exc}") from None


def parse_slot_option(text: str) -> dict[str, str]:
    """A slot as ``ID,START,END`` (``--slot am,2026-12-06T09:00:00+08:00,...``)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(parts):
        raise PublicationError("a slot is ID,START,END (ISO 8601 times with their offset)")
    return {"id": parts[0], "start": parts[1], "end": parts[2]}


def reservations_body(
    venue: str, slots: list[dict[str, Any]], csv_text: str, token_key: bytes
) -> dict[str, Any]:
    """The body of a ``reservations`` document from CSV rows ``identity_number,slot_id``
    (one row a reservation; a holder with several slots has several rows). Each identity
    number becomes its :func:`~terminal.venue.reservations.identity_token` as the row is
    read; the number is in no error message. A header row ``identity_number,slot_id`` is
    skipped. Holders are sorted by token (the order carries nothing of the CSV's)."""
    try:
        card_token(token_key, "")  # the key is checked once, not per row
    except ConfigError as exc:
        raise PublicationError(exc.reason) from None
    known = {s.get("id") for s in slots if isinstance(s, dict)}
    held: dict[str, list[str]] = {}
    for line, (identity, slot_id) in _csv_rows(csv_text, 2, "reservations CSV"):
        upper = identity.upper()
        if not _IDENTITY.fullmatch(upper):
            if line == 1 and not any(ch.isdigit() for ch in identity):
                continue  # a header row
            raise PublicationError(f"reservations CSV line {line}: not an identity number")
        if slot_id not in known:
            raise PublicationError(f"reservations CSV line {line}: slot {slot_id[:40]!r} unknown")
        token = identity_token(token_key, upper).hex()
        taken = held.setdefault(token, [])
        if slot_id in taken:
            raise PublicationError(
                f"reservations CSV line {line}: the same holder and slot once more"
            )
        taken.append(slot_id)
    return {
        "venue": venue,
        "slots": slots,
        "holders": [[token, held[token]] for token in sorted(held)],
    }


def passes_body(area: str, csv_text: str, token_key: bytes) -> dict[str, Any]:
    """The body of a ``passes`` document from CSV rows
    ``card_number,kind,valid_from,valid_to,entries_per_day``. Each card number becomes the
    first 8 bytes of its card token (what a gate computes for the card) as the row is read;
    the number is in no error message. A header row is skipped; passes are sorted by
    token."""
    try:
        card_token(token_key, "")
    except ConfigError as exc:
        raise PublicationError(exc.reason) from None
    passes: dict[str, list[Any]] = {}
    for line, (card, kind, start, end, per_day) in _csv_rows(csv_text, 5, "passes CSV"):
        if not per_day.isascii() or not per_day.isdigit() or len(per_day) > 6:
            if line == 1:
                continue  # a header row
            raise PublicationError(f"passes CSV line {line}: entries_per_day is not a number")
        if not card:
            raise PublicationError(f"passes CSV line {line}: no card number")
        token = card_token(token_key, card)[:TOKEN_BYTES].hex()
        if token in passes:
            raise PublicationError(f"passes CSV line {line}: a second pass for the same card")
        for name, value in (("valid_from", start), ("valid_to", end)):
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise PublicationError(
                    f"passes CSV line {line}: {name} is not a date YYYY-MM-DD"
                ) from None
        passes[token] = [token, kind, start, end, int(per_day)]
    return {"area": area, "passes": [passes[token] for token in sorted(passes)]}


# --- hotlist --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HotlistChange:
    """One versioned hotlist change: ``entry`` (16 hex) added or removed at ``version``."""

    version: int
    entry: str
    added: bool


def hotlist_entry_for_card(token_key: bytes, card_number: str) -> str:
    """The hotlist entry of a card number: first 8 bytes of its card token, hex."""
    card_number = card_number.strip()
    if not card_number:
        raise PublicationError("empty card number")
    return card_token(token_key, card_number)[:8].hex()


def hotlist_entry_for_tunion(token_key: bytes, app_serial_hex: str) -> str:
    """The hotlist entry of a T-Union e-purse by its application serial (20 hex digits, file
    0x15 bytes 10-19): the same token a validator computes for a card known by its e-purse."""
    serial = app_serial_hex.strip()
    if not _HEX20.fullmatch(serial):
        raise PublicationError("a T-Union application serial is 20 hex digits")
    return tunion_card_token(token_key, bytes.fromhex(serial))[:8].hex()


def hotlist_entry_for_token(token: str) -> str:
    """The hotlist entry of a raw token: a 32-hex card token or an already cut 16-hex entry."""
    token = token.strip()
    if _HEX32.fullmatch(token):
        return token[:HOTLIST_ENTRY_HEX].lower()
    if _HEX16.fullmatch(token):
        return token.lower()
    raise PublicationError("a token must be 32 hex digits (card token) or 16 (hotlist entry)")


def net_changes(changes: Iterable[HotlistChange]) -> tuple[list[str], list[str]]:
    """Net a run of changes (in version order) into (added, removed), both sorted.

    An entry's state before the run is the opposite of its first change (adding a present
    entry or removing an absent one makes no version), its state after is its last change;
    only entries whose state differs end up in a list.
    """
    first: dict[str, bool] = {}
    last: dict[str, bool] = {}
    for change in changes:
        first.setdefault(change.entry, change.added)
        last[change.entry] = change.added
    added = sorted(e for e, was in first.items() if was and last[e])
    removed = sorted(e for e, was in first.items() if not was and not last[e])
    return added, removed


@dataclass(frozen=True, slots=True)
class HotlistSnapshot:
    """What storage reports for ``since``: the latest version, the oldest version a delta
    can start from (``floor``), and either the changes after ``since`` or the full list."""

    version: int
    floor: int
    changes: tuple[HotlistChange, ...] | None
    full: tuple[str, ...] | None


def can_delta(since: int, version: int, floor: int) -> bool:
    """Whether a delta from ``since`` is possible (else a full list is sent). ``since`` 0,
    older than the kept history, or newer than the latest (another back office's numbers)
    all get the full list."""
    return 0 < since <= version and since >= floor


def hotlist_document(since: int, snapshot: HotlistSnapshot) -> dict[str, Any]:
    """The unsigned ``hotlist-delta`` document for a terminal at version ``since``."""
    if snapshot.changes is not None and can_delta(since, snapshot.version, snapshot.floor):
        added, removed = net_changes(snapshot.changes)
        base = since
    else:
        added, removed, base = sorted(snapshot.full or ()), [], 0
    return {
        "kind": KIND_HOTLIST,
        "version": snapshot.version,
        "base": base,
        "added": added,
        "removed": removed,
    }
