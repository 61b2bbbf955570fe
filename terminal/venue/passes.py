"""Scenic-area passes bound to a card - an annual pass, say (docs/sync.md, "Scenic-area
passes").

The back office publishes them as a signed ``passes`` document; a pass names its card by
the first 8 bytes of the card's token (:func:`terminal.privacy.cardtoken.card_token`, the
token the gates already compute for a card, and the hotlist's key), never by its number.
:func:`parse_passes` turns the body into :class:`Passes`, strictly (a malformed document is
refused whole with a :class:`PassesError` naming the field). Like the reservations
(:mod:`terminal.venue.reservations`), the passes are parallel arrays over one sorted token
array, not an object a pass: an area sells hundreds of thousands.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from terminal.venue.reservations import SortedTokens, tokens_from_hex
from terminal.wire.document import KIND_PASSES, DocumentError, check_body_keys

MAX_ENTRIES_PER_DAY = 1000
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_KIND = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# ASCII digits only: \d also matches full-width and other Unicode digits.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KEYS = frozenset({"area", "passes"})


class PassesError(DocumentError):
    """A passes document the terminal refuses: the whole document (the previous one stays
    in force), naming the first bad field."""

    code = "bad_passes"


@dataclass(frozen=True)
class Pass:
    """A pass bound to one card: its ``kind`` (``annual``...), the first and last day it
    is good for (inclusive) and the entries it allows a day."""

    kind: str
    valid_from: dt.date
    valid_to: dt.date
    entries_per_day: int

    def valid_on(self, day: dt.date) -> bool:
        """Whether the pass is good on ``day`` (a date; a datetime counts by its date)."""
        if isinstance(day, dt.datetime):
            day = day.date()
        return self.valid_from <= day <= self.valid_to


@dataclass(frozen=True, eq=False)
class Passes:
    """The passes of one scenic area in force (module doc). Build with :func:`parse_passes`."""

    version: int
    area: str
    _tokens: SortedTokens = field(repr=False)
    _kind: np.ndarray = field(repr=False)
    """Per token (sorted order): index into ``_kinds``."""
    _kinds: tuple[str, ...] = field(repr=False)
    _from: np.ndarray = field(repr=False)
    """Per token: proleptic Gregorian ordinal of the first day."""
    _to: np.ndarray = field(repr=False)
    _entries: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self._tokens)

    def pass_for(self, token8: bytes) -> Pass | None:
        """The pass of the card whose token starts with ``token8`` (8 bytes), or None."""
        try:
            i = self._tokens.index(token8)
        except DocumentError as exc:
            raise PassesError(exc.reason) from exc
        if i is None:
            return None
        return Pass(
            self._kinds[self._kind[i]],
            dt.date.fromordinal(int(self._from[i])),
            dt.date.fromordinal(int(self._to[i])),
            int(self._entries[i]),
        )


def _date(value: object, where: str) -> int:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise PassesError(f"{where} must be a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value).toordinal()
    except ValueError:
        raise PassesError(f"{where} is not a date") from None


def parse_passes(body: Mapping[str, Any]) -> Passes:
    """The passes of the body of a ``passes`` document (``kind``, ``version`` and
    ``signature`` may be present; ``kind`` must then be ``passes``). Strict: ``area`` and
    ``passes`` required and nothing else; each pass ``[16 hex token, kind, valid_from,
    valid_to, entries_per_day]`` with ``valid_from <= valid_to`` and 1-1000 entries a
    day, one pass a card. Refusals are :class:`PassesError` naming the field."""
    version = check_body_keys(body, KIND_PASSES, _KEYS, PassesError, "passes")
    area = body["area"]
    if not isinstance(area, str) or not _CODE.fullmatch(area):
        raise PassesError("area must be a code [A-Za-z0-9_.-]{1,64}")
    items = body["passes"]
    if not isinstance(items, list):
        raise PassesError("passes must be a list")
    count = len(items)
    tokens: list[object] = [None] * count
    kinds: dict[str, int] = {}
    kind_index = np.empty(count, dtype=np.uint16)
    first = np.empty(count, dtype=np.int32)
    last = np.empty(count, dtype=np.int32)
    entries = np.empty(count, dtype=np.uint16)
    dates: dict[str, int] = {}  # a few hundred distinct dates among thousands of passes
    for index, item in enumerate(items):
        where = f"passes[{index}]"
        if type(item) is not list or len(item) != 5:
            raise PassesError(f"{where} must be [token, kind, valid_from, valid_to, entries]")
        token, kind, start, end, per_day = item
        tokens[index] = token
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise PassesError(f"{where} kind must be a code [a-z0-9_-]{{1,32}}")
        if kind not in kinds:
            if len(kinds) >= 1000:
                raise PassesError(f"{where}: at most 1000 kinds of pass")
            kinds[kind] = len(kinds)
        kind_index[index] = kinds[kind]
        start_day = dates.get(start) if type(start) is str else None
        if start_day is None:
            start_day = dates[start] = _date(start, f"{where} valid_from")  # type: ignore[index]
        end_day = dates.get(end) if type(end) is str else None
        if end_day is None:
            end_day = dates[end] = _date(end, f"{where} valid_to")  # type: ignore[index]
        if end_day < start_day:
            raise PassesError(f"{where}: valid_to is before valid_from")
        if type(per_day) is not int or not 1 <= per_day <= MAX_ENTRIES_PER_DAY:
            raise PassesError(f"{where} entries_per_day must be 1..{MAX_ENTRIES_PER_DAY}")
        first[index], last[index], entries[index] = start_day, end_day, per_day
    keys = tokens_from_hex(tokens, "passes", PassesError)
    order = SortedTokens.sort(keys, "passes", PassesError)
    return Passes(
        version=version,
        area=area,
        _tokens=SortedTokens(keys[order]),
        _kind=kind_index[order],
        _kinds=tuple(kinds),
        _from=first[order],
        _to=last[order],
        _entries=entries[order],
    )
