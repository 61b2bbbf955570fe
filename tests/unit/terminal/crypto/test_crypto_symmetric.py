"""SM4, DES/3DES, ISO/IEC 9797-1 MACs, secure-messaging MACs and card key derivation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto import symmetric as sy
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.errors import CryptoError

K1 = bytes.fromhex("0123456789ABCDEF")
K2 = bytes.fromhex("FEDCBA9876543210")
NOW = b"Now is the time for all "


def test_sm4_gbt32907_example() -> None:
    k = bytes.fromhex("0123456789abcdeffedcba9876543210")
    c = sy.sm4_ecb_encrypt(k, k)
    assert c.hex() == "681edf34d206965e86b3e94f536e4246"
    assert sy.sm4_ecb_decrypt(k, c) == k


def test_des_fips81_first_block() -> None:
    # FIPS 81 appendix B ECB example: "Now is t" under 0123456789abcdef.
    assert sy.des3_ecb_encrypt(K1, NOW[:8]).hex() == "3fa40e8a984d4815"
    assert sy.des3_ecb_encrypt(K1 + K1, NOW[:8]).hex() == "3fa40e8a984d4815"
    assert sy.des3_ecb_decrypt(K1 * 3, bytes.fromhex("3fa40e8a984d4815")) == NOW[:8]


def test_iso9797_annex_b_examples() -> None:
    # ISO/IEC 9797-1:1999 annex B, DEA, padding method 1 (data already whole blocks).
    assert sy.mac_iso9797_alg1(K1, NOW, pad=False).hex().upper() == "70A30640CC76DD8B"
    assert sy.mac_iso9797_alg3(K1 + K2, NOW, pad=False).hex().upper() == "A1C72E74EA3FA9B6"


def _independent_retail_mac(key: bytes, data: bytes) -> bytes:
    # Written differently on purpose: pycryptodomex DES in CBC mode over the whole input.
    des = pytest.importorskip("Cryptodome.Cipher.DES")
    padded = data + b"\x80" + b"\x00" * ((-len(data) - 1) % 8)
    last = des.new(key[:8], des.MODE_CBC, iv=bytes(8)).encrypt(padded)[-8:]
    last = des.new(key[8:], des.MODE_ECB).decrypt(last)
    return des.new(key[:8], des.MODE_ECB).encrypt(last)


def _independent_sm4_cbc_last(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    padded = data + b"\x80" + b"\x00" * ((-len(data) - 1) % 16)
    enc = Cipher(algorithms.SM4(key), modes.CBC(bytes(16))).encryptor()
    return (enc.update(padded) + enc.finalize())[-16:]


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=70))
def test_retail_mac_against_independent(key: bytes, data: bytes) -> None:
    assert sy.mac_iso9797_alg3(key, data) == _independent_retail_mac(key, data)
    assert sy.sm_mac_3des(key, data) == _independent_retail_mac(key, data)[:4]


@settings(max_examples=60, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), data=st.binary(max_size=70))
def test_sm4_mac_against_independent(key: bytes, data: bytes) -> None:
    last = _independent_sm4_cbc_last(key, data)
    assert sy.mac_iso9797_alg1(key, data, Alg.SM4) == last
    x = 0
    for i in range(4):
        x ^= int.from_bytes(last[4 * i : 4 * i + 4], "big")
    assert sy.sm_mac_sm4(key, data) == x.to_bytes(4, "big")
    assert sy.sm_mac(Alg.SM4, key, data) == sy.sm_mac_sm4(key, data)


def test_single_des_sm_mac_is_alg1() -> None:
    des = pytest.importorskip("Cryptodome.Cipher.DES")
    data = bytes.fromhex("04D6810008") + b"12345678"
    padded = sy.pad_iso9797_m2(data, 8)
    want = des.new(K1, des.MODE_CBC, iv=bytes(8)).encrypt(padded)[-8:-4]
    assert sy.sm_mac_3des(K1, data) == want


def test_padding_method_2() -> None:
    assert sy.pad_iso9797_m2(b"", 8) == bytes.fromhex("8000000000000000")
    assert sy.pad_iso9797_m2(b"1234567", 8) == b"1234567\x80"
    assert sy.pad_iso9797_m2(b"12345678", 8) == b"12345678\x80" + bytes(7)
    assert len(sy.pad_iso9797_m2(b"x" * 16, 16)) == 32


def test_diversify_definitions() -> None:
    master = bytes(range(16))
    d = bytes.fromhex("0102030405060708")
    inv = bytes(b ^ 0xFF for b in d)
    assert sy.diversify(master, d, Alg.DES3) == sy.des3_ecb_encrypt(
        master, d
    ) + sy.des3_ecb_encrypt(master, inv)
    assert sy.diversify(master, d, Alg.SM4) == sy.sm4_ecb_encrypt(master, d + inv)


def test_ssc_card_key_two_levels() -> None:
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    # Historical bytes of the real 3.0 card ATR 3B6D000000814A444686605199000001AC.
    hist = bytes.fromhex("814A444686605199000001AC")
    hist13 = hist + b"\x00"
    for alg in (Alg.DES3, Alg.SM4):
        lvl1 = sy.diversify(master, b"519900sx", alg)
        want = sy.diversify(lvl1, hist13[5:13], alg)
        assert sy.ssc_card_key(master, b"519900sx", hist13[5:13], alg) == want
        assert len(want) == 16
    with pytest.raises(CryptoError):
        sy.ssc_card_key(master, b"519900sx", hist[5:12], Alg.SM4)  # only 7 bytes


def test_session_keys() -> None:
    card = bytes(range(16))
    chal = bytes.fromhex("1122334455667788")
    assert sy.session_key(card, chal, Alg.DES3) == sy.des3_ecb_encrypt(card, chal)
    assert len(sy.session_key(card, chal, Alg.DES3)) == 8
    assert sy.session_key(card, chal, Alg.SM4) == sy.sm4_ecb_encrypt(card, chal + bytes(8))
    with pytest.raises(CryptoError):
        sy.session_key(card, chal[:4], Alg.DES3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: sy.sm4_ecb_encrypt(bytes(8), bytes(16)),
        lambda: sy.sm4_ecb_encrypt(bytes(16), bytes(15)),
        lambda: sy.des3_ecb_encrypt(bytes(12), bytes(8)),
        lambda: sy.mac_iso9797_alg3(bytes(8), b"x"),
        lambda: sy.mac_iso9797_alg1(K1, b"abc", pad=False),
        lambda: sy.sm_mac_3des(bytes(24), b"x"),
        lambda: sy.diversify(bytes(16), bytes(8), Alg.SSF33),
        lambda: sy.diversify(bytes(16), bytes(8), 7),
        lambda: sy.diversify(bytes(16), bytes(7), Alg.SM4),
        lambda: sy.ssc_card_key(bytes(16), b"51990sx", bytes(8), Alg.SM4),
        lambda: sy.sm4_ecb_encrypt("k" * 16, bytes(16)),  # type: ignore[arg-type]
    ],
)
def test_errors_are_typed(call) -> None:
    with pytest.raises(CryptoError):
        call()


def test_ssf33_unsupported_message() -> None:
    with pytest.raises(CryptoError, match="unsupported"):
        sy.session_key(bytes(16), bytes(8), 2)
