"""The T-Union purchase through the real pcscd: e-purse card in slot 0, PSAM in slot 2."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import pytest

from drivers.pcsc import wait_for_card
from firmware_sim.profile import load_profile, sample_profile_path
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import add_tunion
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.devices.reader import CardChannel
from terminal.errors import ReaderError
from terminal.secure import KeySet, PsamSecureModule, generate_key_set
from terminal.transit import PurchaseStatus, purchase, read_balance, recover

pytestmark = pytest.mark.integration

CARD_SLOT = 0
PSAM_SLOT = 2
TERMINAL = "500100000042"
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9)


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return generate_key_set(TERMINAL, purchase=True)


@pytest.fixture
def psam(insert_card, backend, keyset) -> Iterator[PsamSecureModule]:
    inserted = insert_card(card=build_psam(keyset), slot=PSAM_SLOT)
    module = PsamSecureModule.open(backend, inserted.reader)
    yield module
    module.close()


def sample_card(keyset: KeySet, alg: Alg):
    card = build_card(load_profile(sample_profile_path("chongqing-2.0")))
    applet = add_tunion(card, keyset, algorithm=alg, balance=2000)
    return card, applet


@pytest.mark.parametrize("alg", [Alg.DES3, Alg.SM4])
def test_purchase_through_pcscd(insert_card, backend, psam, keyset, alg) -> None:
    card, applet = sample_card(keyset, alg)
    inserted = insert_card(card=card, slot=CARD_SLOT)
    connection = backend.connect(inserted.reader)
    try:
        channel = CardChannel(connection)
        result = purchase(channel, psam, 200, WHEN)
        assert result.status is PurchaseStatus.DONE and result.mac2_verified
        assert result.apdu_count <= 8
        assert result.balance_after == 1800 == applet.balance
        assert read_balance(channel) == 1800
    finally:
        connection.close()


def test_torn_purchase_recovered_through_pcscd(insert_card, backend, psam, keyset) -> None:
    card, applet = sample_card(keyset, Alg.DES3)
    inserted = insert_card(card=card, slot=CARD_SLOT)
    # The card commits DEBIT, then leaves the reader before its answer goes out.
    applet.after_debit = inserted.bridge.remove
    connection = backend.connect(inserted.reader)
    try:
        torn = purchase(CardChannel(connection), psam, 300, WHEN)
    finally:
        with contextlib.suppress(ReaderError):
            connection.close()
    assert torn.status is PurchaseStatus.TORN and torn.pending is not None
    assert applet.balance == 1700
    assert wait_for_card(inserted.reader, present=False)

    inserted.bridge.insert()  # the rider taps again
    assert wait_for_card(inserted.reader, present=True)
    connection = backend.connect(inserted.reader)
    try:
        channel = CardChannel(connection)
        result = recover(channel, psam, torn.pending)
        assert result.status is PurchaseStatus.DONE and result.recovered
        assert result.mac2_verified and result.apdu_count <= 8
        assert read_balance(channel) == 1700  # charged exactly once
    finally:
        connection.close()
    assert applet.counter == 1
