"""The validator profile end to end: pcscd + vpcd cards with the T-Union e-purse, a PSAM with
purchase keys in slot 2, the pty scanner for e-codes, the journal."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import InsertedCard
from helpers.pcscd_service import wait_for_service

from drivers.pcsc import wait_for_card
from firmware_sim.cardos import CardOS
from firmware_sim.ecode_issuing import issue_code, issue_ecode_world, read_private_key
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.scanner import PtyScanner
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import TUnionApplet, add_tunion
from firmware_sim.vpcd import reader_name
from onecard.runtime import build_runtime
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.journal.store import Journal
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime
from terminal.runtime.transaction import TransactionOutcome
from terminal.secure.keyfile import load_key_file
from terminal.wire.document import sign_document

pytestmark = pytest.mark.integration

PSAM_SLOT = 2
ADULT_FARE = 200
TERMINAL_ID = "BUS-0001"
SERVICE = "bus-ride"
APPLIST = {
    "kind": "applist",
    "version": 1,
    "services": [
        {
            "code": SERVICE,
            "name": "Bus line 1",
            "scope": "sichuan-chongqing",
            "fare": ADULT_FARE,
            "category_fares": {"4": 0},  # elderly ride free
            "valid_from": "2020-01-01",
        }
    ],
}
MAX_PURCHASE_APDUS = 8


class CountingPurchase:
    """The transit purchase module, recording each result (its card APDU count)."""

    def __init__(self, module: object) -> None:
        self._module = module
        self.results: list[object] = []

    def purchase(self, *args: object, **kwargs: object) -> object:
        result = self._module.purchase(*args, **kwargs)
        self.results.append(result)
        return result

    def ride(self, *args: object, **kwargs: object) -> object:
        plan, result = self._module.ride(*args, **kwargs)
        self.results.append(result)
        return plan, result

    def recover(self, *args: object, **kwargs: object) -> object:
        result = self._module.recover(*args, **kwargs)
        self.results.append(result)
        return result


def write_world(tmp: Path, applist: dict = APPLIST) -> dict:
    """Keys (with purchase masters), trust store, cards, an e-code world and a signed
    application list (with category fares by default), under ``tmp``."""
    cards = issue_world(tmp / "world")
    ecode = issue_ecode_world(tmp / "ecode")
    documents = tmp / "documents"
    documents.mkdir()
    publisher = generate_private_key(Algorithm.SM2)
    (tmp / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    (documents / "applist.json").write_bytes(sign_document(applist, publisher, Algorithm.SM2))
    return {"tmp": tmp, "cards": cards, "ecode": ecode, "keyset": load_key_file(cards["keys"])}


def card_readers() -> list[str]:
    """The PC/SC names of vpcd slots 0 and 1, the holders' readers. Named in the
    configuration so that a card in another slot (the PSAM's neighbour) is not a tap."""
    names = wait_for_service()
    readers = [reader_name(slot, names) for slot in (0, 1)]
    assert all(readers), names
    return [r for r in readers if r]


def validator_config(
    tmp: Path, psam_reader: str, scanner_port: str = "", extra: str = "", repeat: float = 60
) -> Path:
    """``terminal.toml`` of a validator reading cards in slots 0 and 1; ``extra`` goes
    into ``[backoffice]`` (the credentials line of a synced terminal)."""
    scanner = f'[scanner]\nserial = "{scanner_port}"\n' if scanner_port else ""
    names = json.dumps(card_readers())
    path = tmp / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "{TERMINAL_ID}"
profile = "validator"
service = "{SERVICE}"

[readers]
names = {names}
psam = "{psam_reader}"

{scanner}
[security]
trust_store = "world/trust.json"
ecode_world = "ecode"

[backoffice]
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"
publication_key = "publication.pub"
{extra}

[validator]
repeat_seconds = {repeat}

[status]
port = -1
"""
    )
    return path


def epurse_card(
    world: dict,
    name: str,
    *,
    card_number: str | None = None,
    balance: int = 1000,
    serial: int = 1,
) -> tuple[CardOS, TUnionApplet]:
    """A card of the issued world ``name`` carrying the e-purse; ``card_number`` gives it
    another identity (the internal-auth keys depend on region and ATR, not the number)."""
    profile = load_profile(world["cards"]["cards"][name]["file"])
    if card_number is not None:
        issuer = dataclasses.replace(profile.issuer, card_number=card_number)
        profile = dataclasses.replace(profile, issuer=issuer)
    card = build_card(profile)
    applet = add_tunion(
        card,
        world["keyset"],
        balance=balance,
        app_serial=bytes.fromhex(f"5000{serial:016d}"),
    )
    return card, applet


def code_for(world: dict) -> str:
    manifest = world["ecode"]
    alg = Algorithm(manifest["algorithm"])
    key = read_private_key(manifest["issuer"]["private_key"], alg)
    card = manifest["card"]
    return issue_code(
        key,
        bytes.fromhex(manifest["issuer"]["key_id"]),
        alg,
        card["region"],
        card["card_number"],
        card["category"],
        int(time.time()),
    )


@pytest.fixture
def world(tmp_path: Path) -> dict:
    return write_world(tmp_path)


@contextlib.contextmanager
def validator_running(
    world: dict, insert_card: Callable[..., InsertedCard]
) -> Iterator[tuple[TerminalRuntime, PtyScanner, CountingPurchase]]:
    """A validator runtime running in a thread, with its PSAM in slot 2 and a pty scanner."""
    psam = insert_card(card=build_psam(world["keyset"]), slot=PSAM_SLOT)
    scanner = PtyScanner()
    runtime = None
    thread = None
    try:
        config = load_config(validator_config(world["tmp"], psam.reader, scanner.port))
        runtime = build_runtime(config, outputs=RecordingOutputs())
        counting = CountingPurchase(runtime.steps.profile._purchase)
        runtime.steps.profile._purchase = counting
        runtime.start_sources()
        thread = threading.Thread(target=runtime.run, daemon=True)
        thread.start()
        yield runtime, scanner, counting
        runtime.request_stop()
        thread.join(timeout=15)
        assert not thread.is_alive()
    finally:
        if runtime is not None:
            runtime.shutdown()
        scanner.close()


@pytest.fixture
def running(
    world: dict, insert_card: Callable[..., InsertedCard]
) -> Iterator[tuple[TerminalRuntime, PtyScanner, CountingPurchase]]:
    with validator_running(world, insert_card) as started:
        yield started


def test_validator_end_to_end(world: dict, insert_card, running) -> None:
    runtime, scanner, counting = running
    taps = 0

    def tap(card: CardOS, slot: int = 0, remove: bool = True) -> TransactionOutcome:
        nonlocal taps
        taps += 1
        inserted = insert_card(card=card, slot=slot)
        assert runtime.wait_for_outcomes(taps, timeout=30), runtime.outcomes
        if remove:
            inserted.remove()
        return runtime.outcomes[taps - 1]

    # An adult pays the fare: debited by the PSAM-backed purchase, TAC journaled.
    adult, adult_purse = epurse_card(world, "genuine-cq-2.0", balance=1000, serial=1)
    paid = tap(adult)
    assert paid.accepted and paid.reason == "ok" and paid.journaled, paid
    assert paid.fare == ADULT_FARE and paid.balance == 800
    assert adult_purse.balance == 800 and adult_purse.counter == 1
    assert counting.results[-1].apdu_count <= MAX_PURCHASE_APDUS

    # The same card again within the window: refused, not debited.
    repeat = tap(adult, slot=1)
    assert repeat.decision == "refuse" and repeat.reason == "repeat_tap", repeat
    assert adult_purse.balance == 800 and adult_purse.counter == 1

    # An elderly holder rides free: accepted, nothing debited.
    elderly, elderly_purse = epurse_card(world, "genuine-sc-3.0", balance=500, serial=2)
    free = tap(elderly)
    assert free.accepted and free.fare == 0, free
    assert elderly_purse.balance == 500 and elderly_purse.counter == 0

    # Too little money: refused, no debit.
    poor, poor_purse = epurse_card(
        world, "genuine-cq-2.0", card_number="A01000099", balance=150, serial=3
    )
    low = tap(poor)
    assert low.decision == "refuse" and low.reason == "insufficient_balance", low
    assert poor_purse.balance == 150 and poor_purse.counter == 0

    # A torn purchase: the card leaves the field right after it debited.
    torn_card, torn_purse = epurse_card(
        world, "genuine-cq-2.0", card_number="A01000077", balance=1000, serial=4
    )
    inserted = insert_card(card=torn_card, slot=0)
    torn_purse.after_debit = inserted.bridge.remove
    taps += 1
    assert runtime.wait_for_outcomes(taps, timeout=30)
    torn = runtime.outcomes[taps - 1]
    assert torn.decision == "refuse" and torn.reason == "torn", torn
    assert torn_purse.balance == 800 and torn_purse.counter == 1  # the card did debit
    assert wait_for_card(inserted.reader, present=False)
    # The rider taps again: the earlier debit is found, the card is not charged again.
    inserted.bridge.insert()
    assert wait_for_card(inserted.reader, present=True)
    taps += 1
    assert runtime.wait_for_outcomes(taps, timeout=30)
    recovered = runtime.outcomes[taps - 1]
    inserted.remove()
    assert recovered.accepted and recovered.reason == "torn_purchase_recovered", recovered
    assert torn_purse.balance == 800 and torn_purse.counter == 1
    assert counting.results[-1].apdu_count <= MAX_PURCHASE_APDUS

    # An e-code rides now and pays later: the journal entry is the claim.
    assert scanner.scan(code_for(world))
    taps += 1
    assert runtime.wait_for_outcomes(taps, timeout=15)
    code = runtime.outcomes[taps - 1]
    assert code.accepted and code.kind == "code" and code.reason == "pay_later", code
    assert code.amount == ADULT_FARE
    assert all(r.apdu_count <= MAX_PURCHASE_APDUS for r in counting.results)

    with Journal.open(world["tmp"] / "journal.db", TERMINAL_ID) as journal:
        entries = list(journal.entries())
        assert journal.verify().ok
    assert [e.reason for e in entries] == [
        "ok",
        "repeat_tap",
        "ok",
        "insufficient_balance",
        "torn",
        "torn_purchase_recovered",
        "pay_later",
    ]
    first = entries[0]
    assert first.decision == "accept" and first.amount == ADULT_FARE
    assert first.extra["tac"] == counting.results[0].tac and len(first.extra["tac"]) == 8
    assert entries[2].amount == 0
    assert entries[3].decision == "refuse" and not entries[3].amount
    # Journal and cards agree: what was charged is what the accepted card entries say.
    charged = (
        sum(1000 - p.balance for p in (adult_purse, torn_purse))
        + (500 - elderly_purse.balance)
        + (150 - poor_purse.balance)
    )
    journaled = sum(e.amount or 0 for e in entries if e.kind == "card" and e.decision == "accept")
    assert charged == journaled == 2 * ADULT_FARE
    assert entries[6].kind == "code" and entries[6].decision == "accept"
    assert "tac" in entries[5].extra and entries[5].extra["recovered"] is True
    assert all("name" not in json.dumps(e.extra) for e in entries)


NATIONAL_BUS = {
    "kind": "applist",
    "version": 1,
    "services": [
        {
            "code": SERVICE,
            "name": "Bus line 1",
            "scope": "national",  # T-Union cards of every city ride (national interoperability)
            "fare": ADULT_FARE,
            "category_fares": {"4": 0},
            "cards": ["ssc", "tunion"],
            "valid_from": "2020-01-01",
        }
    ],
}


def test_validator_takes_every_transit_card(tmp_path: Path, insert_card) -> None:
    """A social security card with the transport function, a plain T-Union card of another
    city and one whose balance carries bit 31 all pay by the e-purse protocol; the journal
    knows the plain cards by their e-purse, never by a number."""
    world = write_world(tmp_path, NATIONAL_BUS)
    cards = world["cards"]["cards"]
    with validator_running(world, insert_card) as (runtime, _scanner, counting):
        outcomes = []
        for name, contactless in (
            ("genuine-sc-3.0-transit", True),
            ("tunion-plain", False),
            ("tunion-bit31", False),
        ):
            inserted = insert_card(
                card=build_card(load_profile(cards[name]["file"]), contactless), slot=0
            )
            assert runtime.wait_for_outcomes(len(outcomes) + 1, timeout=30), runtime.outcomes
            outcomes.append(runtime.outcomes[len(outcomes)])
            inserted.remove()
    for outcome in outcomes:
        assert outcome.accepted and outcome.reason == "ok", outcome
        assert outcome.fare == ADULT_FARE
    assert [o.balance for o in outcomes] == [2000 - 200, 12345 - 200, 860 - 200]
    assert all(r.mac2_verified for r in counting.results)
    with Journal.open(tmp_path / "journal.db", TERMINAL_ID) as journal:
        entries = list(journal.entries())
    assert [e.extra["card_kind"] for e in entries] == ["ssc", "tunion", "tunion"]
    assert entries[0].category == "3" and entries[0].region == "510107"
    assert entries[1].category is None and entries[1].region == "310000"  # Shanghai
    assert entries[1].extra["verdict"] == "epurse" and len(entries[1].extra["tac"]) == 8
    assert all("44000000000000008002" not in json.dumps(e.extra) for e in entries)
