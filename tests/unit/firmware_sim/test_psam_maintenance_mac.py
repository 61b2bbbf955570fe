"""The PSAM's side of APPLICATION BLOCK (the real BOM code's ``cpu_cal_protect_mac``):
INIT SAM FOR DESCRYPT ``80 1A 45 <key version> 10 serial8 issuer8`` sets up the card's DAMK
from the maintenance master, CIPHER DATA ``80 FA 05 00 Lc IV data`` answers the MAC that
``84 1E`` carries to the card - and that MAC blocks the simulated card."""

from __future__ import annotations

import pytest
from helpers.card_exchange import tx

from firmware_sim import crypto
from firmware_sim.cardos import CardOS, t1_atr
from firmware_sim.keys import MasterKeys
from firmware_sim.psam_applet import build_psam
from firmware_sim.tunion_applet import TUnionApplet, add_tunion

SERIAL = bytes.fromhex("29000000000000001C01")
SELECT_PURSE = "00A4040008A000000632010105"
SELECT_PSAM = "00A4040006D1560000059000"
NAMES = ("purchase", "maintenance")
MASTERS = {(a, n): bytes([a, 0x40 + i]) * 8 for a in (1, 3) for i, n in enumerate(NAMES)}
KEY_VERSION = {1: 0x02, 3: 0x03}
HEADER_PADDED = bytes.fromhex("841E000004800000")  # 84 1E 00 00 04 || 80 00 00


def psam(masters: dict | None = None, protocol: str = "T=1") -> CardOS:
    keys = MasterKeys("290100000042", MASTERS if masters is None else masters)
    card = build_psam(keys, protocol)
    card.power_on()
    # the FCI is 6F 08 84 06 <AID>: 10 bytes, announced with 610A over T=0
    assert tx(card, SELECT_PSAM)[1] == (0x9000 if protocol == "T=1" else 0x610A)
    return card


def purse(alg: int) -> tuple[CardOS, TUnionApplet]:
    card = CardOS(t1_atr(b"PURSE"), "T=1")
    applet = add_tunion(card, MasterKeys("290100000042", MASTERS), algorithm=alg, app_serial=SERIAL)
    card.power_on()
    assert tx(card, SELECT_PURSE)[1] == 0x9000
    return card, applet


def init_descrypt(applet: TUnionApplet, key_version: int) -> str:
    info = applet.public_info
    return f"801A45{key_version:02X}10" + (info.serial_low8 + info.issuer_id).hex()


@pytest.mark.parametrize("alg", [1, 3])
def test_the_psams_mac_blocks_the_card(alg: int) -> None:
    sam = psam()
    card, applet = purse(alg)
    assert tx(sam, init_descrypt(applet, KEY_VERSION[alg])) == (b"", 0x9000)
    random, sw = tx(card, "0084000004")
    assert sw == 0x9000
    iv = random + bytes(4)
    mac, sw = tx(sam, "80FA050010" + (iv + HEADER_PADDED).hex())
    assert sw == 0x9000 and len(mac) == 4
    assert tx(card, "841E000004" + mac.hex()) == (b"", 0x9000)
    assert applet.blocked == 0x00
    assert tx(card, SELECT_PURSE)[1] == 0x6283
    assert tx(card, "805C000204") == (b"", 0x9303)


@pytest.mark.parametrize("alg", [1, 3])
def test_the_descrypt_key_is_the_cards_damk(alg: int) -> None:
    sam = psam()
    _, applet = purse(alg)
    tx(sam, init_descrypt(applet, KEY_VERSION[alg]))
    iv = bytes.fromhex("0102030400000000")
    mac, sw = tx(sam, "80FA050010" + (iv + HEADER_PADDED).hex())
    info = applet.public_info
    damk = crypto.maintenance_key(
        alg, MASTERS[(alg, "maintenance")], info.issuer_id, info.app_serial
    )
    assert applet._maintenance_key == damk
    expected = crypto.application_block_mac(alg, damk, iv[:4], HEADER_PADDED[:5])
    assert (mac, sw) == (expected, 0x9000)


def test_a_wrong_key_version_gives_a_mac_the_card_refuses() -> None:
    sam = psam()
    card, applet = purse(1)
    tx(sam, init_descrypt(applet, 0x03))  # the SM4 master for a 3DES card
    random, _ = tx(card, "0084000004")
    mac, sw = tx(sam, "80FA050010" + (random + bytes(4) + HEADER_PADDED).hex())
    assert sw == 0x9000
    assert tx(card, "841E000004" + mac.hex()) == (b"", 0x6988)
    assert applet.blocked is None


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("801A4504" + "10" + "00" * 16, 0x6A88),  # unknown key version
        ("801A4501" + "10" + "00" * 16, 0x6A88),
        ("801A4402" + "10" + "00" * 16, 0x6A86),  # P1 not 45
        ("801A4502" + "0F" + "00" * 15, 0x6700),  # Lc not 10
        ("801A4502" + "11" + "00" * 17, 0x6700),
    ],
)
def test_init_sam_for_descrypt_errors(apdu: str, sw: int) -> None:
    assert tx(psam(), apdu) == (b"", sw)


def test_no_maintenance_master_is_6a88() -> None:
    sam = psam({(1, "purchase"): bytes(16)})
    assert tx(sam, "801A450210" + "00" * 16) == (b"", 0x6A88)


def test_cipher_data_mac_needs_a_descrypt_key() -> None:
    sam = psam()
    command = "80FA050010" + "00" * 16
    assert tx(sam, command) == (b"", 0x6985)
    assert tx(sam, "801A450210" + "00" * 16) == (b"", 0x9000)
    assert tx(sam, command)[1] == 0x9000
    assert tx(sam, "801A450410" + "00" * 16) == (b"", 0x6A88)  # a failed set-up drops it
    assert tx(sam, command) == (b"", 0x6985)
    assert tx(sam, "801A450210" + "00" * 16)[1] == 0x9000
    sam.power_off()
    sam.power_on()  # RAM
    tx(sam, SELECT_PSAM)
    assert tx(sam, command) == (b"", 0x6985)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("80FA050008" + "00" * 8, 0x6700),  # IV only, no data
        ("80FA05000C" + "00" * 12, 0x6700),  # data not whole 8-byte blocks
        ("80FA050001" + "00", 0x6700),
        ("80FA060010" + "00" * 16, 0x6A86),
        ("80FA050110" + "00" * 16, 0x6A86),
    ],
)
def test_cipher_data_mac_errors(apdu: str, sw: int) -> None:
    sam = psam()
    tx(sam, "801A450210" + "00" * 16)
    assert tx(sam, apdu) == (b"", sw)


def test_cipher_data_mac_over_two_blocks_and_t0() -> None:
    sam = psam(protocol="T=0")
    assert tx(sam, "801A450310" + "00" * 16) == (b"", 0x9000)
    assert tx(sam, "80FA050018" + "00" * 24) == (b"", 0x6104)
    mac, sw = tx(sam, "00C0000004")
    assert sw == 0x9000 and len(mac) == 4
