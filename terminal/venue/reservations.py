"""Real-name time-slot reservations of a venue - a museum, a science centre (docs/sync.md,
"Venue reservations").

The back office publishes them as a signed ``reservations`` document. It never holds an
identity number: a holder is known by :func:`identity_token`, the first 8 bytes of the
keyed card token (:func:`terminal.privacy.cardtoken.card_token`, the deployment's token
key) of ``"id:"`` and the identity number upper-cased - the gate computes the same from the
card it reads, and without the key a token says nothing about the person.

:func:`parse_reservations` turns the body into :class:`Reservations`, strictly (a malformed
document is refused whole with a :class:`ReservationsError` naming the field). A venue
takes a million holders on a busy day, so they are not a million Python objects: the
tokens are one sorted ``uint64`` array (:class:`SortedTokens`, binary search) and each
holder's slots an index, in a parallel array, into the few distinct slot combinations.
About 12 bytes a holder; a lookup is a microsecond or so (bench/venue_reservations.py).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from terminal.privacy.cardtoken import card_token
from terminal.wire.document import KIND_RESERVATIONS, DocumentError, check_body_keys

TOKEN_BYTES = 8
TOKEN_HEX = 2 * TOKEN_BYTES
IDENTITY_PREFIX = "id:"
"""What precedes the identity number in the input of its token: no card number (9
characters, no colon) or T-Union token input (``tunion:``) is ever the same text."""
MAX_SLOTS = 256
MAX_SLOT_ID = 32
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SLOT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}")
_KEYS = frozenset({"venue", "slots", "holders"})


class ReservationsError(DocumentError):
    """A reservations document the terminal refuses (the whole document; the previous one
    stays in force), or a lookup asked with something that is no token or time."""

    code = "bad_reservations"


def identity_token(key: bytes, identity_number: str) -> bytes:
    """The 8-byte token of an identity number: ``card_token(key, "id:" + number
    upper-cased)[:8]`` (surrounding spaces dropped; an ``x`` check digit is an ``X``)."""
    return card_token(key, IDENTITY_PREFIX + identity_number.strip().upper())[:TOKEN_BYTES]


# --- tokens in a sorted array (shared with terminal.venue.passes) -----------------------------


def tokens_from_hex(values: list[object], what: str, error: type[DocumentError]) -> np.ndarray:
    """A list of 16-hex-digit tokens as a ``uint64`` array (big-endian reading: the array
    sorts as the hex does), decoded in one ``bytes.fromhex`` over the joined strings - a
    million ``int(s, 16)`` one by one would take seconds. Raises ``error`` naming ``what``."""
    if not all(type(s) is str and len(s) == TOKEN_HEX for s in values):
        raise error(f"{what}: every token must be {TOKEN_HEX} hex digits")
    try:
        raw = bytes.fromhex("".join(values))  # type: ignore[arg-type]
    except ValueError:
        raise error(f"{what}: a token is not hex") from None
    # fromhex skips whitespace: with every token 16 characters, whitespace leaves fewer bytes.
    if len(raw) != TOKEN_BYTES * len(values):
        raise error(f"{what}: a token is not hex")
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


class SortedTokens:
    """Distinct 8-byte tokens in a sorted ``uint64`` array: :meth:`index` of a token by
    binary search (numpy's, on a numpy scalar: a Python ``int`` would make numpy build an
    object array of the whole list for every lookup)."""

    __slots__ = ("_keys", "_size")

    def __init__(self, keys: np.ndarray) -> None:
        """``keys``: sorted, strictly increasing ``uint64`` (see :meth:`sort`)."""
        self._keys = keys
        self._size = len(keys)

    @staticmethod
    def sort(keys: np.ndarray, what: str, error: type[DocumentError]) -> np.ndarray:
        """The order that sorts ``keys`` (stable); raises ``error`` for a token given twice."""
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        twice = np.flatnonzero(ordered[1:] == ordered[:-1])
        if len(twice):
            token = int(ordered[twice[0]]).to_bytes(TOKEN_BYTES, "big").hex()
            raise error(f"{what}: token {token} is listed twice")
        return order

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes)

    def index(self, token8: bytes) -> int | None:
        """Where ``token8`` (8 bytes) is, or None when it is not held."""
        if type(token8) is not bytes or len(token8) != TOKEN_BYTES:
            if not isinstance(token8, bytes | bytearray | memoryview) or len(token8) != TOKEN_BYTES:
                raise ReservationsError(f"a token is {TOKEN_BYTES} bytes")
            token8 = bytes(token8)
        key = np.uint64(int.from_bytes(token8, "big"))
        keys = self._keys
        i = int(keys.searchsorted(key))
        if i < self._size and keys[i] == key:
            return i
        return None


# --- reservations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A time slot of the venue: ``id``, and ``start``/``end`` (with their UTC offsets)."""

    id: str
    start: dt.datetime
    end: dt.datetime

    def holds(self, when: dt.datetime, grace_minutes: float = 0.0) -> bool:
        """Whether ``when`` is within ``[start - grace, end]``: a holder early by up to the
        grace is let in, one late past the end is not."""
        return self.start - dt.timedelta(minutes=grace_minutes) <= when <= self.end


@dataclass(frozen=True, eq=False)
class Reservations:
    """The reservations of one venue in force (module doc). Build with
    :func:`parse_reservations`."""

    version: int
    venue: str
    slots: tuple[Slot, ...]
    """In the document's order."""
    _tokens: SortedTokens = field(repr=False)
    _combination: np.ndarray = field(repr=False)
    """Per token (in sorted order): the index of its slots in ``_combinations``."""
    _combinations: tuple[tuple[Slot, ...], ...] = field(repr=False)

    def __len__(self) -> int:
        """Holders."""
        return len(self._tokens)

    @property
    def nbytes(self) -> int:
        """Bytes of the holders' arrays."""
        return self._tokens.nbytes + int(self._combination.nbytes)

    def slot(self, slot_id: str) -> Slot | None:
        """The slot of ``slot_id``, or None."""
        return next((s for s in self.slots if s.id == slot_id), None)

    def slots_for(self, token8: bytes) -> tuple[Slot, ...]:
        """The slots the holder of ``token8`` (:func:`identity_token`) reserved, by start
        time; empty when none."""
        i = self._tokens.index(token8)
        if i is None:
            return ()
        return self._combinations[self._combination[i]]

    def slot_now(self, token8: bytes, when: dt.datetime, grace_minutes: float) -> Slot | None:
        """The holder's slot that ``when`` (with its UTC offset) falls in - from ``grace``
        minutes before its start to its end - or None."""
        if not isinstance(when, dt.datetime) or when.utcoffset() is None:
            raise ReservationsError("when must be a datetime with its UTC offset")
        if isinstance(grace_minutes, bool) or not isinstance(grace_minutes, int | float):
            raise ReservationsError("grace_minutes must be a number")
        if not 0 <= grace_minutes <= 24 * 60:
            raise ReservationsError("grace_minutes must be 0..1440")
        for slot in self.slots_for(token8):
            if slot.holds(when, grace_minutes):
                return slot
        return None


def _time(value: object, where: str) -> dt.datetime:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise ReservationsError(f"{where} must be an ISO 8601 date and time with its offset")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ReservationsError(f"{where} is not an ISO 8601 date and time") from None
    if when.utcoffset() is None:
        raise ReservationsError(f"{where} must carry its UTC offset (+08:00)")
    return when


def _slots(value: object) -> tuple[Slot, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_SLOTS:
        raise ReservationsError(f"slots must be a list of 1-{MAX_SLOTS} slots")
    slots: list[Slot] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"slots[{index}]"
        if not isinstance(item, dict) or set(item) != {"id", "start", "end"}:
            raise ReservationsError(f"{where} must be an object with id, start and end")
        slot_id = item["id"]
        if not isinstance(slot_id, str) or not _SLOT_ID.fullmatch(slot_id):
            raise ReservationsError(f"{where}.id must be a code [A-Za-z0-9_.:-]{{1,32}}")
        if slot_id in seen:
            raise ReservationsError(f"{where}.id: slot {slot_id!r} is listed twice")
        seen.add(slot_id)
        start, end = _time(item["start"], f"{where}.start"), _time(item["end"], f"{where}.end")
        if end <= start:
            raise ReservationsError(f"{where}: end must be after start")
        slots.append(Slot(slot_id, start, end))
    return tuple(slots)


def parse_reservations(body: Mapping[str, Any]) -> Reservations:
    """The reservations of the body of a ``reservations`` document (``kind``, ``version``
    and ``signature`` may be present; ``kind`` must then be ``reservations``). Strict:
    ``venue``, ``slots`` and ``holders`` required and nothing else; slot ids unique, times
    with offsets and ending after they start; each holder ``[16 hex, [slot id, ...]]``
    once, with at least one known slot, none twice. Refusals are
    :class:`ReservationsError` naming the field."""
    version = check_body_keys(body, KIND_RESERVATIONS, _KEYS, ReservationsError, "reservations")
    venue = body["venue"]
    if not isinstance(venue, str) or not _CODE.fullmatch(venue):
        raise ReservationsError("venue must be a code [A-Za-z0-9_.-]{1,64}")
    slots = _slots(body["slots"])
    bit_of = {slot.id: 1 << i for i, slot in enumerate(slots)}
    holders = body["holders"]
    if not isinstance(holders, list):
        raise ReservationsError("holders must be a list")

    # Most holders share a handful of slot lists: each distinct list (as written) is checked
    # once, and each distinct set of slots becomes one combination.
    combination_of_list: dict[tuple[str, ...], int] = {}
    combination_of_mask: dict[int, int] = {}
    combinations: list[tuple[Slot, ...]] = []
    tokens: list[object] = [None] * len(holders)
    combination = np.empty(len(holders), dtype=np.uint32)
    for index, holder in enumerate(holders):
        if type(holder) is not list or len(holder) != 2 or type(holder[1]) is not list:
            raise ReservationsError(f"holders[{index}] must be [token, [slot id, ...]]")
        token, ids = holder
        tokens[index] = token
        if not all(type(i) is str for i in ids):
            raise ReservationsError(f"holders[{index}]: slot ids must be strings")
        written = tuple(ids)
        found = combination_of_list.get(written)
        if found is None:
            found = _combination(written, index, bit_of, slots, combination_of_mask, combinations)
            combination_of_list[written] = found
        combination[index] = found
    keys = tokens_from_hex(tokens, "holders", ReservationsError)
    order = SortedTokens.sort(keys, "holders", ReservationsError)
    return Reservations(
        version=version,
        venue=venue,
        slots=slots,
        _tokens=SortedTokens(keys[order]),
        _combination=combination[order],
        _combinations=tuple(combinations),
    )


def _combination(
    ids: tuple[str, ...],
    index: int,
    bit_of: Mapping[str, int],
    slots: tuple[Slot, ...],
    combination_of_mask: dict[int, int],
    combinations: list[tuple[Slot, ...]],
) -> int:
    """The combination index of a holder's slot ids (checked: known, none twice, not none)."""
    if not ids:
        raise ReservationsError(f"holders[{index}]: at least one slot")
    mask = 0
    for slot_id in ids:
        bit = bit_of.get(slot_id)
        if bit is None:
            raise ReservationsError(f"holders[{index}]: slot {slot_id[:40]!r} is not in slots")
        if mask & bit:
            raise ReservationsError(f"holders[{index}]: slot {slot_id!r} is given twice")
        mask |= bit
    found = combination_of_mask.get(mask)
    if found is None:
        chosen = [s for s in slots if mask & bit_of[s.id]]
        chosen.sort(key=lambda s: s.start)
        found = len(combinations)
        combinations.append(tuple(chosen))
        combination_of_mask[mask] = found
    return found
