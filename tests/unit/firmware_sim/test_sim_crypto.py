"""The simulator's symmetric crypto (firmware_sim.crypto): published known answers, and the
same results as the terminal's (terminal.crypto.symmetric, terminal.ssc.auth,
terminal.transit.macs) on fixed and random inputs. Two independent implementations of
one specification: a disagreement is a bug on one side."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim import crypto
from firmware_sim.spec import ssc
from terminal.crypto import symmetric as terminal_crypto
from terminal.errors import CryptoError
from terminal.ssc import auth as terminal_auth
from terminal.ssc.cardspec import region_factor as terminal_region_factor
from terminal.transit import macs as terminal_macs

K1 = bytes.fromhex("0123456789ABCDEF")
K2 = bytes.fromhex("FEDCBA9876543210")
NOW = b"Now is the time for all "
MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
HISTORICAL = bytes.fromhex("00814A444686605199000001AC")  # the real 3.0 card's ATR T1..TD
ALGORITHMS = (crypto.DES3, crypto.SM4)

# --- published known answers ----------------------------------------------------------------


def test_sm4_gbt_32907_example_1() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    cipher = crypto.encrypt(crypto.SM4, key, key)
    assert cipher.hex().upper() == "681EDF34D206965E86B3E94F536E4246"
    assert crypto.decrypt(crypto.SM4, key, cipher) == key


def test_des_fips_81_now_is_t() -> None:
    assert crypto.encrypt(crypto.DES3, K1, NOW[:8]).hex().upper() == "3FA40E8A984D4815"
    assert crypto.encrypt(crypto.DES3, K1 + K1, NOW[:8]).hex().upper() == "3FA40E8A984D4815"
    assert crypto.encrypt(crypto.DES3, K1 * 3, NOW[:8]).hex().upper() == "3FA40E8A984D4815"


def test_iso_9797_1_annex_b_mac_algorithms_1_and_3() -> None:
    assert crypto.cbc_mac(crypto.DES3, K1, NOW, pad=False).hex().upper() == "70A30640CC76DD8B"
    assert crypto.retail_mac(K1 + K2, NOW, pad=False).hex().upper() == "A1C72E74EA3FA9B6"


def test_padding_method_2_always_adds_80() -> None:
    assert crypto.pad_method_2(b"", 8) == bytes.fromhex("8000000000000000")
    assert crypto.pad_method_2(bytes(8), 8) == bytes(8) + bytes.fromhex("8000000000000000")
    assert len(crypto.pad_method_2(b"\x01", 16)) == 16


def test_diversification_shapes() -> None:
    d = bytes.fromhex("0102030405060708")
    not_d = bytes(b ^ 0xFF for b in d)
    des = crypto.diversify(crypto.DES3, MASTER, d)
    assert des == crypto.encrypt(1, MASTER, d) + crypto.encrypt(1, MASTER, not_d)
    assert crypto.diversify(crypto.SM4, MASTER, d) == crypto.encrypt(3, MASTER, d + not_d)


def test_zhejiang_region_factor() -> None:
    assert ssc.region_factor("330381") == b"330300sx"
    assert ssc.region_factor("331002") == b"331000sx"
    assert ssc.region_factor("500103") == b"500103sx"
    assert ssc.region_factor("510104") == b"510104sx"
    assert ssc.card_factor(HISTORICAL) == bytes.fromhex("86605199000001AC")  # T6..TD
    key = crypto.ssc_card_key(crypto.DES3, MASTER, "330381", HISTORICAL)
    level1 = crypto.diversify(crypto.DES3, MASTER, b"330300sx")
    assert key == crypto.diversify(crypto.DES3, level1, HISTORICAL[5:13])


def test_session_key_and_cryptogram_shapes() -> None:
    p = bytes.fromhex("1122334455667788")
    assert len(crypto.session_key(crypto.DES3, MASTER, p)) == 8  # single DES
    assert crypto.session_key(crypto.SM4, MASTER, p) == crypto.encrypt(3, MASTER, p + bytes(8))
    sk = crypto.session_key(crypto.SM4, MASTER, p)
    assert crypto.cryptogram(crypto.SM4, sk, p) == crypto.encrypt(3, sk, p + bytes(8))[:8]


@pytest.mark.parametrize(
    "call",
    [
        lambda: crypto.encrypt(2, MASTER, bytes(16)),  # SSF33: no implementation
        lambda: crypto.encrypt(crypto.SM4, bytes(8), bytes(16)),
        lambda: crypto.encrypt(crypto.DES3, bytes(10), bytes(8)),
        lambda: crypto.encrypt(crypto.DES3, MASTER, bytes(7)),
        lambda: crypto.diversify(crypto.SM4, MASTER, bytes(7)),
        lambda: crypto.session_key(crypto.SM4, MASTER, bytes(16)),
        lambda: crypto.cryptogram(crypto.SM4, MASTER, bytes(9)),
        lambda: crypto.sm_mac(crypto.DES3, bytes(24), b""),
        lambda: crypto.ssc_card_key(crypto.SM4, MASTER, "5001", HISTORICAL),
        lambda: crypto.ssc_card_key(crypto.SM4, MASTER, "500103", HISTORICAL[:12]),
        lambda: crypto.cbc_mac(crypto.DES3, K1, b"abc", pad=False),
    ],
)
def test_bad_inputs_are_crypto_errors(call) -> None:
    with pytest.raises(CryptoError):
        call()


# --- the terminal and the simulator agree ---------------------------------------------------


def test_ecb_agrees_on_the_published_vectors() -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert crypto.encrypt(crypto.SM4, key, key) == terminal_crypto.sm4_ecb_encrypt(key, key)
    assert crypto.encrypt(1, K1 + K2, NOW) == terminal_crypto.des3_ecb_encrypt(K1 + K2, NOW)


_key16 = st.binary(min_size=16, max_size=16)
_eight = st.binary(min_size=8, max_size=8)
_alg = st.sampled_from(ALGORITHMS)


@settings(max_examples=60)
@given(_alg, _key16, _eight, _eight, st.binary(max_size=40))
def test_card_computations_agree(alg, key, factor, data8, data) -> None:
    assert crypto.diversify(alg, key, factor) == terminal_crypto.diversify(key, factor, alg)
    sk = crypto.session_key(alg, key, factor)
    assert sk == terminal_crypto.session_key(key, factor, alg)
    assert crypto.cryptogram(alg, sk, data8) == terminal_auth.cryptogram(alg, sk, data8)
    assert crypto.sm_mac(alg, sk, data) == terminal_crypto.sm_mac(alg, sk, data)
    assert crypto.sm_mac(alg, key, data) == terminal_crypto.sm_mac(alg, key, data)


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("region", ["500103", "510104", "330381"])
def test_ssc_card_keys_agree_level_by_level(alg: int, region: str) -> None:
    d1, d2 = ssc.region_factor(region), ssc.card_factor(HISTORICAL)
    terminal_key = terminal_crypto.diversify(terminal_crypto.diversify(MASTER, d1, alg), d2, alg)
    assert crypto.ssc_card_key(alg, MASTER, region, HISTORICAL) == terminal_key


@pytest.mark.parametrize("region", ["330381", "500103", "330100"])
def test_region_factor_agrees_with_the_terminal(region: str) -> None:
    assert ssc.region_factor(region) == terminal_region_factor(region)


@settings(max_examples=40)
@given(
    _alg,
    _key16,
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=10, max_size=10),
    st.binary(min_size=4, max_size=4),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(1, 0xFFFFFFFF),
)
def test_purchase_computations_agree(alg, master, issuer_id, serial, random, counter, tsn, amount):
    terminal_alg = terminal_crypto.SymmetricAlgorithm(alg)
    dpk = crypto.purchase_key(alg, master, issuer_id, serial)
    assert dpk == terminal_macs.card_purchase_key(master, issuer_id, serial, terminal_alg)
    sk = crypto.purchase_session_key(alg, dpk, random, counter, tsn)
    assert sk == terminal_macs.purchase_session_key(dpk, random, counter, tsn, terminal_alg)
    terminal_no, date, time = bytes.fromhex("500100000042"), b"\x20\x24\x05\x06", b"\x07\x08\x09"
    mac1 = crypto.mac1(alg, sk, amount, 0x09, terminal_no, date, time)
    data = terminal_macs.mac1_input(amount, 0x09, terminal_no, date, time)
    assert mac1 == terminal_macs.purchase_mac1(terminal_alg, sk, data)
    assert crypto.mac2(alg, sk, amount) == terminal_macs.purchase_mac2(terminal_alg, sk, amount)
    assert crypto.tac_key(alg, dpk) == terminal_macs.tac_key(dpk, terminal_alg)
    tac = crypto.tac(alg, dpk, amount, 0x09, terminal_no, tsn, date, time)
    assert tac == terminal_macs.purchase_tac(
        terminal_alg, dpk, amount, 0x09, terminal_no, tsn, date, time
    )


@pytest.mark.parametrize(
    ("alg", "dpk", "mac1", "mac2", "tac"),
    [
        (crypto.DES3, "1F16664B86520E2E2FB4DD5DE58AC1FE", "FB99AEF4", "7002A40F", "CE86EC0F"),
        (crypto.SM4, "774C12A6DBD5E02F7E58A5E133959D41", "2655DE43", "2E066AEC", "44F83E41"),
    ],
)
def test_fixed_purchase_vectors(alg: int, dpk: str, mac1: str, mac2: str, tac: str) -> None:
    """One fixed purchase per algorithm, pinned: a change on either side shows here."""
    issuer_id, serial = bytes.fromhex("500050000001FFFF"), bytes.fromhex("50000000000000001234")
    terminal_no, date, time = (
        bytes.fromhex("500100000042"),
        bytes.fromhex("20240506"),
        b"\x07\x08\x09",
    )
    key = crypto.purchase_key(alg, MASTER, issuer_id, serial)
    sk = crypto.purchase_session_key(alg, key, bytes.fromhex("01020304"), 7, 0x00010002)
    assert key.hex().upper() == dpk
    assert crypto.mac1(alg, sk, 150, 0x09, terminal_no, date, time).hex().upper() == mac1
    assert crypto.mac2(alg, sk, 150).hex().upper() == mac2
    assert crypto.tac(alg, key, 150, 0x09, terminal_no, 0x00010002, date, time).hex().upper() == tac
    terminal_alg = terminal_crypto.SymmetricAlgorithm(alg)
    terminal_key = terminal_macs.card_purchase_key(MASTER, issuer_id, serial, terminal_alg)
    assert terminal_key == key
