"""The transaction steps with fakes: accept, refuse by policy, passback, journal before
tell, journal full -> refused and no gate."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from types import MappingProxyType

from helpers.event_outputs import EventOutputs

from terminal.errors import JournalFullError
from terminal.host.clock import FixedClock
from terminal.policy import ApplicationList, Scope, ServiceItem
from terminal.privacy.cardtoken import card_token
from terminal.runtime.profiles import GateProfile
from terminal.runtime.transaction import CodePresented, TerminalContext, TransactionSteps

KEY = b"k" * 32


class Verdict(enum.Enum):
    VALID = "valid"
    REPLAYED = "replayed"


@dataclass
class Payload:
    card_number: str
    region: str
    category: str


@dataclass
class Result:
    verdict: Verdict
    reason: str
    payload: Payload | None
    text: str = ""

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.VALID


class FakeVerifier:
    """Codes are "CARD:REGION:CATEGORY"; a code admitted before is replayed."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def check(self, text: str) -> Result:
        number, region, category = text.split(":")
        verdict = Verdict.REPLAYED if text in self.seen else Verdict.VALID
        return Result(verdict, "", Payload(number, region, category), text)

    def commit(self, result: Result) -> Result:
        self.seen.add(result.text)
        return result

    def release(self, result: Result) -> None:
        self.seen.discard(result.text)

    def card_token_of(self, payload: Payload) -> bytes:
        return card_token(KEY, payload.card_number)


class Events(list):
    pass


class FakeJournal:
    def __init__(self, events: Events, full: bool = False) -> None:
        self.events = events
        self.full = full
        self.records: list = []

    def append(self, record):
        if self.full:
            raise JournalFullError("disk full")
        self.records.append(record)
        self.events.append(("journal", record.decision, record.reason))
        return type("Entry", (), {"seq": len(self.records)})()


def messages(decision, reason, fare, balance):
    return decision, f"{decision}:{reason}"


APPLIST = ApplicationList(
    1,
    MappingProxyType(
        {
            "museum-entry": ServiceItem(
                "museum-entry", "Museum", Scope.CHONGQING, dt.date(2020, 1, 1)
            )
        }
    ),
)


class NoHotlist:
    def contains(self, token: bytes) -> bool:
        return False


def make(full: bool = False, clock: FixedClock | None = None):
    events = Events()
    clock = clock or FixedClock()
    journal = FakeJournal(events, full)
    context = TerminalContext(
        service="museum-entry",
        token_key=KEY,
        journal=journal,
        clock=clock,
        applist=lambda: APPLIST,
        hotlist=NoHotlist,
        code_verifier=FakeVerifier(),
    )
    steps = TransactionSteps(context, GateProfile(clock, 10), EventOutputs(events), messages)
    return steps, events, journal, clock


def test_accept_opens_the_gate_after_the_journal() -> None:
    steps, events, journal, _ = make()
    outcome = steps.run(CodePresented("A01000013:500101:3"))
    assert outcome.accepted and outcome.reason == "ok" and outcome.journaled
    assert outcome.gate_opened and outcome.seq == 1
    assert [e[0] for e in events] == ["journal", "gate", "indicate", "show"]
    assert journal.records[0].kind == "code" and journal.records[0].region == "500101"
    assert set(outcome.timings) >= {"verify", "decide", "act", "journal", "tell"}


def test_refused_by_policy_is_journaled_and_no_gate() -> None:
    steps, events, _journal, _ = make()
    outcome = steps.run(CodePresented("B02000020:510100:4"))
    assert outcome.decision == "refuse" and outcome.reason == "region_not_accepted"
    assert ("gate",) not in events
    assert events[0] == ("journal", "refuse", "region_not_accepted")
    assert events[-1] == ("show", "refuse:region_not_accepted")


def test_not_authentic_code_is_refused() -> None:
    steps, _, _, _ = make()
    steps.run(CodePresented("A01000013:500101:3"))
    outcome = steps.run(CodePresented("A01000013:500101:3"))
    # The replayed code is refused before passback is even considered.
    assert outcome.reason == "not_authentic"


def test_passback_within_the_window_then_allowed_after() -> None:
    steps, events, _, clock = make()
    assert steps.run(CodePresented("A01000013:500101:3")).accepted
    again = steps.run(CodePresented("A01000013:500101:1"))  # same card, another code
    assert again.decision == "refuse" and again.reason == "passback"
    assert events.count(("gate",)) == 1
    clock.advance(10 * 60 + 1)
    assert steps.run(CodePresented("A01000013:500101:2")).accepted


def test_journal_full_refuses_and_never_opens_the_gate() -> None:
    steps, events, _, _ = make(full=True)
    outcome = steps.run(CodePresented("A01000013:500101:3"))
    assert outcome.decision == "refuse" and outcome.reason == "journal_full"
    assert not outcome.journaled and not outcome.gate_opened
    assert ("gate",) not in events
    assert events[-1] == ("show", "refuse:journal_full")


def test_no_application_list_refuses() -> None:
    steps, _, _, _ = make()
    steps.context.applist = lambda: None
    outcome = steps.run(CodePresented("A01000013:500101:3"))
    assert outcome.reason == "no_application_list" and not outcome.accepted
