"""The validator takes every transit card (docs/runtime.md "Cards at a validator"): an SSC
with the transport function, a plain T-Union card (no social security application), and an
SSC whose social security side this terminal cannot authenticate - each paying by the
e-purse protocol, through the same transaction steps, with the runtime's contract kept
(pending purchase durable before DEBIT, journal before the holder is told)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from helpers.event_outputs import EventOutputs
from helpers.fake_epurse import (
    SERIAL,
    EnginePsam,
    FakeEPurse,
    TableCard,
    public_info,
    sw,
)

import terminal.ssc.authenticity as authenticity
from terminal.credential import CardKind
from terminal.devices.reader import ReaderInfo
from terminal.errors import CardRemovedError
from terminal.host.clock import FixedClock
from terminal.hotlist import HotList
from terminal.policy import parse_application_list
from terminal.privacy.cardtoken import card_token, hotlist_key, tunion_card_token
from terminal.runtime.profiles import GateProfile, ValidatorProfile
from terminal.runtime.transaction import (
    PURSE_VERDICT,
    CardPresented,
    TerminalContext,
    TransactionSteps,
    identify_card,
)
from terminal.ssc.session import ReadMode
from terminal.transit.identity import UNKNOWN_REGION, purse_credential, purse_region
from terminal.transit.pending import PendingPurchases

KEY = b"k" * 32
SSC_NUMBER = "D2143569X"
READER = "Fake Reader 01"


def applist(cards: list[str] | None = ("ssc", "tunion"), scope: str = "national"):
    bus = {
        "code": "bus",
        "name": "Bus",
        "scope": scope,
        "fare": 200,
        "category_fares": {"4": 0},
        "valid_from": "2020-01-01",
    }
    if cards is not None:
        bus["cards"] = list(cards)
    museum = {"code": "museum", "name": "Museum", "scope": "national", "valid_from": "2020-01-01"}
    return parse_application_list({"kind": "applist", "version": 1, "services": [bus, museum]})


class Backend:
    def __init__(self) -> None:
        self.card = None

    def readers(self) -> list[ReaderInfo]:
        return [ReaderInfo(READER, True, b"")]

    def connect(self, reader: str):
        return self.card


class Journal:
    def __init__(self, events: list) -> None:
        self.events = events
        self.records: list = []

    def append(self, record):
        self.records.append(record)
        self.events.append(("journal", record.reason))
        return SimpleNamespace(seq=len(self.records))


class SpyPending(PendingPurchases):
    """In-memory pending purchases that note what the card had been sent when a purchase
    was put on record."""

    def __init__(self, backend: Backend, events: list) -> None:
        super().__init__(None)
        self.backend = backend
        self.events = events

    def put(self, card_token: bytes, pending, now: float) -> None:
        super().put(card_token, pending, now)
        sent = getattr(self.backend.card, "sent", [])
        self.events.append(("pending", bytes(sent[-1][:2]) if sent else b""))


@dataclass
class Terminal:
    steps: TransactionSteps
    backend: Backend
    journal: Journal
    events: list
    clock: FixedClock
    pending: SpyPending
    context: TerminalContext

    def tap(self, card):
        self.backend.card = card
        return self.steps.run(CardPresented(READER))


def make(profile: str = "validator", lists=None, hotlist: HotList | None = None) -> Terminal:
    events: list = []
    clock = FixedClock()
    backend = Backend()
    journal = Journal(events)
    pending = SpyPending(backend, events)
    context = TerminalContext(
        service="bus" if profile == "validator" else "museum",
        token_key=KEY,
        journal=journal,
        clock=clock,
        applist=lambda: lists or applist(),
        hotlist=lambda: hotlist or HotList.empty(),
        reader_backend=backend,
    )
    if profile == "validator":
        chosen = ValidatorProfile(clock, 60, EnginePsam(), pending=pending)
    else:
        chosen = GateProfile(clock, 10)
    steps = TransactionSteps(context, chosen, EventOutputs(events), lambda d, r, f, b: (d, r))
    return Terminal(steps, backend, journal, events, clock, pending, context)


def fake_ssc(monkeypatch, verdict: str, category: str = "3", number: str = SSC_NUMBER) -> None:
    """The social security side, as verify_card would find it (the SSC code is not what
    these tests are about)."""
    issuer = SimpleNamespace(
        card_number=number, region="500103", category=category, expiry_date=dt.date(2035, 1, 1)
    )
    verification = SimpleNamespace(
        verdict=authenticity.Verdict(verdict),
        reason=f"{verdict} (fake)",
        read=SimpleNamespace(issuer=issuer, mode=ReadMode.MULTI_RECORD),
    )
    monkeypatch.setattr(authenticity, "verify_card", lambda *a, **k: verification)


def purse_token(serial: bytes = SERIAL) -> bytes:
    return tunion_card_token(KEY, serial)


# --- a plain T-Union card ------------------------------------------------------------------


@pytest.mark.parametrize(("in_fci", "apdus"), [(True, 6), (False, 7)])
def test_plain_tunion_card_pays_by_the_epurse(in_fci: bool, apdus: int) -> None:
    t = make()
    card = FakeEPurse(1000, fci_public_info=in_fci, bit31=True)
    outcome = t.tap(card)
    assert outcome.accepted and outcome.reason == "ok" and outcome.amount == 200
    assert card.balance == 800 and outcome.balance == 800
    # SELECT SSSE (6A82), SELECT e-purse (+ READ BINARY), READ RECORD 0x1A (this fake has
    # none: 6A82), INITIALIZE, UPDATE CACHE (the trip record), DEBIT. With ``reads_ssc``
    # False the first SELECT goes too (test_purse_only_validator_*).
    assert outcome.apdu_count == apdus
    record = t.journal.records[0]
    assert record.card_token == purse_token() and record.kind == "card"
    assert record.region == "310000" and record.category is None
    assert record.extra["card_kind"] == "tunion" and record.extra["verdict"] == PURSE_VERDICT
    assert record.extra["mac2_verified"] is True and len(record.extra["tac"]) == 8
    # Tokens only: the application serial is nowhere in the journal.
    assert SERIAL.hex() not in json.dumps(dict(record.extra)).lower()
    assert t.events.index(("journal", "ok")) < t.events.index(("show", "ok"))


def test_todays_lists_refuse_a_plain_tunion_card_and_journal_it() -> None:
    t = make(lists=applist(cards=None))
    card = FakeEPurse(1000)
    outcome = t.tap(card)
    assert outcome.decision == "refuse" and outcome.reason == "card_kind_not_accepted"
    assert outcome.journaled and card.balance == 1000
    assert t.journal.records[0].card_token == purse_token()


def test_the_token_is_stable_across_taps_and_a_repeat_tap_is_refused() -> None:
    t = make()
    card = FakeEPurse(1000)
    assert t.tap(card).accepted
    again = t.tap(card)
    assert again.reason == "repeat_tap" and card.balance == 800
    t.clock.advance(61)
    assert t.tap(card).accepted and card.balance == 600
    tokens = {r.card_token for r in t.journal.records}
    assert tokens == {purse_token()}


def test_reported_tunion_card_is_refused() -> None:
    t = make(hotlist=HotList.from_keys(1, [hotlist_key(purse_token())]))
    card = FakeEPurse(1000)
    outcome = t.tap(card)
    assert outcome.reason == "hotlisted" and card.balance == 1000


def test_region_from_the_city_code_or_the_placeholder() -> None:
    # GB/T 13497 city codes, as T-Union cards carry them.
    assert purse_region(b"\x69\x00") == "500000"  # Chongqing
    assert purse_region(b"\x65\x10") == "510000"  # Chengdu, Sichuan
    assert purse_region(b"\x67\x30") == "510000"  # Nanchong, Sichuan
    assert purse_region(b"\x29\x00") == "310000"  # Shanghai
    assert purse_region(b"\x58\x40") == "440000"  # Shenzhen
    assert purse_region(b"\x09\x00") == UNKNOWN_REGION  # below every range
    assert purse_region(b"\x21\x00") == UNKNOWN_REGION  # between ranges
    assert purse_region(b"\x3a\x00") == UNKNOWN_REGION and purse_region(b"\x69") == UNKNOWN_REGION
    local = make(lists=applist(scope="sichuan-chongqing"))
    card = FakeEPurse(1000, info=public_info(city=b"\x65\x10"))  # Chengdu: mutual recognition
    assert local.tap(card).accepted
    elsewhere = FakeEPurse(1000, info=public_info(city=b"\x29\x00"))  # Shanghai
    assert local.tap(elsewhere).reason == "region_not_accepted" and elsewhere.balance == 1000
    national = make()
    assert national.tap(FakeEPurse(1000, info=public_info(city=b"\x29\x00"))).accepted


def test_an_expired_tunion_card_is_refused_by_the_policy() -> None:
    t = make()
    card = FakeEPurse(1000, info=public_info(expiry=dt.date(2024, 1, 1)))
    outcome = t.tap(card)
    assert outcome.reason == "card_expired" and card.balance == 1000


def test_torn_purchase_of_a_plain_tunion_card_is_settled_once() -> None:
    t = make()
    card = FakeEPurse(1000, fci_public_info=False)
    card.tear_debit = True
    torn = t.tap(card)
    assert torn.decision == "refuse" and torn.reason == "torn"
    assert card.balance == 800 and len(t.pending) == 1
    # The pending purchase was durable before DEBIT left.
    assert ("pending", b"\x80\xdc") in t.events
    recovered = t.tap(card)
    assert recovered.accepted and recovered.reason == "torn_purchase_recovered"
    assert recovered.amount == 200 and card.balance == 800 and len(t.pending) == 0
    assert t.journal.records[-1].extra["recovered"] is True
    # The journal sums to what the card gave.
    assert sum(r.amount or 0 for r in t.journal.records) == 1000 - card.balance


def test_purchase_lost_before_debit_is_charged_once_on_the_next_tap() -> None:
    t = make()
    card = FakeEPurse(1000)
    original = card._debit

    def lost(apdu: bytes) -> bytes:
        card.selected = False
        card._debit = original
        raise CardRemovedError("gone before DEBIT reached the card")

    card._debit = lost
    assert t.tap(card).reason == "torn" and card.balance == 1000
    outcome = t.tap(card)  # empty log: 23 zero bytes -> not charged -> charge now
    assert outcome.accepted and outcome.reason == "ok" and card.balance == 800
    assert len(t.pending) == 0


# --- an SSC with the transport function --------------------------------------------------------


def test_genuine_ssc_elderly_rides_free_and_is_known_by_both_tokens(monkeypatch) -> None:
    fake_ssc(monkeypatch, "genuine", category="4")
    t = make()
    card = FakeEPurse(1000)
    outcome = t.tap(card)
    assert outcome.accepted and outcome.fare == 0 and card.balance == 1000
    record = t.journal.records[0]
    assert record.card_token == card_token(KEY, SSC_NUMBER) and record.category == "4"
    assert record.extra["card_kind"] == "ssc" and record.extra["verdict"] == "genuine"


def test_ssc_whose_epurse_is_reported_is_refused(monkeypatch) -> None:
    fake_ssc(monkeypatch, "genuine")
    t = make(hotlist=HotList.from_keys(1, [hotlist_key(purse_token())]))
    assert t.tap(FakeEPurse(1000)).reason == "hotlisted"


def test_genuine_ssc_pays_with_one_select_of_the_epurse(monkeypatch) -> None:
    fake_ssc(monkeypatch, "genuine")
    t = make()
    card = FakeEPurse(1000)
    outcome = t.tap(card)
    assert outcome.accepted and outcome.amount == 200 and card.balance == 800
    selects = [c for c in card.sent if c[:2] == b"\x00\xa4"]
    assert len(selects) == 1  # read once before the decision, not again for the purchase


@pytest.mark.parametrize("verdict", ["unverified", "unknown_issuer", "card_error"])
def test_unauthenticated_ssc_pays_the_full_fare(monkeypatch, verdict: str) -> None:
    """A transport-only PSAM cannot authenticate the SSC side: the e-purse still pays, but
    the "elderly" category that side claims is not trusted."""
    fake_ssc(monkeypatch, verdict, category="4")
    t = make()
    card = FakeEPurse(1000)
    outcome = t.tap(card)
    assert outcome.accepted and outcome.amount == 200 and card.balance == 800
    record = t.journal.records[0]
    assert record.category is None and record.extra["verdict"] == verdict
    assert record.card_token == card_token(KEY, SSC_NUMBER)


@pytest.mark.parametrize("verdict", ["forged", "cloned", "blocked", "issuer_revoked"])
def test_ssc_proven_bad_is_refused_even_with_an_epurse(monkeypatch, verdict: str) -> None:
    fake_ssc(monkeypatch, verdict)
    t = make()
    card = FakeEPurse(1000)
    outcome = t.tap(card)
    assert outcome.reason == "not_authentic" and card.balance == 1000


def test_ssc_without_an_epurse(monkeypatch) -> None:
    fake_ssc(monkeypatch, "genuine")
    t = make()
    no_purse = TableCard({"00A4*": sw(0x6A82)})
    outcome = t.tap(no_purse)
    assert outcome.decision == "refuse" and outcome.reason == "no_transit_application"
    assert outcome.journaled
    fake_ssc(monkeypatch, "genuine", category="4", number="D2143570X")
    assert t.tap(TableCard({"00A4*": sw(0x6A82)})).accepted  # a free ride needs no purse


def test_unverified_ssc_without_an_epurse_is_not_authentic(monkeypatch) -> None:
    """Without an e-purse nothing proves the card: the strict rule applies."""
    fake_ssc(monkeypatch, "unverified", category="4")
    t = make()
    assert t.tap(TableCard({"00A4*": sw(0x6A82)})).reason == "not_authentic"


def test_ssc_with_an_out_of_spec_epurse_reports_it(monkeypatch) -> None:
    fake_ssc(monkeypatch, "genuine")
    t = make()
    card = TableCard({"00A4*": b"\x84\x01\x00\x90\x00"})  # no FCI template
    outcome = t.tap(card)
    assert outcome.decision == "refuse" and outcome.reason == "bad_transit_record"


# --- cards nothing identifies, and the gate -------------------------------------------------


def test_card_with_neither_application_is_not_journaled() -> None:
    t = make()
    outcome = t.tap(TableCard({"00A4*": sw(0x6A82)}))
    assert outcome.decision == "refuse" and not outcome.journaled
    assert t.journal.records == []


def test_a_gate_still_requires_the_ssc() -> None:
    t = make(profile="gate")
    card = FakeEPurse(1000)
    outcome = t.tap(card)
    assert outcome.decision == "refuse" and not outcome.journaled
    assert all(c[5:13] != bytes.fromhex("A000000632010105") for c in card.sent)


# --- the pure composition -----------------------------------------------------------------


def test_identify_card_is_pure() -> None:
    info = public_info()
    plain = SimpleNamespace(verdict=authenticity.Verdict("card_error"), reason="", read=None)
    cred, auth = identify_card(plain, info, KEY, pays_by_purse=True, accept_unverified=False)
    assert cred == purse_credential(info, KEY) and cred.card_kind is CardKind.TUNION
    assert auth.ok and auth.verdict == PURSE_VERDICT
    assert identify_card(plain, info, KEY, pays_by_purse=False, accept_unverified=True) is None
    assert identify_card(plain, None, KEY, pays_by_purse=True, accept_unverified=True) is None
    blocked = SimpleNamespace(verdict=authenticity.Verdict("blocked"), reason="9303", read=None)
    _, auth = identify_card(blocked, info, KEY, pays_by_purse=True, accept_unverified=False)
    assert not auth.ok and auth.verdict == "blocked"


# --- never charged twice, nothing charged lost -------------------------------------------------


def test_torn_ssc_is_settled_even_when_its_ssc_side_fails_next_time(monkeypatch) -> None:
    """Pending purchases are keyed by the e-purse: the card is the same card whether its
    social security side answered this tap or not, so it is never charged twice."""
    fake_ssc(monkeypatch, "genuine")
    t = make()
    card = FakeEPurse(1000)
    card.tear_debit = True
    assert t.tap(card).reason == "torn" and card.balance == 800
    # Next tap: the SSC side does not read (the card is then known by its e-purse alone).
    monkeypatch.setattr(
        authenticity,
        "verify_card",
        lambda *a, **k: SimpleNamespace(
            verdict=authenticity.Verdict.CARD_ERROR, reason="odd answer (fake)", read=None
        ),
    )
    settled = t.tap(card)
    assert settled.accepted and settled.reason == "torn_purchase_recovered", settled
    assert card.balance == 800 and len(t.pending) == 0
    assert sum(r.amount or 0 for r in t.journal.records) == 200


def test_a_torn_purchase_is_settled_before_a_refusal(monkeypatch) -> None:
    """Reported between the torn tap and the next: the earlier charge still reaches the
    journal (the money was taken under the earlier decision)."""
    t = make()
    card = FakeEPurse(1000)
    card.tear_debit = True
    assert t.tap(card).reason == "torn"
    t.context.hotlist = lambda: HotList.from_keys(1, [hotlist_key(purse_token())])
    settled = t.tap(card)
    assert settled.reason == "torn_purchase_recovered" and settled.amount == 200
    assert len(t.pending) == 0
    assert t.tap(card).reason == "hotlisted"  # and from now on, refused


def test_a_debit_whose_mac2_does_not_verify_is_journaled_as_a_charge() -> None:
    """The card answered DEBIT with a TAC: it debited. A MAC2 our PSAM does not verify makes
    the card suspect, not the money less taken."""
    t = make()
    card = FakeEPurse(1000)
    original = card._debit

    def bad_mac2(apdu: bytes) -> bytes:
        answer = original(apdu)
        return answer[:4] + bytes(4) + answer[8:]  # TAC kept, MAC2 zeroed

    card._debit = bad_mac2
    outcome = t.tap(card)
    assert outcome.decision == "refuse" and outcome.reason == "mac2_mismatch"
    assert outcome.amount == 200 and card.balance == 800
    record = t.journal.records[-1]
    assert record.amount == 200 and record.extra["mac2_verified"] is False
    assert len(record.extra["tac"]) == 8
    assert len(t.pending) == 0  # the journal holds the charge
