"""The terminal against the field-shaped sample cards (in process, no PC/SC): the terminal
reads what the spec-strict simulator answers. A failure here is a disagreement between the
two sides about a field fact of domain.md 5b, not a simulator to make lenient."""

from __future__ import annotations

import datetime as dt

import pytest

from drivers.inprocess import InProcessConnection
from firmware_sim.issuing import personalise_tunion
from firmware_sim.profile import load_sample
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from terminal.devices.reader import CardChannel
from terminal.secure import PsamSecureModule, generate_key_set
from terminal.ssc.session import read_ssc
from terminal.transit import PurchaseStatus, purchase
from terminal.transit.selection import read_balance, select_purse

WHEN = dt.datetime(2024, 5, 6, 7, 8, 9)


def channel(sample: str, contactless: bool, keyset=None) -> CardChannel:
    profile = load_sample(sample)
    if keyset is not None:
        profile = personalise_tunion(profile, keyset)
    return CardChannel(InProcessConnection(build_card(profile, contactless)))


@pytest.mark.parametrize("contactless", [False, True])
@pytest.mark.parametrize(
    ("sample", "algorithm"),
    [("chongqing-2.0-t0", 1), ("zhejiang-2.0", 1), ("sichuan-3.0-transit", 3)],
)
def test_terminal_reads_the_field_shaped_cards(sample: str, algorithm: int, contactless: bool):
    profile = load_sample(sample)
    result = read_ssc(channel(sample, contactless))
    assert profile.issuer is not None and profile.holder is not None
    assert result.issuer.card_number == profile.issuer.card_number
    if profile.card.fci_template:
        assert result.fci.algorithm == algorithm
    else:  # no 9F0C/86 in the FCI: the terminal must not invent an algorithm flag
        assert result.fci.algorithm in (None, 1)
    if profile.generation.value == "3.0":
        assert [(u.file, u.sw) for u in result.unreadable] == [("EF06", 0x6982)]
    else:
        assert result.unreadable == () and result.holder is not None


@pytest.mark.parametrize(
    ("sample", "balance"),
    [("tunion-plain", 12345), ("tunion-bit31", 860), ("sichuan-3.0-transit", 2000)],
)
def test_terminal_reads_the_epurse(sample: str, balance: int) -> None:
    card = channel(sample, True)
    info = select_purse(card)
    assert info is not None
    assert info.app_serial.hex() == load_sample(sample).tunion.public_info.app_serial.hex()
    assert read_balance(card) == balance  # bit 31 masked off


@pytest.mark.parametrize(
    ("sample", "after"),
    [("tunion-plain", 12195), ("tunion-bit31", 710), ("sichuan-3.0-transit", 1850)],
)
def test_terminal_buys_on_the_sample_epurses(sample: str, after: int) -> None:
    keyset = generate_key_set("500100000042", purchase=True)
    psam = PsamSecureModule(InProcessConnection(build_psam(keyset)))
    result = purchase(channel(sample, True, keyset), psam, 150, WHEN)
    assert result.status is PurchaseStatus.DONE
    assert result.balance_after == after
