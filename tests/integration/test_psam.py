"""A simulated PSAM in vpcd slot 2, used through the real pcscd like a PSAM in a reader."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from firmware_sim.cardos import CardOS, t1_atr
from firmware_sim.psam_applet import build_psam
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.errors import (
    AlgorithmMissingError,
    CardRemovedError,
    KeyMissingError,
    NoSecureModuleError,
)
from terminal.secure import KeySet, PsamSecureModule, SoftwareSecureModule, generate_key_set
from terminal.ssc.auth import KeyName, card_cryptogram

pytestmark = pytest.mark.integration

PSAM_SLOT = 2
TERMINAL = "510100000042"
REGION = "519900"
HISTORICAL = bytes.fromhex("00814A444686605199000001AC")
P = bytes.fromhex("0102030405060708")
X = bytes.fromhex("1122334455667788")


@pytest.fixture(scope="module")
def keyset() -> KeySet:
    return generate_key_set(TERMINAL)


@pytest.fixture
def open_psam(insert_card, backend) -> Iterator:
    modules: list[PsamSecureModule] = []

    def open_(keyset: KeySet, protocol: str = "T=1"):
        card = insert_card(card=build_psam(keyset, protocol), slot=PSAM_SLOT)
        modules.append(PsamSecureModule.open(backend, card.reader))
        return card, modules[-1]

    yield open_
    for module in modules:
        module.close()


@pytest.mark.parametrize("protocol", ["T=1", "T=0"])
def test_psam_cryptograms_through_pcscd(open_psam, keyset, protocol) -> None:
    card, psam = open_psam(keyset, protocol)
    assert psam.name == f"psam:{card.reader}"
    assert psam.connection.protocol == protocol
    assert psam.terminal_number == TERMINAL
    soft = SoftwareSecureModule(keyset)
    for alg in (Alg.DES3, Alg.SM4):
        for key in KeyName:
            for i in range(2):
                p, x = bytes([i + 1] * 8), bytes(range(i, i + 8))
                expected = card_cryptogram(alg, keyset.keys[(alg, key)], REGION, HISTORICAL, p, x)
                assert psam.cryptogram(key, alg, REGION, HISTORICAL, p, x) == expected
                assert soft.cryptogram(key, alg, REGION, HISTORICAL, p, x) == expected
    assert psam.algorithms() == {Alg.DES3, Alg.SM4}


def test_psam_apdus_per_cryptogram(open_psam, keyset) -> None:
    _, psam = open_psam(keyset)
    before = psam.apdu_count
    psam.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL, P, X)
    assert psam.apdu_count - before == 2  # DELIVERY SESSION KEY + CIPHER DATA (T=1)


def test_psam_without_sm4_or_key(open_psam, keyset) -> None:
    partial = KeySet(
        TERMINAL,
        {k: v for k, v in keyset.keys.items() if k[0] is Alg.DES3 and k[1] is not KeyName.RKSSSE},
    )
    _, psam = open_psam(partial)
    assert psam.algorithms() == {Alg.DES3}
    with pytest.raises(AlgorithmMissingError) as missing_alg:
        psam.cryptogram(KeyName.IRK, Alg.SM4, REGION, HISTORICAL, P, X)
    assert missing_alg.value.sw == 0x6A81
    with pytest.raises(KeyMissingError) as missing_key:
        psam.cryptogram(KeyName.RKSSSE, Alg.DES3, REGION, HISTORICAL, P, X)
    assert missing_key.value.sw == 0x6A88
    assert len(psam.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, P, X)) == 8


@pytest.mark.parametrize("answered", [0, 1], ids=["during-delivery", "during-cipher-data"])
def test_psam_removed_mid_operation_is_a_typed_error(open_psam, keyset, answered) -> None:
    card, psam = open_psam(keyset)
    # tear_after(n): the bridge answers n more APDUs, then leaves instead of answering.
    card.bridge.tear_after(answered)
    with pytest.raises(CardRemovedError):
        psam.cryptogram(KeyName.IRK, Alg.DES3, REGION, HISTORICAL, P, X)
    psam.close()  # closing a module whose PSAM left must not raise


def test_card_without_psam_application_is_no_psam(insert_card, backend) -> None:
    card = insert_card(card=CardOS(t1_atr(b"NOPSAM"), "T=1"), slot=PSAM_SLOT)
    with pytest.raises(NoSecureModuleError) as info:
        PsamSecureModule.open(backend, card.reader)
    assert info.value.code == "no_psam"


def test_empty_psam_slot_is_no_psam(pcscd, backend) -> None:
    empty = [info.name for info in backend.readers() if not info.card_present]
    assert empty, "expected an empty vpcd slot"
    with pytest.raises(NoSecureModuleError):
        PsamSecureModule.open(backend, empty[0])
    with pytest.raises(NoSecureModuleError):
        PsamSecureModule.open(backend, "No Such PSAM Reader 00 00")
