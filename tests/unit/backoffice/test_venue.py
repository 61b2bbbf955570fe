"""Venue occupancy at the back office (backoffice.venue): the pure arithmetic, the running
counters kept as events are stored (SQLite and PostgreSQL), ``GET /v1/occupancy`` through
the request handler, and ``onecard backoffice venue``."""

from __future__ import annotations

import json

import pytest
from helpers.backoffice_storage import KINDS, storage_for

from backoffice.errors import BadRequestError
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from backoffice.venue import (
    DayCount,
    apply_movements,
    day_of,
    group_movements,
    parse_venue_query,
)
from onecard.cli import main as onecard
from terminal.host.clock import FixedClock
from terminal.venue.occupancy import (
    VENUE_ENTRY,
    VENUE_EXIT,
    Movement,
    movement_detail,
    parse_occupancy_answer,
)
from terminal.wire.events import TerminalEvent
from terminal.wire.requests import request_headers

SECRET = bytes(range(32))
NOW = 1_800_000_000.0  # 2027-01-15 16:00 China Standard Time
DAY = day_of(NOW)
ENTRY_GATE, EXIT_GATE = "GATE-IN", "GATE-OUT"


def entry(slot: str | None = None, venue: str = "museum-1") -> Movement:
    return Movement(VENUE_ENTRY, venue, "east", slot)


def leave(venue: str = "museum-1") -> Movement:
    return Movement(VENUE_EXIT, venue, "west", None)


def events(
    *kinds_slots: tuple[str, str | None], first: int = 1, at: float = NOW, venue: str = "museum-1"
):
    return [
        TerminalEvent(first + i, kind, at, movement_detail(venue, "g1", slot))
        for i, (kind, slot) in enumerate(kinds_slots)
    ]


IN, OUT = (VENUE_ENTRY, None), (VENUE_EXIT, None)


# --- pure ------------------------------------------------------------------------------------


def test_exits_never_take_a_day_below_zero_in_order_of_arrival() -> None:
    assert apply_movements(DayCount(), [leave(), entry(), entry(), leave()]) == DayCount(
        occupancy=1, entries=2, exits=2, unmatched_exits=1
    )
    assert apply_movements(DayCount(3, 3, 0, 0), [leave()] * 5) == DayCount(0, 3, 5, 2)
    group = Movement(VENUE_ENTRY, "m", "g", None, 4)
    assert apply_movements(DayCount(), [group, Movement(VENUE_EXIT, "m", "g", None, 6)]) == (
        DayCount(0, 4, 6, 2)
    )


def test_grouping_by_venue_and_china_day_skips_what_is_not_a_passage() -> None:
    late = NOW - 17 * 3600  # the day before, China Standard Time
    batch = [
        TerminalEvent(1, VENUE_ENTRY, NOW, movement_detail("museum-1", "g", "10:00-11:00")),
        TerminalEvent(2, "call_staff", NOW, {"lane": 1}),
        TerminalEvent(3, VENUE_ENTRY, late, movement_detail("museum-1", "g")),
        TerminalEvent(4, VENUE_EXIT, NOW, movement_detail("library-2", "g")),
        TerminalEvent(5, VENUE_ENTRY, NOW, {"venue": "museum-1", "gate": "g"}),  # no count
    ]
    groups = group_movements("T1", batch)
    assert sorted(groups) == [("library-2", DAY), ("museum-1", day_of(late)), ("museum-1", DAY)]
    assert day_of(late) != DAY
    assert groups[("museum-1", DAY)] == [Movement(VENUE_ENTRY, "museum-1", "g", "10:00-11:00")]
    assert groups[("library-2", DAY)] == [Movement(VENUE_EXIT, "library-2", "g", None)]


@pytest.mark.parametrize(
    "query", ["", "venue=", "venue=a b", "venue=a&venue=b", "place=a", "venue=a&x=1", "venue"]
)
def test_the_query_is_one_venue(query: str) -> None:
    with pytest.raises(BadRequestError):
        parse_venue_query(query)
    assert parse_venue_query("venue=museum%3A1") == "museum:1"


# --- storage ---------------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def storage(request, tmp_path):
    with storage_for(request.param, tmp_path) as store:
        for terminal in (ENTRY_GATE, EXIT_GATE):
            store.enrol(terminal, SECRET, NOW - 100)
        yield store


def test_stored_events_move_the_counters_once(storage) -> None:
    storage.store_events(ENTRY_GATE, events(IN, ("venue_entry", "10:00-11:00"), IN), NOW)
    storage.store_events(EXIT_GATE, events(OUT), NOW)
    assert storage.venue_occupancy("museum-1", DAY, ENTRY_GATE) == (2, None, 3)
    assert storage.venue_occupancy("museum-1", DAY, EXIT_GATE) == (2, None, 1)
    # The same batch again (a lost answer): stored once, counted once.
    result = storage.store_events(ENTRY_GATE, events(IN, ("venue_entry", "10:00-11:00"), IN), NOW)
    assert result.stored == 0
    assert storage.venue_occupancy("museum-1", DAY, ENTRY_GATE)[0] == 2
    [day] = storage.venue_days(DAY)
    assert (day.venue, day.count, day.slots) == (
        "museum-1",
        DayCount(2, 3, 1, 0),
        {"": 2, "10:00-11:00": 1},
    )
    assert day.to_json()["slots"] == {"10:00-11:00": 1}
    assert day.to_json()["entries_without_slot"] == 2


def test_an_exit_without_entry_leaves_zero_and_the_next_entry_counts(storage) -> None:
    storage.store_events(EXIT_GATE, events(OUT, OUT), NOW)
    assert storage.venue_occupancy("museum-1", DAY, EXIT_GATE) == (0, None, 2)
    storage.store_events(ENTRY_GATE, events(IN), NOW)
    assert storage.venue_occupancy("museum-1", DAY, EXIT_GATE)[0] == 1
    [day] = storage.venue_days(DAY)
    assert day.count == DayCount(1, 1, 2, 2)


def test_days_and_venues_are_apart_and_bad_details_are_stored_not_counted(storage) -> None:
    yesterday = NOW - 86_400
    storage.store_events(ENTRY_GATE, events(IN, IN, at=yesterday), NOW)
    storage.store_events(ENTRY_GATE, events(IN, first=3, venue="library-2"), NOW)
    bad = TerminalEvent(4, VENUE_ENTRY, NOW, {"venue": "museum-1", "gate": "g", "count": 0})
    assert storage.store_events(ENTRY_GATE, [bad], NOW).stored == 1
    assert storage.venue_occupancy("museum-1", DAY, ENTRY_GATE) == (0, None, 4)
    assert storage.venue_occupancy("museum-1", day_of(yesterday), ENTRY_GATE)[0] == 2
    assert [(d.venue, d.count.occupancy) for d in storage.venue_days(DAY)] == [("library-2", 1)]


def test_maximum_is_set_cleared_and_listed(storage) -> None:
    storage.set_venue_maximum("museum-1", 2, NOW)
    storage.set_venue_maximum("museum-1", 3, NOW)
    storage.set_venue_maximum("hall", 0, NOW)
    assert storage.venue_occupancy("museum-1", DAY, ENTRY_GATE) == (0, 3, 0)
    storage.store_events(ENTRY_GATE, events(IN, IN, IN), NOW)
    days = {d.venue: d for d in storage.venue_days(DAY)}
    assert days["museum-1"].full and days["hall"].full and days["hall"].count == DayCount()
    storage.set_venue_maximum("museum-1", None, NOW)
    assert storage.venue_occupancy("museum-1", DAY, ENTRY_GATE)[1] is None


# --- the route -------------------------------------------------------------------------------


def ask(office: BackOffice, terminal: str, target: str, method: str = "GET", body: bytes = b""):
    headers = request_headers(terminal, SECRET, method, target, body, NOW)
    return office.handle(method, target, headers, body)


def test_the_route_answers_the_count_for_the_asking_gate(storage) -> None:
    office = BackOffice(storage, generate_publication_key(), FixedClock(NOW))
    storage.set_venue_maximum("museum-1", 2, NOW)
    storage.store_events(ENTRY_GATE, events(IN, IN), NOW)
    response = ask(office, EXIT_GATE, "/v1/occupancy?venue=museum-1")
    assert response.status == 200
    answer = parse_occupancy_answer(response.payload(), "museum-1")
    assert (answer.occupancy, answer.maximum, answer.at, answer.through_event) == (2, 2, NOW, 0)
    answer = parse_occupancy_answer(
        ask(office, ENTRY_GATE, "/v1/occupancy?venue=museum-1").payload()
    )
    assert answer.through_event == 2
    unknown = ask(office, ENTRY_GATE, "/v1/occupancy?venue=nowhere")
    assert (
        json.loads(bytes(unknown.payload()))["occupancy"] == 0
    )  # a venue before its first visitor

    for target, status in [
        ("/v1/occupancy", 400),
        ("/v1/occupancy?venue=a%20b", 400),
        ("/v1/occupancy?venue=a&venue=b", 400),
    ]:
        assert ask(office, ENTRY_GATE, target).status == status
    assert ask(office, ENTRY_GATE, "/v1/occupancy?venue=m", "POST").status == 405
    assert ask(office, ENTRY_GATE, "/v1/occupancy?venue=m", "GET", b"x").status == 413
    unsigned = office.handle("GET", "/v1/occupancy?venue=m", {}, b"")
    assert unsigned.status == 401


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_lists_and_sets_maximum(tmp_path, capsys) -> None:
    path = str(tmp_path / "bo.sqlite")
    with storage_for("sqlite", tmp_path) as store:
        store.enrol(ENTRY_GATE, SECRET, NOW)
        store.store_events(ENTRY_GATE, events(IN, ("venue_entry", "10:00-11:00"), OUT), NOW)
    storage = ["--storage", path]
    assert onecard(["backoffice", "venue", "set-max", *storage, "--venue", "museum-1", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"venue": "museum-1", "maximum": 1}
    assert onecard(["backoffice", "venue", *storage, "--date", DAY, "--json"]) == 0
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line == {
        "venue": "museum-1",
        "day": DAY,
        "occupancy": 1,
        "maximum": 1,
        "full": True,
        "entries": 2,
        "exits": 1,
        "unmatched_exits": 0,
        "slots": {"10:00-11:00": 1},
        "entries_without_slot": 1,
    }
    assert onecard(["backoffice", "venue", *storage, "--date", DAY]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "VENUE",
        "OCCUPANCY",
        "MAXIMUM",
        "ENTRIES",
        "EXITS",
        "UNMATCHED",
        "SLOTS",
    ]
    assert table[1].split() == ["museum-1", "!1", "1", "2", "1", "0", "10:00-11:00=1", "none=1"]
    assert table[2] == f"1 venues on {DAY} (China Standard Time), 1 full"
    assert onecard(["backoffice", "venue", "set-max", *storage, "--venue", "museum-1"]) == 1
    assert "occupancy_error" in capsys.readouterr().err
    assert (
        onecard(["backoffice", "venue", "set-max", *storage, "--venue", "museum-1", "--clear"]) == 0
    )
    capsys.readouterr()
    assert onecard(["backoffice", "venue", *storage, "--date", "2000-01-01", "--json"]) == 0
    assert capsys.readouterr().out == ""
