"""One gate's view of a venue's occupancy (terminal.venue.occupancy): the arithmetic, the
floor at zero, the stale link, the race between a figure and the gate's own passages, the
passage detail and the strict parser of the back office's answer."""

from __future__ import annotations

import json
import threading

import pytest
from helpers.hostile import DEADLINE, EXAMPLES, LARGE_INPUTS, bounded, hostile_json, total
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.errors import SyncAnswerError, SyncRejectedError, SyncServerError
from terminal.host.clock import FixedClock
from terminal.sync.events import EventOutbox, EventOutboxError
from terminal.venue.occupancy import (
    VENUE_ENTRY,
    VENUE_EXIT,
    Movement,
    Occupancy,
    OccupancyAnswer,
    OccupancyAnswerError,
    OccupancyError,
    VenueEventError,
    fetch_occupancy,
    movement_detail,
    occupancy_path,
    parse_movement,
    parse_occupancy_answer,
)
from terminal.wire.events import TerminalEvent, check_detail

GOOD_ANSWER = {
    "venue": "museum-1",
    "occupancy": 12,
    "maximum": 300,
    "at": 1_800_000_000.5,
    "through_event": 7,
}


def gate(role: str = "both", maximum: int | None = 3, **kw: object) -> tuple[Occupancy, FixedClock]:
    clock = FixedClock()
    return Occupancy("museum-1", maximum, role, clock, gate="east-1", **kw), clock


# --- arithmetic ------------------------------------------------------------------------------


def test_entries_and_exits_move_the_estimate_and_the_maximum_closes_the_gate() -> None:
    occupancy, _ = gate(maximum=2)
    assert occupancy.can_enter() and occupancy.estimate == 0
    assert occupancy.entered("10:00-11:00", 1) == 1
    assert occupancy.entered(None, 2) == 2
    assert not occupancy.can_enter()  # full, please wait
    assert occupancy.snapshot().full
    assert occupancy.exited(3) == 1
    assert occupancy.can_enter()  # reopens as visitors leave


def test_an_exit_never_drives_the_count_below_zero() -> None:
    occupancy, _ = gate()
    assert occupancy.exited(1) == 0  # a card this gate never saw enter
    assert occupancy.exited(2) == 0
    assert occupancy.entered(None, 3) == 1  # the floor holds in order: not -1
    occupancy.report(0, 1.0, 0)
    assert occupancy.estimate == 1  # recomputed from the figure, in order, still floored


def test_no_maximum_never_refuses_and_the_back_office_maximum_overrides() -> None:
    occupancy, _ = gate(maximum=None)
    for i in range(1, 50):
        occupancy.entered(None, i)
    assert occupancy.can_enter()
    occupancy.report(60, 1.0, 49, maximum=60)
    assert occupancy.maximum == 60 and not occupancy.can_enter()
    occupancy.report(60, 2.0, 49, maximum=None)  # cleared at the back office
    assert occupancy.maximum is None and occupancy.can_enter()
    closed, _ = gate(maximum=10)
    closed.report(0, 1.0, 0, maximum=0)  # set-max 0: closed
    assert not closed.can_enter()


def test_roles_are_enforced() -> None:
    entry, _ = gate("entry")
    exit_, _ = gate("exit")
    with pytest.raises(OccupancyError):
        entry.exited()
    with pytest.raises(OccupancyError):
        exit_.entered()
    with pytest.raises(OccupancyError):
        Occupancy("museum-1", 3, "sideways", FixedClock())
    with pytest.raises(OccupancyError):
        Occupancy("museum 1", 3, "entry", FixedClock())
    with pytest.raises(OccupancyError):
        Occupancy("museum-1", -1, "entry", FixedClock())
    with pytest.raises(VenueEventError):
        entry.entered("no spaces allowed")


# --- the shared figure and the race ----------------------------------------------------------


def test_a_figure_replaces_the_shared_value_and_forgets_what_it_counts() -> None:
    occupancy, _ = gate(maximum=100)
    occupancy.entered(None, 1)
    occupancy.entered(None, 2)
    assert occupancy.estimate == 2
    # The back office counted event 1 (and 40 visitors of other gates), not yet event 2.
    assert occupancy.report(41, 1.0, 1) == 42
    snap = occupancy.snapshot()
    assert (snap.shared, snap.estimate, snap.uncounted, snap.link) == (41, 42, 1, "fresh")
    # Event 2 arrives; the next figure counts it: not twice.
    assert occupancy.report(42, 2.0, 2) == 42
    assert occupancy.snapshot().uncounted == 0


def test_a_passage_recorded_after_the_figure_was_computed_is_not_lost() -> None:
    occupancy, _ = gate(maximum=100)
    occupancy.entered(None, 5)
    # The poll's answer was computed before event 5 was stored (through 4) ...
    occupancy.report(10, 1.0, 4)
    assert occupancy.estimate == 11  # ... so event 5 is still counted here
    # ... and an event the figure already counts, reported late by the gate, is not re-added.
    occupancy.report(20, 2.0, 9)
    assert occupancy.entered(None, 8) == 20
    assert occupancy.entered(None, 10) == 21


def test_passages_other_events_interleave_with_are_matched_by_id() -> None:
    occupancy, _ = gate(maximum=100)
    # Ids 1, 3, 6 are passages; 2, 4, 5 were staff calls of the same outbox.
    for event_id in (1, 3, 6):
        occupancy.entered(None, event_id)
    assert occupancy.report(2, 1.0, 5) == 3  # counts 1 and 3, not 6


def test_an_unrecorded_passage_counts_until_the_next_figure_only() -> None:
    occupancy, _ = gate()
    occupancy.entered()  # the outbox refused it: no event id
    assert occupancy.estimate == 1
    assert occupancy.report(0, 1.0, 0) == 0  # the back office will never count it


def test_a_stale_link_keeps_counting_from_the_last_figure() -> None:
    occupancy, clock = gate(maximum=50, stale_seconds=30)
    assert occupancy.link() == "never" and occupancy.snapshot().age is None
    occupancy.report(48, 1.0, 0)
    clock.advance(31)
    assert occupancy.link() == "stale"
    occupancy.entered(None, 1)
    assert occupancy.estimate == 49 and occupancy.can_enter()
    occupancy.entered(None, 2)
    assert not occupancy.can_enter()  # the gate still refuses at the maximum offline
    snap = occupancy.snapshot()
    assert snap.age == pytest.approx(31) and snap.shared == 48 and snap.uncounted == 2
    occupancy.report(30, 2.0, 2)  # back: other gates let 20 out meanwhile
    assert occupancy.link() == "fresh" and occupancy.estimate == 30


def test_an_answer_for_another_venue_is_refused() -> None:
    occupancy, _ = gate()
    with pytest.raises(OccupancyError):
        occupancy.apply(OccupancyAnswer("library-2", 1, None, 1.0, 0))
    assert occupancy.apply(OccupancyAnswer("museum-1", 2, None, 1.0, 0)) == 2


def test_concurrent_passages_and_reports_lose_nothing() -> None:
    occupancy, _ = gate("entry", maximum=None)
    ids = iter(range(1, 10_001))
    lock = threading.Lock()

    def enter() -> None:
        for _ in range(1000):
            with lock:
                event_id = next(ids)
            occupancy.entered(None, event_id)

    threads = [threading.Thread(target=enter) for _ in range(4)]
    for thread in threads:
        thread.start()
    for n in range(50):
        occupancy.report(0, float(n), 0)  # nothing counted at the back office yet
    for thread in threads:
        thread.join()
    assert occupancy.estimate == 4000


def test_record_entry_writes_a_non_personal_event_and_counts_it(tmp_path) -> None:
    occupancy, clock = gate("both", maximum=10)
    with EventOutbox.open(tmp_path / "events.db", "GATE-1", clock) as outbox:
        outbox.add("call_staff")  # id 1: not a passage
        assert occupancy.record_entry(outbox, "10:00-11:00") == 1
        assert occupancy.record_exit(outbox) == 0
        events = outbox.pending()
    assert [(e.id, e.kind) for e in events] == [
        (1, "call_staff"),
        (2, VENUE_ENTRY),
        (3, VENUE_EXIT),
    ]
    assert dict(events[1].detail) == {
        "venue": "museum-1",
        "gate": "east-1",
        "slot": "10:00-11:00",
        "count": 1,
    }
    assert dict(events[2].detail) == {"venue": "museum-1", "gate": "east-1", "count": 1}
    assert occupancy.report(1, 1.0, 2) == 0  # the entry counted there, the exit not yet
    assert occupancy.snapshot().uncounted == 1
    assert occupancy.report(0, 2.0, 3) == 0  # both counted: nothing left here
    assert occupancy.snapshot().uncounted == 0


def test_record_entry_counts_locally_when_the_outbox_refuses() -> None:
    class Refusing:
        def add(self, kind: str, detail: object = None) -> TerminalEvent:
            raise EventOutboxError("disk full")

    occupancy, _ = gate("entry")
    assert occupancy.record_entry(Refusing()) == 1
    exit_gate, _ = gate("exit")
    with pytest.raises(OccupancyError):
        exit_gate.record_entry(Refusing())


# --- the passage detail ------------------------------------------------------------------------


def test_the_detail_is_flat_machine_codes_and_passes_the_event_rules() -> None:
    detail = movement_detail("museum-1", "east-1", "10:00-11:00")
    assert detail == {"venue": "museum-1", "gate": "east-1", "slot": "10:00-11:00", "count": 1}
    assert check_detail(detail) == detail
    assert movement_detail("museum-1", "east-1") == {
        "venue": "museum-1",
        "gate": "east-1",
        "count": 1,
    }
    assert parse_movement(VENUE_EXIT, detail) == Movement(
        VENUE_EXIT, "museum-1", "east-1", "10:00-11:00", 1
    )
    assert parse_movement(VENUE_EXIT, detail).delta == -1


@pytest.mark.parametrize(
    "kind, detail",
    [
        ("call_staff", {"venue": "v", "gate": "g", "count": 1}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g"}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g", "count": 1, "card_token": "00"}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g", "count": 0}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g", "count": True}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g", "count": 101}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g", "count": 1.0}),
        (VENUE_ENTRY, {"venue": "a b", "gate": "g", "count": 1}),
        (VENUE_ENTRY, {"venue": "v", "gate": "", "count": 1}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g", "slot": None, "count": 1}),
        (VENUE_ENTRY, {"venue": "v", "gate": "g", "slot": "x" * 65, "count": 1}),
        (VENUE_ENTRY, ["venue"]),
    ],
)
def test_bad_details_are_refused(kind: str, detail: object) -> None:
    with pytest.raises(VenueEventError):
        parse_movement(kind, detail)


# --- the back office's answer -----------------------------------------------------------------


def body(**changes: object) -> bytes:
    obj = {**GOOD_ANSWER, **changes}
    return json.dumps({k: v for k, v in obj.items() if v != "DROP"}).encode()


def test_the_answer_parses() -> None:
    answer = parse_occupancy_answer(body(), "museum-1")
    assert answer == OccupancyAnswer("museum-1", 12, 300, 1_800_000_000.5, 7)
    assert parse_occupancy_answer(json.dumps(answer.to_json()).encode()) == answer
    assert parse_occupancy_answer(body(maximum=None, at=5)).maximum is None
    assert occupancy_path("museum:1") == "/v1/occupancy?venue=museum%3A1"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b"not json",
        body(venue="museum-2"),
        body(venue="a b"),
        body(occupancy=-1),
        body(occupancy=1.5),
        body(occupancy=True),
        body(occupancy=2**63),
        body(maximum=-1),
        body(maximum="300"),
        body(at="now"),
        body(at=-1),
        body(at=1e16),
        body(through_event=None),
        body(through_event="DROP"),
        body(extra=1),
        b'{"venue":"museum-1","occupancy":1e400,"maximum":null,"at":1,"through_event":0}',
        b'{"venue":"museum-1","venue":"museum-1","occupancy":1,"maximum":null,"at":1,'
        b'"through_event":0}',
    ],
)
def test_bad_answers_are_refused(raw: bytes) -> None:
    with pytest.raises(OccupancyAnswerError) as info:
        parse_occupancy_answer(raw, "museum-1")
    assert isinstance(info.value, SyncAnswerError)  # the poller backs off as on any sync error


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(raw=hostile_json(GOOD_ANSWER))
def test_hostile_answers_give_the_answer_or_its_typed_error(raw: bytes) -> None:
    total(parse_occupancy_answer, raw, OccupancyAnswerError)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(
    detail=st.dictionaries(
        st.sampled_from(["venue", "gate", "slot", "count", "name"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=70) | st.floats(),
        max_size=5,
    ),
    kind=st.sampled_from([VENUE_ENTRY, VENUE_EXIT, "call_staff"]),
)
def test_any_detail_gives_a_movement_or_its_typed_error(detail: dict, kind: str) -> None:
    movement = total(lambda d: parse_movement(kind, d), detail, VenueEventError)
    if movement is not None:
        assert check_detail(movement.detail()) == detail  # a movement round-trips exactly


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_hostile_answers_are_refused_within_bounds(name: str) -> None:
    bounded(lambda: total(parse_occupancy_answer, LARGE_INPUTS[name], OccupancyAnswerError))


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("in"), st.booleans()),
            st.tuples(st.just("out"), st.booleans()),
            st.tuples(st.just("report"), st.integers(0, 50)),
        ),
        max_size=40,
    )
)
def test_the_estimate_is_never_negative_and_matches_a_model(steps: list) -> None:
    occupancy, _ = gate("both", maximum=None)
    next_id, shared, through, uncounted = 1, 0, 0, []
    for step, arg in steps:
        if step == "report":
            # The back office counted some prefix of the passages so far.
            through = max(through, min(arg, next_id - 1))
            shared = arg
            occupancy.report(shared, 1.0, through)
            uncounted = [(i, d) for i, d in uncounted if i is None or i > through]
            uncounted = [(i, d) for i, d in uncounted if i is not None]
        else:
            event_id = next_id if arg else None
            next_id += 1 if arg else 0
            delta = 1 if step == "in" else -1
            (occupancy.entered if delta > 0 else occupancy.exited)(event_id=event_id)
            uncounted.append((event_id, delta))
        model = shared
        for _, delta in uncounted:
            model = max(0, model + delta)
        assert occupancy.estimate == model >= 0


# --- the poll --------------------------------------------------------------------------------


class FakeClient:
    def __init__(self, status: int, answer: bytes) -> None:
        self.status, self.answer, self.paths = status, answer, []

    def get(self, path: str) -> tuple[int, bytes]:
        self.paths.append(path)
        return self.status, self.answer


def test_fetch_occupancy_asks_and_parses() -> None:
    client = FakeClient(200, body())
    assert fetch_occupancy(client, "museum-1").occupancy == 12  # type: ignore[arg-type]
    assert client.paths == ["/v1/occupancy?venue=museum-1"]
    with pytest.raises(SyncRejectedError):
        fetch_occupancy(FakeClient(401, b'{"error":"unauthenticated","reason":"x"}'), "museum-1")  # type: ignore[arg-type]
    with pytest.raises(SyncServerError):
        fetch_occupancy(FakeClient(500, b"{}"), "museum-1")  # type: ignore[arg-type]
    with pytest.raises(OccupancyAnswerError):
        fetch_occupancy(FakeClient(200, body(venue="other")), "museum-1")  # type: ignore[arg-type]
