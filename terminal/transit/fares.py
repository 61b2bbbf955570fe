"""The rail fare table: stations and what a ride between two of them costs (docs/sync.md,
"Rail fare table").

The back office publishes it as a signed ``fares`` document; :func:`parse_fare_table` turns
its body into a :class:`FareTable`, strictly (a malformed table is refused whole with a
:class:`FaresError` naming the field, and the table in force stays). A station code is four
hex digits, the line byte then the station byte - the two bytes a card's transit record
keeps (:func:`station_code` makes the text from them).

A ride's fare (:meth:`FareTable.quote`) is the base fare - by distance band or by the price
of the station pair, or the same-station rule when the exit is the entry - times the card
category's percentage, rounded half up to the fen, plus the overtime surcharge when the
ride took longer than the table allows. Every amount is an integer number of fen. Lookups
are dictionary reads built when the table is parsed: a gate quotes in constant time
whatever the size of the network.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from terminal.wire.document import KIND_FARES, DocumentError, check_body_keys

PRICING_DISTANCE = "distance"
PRICING_PAIRS = "pairs"
RULE_DISTANCE = "distance"
RULE_PAIR = "pair"
RULE_SAME_STATION_FREE = "same_station_free"
RULE_SAME_STATION = "same_station"
FULL_PERCENT = 100
"""What a category not in the table pays: the whole base fare."""
MAX_FEN = 1_000_000
"""No single rail fare, surcharge or same-station fare reaches 10,000 yuan: a larger
number is a typing error in the table, not a price."""
MAX_MINUTES = 7 * 24 * 60
MAX_NAME_LENGTH = 100

_STATION_CODE = re.compile(r"[0-9A-Fa-f]{4}")
_CATEGORY = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_NETWORK = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_COMMON_KEYS = frozenset(
    {
        "network",
        "stations",
        "pricing",
        "categories",
        "max_minutes",
        "overtime_fen",
        "same_station_minutes",
        "same_station_fen",
        "reentry_minutes",
    }
)
_PRICING_KEYS = {
    PRICING_DISTANCE: frozenset({"distances", "bands"}),
    PRICING_PAIRS: frozenset({"pairs"}),
}


class FaresError(DocumentError):
    """A fare table the terminal refuses (the whole table; the previous one stays in force),
    or a quote the table cannot give (a pair with no distance or price)."""

    code = "bad_fares"


class UnknownStationError(FaresError):
    """A station code the fare table does not list."""

    code = "unknown_station"


@dataclass(frozen=True)
class Station:
    """One station of the network: ``code`` (4 upper-case hex digits), its name and its
    line (2 hex digits, the first byte of the code)."""

    code: str
    name: str
    line: str


@dataclass(frozen=True)
class FareQuote:
    """What one ride costs, and why. All amounts in fen."""

    base_fen: int
    """The fare before the category: by distance band, by pair, or the same-station fare."""
    category_percent: int
    """The card category's share of the base fare (100 for a category not listed)."""
    fare_fen: int
    """``base_fen`` times ``category_percent`` / 100, rounded half up to the fen."""
    surcharge_fen: int
    """The overtime surcharge (not reduced by the category: it is no fare)."""
    total_fen: int
    """``fare_fen + surcharge_fen``: what the card pays."""
    rule: str
    """``distance``, ``pair``, ``same_station_free`` or ``same_station``."""


def station_code(raw: bytes) -> str:
    """The station code of the two bytes a card's transit record holds (line, station)."""
    if len(raw) != 2:
        raise UnknownStationError(f"a station code is 2 bytes, not {len(raw)}")
    return bytes(raw).hex().upper()


def _pair_key(a: str, b: str) -> tuple[str, str]:
    # Prices are symmetric: one key for both directions, the smaller code first.
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class FareTable:
    """The fare table in force (module doc). Build it with :func:`parse_fare_table`."""

    version: int
    network: str
    pricing: str
    """``distance`` (bands over the km between stations) or ``pairs`` (a price per pair)."""
    stations: Mapping[str, Station]
    """By upper-case code."""
    categories: Mapping[str, int]
    """Category -> percent of the base fare."""
    max_minutes: float
    overtime_fen: int
    same_station_minutes: float
    same_station_fen: int
    reentry_minutes: float
    bands: tuple[tuple[float | None, int], ...]
    """``(up to km inclusive, fen)`` in increasing order, the last ``None`` (beyond); empty
    for ``pairs`` pricing."""
    distances: Mapping[tuple[str, str], float]
    """km by pair (smaller code first); empty for ``pairs`` pricing."""
    base_fares: Mapping[tuple[str, str], int]
    """The base fare in fen by pair (smaller code first), worked out at parse time from the
    bands or given by ``pairs``."""

    def station(self, code: str) -> Station | None:
        """The station of ``code`` (hex, either case), or None if the table does not list it."""
        if not isinstance(code, str):
            return None
        return self.stations.get(code.upper())

    def distance(self, a: str, b: str) -> float | None:
        """km between two stations (``distance`` pricing), or None when not given."""
        return self.distances.get(_pair_key(self._code(a), self._code(b)))

    def category_percent(self, category: str | None) -> int:
        """Percent of the base fare a card of ``category`` pays (100 when not listed)."""
        if category is None:
            return FULL_PERCENT
        return self.categories.get(category, FULL_PERCENT)

    def quote(self, entry: str, exit: str, minutes: float, category: str | None) -> FareQuote:
        """The fare of a ride entered at ``entry``, left at ``exit`` ``minutes`` later.

        The same station both ways is free within ``same_station_minutes`` and
        ``same_station_fen`` after; otherwise the pair's base fare. Then the category's
        percentage (rounded half up) and, beyond ``max_minutes``, the overtime surcharge.
        Raises :class:`UnknownStationError` for a station not listed and
        :class:`FaresError` for a pair the table prices not (or ``minutes`` that is not a
        non-negative number)."""
        entry_code, exit_code = self._code(entry), self._code(exit)
        if isinstance(minutes, bool) or not isinstance(minutes, int | float):
            raise FaresError("minutes must be a number")
        if not math.isfinite(minutes) or minutes < 0:
            raise FaresError("minutes must be a finite non-negative number")
        if entry_code == exit_code:
            if minutes <= self.same_station_minutes:
                base, rule = 0, RULE_SAME_STATION_FREE
            else:
                base, rule = self.same_station_fen, RULE_SAME_STATION
        else:
            found = self.base_fares.get(_pair_key(entry_code, exit_code))
            if found is None:
                what = "distance" if self.pricing == PRICING_DISTANCE else "price"
                raise FaresError(f"the fare table has no {what} for {entry_code}-{exit_code}")
            base = found
            rule = RULE_DISTANCE if self.pricing == PRICING_DISTANCE else RULE_PAIR
        percent = self.category_percent(category)
        # Half up on integers: no binary fraction decides a fen.
        fare = (base * percent + FULL_PERCENT // 2) // FULL_PERCENT
        surcharge = self.overtime_fen if minutes > self.max_minutes else 0
        return FareQuote(base, percent, fare, surcharge, fare + surcharge, rule)

    def reentry_free(self, entered_at: str, entry: str, minutes_since_entry: float) -> bool:
        """Whether entering at ``entry`` again is free: the same station as the last entry
        (``entered_at``), within ``reentry_minutes`` of it."""
        if isinstance(minutes_since_entry, bool) or not isinstance(
            minutes_since_entry, int | float
        ):
            raise FaresError("minutes must be a number")
        return (
            self._code(entered_at) == self._code(entry)
            and 0 <= minutes_since_entry <= self.reentry_minutes
        )

    def _code(self, code: str) -> str:
        station = self.station(code)
        if station is None:
            shown = code[:8] if isinstance(code, str) else type(code).__name__
            raise UnknownStationError(f"station {shown!r} is not in the fare table")
        return station.code


# --- parsing ----------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _fen(value: object, field: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_FEN:
        raise FaresError(f"{field} must be an integer number of fen 0..{MAX_FEN}, not {value!r}")
    return value


def _minutes(value: object, field: str) -> float:
    if not _is_number(value) or not 0 <= value <= MAX_MINUTES:  # type: ignore[operator]
        raise FaresError(f"{field} must be a number of minutes 0..{MAX_MINUTES}, not {value!r}")
    return value  # type: ignore[return-value]


def _stations(value: object) -> dict[str, Station]:
    if not isinstance(value, list) or not value:
        raise FaresError("stations must be a non-empty list")
    stations: dict[str, Station] = {}
    for index, item in enumerate(value):
        where = f"stations[{index}]"
        if not isinstance(item, dict) or set(item) != {"code", "name", "line"}:
            raise FaresError(f"{where} must be an object with code, name and line")
        code, name, line = item["code"], item["name"], item["line"]
        if not isinstance(code, str) or not _STATION_CODE.fullmatch(code):
            raise FaresError(f"{where}.code must be 4 hex digits (line byte, station byte)")
        code = code.upper()
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            raise FaresError(f"{where}.name must be a string of 1-{MAX_NAME_LENGTH} characters")
        if not isinstance(line, str) or line.upper() != code[:2]:
            raise FaresError(f"{where}.line must be the line byte of its code, {code[:2]!r}")
        if code in stations:
            raise FaresError(f"{where}.code: station {code} is listed twice")
        stations[code] = Station(code, name, code[:2])
    return stations


def _pair_entries(
    value: object, field: str, stations: Mapping[str, Station]
) -> list[tuple[tuple[str, str], object]]:
    """``[[a, b, x], ...]`` with known, distinct stations and each pair once (either
    direction): ``((a, b), x)`` with the pair in key order."""
    if not isinstance(value, list) or not value:
        raise FaresError(f"{field} must be a non-empty list")
    seen: set[tuple[str, str]] = set()
    out: list[tuple[tuple[str, str], object]] = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, list) or len(item) != 3:
            raise FaresError(f"{where} must be [station, station, value]")
        a, b, x = item
        codes = []
        for code in (a, b):
            if not isinstance(code, str) or code.upper() not in stations:
                shown = code[:8] if isinstance(code, str) else code
                raise FaresError(f"{where}: station {shown!r} is not in stations")
            codes.append(code.upper())
        if codes[0] == codes[1]:
            raise FaresError(f"{where}: a pair of two different stations")
        key = _pair_key(codes[0], codes[1])
        if key in seen:
            raise FaresError(f"{where}: the pair {key[0]}-{key[1]} is given twice")
        seen.add(key)
        out.append((key, x))
    return out


def _bands(value: object) -> tuple[tuple[float | None, int], ...]:
    if not isinstance(value, list) or not value:
        raise FaresError("bands must be a non-empty list")
    bands: list[tuple[float | None, int]] = []
    last = 0.0
    for index, item in enumerate(value):
        where = f"bands[{index}]"
        if not isinstance(item, list) or len(item) != 2:
            raise FaresError(f"{where} must be [up to km, fen]")
        upto, fen = item
        final = index == len(value) - 1
        if upto is None:
            if not final:
                raise FaresError(f"{where}: only the last band is open-ended (null)")
        elif not _is_number(upto) or upto <= last:
            raise FaresError(f"{where}: km must be a number above the band before ({last:g})")
        else:
            last = float(upto)
        bands.append((upto, _fen(fen, f"{where} fen")))
    if bands[-1][0] is not None:
        raise FaresError("bands: the last band must be null (beyond the others)")
    return tuple(bands)


def _band_fare(bands: tuple[tuple[float | None, int], ...], km: float) -> int:
    for upto, fen in bands:
        if upto is None or km <= upto:
            return fen
    raise AssertionError("the last band is open-ended")  # _bands checked it


def _categories(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise FaresError("categories must be an object")
    out: dict[str, int] = {}
    for name, percent in value.items():
        if not isinstance(name, str) or not _CATEGORY.fullmatch(name):
            shown = name[:40] if isinstance(name, str) else name
            raise FaresError(f"categories: {shown!r} is not a category code")
        if type(percent) is not int or not 0 <= percent <= FULL_PERCENT:
            raise FaresError(f"categories.{name} must be a percent 0..100, not {percent!r}")
        out[name] = percent
    return out


def parse_fare_table(body: Mapping[str, Any]) -> FareTable:
    """The fare table of the body of a ``fares`` document (``kind``, ``version`` and
    ``signature`` may be present: a verified document's body; ``kind`` must then be
    ``fares``). Strict: every field required, nothing unknown, every station of a pair
    listed, each pair once; a refusal is a :class:`FaresError` naming the field."""
    if not isinstance(body, Mapping):
        raise FaresError("a fare table must be an object")
    pricing = body.get("pricing")
    if not isinstance(pricing, str) or pricing not in _PRICING_KEYS:
        raise FaresError(f"pricing must be 'distance' or 'pairs', not {pricing!r}")
    what = f"fare table (pricing {pricing!r})"
    version = check_body_keys(
        body, KIND_FARES, _COMMON_KEYS | _PRICING_KEYS[pricing], FaresError, what
    )
    network = body["network"]
    if not isinstance(network, str) or not _NETWORK.fullmatch(network):
        raise FaresError("network must be a code [a-z0-9_-]{1,64}")
    stations = _stations(body["stations"])
    bands: tuple[tuple[float | None, int], ...] = ()
    distances: dict[tuple[str, str], float] = {}
    fares: dict[tuple[str, str], int] = {}
    if pricing == PRICING_DISTANCE:
        bands = _bands(body["bands"])
        for key, km in _pair_entries(body["distances"], "distances", stations):
            if not _is_number(km) or not 0 < km <= 10_000:  # type: ignore[operator]
                raise FaresError(f"distances {key[0]}-{key[1]}: km must be a number 0..10000")
            distances[key] = float(km)  # type: ignore[arg-type]
            fares[key] = _band_fare(bands, float(km))  # type: ignore[arg-type]
    else:
        for key, fen in _pair_entries(body["pairs"], "pairs", stations):
            fares[key] = _fen(fen, f"pairs {key[0]}-{key[1]} fen")
    return FareTable(
        version=version,
        network=network,
        pricing=pricing,
        stations=MappingProxyType(stations),
        categories=MappingProxyType(_categories(body["categories"])),
        max_minutes=_minutes(body["max_minutes"], "max_minutes"),
        overtime_fen=_fen(body["overtime_fen"], "overtime_fen"),
        same_station_minutes=_minutes(body["same_station_minutes"], "same_station_minutes"),
        same_station_fen=_fen(body["same_station_fen"], "same_station_fen"),
        reentry_minutes=_minutes(body["reentry_minutes"], "reentry_minutes"),
        bands=bands,
        distances=MappingProxyType(distances),
        base_fares=MappingProxyType(fares),
    )
