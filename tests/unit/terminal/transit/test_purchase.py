"""The T-Union composite purchase end to end in process: simulated card + simulated PSAM."""

from __future__ import annotations

import datetime as dt

import pytest

from drivers.inprocess import InProcessConnection
from firmware_sim.profile import load_profile, sample_profile_path
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import TUnionApplet, add_tunion
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.devices.reader import CardChannel
from terminal.errors import CardRemovedError, PendingMismatchError
from terminal.secure import KeySet, PsamSecureModule, SoftwarePurchaseModule, generate_key_set
from terminal.secure.keyfile import TransitKeyName
from terminal.transit import (
    PurchaseStatus,
    decode_purchase_log,
    decode_trip_record,
    purchase,
    read_balance,
    recover,
)
from terminal.transit.macs import card_purchase_key, purchase_tac
from terminal.transit.records import encode_bcd_date, encode_bcd_time
from terminal.transit.secure_module import Mac1Answer, Mac1Request, Mac2Verdict

TERMINAL = "500100000042"
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9)
SERIAL = bytes.fromhex("50000000000000001234")


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return generate_key_set(TERMINAL, purchase=True)


class TearingConnection(InProcessConnection):
    """Processes DEBIT FOR PURCHASE, then the card is gone before the answer arrives."""

    tear_debit = False

    def transmit_raw(self, apdu: bytes) -> bytes:
        answer = self.card.process(apdu)
        if self.tear_debit and apdu[:2] == b"\x80\x54":
            self.tear_debit = False
            self.card.power_off()
            raise CardRemovedError("card left the field")
        return answer


def make_card(keyset: KeySet, alg: Alg = Alg.DES3, balance: int = 1000, protocol_card=None):
    card = protocol_card or build_card(load_profile(sample_profile_path("chongqing-2.0")))
    applet = add_tunion(card, keyset, algorithm=alg, balance=balance, app_serial=SERIAL)
    return card, applet


def psam_module(keyset: KeySet) -> PsamSecureModule:
    return PsamSecureModule(InProcessConnection(build_psam(keyset)))


def channel(card) -> CardChannel:
    return CardChannel(TearingConnection(card))


@pytest.mark.parametrize("alg", [Alg.DES3, Alg.SM4])
def test_composite_purchase(keyset, alg) -> None:
    card, applet = make_card(keyset, alg)
    psam = psam_module(keyset)
    result = purchase(channel(card), psam, 150, WHEN)
    assert result.status is PurchaseStatus.DONE
    assert (result.balance_before, result.balance_after, result.counter) == (1000, 850, 0)
    assert result.mac2_verified
    assert result.apdu_count <= 8
    assert applet.balance == 850 and applet.counter == 1
    # The TAC is what the back office recomputes from the master key.
    master = keyset.key(alg, TransitKeyName.PURCHASE)
    info = applet.public_info
    dpk = card_purchase_key(master, info.issuer_id, info.app_serial, alg)
    tac = purchase_tac(
        alg,
        dpk,
        150,
        0x09,
        bytes.fromhex(TERMINAL),
        result.terminal_serial,
        encode_bcd_date(WHEN.date()),
        encode_bcd_time(WHEN),
    )
    assert result.tac == tac.hex().upper()
    # The log and the staged trip record are on the card.
    log = decode_purchase_log(applet.log_ef.records[0])
    assert (log.counter, log.amount, log.transaction_type, log.when) == (0, 150, 0x09, WHEN)
    trip = decode_trip_record(applet.trip_ef.records[0])
    assert (trip.amount, trip.balance_after, trip.when) == (150, 850, WHEN)
    # A second purchase runs under the next counter and the next PSAM serial.
    again = purchase(channel(card), psam, 50, WHEN)
    assert again.status is PurchaseStatus.DONE and again.counter == 1
    assert again.terminal_serial == result.terminal_serial + 1
    assert read_balance(channel(card)) == 800


def test_plain_purchase_and_software_module(keyset) -> None:
    card, applet = make_card(keyset, Alg.SM4)
    result = purchase(channel(card), SoftwarePurchaseModule(keyset), 10, WHEN, composite=False)
    assert result.status is PurchaseStatus.DONE and result.mac2_verified
    assert applet.trip_ef.records == [] and applet.balance == 990


def test_apdu_count_over_t0(keyset) -> None:
    profile = load_profile(sample_profile_path("chongqing-2.0"))
    card = build_card(profile)
    assert card.protocol == "T=0"
    add_tunion(card, keyset, app_serial=SERIAL)
    result = purchase(channel(card), psam_module(keyset), 1, WHEN)
    assert result.status is PurchaseStatus.DONE and result.apdu_count <= 8


def test_insufficient_balance(keyset) -> None:
    card, applet = make_card(keyset, balance=100)
    result = purchase(channel(card), psam_module(keyset), 150, WHEN)
    assert result.status is PurchaseStatus.INSUFFICIENT_BALANCE
    assert result.balance_before == 100 and applet.balance == 100 and applet.counter == 0


def test_wrong_mac1_refused_and_try_counter(keyset) -> None:
    other = generate_key_set(TERMINAL, purchase=True)  # a PSAM of another operator
    card, applet = make_card(keyset)
    for tries_left in (2, 1):
        result = purchase(channel(card), psam_module(other), 150, WHEN)
        assert result.status is PurchaseStatus.REFUSED and result.reason == "mac1_refused"
        assert applet.balance == 1000 and applet.mac1_tries == tries_left
    result = purchase(channel(card), psam_module(other), 150, WHEN)
    assert result.status is PurchaseStatus.REFUSED and result.reason == "blocked"
    result = purchase(channel(card), psam_module(keyset), 150, WHEN)
    assert result.reason == "blocked" and applet.balance == 1000


def test_good_mac1_resets_tries(keyset) -> None:
    other = generate_key_set(TERMINAL, purchase=True)
    card, applet = make_card(keyset)
    purchase(channel(card), psam_module(other), 1, WHEN)
    assert applet.mac1_tries == 2
    assert purchase(channel(card), psam_module(keyset), 1, WHEN).status is PurchaseStatus.DONE
    assert applet.mac1_tries == 3


class LyingModule(SoftwarePurchaseModule):
    """Computes a right MAC1 but the card's MAC2 never checks out (as for a fake card)."""

    def verify_mac2(self, mac2: bytes, terminal_serial: int | None = None) -> Mac2Verdict:
        return super().verify_mac2(bytes(b ^ 0xFF for b in mac2), terminal_serial)


def test_mac2_mismatch_detected(keyset) -> None:
    card, _ = make_card(keyset)
    result = purchase(channel(card), LyingModule(keyset), 150, WHEN)
    assert result.status is PurchaseStatus.REFUSED and result.reason == "mac2_mismatch"
    assert not result.mac2_verified


def test_psam_mac2_verdicts(keyset) -> None:
    psam = psam_module(keyset)
    assert psam.verify_mac2(bytes(4)) is Mac2Verdict.UNKNOWN
    request = Mac1Request(
        bytes(4),
        0,
        1,
        0x09,
        encode_bcd_date(WHEN.date()),
        encode_bcd_time(WHEN),
        1,
        0,
        SERIAL,
        bytes(8),
    )
    answer = psam.purchase_mac1(request)
    assert isinstance(answer, Mac1Answer) and len(answer.mac1) == 4
    assert psam.verify_mac2(bytes(4)) is Mac2Verdict.INVALID
    assert psam.verify_mac2(bytes(4), answer.terminal_serial + 7) is Mac2Verdict.UNKNOWN


@pytest.mark.parametrize("alg", [Alg.DES3, Alg.SM4])
def test_torn_purchase_recovered_exactly_once(keyset, alg) -> None:
    card, applet = make_card(keyset, alg)
    psam = psam_module(keyset)
    torn_channel = channel(card)
    torn_channel.connection.tear_debit = True
    torn = purchase(torn_channel, psam, 150, WHEN)
    assert torn.status is PurchaseStatus.TORN and torn.pending is not None
    assert applet.balance == 850  # the card did debit
    # Next tap: the card proves the debit, the PSAM verifies its MAC2, no second charge.
    result = recover(channel(card), psam, torn.pending)
    assert result.status is PurchaseStatus.DONE and result.recovered and result.mac2_verified
    assert result.tac is not None and result.apdu_count <= 8
    assert result.balance_after == 850
    again = recover(channel(card), psam, torn.pending)  # a repeated recovery charges nothing
    assert again.status is PurchaseStatus.DONE
    assert applet.balance == 850 and applet.counter == 1


def test_torn_before_debit_is_not_charged(keyset) -> None:
    card, applet = make_card(keyset)
    psam = psam_module(keyset)

    class LostDebit(InProcessConnection):
        def transmit_raw(self, apdu: bytes) -> bytes:
            if apdu[:2] == b"\x80\x54":
                self.card.power_off()
                raise CardRemovedError("card left before DEBIT reached it")
            return self.card.process(apdu)

    torn = purchase(CardChannel(LostDebit(card)), psam, 150, WHEN)
    assert torn.status is PurchaseStatus.TORN and applet.balance == 1000
    result = recover(channel(card), psam, torn.pending)
    assert result.status is PurchaseStatus.NOT_CHARGED
    assert purchase(channel(card), psam, 150, WHEN).status is PurchaseStatus.DONE
    assert applet.balance == 850


def test_recovery_after_psam_reset_uses_the_log(keyset) -> None:
    card, applet = make_card(keyset)
    psam_card = build_psam(keyset)
    psam = PsamSecureModule(InProcessConnection(psam_card))
    torn_channel = channel(card)
    torn_channel.connection.tear_debit = True
    torn = purchase(torn_channel, psam, 150, WHEN)
    psam_card.power_off()  # the PSAM lost its sessions
    psam = PsamSecureModule(InProcessConnection(psam_card))
    result = recover(channel(card), psam, torn.pending)
    assert result.status is PurchaseStatus.DONE and not result.mac2_verified
    assert applet.balance == 850


def test_recovery_on_another_card_refused(keyset) -> None:
    card, _ = make_card(keyset)
    torn_channel = channel(card)
    torn_channel.connection.tear_debit = True
    psam = psam_module(keyset)
    torn = purchase(torn_channel, psam, 150, WHEN)
    other = build_card(load_profile(sample_profile_path("chongqing-2.0")))
    add_tunion(other, keyset, app_serial=bytes.fromhex("50000000000000009999"))
    with pytest.raises(PendingMismatchError):
        recover(channel(other), psam, torn.pending)


def test_state_persists_across_power_cycles(keyset) -> None:
    card, applet = make_card(keyset)
    psam = psam_module(keyset)
    assert purchase(channel(card), psam, 100, WHEN).status is PurchaseStatus.DONE
    card.power_off()
    card.power_on()
    assert read_balance(channel(card)) == 900
    assert isinstance(applet, TUnionApplet) and applet.counter == 1
    assert len(applet.log_ef.records) == 1 and len(applet.trip_ef.records) == 1
    result = purchase(channel(card), psam, 100, WHEN)
    assert result.counter == 1 and result.balance_after == 800
