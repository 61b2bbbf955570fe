"""Good bodies of the documents some terminals use - a rail fare table, a venue's
reservations, a scenic area's passes - shared by the store, back office and sync tests."""

from __future__ import annotations

from typing import Any

from terminal.privacy.cardtoken import card_token
from terminal.venue.reservations import identity_token

TOKEN_KEY = bytes(range(100, 132))
IDENTITY = "11010519491231002X"
CARD = "A01000013"
TOKEN = identity_token(TOKEN_KEY, IDENTITY)
"""The reservation holder's token."""
CARD_TOKEN = card_token(TOKEN_KEY, CARD)[:8]
"""The pass holder's card token (first 8 bytes)."""

FARES: dict[str, Any] = {
    "network": "rail",
    "stations": [
        {"code": "0101", "name": "Xiaoshizi", "line": "01"},
        {"code": "0105", "name": "Jiaochangkou", "line": "01"},
        {"code": "0201", "name": "Yangjiaping", "line": "02"},
    ],
    "pricing": "distance",
    "distances": [["0101", "0105", 7.2], ["0105", "0201", 12], ["0101", "0201", 19.5]],
    "bands": [[6, 200], [11, 300], [17, 400], [None, 500]],
    "categories": {"adult": 100, "student": 50, "elderly": 0, "disabled": 0},
    "max_minutes": 240,
    "overtime_fen": 400,
    "same_station_minutes": 20,
    "same_station_fen": 200,
    "reentry_minutes": 10,
}
SLOTS: list[dict[str, str]] = [
    {"id": "am", "start": "2026-12-06T09:00:00+08:00", "end": "2026-12-06T12:00:00+08:00"},
    {"id": "pm", "start": "2026-12-06T13:00:00+08:00", "end": "2026-12-06T17:00:00+08:00"},
]
RESERVATIONS: dict[str, Any] = {
    "venue": "museum-1",
    "slots": SLOTS,
    "holders": [[TOKEN.hex(), ["am"]], ["00112233445566ff", ["am", "pm"]]],
}
PASSES: dict[str, Any] = {
    "area": "jinfo-mountain",
    "passes": [[CARD_TOKEN.hex(), "annual", "2026-01-01", "2026-12-31", 2]],
}
