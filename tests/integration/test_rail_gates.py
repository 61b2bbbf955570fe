"""Rail entry and exit gates and the bus validator in the field setting, through pcscd + vpcd:
the card's journey record decides, the fare table prices, the journal records it."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import pytest

import bench.rail as rail
from drivers.pcsc import wait_for_card
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import add_tunion
from firmware_sim.vpcd import VpcdBridge, reader_name
from onecard.runtime import build_runtime
from terminal.runtime.config import load_config
from terminal.runtime.transaction import CardPresented
from terminal.secure.keyfile import load_key_file

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path, pcscd: list[str]) -> Any:
    world = rail.write_world(tmp_path)
    keyset = load_key_file(world["keys"])
    card_reader, psam_reader = reader_name(0, pcscd), reader_name(2, pcscd)
    psam = VpcdBridge(build_psam(keyset), 2)
    psam.insert()
    assert wait_for_card(psam_reader, present=True)
    field = '[transit]\nidentify = "purse"\njourney_record = true\ncity_code = "6900"\n'
    configs = {
        "rail-entry": field + '[rail]\nstation = "0101"\nrole = "entry"\nrepeat_seconds = 0\n',
        "rail-exit": field + '[rail]\nstation = "0105"\nrole = "exit"\nrepeat_seconds = 0\n',
        "bus": field,
        "bus-blocking": field + "block_hotlisted = true\n",
        "inspector-bus": field + '[inspector]\nmode = "bus"\nminutes = 60\n',
        "inspector-rail": field + '[inspector]\nmode = "rail"\nminutes = 120\n',
    }
    runtimes = {
        name: build_runtime(
            load_config(rail.write_config(tmp_path, name, card_reader, psam_reader, extra)),
            outputs=rail.NullOutputs(),
        )
        for name, extra in configs.items()
    }
    inserted: list[VpcdBridge] = []

    def tap(name: str, card: Any, tear: Any = None) -> Any:
        bridge = VpcdBridge(card, 0)
        if tear is not None:
            tear.after_debit = bridge.remove  # the card leaves the field right after DEBIT
        bridge.insert()
        inserted.append(bridge)
        assert wait_for_card(card_reader, present=True)
        try:
            return runtimes[name].handle(CardPresented(card_reader, card.atr))
        finally:
            if tear is not None:
                tear.after_debit = None
            if bridge.inserted:
                bridge.remove()
            assert wait_for_card(card_reader, present=False)

    def new_card(balance: int = 1000, **options: Any) -> Any:
        card = build_card(load_profile(world["cards"]["genuine-cq-2.0"]["file"]), contactless=True)
        return card, add_tunion(card, keyset, balance=balance, **options)

    yield tap, new_card, runtimes
    for runtime in runtimes.values():
        runtime.shutdown()
    for bridge in inserted:
        if bridge.inserted:
            bridge.remove()
    psam.remove()
    wait_for_card(psam_reader, present=False, timeout=5)


def test_entry_exit_and_the_field_cases(stack: Any) -> None:
    tap, new_card, runtimes = stack
    card, purse = new_card(balance=1000)
    entered = tap("rail-entry", card)
    assert entered.accepted and entered.gate_opened and entered.apdu_count == 5
    assert purse.balance == 1000
    left = tap("rail-exit", card)
    assert left.accepted and left.gate_opened and left.amount == 300 and left.apdu_count == 6
    assert purse.balance == 700
    again = tap("rail-exit", card)  # exit without entry: the gate stays shut, not charged
    assert not again.accepted and again.reason == "exit_without_entry" and not again.gate_opened
    assert again.journaled and purse.balance == 700
    entries = {e.reason: e for e in runtimes["rail-exit"].steps.context.journal.since(0)}
    assert set(entries) == {"ok", "exit_without_entry"}
    assert entries["ok"].amount == 300 and entries["ok"].extra["entry_station"] == "0101"


def test_too_little_balance_keeps_the_gate_shut_and_says_how_much(stack: Any) -> None:
    tap, new_card, _ = stack
    card, purse = new_card(balance=120)
    assert tap("rail-entry", card).accepted
    short = tap("rail-exit", card)
    assert not short.accepted and short.reason == "insufficient_balance"
    assert not short.gate_opened and purse.balance == 120


def test_a_corrupt_journey_record_is_refused_not_priced(stack: Any) -> None:
    tap, new_card, _ = stack
    record = bytearray(bytes((0x01, 0x02, 0x00, 0x80)) + bytes(124))
    record[122] = 0x55
    record[41:43] = b"\x01\x01"
    record[124:] = (zlib.crc32(bytes(record[6:124])) ^ 1).to_bytes(4, "big")
    card, purse = new_card(balance=1000, rail_record_data=bytes(record))
    refused = tap("rail-exit", card)
    assert not refused.accepted and refused.reason == "bad_journey_record"
    assert purse.balance == 1000


def test_the_bus_tap_takes_five_apdus_and_records_the_ride(stack: Any) -> None:
    tap, new_card, _ = stack
    card, purse = new_card(balance=1000)
    paid = tap("bus", card)
    assert paid.accepted and paid.amount == 1 and paid.apdu_count == 5
    assert purse.balance == 999


class Hotlisted:
    def __init__(self, *tokens: bytes) -> None:
        self.tokens = set(tokens)

    def contains(self, token: bytes) -> bool:
        return token in self.tokens


def test_a_hotlisted_card_is_refused_and_its_purse_blocked(stack: Any) -> None:
    from terminal.privacy.cardtoken import tunion_card_token

    tap, new_card, runtimes = stack
    card, purse = new_card(balance=1000)
    context = runtimes["bus-blocking"].steps.context
    token = tunion_card_token(context.token_key, purse.public_info.app_serial)
    context.hotlist = lambda: Hotlisted(token)
    refused = tap("bus-blocking", card)
    assert not refused.accepted and refused.reason == "hotlisted" and refused.journaled
    entry = list(context.journal.since(0))[-1]
    assert entry.extra["purse_blocked"] is True
    assert purse.blocked is not None and purse.balance == 1000
    # Anywhere else the card is refused now: its e-purse answers 9303 to INITIALIZE.
    elsewhere = tap("bus", card)
    assert not elsewhere.accepted and purse.balance == 1000


def test_the_inspector_reads_the_rides_off_the_card(stack: Any) -> None:
    tap, new_card, _runtimes = stack
    rider, purse = new_card(balance=1000)
    dodger, _ = new_card(balance=1000)
    assert tap("bus", rider).accepted
    checked = tap("inspector-bus", rider)
    assert checked.accepted and checked.reason == "inspection_paid" and checked.apdu_count == 3
    assert purse.balance == 999  # nothing debited
    unpaid = tap("inspector-bus", dodger)
    assert not unpaid.accepted and unpaid.reason == "inspection_unpaid"
    assert not tap("inspector-rail", rider).accepted
    assert tap("rail-entry", rider).accepted
    inside = tap("inspector-rail", rider)
    assert inside.accepted and inside.reason == "inspection_paid"


def test_a_card_pulled_at_the_exit_is_settled_and_let_out_on_the_next_tap(stack: Any) -> None:
    tap, new_card, _runtimes = stack
    card, purse = new_card(balance=1000)
    assert tap("rail-entry", card).accepted
    torn = tap("rail-exit", card, tear=purse)
    assert not torn.accepted and torn.reason == "torn" and not torn.gate_opened
    assert purse.balance == 700  # the card paid before it left
    settled = tap("rail-exit", card)
    assert settled.accepted and settled.reason == "torn_purchase_recovered"
    assert settled.amount == 300 and settled.gate_opened and purse.balance == 700
