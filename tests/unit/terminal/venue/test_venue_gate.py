"""The venue's part of a gate decision (terminal.venue.gate): the library's ILS standing
and its fallback both ways, the museum's reservation counted once (and rebuilt from the
journal), capacity closing and reopening, the scenic pass's validity and daily limit, exit
gates, and no personal data in any verdict. One test runs the library rule over TCP
against pysip2's SIP2 server (tests/helpers/sip2_ils.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from helpers.sip2_ils import INSTITUTION, PASSWORD, USER, Patron, TestIls

from terminal.errors import ConfigError, OneCardError
from terminal.host.clock import CST, FixedClock
from terminal.journal.entry import check_extra
from terminal.privacy.cardtoken import card_token
from terminal.venue.gate import (
    VENUE_MESSAGES,
    VenueGate,
    VenueGateError,
    VenueVerdict,
    admissions_on,
)
from terminal.venue.ils import IlsClient, IlsStatus, IlsTimeoutError, IlsUnavailableError
from terminal.venue.occupancy import VENUE_ENTRY, VENUE_EXIT, Occupancy
from terminal.venue.passes import Passes, parse_passes
from terminal.venue.reservations import Reservations, identity_token, parse_reservations
from terminal.venue.settings import VenueSettings, parse_venue_settings
from terminal.venue.sip2 import PatronFlag, PatronStanding
from terminal.wire.events import TerminalEvent

KEY = bytes(range(32))
CARD_NUMBER = "A01000013"
CARD = card_token(KEY, CARD_NUMBER)
OTHER_NUMBER = "B02000020"
OTHER = card_token(KEY, OTHER_NUMBER)
ID_NUMBER = "11010519491231002X"
BOB_ID = "110105194912310029"
STRANGER_ID = "440105199001010011"
ALICE_TOKEN = identity_token(KEY, ID_NUMBER)
NOW = dt.datetime(2026, 12, 6, 10, 0, tzinfo=CST)

RESERVATIONS = {
    "venue": "museum-1",
    "slots": [
        {"id": "am", "start": "2026-12-06T09:00:00+08:00", "end": "2026-12-06T12:00:00+08:00"},
        {"id": "pm", "start": "2026-12-06T13:00:00+08:00", "end": "2026-12-06T17:00:00+08:00"},
    ],
    "holders": [[ALICE_TOKEN.hex(), ["am"]], [identity_token(KEY, BOB_ID).hex(), ["am", "pm"]]],
}
PASSES = {
    "area": "jinfo-mountain",
    "passes": [
        [CARD[:8].hex(), "annual", "2026-01-01", "2026-12-31", 2],
        [OTHER[:8].hex(), "senior", "2025-01-01", "2025-12-31", 1],
        [card_token(KEY, "C03000037")[:8].hex(), "annual", "2027-01-01", "2027-12-31", 1],
    ],
}
ILS = {"host": "127.0.0.1", "port": 6001, "user": USER, "password": PASSWORD}


# --- fakes ------------------------------------------------------------------------------------


class FakeIls:
    """An ILS link that answers from a dict by patron id, or fails as told."""

    def __init__(self, patrons: Mapping[str, PatronStanding] | None = None) -> None:
        self.patrons = dict(patrons or {})
        self.asked: list[str] = []
        self.error: BaseException | None = None

    @property
    def up(self) -> bool:
        return self.error is None

    def patron_standing(self, patron_id: str) -> PatronStanding:
        self.asked.append(patron_id)
        if self.error is not None:
            raise self.error
        return self.patrons.get(patron_id, PatronStanding(valid_patron=False))

    def status(self) -> IlsStatus:
        return IlsStatus(self.up, len(self.asked), 0, 1, 0, None, None)


class FakeOutbox:
    """The event outbox's ``add``: events in a list, ids 1, 2, 3..."""

    def __init__(self, clock: FixedClock, fail: BaseException | None = None) -> None:
        self.events: list[TerminalEvent] = []
        self.clock = clock
        self.fail = fail

    def add(self, kind: str, detail: Mapping[str, object] | None = None) -> TerminalEvent:
        if self.fail is not None:
            raise self.fail
        event = TerminalEvent(len(self.events) + 1, kind, self.clock.now(), dict(detail or {}))
        self.events.append(event)
        return event


def clock_at(when: dt.datetime = NOW) -> FixedClock:
    return FixedClock(when.timestamp())


def venue(kind: str, venue_id: str, **table: Any) -> VenueSettings:
    settings = parse_venue_settings({"kind": kind, "id": venue_id, **table}, "test")
    assert settings is not None
    return settings


def library(ils: Any = None, link: Any = None, **ils_table: Any) -> VenueGate:
    settings = venue("library", "city-library", ils={**ILS, **ils_table})
    return VenueGate(settings, clock=clock_at(), ils=ils, token_key=KEY, ils_link=link)


def museum(
    reservations: Reservations | None = None,
    occupancy: Occupancy | None = None,
    outbox: FakeOutbox | None = None,
    clock: FixedClock | None = None,
    **table: Any,
) -> VenueGate:
    document = parse_reservations(RESERVATIONS) if reservations is None else reservations
    return VenueGate(
        venue("museum", "museum-1", **table),
        clock=clock or clock_at(),
        reservations=lambda: document,
        occupancy=occupancy,
        outbox=outbox,
        token_key=KEY,
    )


def scenic(passes: Passes | None = None, **kwargs: Any) -> VenueGate:
    document = parse_passes(PASSES) if passes is None else passes
    return VenueGate(
        venue("scenic", "jinfo-mountain"),
        clock=clock_at(),
        passes=lambda: document,
        token_key=KEY,
        **kwargs,
    )


def entry(verdict: VenueVerdict, when: dt.datetime = NOW, decision: str = "accept") -> Any:
    """A journal entry as the gate profile would write it (the verdict's extra)."""
    return SimpleNamespace(decision=decision, time=when.timestamp(), extra=dict(verdict.extra))


# --- library ----------------------------------------------------------------------------------


def test_library_admits_a_patron_in_good_standing() -> None:
    ils = FakeIls({CARD_NUMBER: PatronStanding(valid_patron=True)})
    gate = library(ils)
    verdict = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert verdict == VenueVerdict(
        True,
        "patron_ok",
        *VENUE_MESSAGES["patron_ok"],
        {"venue": "city-library", "ils": "patron_ok"},
    )
    assert ils.asked == [CARD_NUMBER]
    assert not gate.needs_identity_number


def test_library_refuses_a_blocked_patron_with_the_policys_message() -> None:
    overdue = PatronStanding(True, frozenset({PatronFlag.too_many_items_overdue}))
    verdict = library(FakeIls({CARD_NUMBER: overdue})).check(CARD, CARD_NUMBER, None, NOW)
    assert not verdict.admit
    assert verdict.reason == "patron_blocked:too_many_items_overdue"
    assert verdict.message_zh == "有逾期未还图书，请先归还"
    assert verdict.message_en == VENUE_MESSAGES["patron_blocked"][1]
    assert verdict.extra["ils"] == "patron_blocked:too_many_items_overdue"


def test_library_warns_and_admits() -> None:
    recall = PatronStanding(True, frozenset({PatronFlag.recall_overdue}))
    verdict = library(FakeIls({CARD_NUMBER: recall})).check(CARD, CARD_NUMBER, None, NOW)
    assert verdict.admit and verdict.reason == "patron_warned:recall_overdue"
    assert verdict.message_zh == "有被召回的图书已逾期，请尽快归还"


def test_library_not_a_patron_admitted_to_read_or_refused() -> None:
    admitted = library(FakeIls()).check(CARD, CARD_NUMBER, None, NOW)
    assert admitted.admit and admitted.reason == "not_a_patron"
    assert admitted.extra["ils"] == "not_a_patron"
    assert admitted.message_en == VENUE_MESSAGES["not_a_patron"][1]
    refused = library(FakeIls(), not_a_patron="refuse").check(CARD, CARD_NUMBER, None, NOW)
    assert not refused.admit and refused.reason == "not_a_patron"
    assert refused.message_en == VENUE_MESSAGES["not_a_patron_refused"][1]


def test_library_patron_identifier_kinds() -> None:
    ils = FakeIls({ID_NUMBER: PatronStanding(True)})
    gate = library(ils, patron_id="social_security_number")
    assert gate.needs_identity_number
    assert gate.check(CARD, CARD_NUMBER, ID_NUMBER, NOW).reason == "patron_ok"
    token = card_token(KEY, CARD_NUMBER)[:8].hex()
    ils = FakeIls({token: PatronStanding(True)})
    assert library(ils, patron_id="token").check(CARD, CARD_NUMBER, None, NOW).admit
    assert ils.asked == [token]


def test_library_without_the_patron_identifier_does_not_ask_the_ils() -> None:
    ils = FakeIls()
    gate = library(ils, patron_id="social_security_number", not_a_patron="refuse")
    verdict = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert not verdict.admit and verdict.reason == "not_a_patron"
    assert verdict.extra["ils"] == "no_patron_id" and ils.asked == []
    # A number the ILS could not be sent (a "|" would cut the SIP2 field) is the same.
    assert library(ils).check(CARD, "A0|000013", None, NOW).extra["ils"] == "no_patron_id"
    assert ils.asked == []


@pytest.mark.parametrize(
    "error",
    [IlsUnavailableError("down", retry_in=2.0), IlsTimeoutError("slow"), RuntimeError("bug")],
)
def test_library_fallback_admit(error: BaseException) -> None:
    ils = FakeIls({CARD_NUMBER: PatronStanding(True)})
    ils.error = error
    reports: list[tuple[bool, str]] = []
    gate = library(ils, link=lambda up, reason: reports.append((up, reason)))
    verdict = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert verdict.admit and verdict.reason == "ils_unreachable"
    assert (verdict.message_zh, verdict.message_en) == ("请进", "Please enter")
    assert verdict.extra == {"venue": "city-library", "ils": "ils_unreachable"}
    assert reports and reports[-1][0] is False
    ils.error = None
    assert gate.check(CARD, CARD_NUMBER, None, NOW).reason == "patron_ok"
    assert reports[-1] == (True, "")


def test_library_fallback_refuse_with_its_message() -> None:
    ils = FakeIls()
    ils.error = IlsUnavailableError("refused")
    gate = library(ils, fallback="refuse", fallback_message="系统维护中，请到服务台")
    verdict = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert not verdict.admit and verdict.reason == "ils_unreachable"
    assert verdict.message_zh == "系统维护中，请到服务台"
    assert verdict.message_en == VENUE_MESSAGES["ils_unreachable_refused"][1]


def test_library_without_an_ils_link_falls_back() -> None:
    assert library(None).check(CARD, CARD_NUMBER, None, NOW).reason == "ils_unreachable"
    assert not library(None, fallback="refuse").check(CARD, CARD_NUMBER, None, NOW).admit


def test_library_status() -> None:
    ils = FakeIls({CARD_NUMBER: PatronStanding(True)})
    gate = library(ils)
    gate.check(CARD, CARD_NUMBER, None, NOW)
    status = gate.status()
    assert status["venue"] == "city-library" and status["kind"] == "library"
    assert status["occupancy"] is None
    assert status["ils"] == dataclasses.asdict(ils.status())


def test_library_end_to_end_over_sip2() -> None:
    """The library rule against pysip2's SIP2 server on the loopback: a patron, a blocked
    patron, a stranger, then the ILS gone and the fallback - all well within a second."""
    started = time.monotonic()
    patrons = {
        CARD_NUMBER: Patron(fines="0.00"),
        OTHER_NUMBER: Patron(flags=frozenset({"card_reported_lost"})),
    }
    with TestIls(patrons) as server:
        settings = venue(
            "library",
            "city-library",
            ils={
                **ILS,
                "port": server.port,
                "institution": INSTITUTION,
                "timeout_seconds": 0.5,
            },
        )
        assert settings.ils is not None
        client = IlsClient(settings.ils)
        try:
            gate = VenueGate(settings, clock=clock_at(), ils=client, token_key=KEY)
            assert gate.check(CARD, CARD_NUMBER, None, NOW).reason == "patron_ok"
            lost = gate.check(OTHER, OTHER_NUMBER, None, NOW)
            assert not lost.admit and lost.reason == "patron_blocked:card_reported_lost"
            stranger = gate.check(CARD, "Z09999999", None, NOW)
            assert stranger.admit and stranger.reason == "not_a_patron"
            assert server.counters.logins == 1 and server.counters.patron_requests == 3
            server.stop()
            down = gate.check(CARD, CARD_NUMBER, None, NOW)
            assert down.admit and down.reason == "ils_unreachable"
            assert gate.status()["ils"]["failures"] >= 1  # type: ignore[index]
        finally:
            client.close()
    assert time.monotonic() - started < 1.0


# --- museum -----------------------------------------------------------------------------------


def test_museum_admits_a_reservation_for_this_time() -> None:
    gate = museum()
    assert gate.needs_identity_number
    verdict = gate.check(CARD, CARD_NUMBER, ID_NUMBER, NOW)
    assert verdict.admit and verdict.reason == "reservation_ok" and verdict.slot == "am"
    assert verdict.extra == {"venue": "museum-1", "slot": "am", "venue_token": ALICE_TOKEN.hex()}
    # The check-digit X may be read lower case, with spaces: the same token.
    assert gate.check(CARD, None, " 11010519491231002x ", NOW).admit


def test_museum_grace_and_the_end_of_the_slot() -> None:
    gate = museum(grace_minutes=15)
    early = dt.datetime(2026, 12, 6, 8, 45, tzinfo=CST)
    assert gate.check(CARD, None, ID_NUMBER, early).admit
    assert gate.check(CARD, None, ID_NUMBER, early - dt.timedelta(seconds=1)).reason == (
        "no_reservation"
    )
    late = dt.datetime(2026, 12, 6, 12, 0, 1, tzinfo=CST)
    verdict = gate.check(CARD, None, ID_NUMBER, late)
    assert not verdict.admit and verdict.reason == "no_reservation"
    assert (verdict.message_zh, verdict.message_en) == VENUE_MESSAGES["no_reservation"]
    # Another holder's afternoon slot, at 13:30.
    afternoon = dt.datetime(2026, 12, 6, 13, 30, tzinfo=CST)
    assert gate.check(CARD, None, BOB_ID, afternoon).slot == "pm"


def test_museum_refusals() -> None:
    assert museum().check(CARD, None, STRANGER_ID, NOW).reason == "no_reservation"
    assert museum().check(CARD, None, None, NOW).reason == "identity_unreadable"
    assert museum().check(CARD, None, "   ", NOW).reason == "identity_unreadable"
    none = VenueGate(venue("museum", "museum-1"), clock=clock_at(), token_key=KEY)
    verdict = none.check(CARD, None, ID_NUMBER, NOW)
    assert not verdict.admit and verdict.reason == "no_reservations"


def test_museum_does_not_use_another_venues_reservations(caplog: Any) -> None:
    other = parse_reservations({**RESERVATIONS, "venue": "museum-2"})
    gate = museum(other)
    with caplog.at_level(logging.WARNING):
        assert gate.check(CARD, None, ID_NUMBER, NOW).reason == "no_reservations"
        assert gate.check(CARD, None, ID_NUMBER, NOW).reason == "no_reservations"
    assert sum("museum-2" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_a_reservation_is_counted_once() -> None:
    gate = museum()
    first = gate.check(CARD, None, ID_NUMBER, NOW)
    # Checked but not journaled (refused later, or the journal failed): still unused.
    assert gate.check(CARD, None, ID_NUMBER, NOW).admit
    gate.admitted(first, NOW)
    again = gate.check(CARD, None, ID_NUMBER, NOW + dt.timedelta(minutes=5))
    assert not again.admit and again.reason == "reservation_used"
    assert again.extra == {"venue": "museum-1", "slot": "am"}
    # Bob's reservation of the same slot is his own.
    assert gate.check(CARD, None, BOB_ID, NOW).admit
    # A refusal passed to admitted() marks nothing.
    gate.admitted(gate.check(CARD, None, BOB_ID, NOW + dt.timedelta(hours=8)), NOW)
    assert gate.check(CARD, None, BOB_ID, NOW).admit


def test_used_reservations_are_restored_from_the_journal() -> None:
    first = museum().check(CARD, None, ID_NUMBER, NOW)
    bob = museum().check(CARD, None, BOB_ID, NOW)
    yesterday = NOW - dt.timedelta(days=1)
    journal = [
        entry(first),
        entry(bob, decision="refuse"),  # refused: the reservation stays unused
        entry(bob, when=yesterday),  # another day
        SimpleNamespace(decision="accept", time=NOW.timestamp(), extra={"venue": "museum-1"}),
        SimpleNamespace(decision="accept", time=NOW.timestamp(), extra={"venue_token": "zz"}),
        SimpleNamespace(decision="accept", time="noon", extra=dict(bob.extra)),
        SimpleNamespace(decision="accept", time=NOW.timestamp(), extra="garbage"),
        object(),
    ]
    gate = museum()
    assert gate.restore(journal, NOW) == 1
    assert gate.check(CARD, None, ID_NUMBER, NOW).reason == "reservation_used"
    assert gate.check(CARD, None, BOB_ID, NOW).admit
    # Another venue's entries are not this one's.
    elsewhere = VenueGate(venue("museum", "museum-2"), clock=clock_at(), token_key=KEY)
    assert elsewhere.restore(journal, NOW) == 0


def test_museum_full_then_open_again_after_an_exit() -> None:
    clock = clock_at()
    outbox = FakeOutbox(clock)
    inside = Occupancy("museum-1", 1, "entry", clock, gate="east-1")
    gate = museum(occupancy=inside, outbox=outbox, clock=clock, maximum=1)
    alice = gate.check(CARD, None, ID_NUMBER, NOW)
    assert alice.admit
    gate.admitted(alice, NOW)
    assert [(e.kind, dict(e.detail)) for e in outbox.events] == [
        (VENUE_ENTRY, {"venue": "museum-1", "gate": "east-1", "slot": "am", "count": 1})
    ]
    full = gate.check(CARD, None, BOB_ID, NOW)
    assert not full.admit and full.reason == "venue_full"
    assert (full.message_zh, full.message_en) == ("馆内人数已满，请稍候", "Full - please wait")
    assert full.extra == {"venue": "museum-1", "slot": "am"}  # no token: nothing is used
    # A used reservation is told so, not "wait".
    assert gate.check(CARD, None, ID_NUMBER, NOW).reason == "reservation_used"

    # Alice leaves through the exit gate, which counts her out whatever her card.
    exit_clock = clock_at()
    exit_outbox = FakeOutbox(exit_clock)
    out = Occupancy("museum-1", 1, "exit", exit_clock, gate="west-1")
    exit_gate = VenueGate(
        venue("museum", "museum-1", role="exit", maximum=1),
        clock=exit_clock,
        occupancy=out,
        outbox=exit_outbox,
        token_key=KEY,
    )
    assert not exit_gate.needs_identity_number and exit_gate.is_exit
    leaving = exit_gate.check(CARD, None, None, NOW)
    assert leaving.admit and leaving.reason == "venue_exit"
    exit_gate.admitted(leaving, NOW)
    assert [e.kind for e in exit_outbox.events] == [VENUE_EXIT]
    # The back office counts both gates' events and tells the entry gate: room again.
    inside.report(count=0, at=NOW.timestamp(), through_event=1)
    assert gate.check(CARD, None, BOB_ID, NOW).admit
    assert gate.status()["occupancy"]["estimate"] == 0  # type: ignore[index]


def test_admitted_never_raises() -> None:
    clock = clock_at()
    inside = Occupancy("museum-1", None, "entry", clock, gate="east-1")
    # An outbox that refuses the event (a typed error, disk full): counted here alone.
    gate = museum(occupancy=inside, outbox=FakeOutbox(clock, OneCardError("full")), clock=clock)
    gate.admitted(gate.check(CARD, None, ID_NUMBER, NOW), NOW)
    assert inside.estimate == 1
    # A bug in the outbox: logged, not raised; the reservation is used all the same.
    gate = museum(occupancy=inside, outbox=FakeOutbox(clock, RuntimeError("bug")), clock=clock)
    gate.admitted(gate.check(CARD, None, ID_NUMBER, NOW), NOW)
    assert inside.estimate == 1
    assert gate.check(CARD, None, ID_NUMBER, NOW).reason == "reservation_used"
    # Without an outbox the passage is counted here only.
    gate = museum(occupancy=inside, clock=clock)
    gate.admitted(gate.check(CARD, None, BOB_ID, NOW), NOW)
    assert inside.estimate == 2


def test_the_gate_checks_what_it_is_given() -> None:
    clock = clock_at()
    with pytest.raises(ConfigError):
        museum(occupancy=Occupancy("museum-2", None, "entry", clock))
    with pytest.raises(ConfigError):
        museum(occupancy=Occupancy("museum-1", None, "exit", clock))
    with pytest.raises(ConfigError):
        VenueGate(venue("museum", "museum-1"), clock=clock, token_key=b"short")
    with pytest.raises(VenueGateError):
        museum().check(CARD, None, ID_NUMBER, dt.datetime(2026, 12, 6, 10, 0))
    with pytest.raises(VenueGateError):
        museum().check("token", None, ID_NUMBER, NOW)  # type: ignore[arg-type]
    # now defaults to the clock's time.
    assert museum().check(CARD, None, ID_NUMBER).admit


# --- scenic -----------------------------------------------------------------------------------


def test_scenic_admits_a_valid_pass_up_to_its_entries_a_day() -> None:
    gate = scenic()
    assert not gate.needs_identity_number
    first = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert first.admit and first.reason == "pass_ok"
    assert first.extra == {
        "venue": "jinfo-mountain",
        "pass": "annual",
        "venue_token": CARD[:8].hex(),
    }
    gate.admitted(first, NOW)
    second = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert second.admit
    gate.admitted(second, NOW)
    third = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert not third.admit and third.reason == "pass_used_today"
    assert third.message_en == VENUE_MESSAGES["pass_used_today"][1]
    # Tomorrow is another day.
    assert gate.check(CARD, CARD_NUMBER, None, NOW + dt.timedelta(days=1)).admit


def test_scenic_refusals() -> None:
    assert scenic().check(OTHER, None, None, NOW).reason == "pass_expired"
    assert scenic().check(card_token(KEY, "C03000037"), None, None, NOW).reason == (
        "pass_not_yet_valid"
    )
    assert scenic().check(card_token(KEY, "D04000045"), None, None, NOW).reason == "no_pass"
    assert scenic().check(CARD, None, None, NOW.replace(year=2027)).reason == "pass_expired"
    bare = VenueGate(venue("scenic", "jinfo-mountain"), clock=clock_at(), token_key=KEY)
    assert bare.check(CARD, None, None, NOW).reason == "no_passes"
    elsewhere = scenic(parse_passes({**PASSES, "area": "other-mountain"}))
    assert elsewhere.check(CARD, None, None, NOW).reason == "no_passes"


def test_scenic_asks_the_journal_for_the_days_entries() -> None:
    asked: list[tuple[bytes, dt.date]] = []

    def journal_today(token8: bytes, day: dt.date) -> int:
        asked.append((token8, day))
        return 2

    verdict = scenic(journal_today=journal_today).check(CARD, None, None, NOW)
    assert verdict.reason == "pass_used_today"
    assert asked == [(CARD[:8], dt.date(2026, 12, 6))]


def test_scenic_entries_restored_and_counted_by_admissions_on() -> None:
    first = scenic().check(CARD, None, None, NOW)
    journal = [entry(first), entry(first, when=NOW - dt.timedelta(days=1))]
    assert admissions_on(journal, "jinfo-mountain", CARD, NOW.date()) == 1
    assert admissions_on(journal * 2, "jinfo-mountain", CARD[:8], NOW.date()) == 2
    assert admissions_on(journal, "jinfo-mountain", OTHER, NOW.date()) == 0
    assert admissions_on(journal, "other", CARD, NOW.date()) == 0
    gate = scenic()
    assert gate.restore(journal * 2, NOW) == 2
    assert gate.check(CARD, None, None, NOW).reason == "pass_used_today"
    # The journal-backed count, as the runtime would build it.
    backed = scenic(journal_today=lambda t, d: admissions_on(journal, "jinfo-mountain", t, d))
    assert backed.check(CARD, None, None, NOW).admit


def test_capacity_applies_to_any_kind() -> None:
    clock = clock_at()
    occupancy = Occupancy("jinfo-mountain", 0, "entry", clock)
    gate = VenueGate(
        venue("scenic", "jinfo-mountain"),
        clock=clock,
        passes=lambda: parse_passes(PASSES),
        occupancy=occupancy,
        token_key=KEY,
    )
    full = gate.check(CARD, None, None, NOW)
    assert not full.admit and full.reason == "venue_full" and full.extra["pass"] == "annual"
    # A holder refused by the venue's own rule is told that rule, not "wait".
    assert gate.check(OTHER, None, None, NOW).reason == "pass_expired"


# --- exits ------------------------------------------------------------------------------------


def test_an_exit_gate_lets_every_card_out_and_asks_nothing() -> None:
    ils = FakeIls()
    settings = venue("library", "city-library", role="exit", ils=ILS)
    gate = VenueGate(settings, clock=clock_at(), ils=ils, token_key=KEY)
    verdict = gate.check(CARD, CARD_NUMBER, None, NOW)
    assert verdict == VenueVerdict(
        True, "venue_exit", *VENUE_MESSAGES["venue_exit"], {"venue": "city-library"}
    )
    assert ils.asked == []
    gate.admitted(verdict, NOW)  # no occupancy: nothing to count, nothing raised


# --- privacy ----------------------------------------------------------------------------------


def test_no_personal_data_in_verdicts_or_logs(caplog: Any) -> None:
    clock = clock_at()
    personal = (ID_NUMBER, ID_NUMBER.lower(), BOB_ID, STRANGER_ID, CARD_NUMBER, OTHER_NUMBER)
    ils = FakeIls({CARD_NUMBER: PatronStanding(True), ID_NUMBER: PatronStanding(True)})
    verdicts: list[VenueVerdict] = []
    with caplog.at_level(logging.DEBUG):
        gate = library(ils)
        verdicts += [gate.check(CARD, CARD_NUMBER, ID_NUMBER, NOW)]
        verdicts += [gate.check(OTHER, OTHER_NUMBER, BOB_ID, NOW)]
        ils.error = IlsUnavailableError("down")
        verdicts += [gate.check(CARD, CARD_NUMBER, ID_NUMBER, NOW)]
        ils.error = KeyError(CARD_NUMBER)  # a bug whose text quotes the identifier
        verdicts += [gate.check(CARD, CARD_NUMBER, ID_NUMBER, NOW)]
        ssn = library(
            FakeIls({ID_NUMBER: PatronStanding(True)}), patron_id="social_security_number"
        )
        verdicts += [ssn.check(CARD, CARD_NUMBER, ID_NUMBER, NOW)]
        full = Occupancy("museum-1", 1, "entry", clock, gate="east-1")
        museum_gate = museum(occupancy=full, outbox=FakeOutbox(clock), clock=clock)
        for number in (ID_NUMBER, BOB_ID, STRANGER_ID, None):
            verdict = museum_gate.check(CARD, CARD_NUMBER, number, NOW)
            museum_gate.admitted(verdict, NOW)
            verdicts.append(verdict)
        verdicts.append(museum_gate.check(CARD, CARD_NUMBER, ID_NUMBER, NOW))
        scenic_gate = scenic()
        for token in (CARD, OTHER, CARD, CARD):
            verdict = scenic_gate.check(token, CARD_NUMBER, ID_NUMBER, NOW)
            scenic_gate.admitted(verdict, NOW)
            verdicts.append(verdict)
    reasons = {v.reason for v in verdicts}
    assert {"patron_ok", "ils_unreachable", "reservation_ok", "venue_full"} <= reasons
    assert {"identity_unreadable", "no_reservation", "reservation_used"} <= reasons
    assert {"pass_ok", "pass_expired", "pass_used_today"} <= reasons
    for verdict in verdicts:
        text = repr(verdict) + repr(dict(verdict.extra))
        for value in personal:
            assert value not in text
        check_extra(verdict.extra)  # the journal's own deny-list accepts it
    for value in personal:
        assert value not in caplog.text
