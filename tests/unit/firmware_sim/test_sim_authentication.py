"""INTERNAL and EXTERNAL AUTHENTICATE on the simulated SSSE, as the spec and real logs have
them: ``00 88 00 00 10 P R``, and ``00 82 00 0A 10 A R`` with the card's last challenge as
the process factor (gdgly/SI_3rdCard ``docs/加密机方式指令流.txt``)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.card_exchange import tx

from firmware_sim import crypto
from firmware_sim.cardos import CardOS
from firmware_sim.profile import CardKeys, load_sample
from firmware_sim.spec.ssc import RKSSSE, SSSE_NAME
from firmware_sim.ssc_applet import EXTERNAL_AUTH_TRIES, build_card

IRK = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
RKSSSE_KEY = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
P = bytes.fromhex("32D9E876ADB31BBF")
R = bytes.fromhex("DBF7A936D0D18C9E")
SELECT = "00A404000F" + SSSE_NAME.hex()


def keyed_card(sample: str = "sichuan-3.0", **card_changes: object) -> CardOS:
    profile = load_sample(sample)
    profile = dataclasses.replace(profile, keys=CardKeys(IRK, RKSSSE_KEY))
    if card_changes:
        profile = dataclasses.replace(
            profile, card=dataclasses.replace(profile.card, **card_changes)
        )
    card = build_card(profile)
    card.power_on()
    _, sw = tx(card, SELECT)
    if sw >> 8 == 0x61:
        tx(card, f"00C00000{sw & 0xFF:02X}")
    return card


def algorithm_of(sample: str) -> int:
    return load_sample(sample).card.algorithm


# --- INTERNAL AUTHENTICATE ------------------------------------------------------------------


@pytest.mark.parametrize("sample", ["sichuan-3.0", "chongqing-2.0"])
def test_internal_authenticate_answers_the_cryptogram(sample: str) -> None:
    card = keyed_card(sample)
    alg = algorithm_of(sample)
    expected = crypto.cryptogram(alg, crypto.session_key(alg, IRK, P), R)
    answer = tx(card, "0088000010" + P.hex() + R.hex() + "08")
    if card.protocol == "T=0":  # a case-4 command on T=0: 61 08, then GET RESPONSE
        assert answer == (b"", 0x6108)
        answer = tx(card, "00C0000008")
    assert answer == (expected, 0x9000)


@pytest.mark.parametrize("p1p2", ["0001", "0100", "0002", "00FF"])
def test_internal_authenticate_p1_p2_other_than_00_00_is_6a86(p1p2: str) -> None:
    card = keyed_card()
    assert tx(card, "0088" + p1p2 + "10" + P.hex() + R.hex() + "08") == (b"", 0x6A86)


def test_internal_authenticate_length_and_keys() -> None:
    card = keyed_card()
    assert tx(card, "008800000F" + P.hex() + R.hex()[:-2])[1] == 0x6700
    plain = build_card(load_sample("sichuan-3.0"))
    plain.power_on()
    tx(plain, SELECT)
    assert tx(plain, "0088000010" + P.hex() + R.hex() + "08") == (b"", 0x6A88)


def test_internal_authenticate_outside_the_ssse_is_not_the_applets() -> None:
    card = keyed_card()
    tx(card, "00A40000023F00")
    assert tx(card, "0088000010" + P.hex() + R.hex() + "08") == (b"", 0x6D00)


# --- EXTERNAL AUTHENTICATE ------------------------------------------------------------------


def hsm_answer(alg: int, original: bytes, process_factor: bytes) -> bytes:
    """What the HSM / PSAM computes: the cryptogram of the original under the session key
    of the process factor (the card's last challenge) and the card's RKSSSE."""
    return crypto.cryptogram(alg, crypto.session_key(alg, RKSSSE_KEY, process_factor), original)


def two_challenges(card: CardOS) -> tuple[bytes, bytes]:
    original, _ = tx(card, "0084000008")
    process_factor, _ = tx(card, "0084000008")
    return original, process_factor


def test_external_authenticate_unlocks_ef06_as_the_real_log_does() -> None:
    card = keyed_card()
    assert tx(card, "00B2080014")[1] == 0x6986  # no current EF yet
    assert tx(card, "00A4020002EF06") == (b"", 0x9000)
    assert tx(card, "00B2080014")[1] == 0x6982
    original, process_factor = two_challenges(card)
    auth = hsm_answer(3, original, process_factor)
    assert tx(card, "0082000A10" + auth.hex() + original.hex()) == (b"", 0x9000)
    assert card.is_granted(RKSSSE)
    record, sw = tx(card, "00B2080014")
    assert sw == 0x9000 and record[:2] == b"\x08\x12"


def test_external_authenticate_with_the_process_factor_first_fails() -> None:
    # The old (wrong) reading: the first challenge as process factor.
    card = keyed_card()
    original, process_factor = two_challenges(card)
    auth = hsm_answer(3, process_factor, original)
    assert tx(card, "0082000A10" + auth.hex() + process_factor.hex())[1] == 0x63CE


@pytest.mark.parametrize(("p1p2", "sw"), [("0002", 0x6A88), ("0001", 0x6A88), ("010A", 0x6A86)])
def test_external_authenticate_key_id_and_p1(p1p2: str, sw: int) -> None:
    card = keyed_card()
    tx(card, "0084000008")
    assert tx(card, "0082" + p1p2 + "10" + "00" * 16) == (b"", sw)


def test_external_authenticate_needs_a_challenge_and_uses_it_once() -> None:
    card = keyed_card()
    assert tx(card, "0082000A10" + "00" * 16) == (b"", 0x6984)
    original, process_factor = two_challenges(card)
    auth = hsm_answer(3, original, process_factor)
    command = "0082000A10" + auth.hex() + original.hex()
    assert tx(card, command) == (b"", 0x9000)
    assert tx(card, command) == (b"", 0x6984)  # the challenge served once
    assert tx(card, "0084000004")[1] == 0x6700  # a strict card: 00 84 00 00 08 only
    card = keyed_card(challenge_lengths=(4, 8))
    assert tx(card, "0084000004")[1] == 0x9000
    assert tx(card, command) == (b"", 0x6984)  # a 4-byte challenge is no process factor


def test_external_authenticate_counts_failures_and_blocks() -> None:
    card = keyed_card()
    for left in range(EXTERNAL_AUTH_TRIES - 1, 0, -1):
        tx(card, "0084000008")
        assert tx(card, "0082000A10" + "00" * 16) == (b"", 0x63C0 | left)
    tx(card, "0084000008")
    assert tx(card, "0082000A10" + "00" * 16) == (b"", 0x6983)
    original, process_factor = two_challenges(card)
    auth = hsm_answer(3, original, process_factor)
    assert tx(card, "0082000A10" + auth.hex() + original.hex()) == (b"", 0x6983)
    card.power_on()  # the retry counter is non-volatile
    tx(card, SELECT)
    assert tx(card, "0082000A10" + "00" * 16) == (b"", 0x6983)


def test_external_authenticate_success_resets_the_counter() -> None:
    card = keyed_card()
    tx(card, "0084000008")
    assert tx(card, "0082000A10" + "00" * 16)[1] == 0x63CE
    original, process_factor = two_challenges(card)
    auth = hsm_answer(3, original, process_factor)
    assert tx(card, "0082000A10" + auth.hex() + original.hex())[1] == 0x9000
    tx(card, "0084000008")
    assert tx(card, "0082000A10" + "00" * 16)[1] == 0x63CE


def test_external_authenticate_with_des_keys() -> None:
    card = keyed_card("chongqing-2.0")
    original, process_factor = two_challenges(card)
    auth = hsm_answer(1, original, process_factor)
    assert tx(card, "0082000A10" + auth.hex() + original.hex()) == (b"", 0x9000)


def test_rights_die_at_power_on() -> None:
    card = keyed_card()
    original, process_factor = two_challenges(card)
    tx(card, "0082000A10" + hsm_answer(3, original, process_factor).hex() + original.hex())
    card.power_on()
    assert not card.is_granted(RKSSSE)
