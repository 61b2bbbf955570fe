"""APPLICATION BLOCK (应用锁定) of the e-purse: ``00 84 00 00 04`` then ``84 1E 00 P2 04
MAC``, the MAC under the card's DAMK with the challenge as initial value. A blocked e-purse
answers SELECT with its FCI and 6283, GET BALANCE / INITIALIZE 9303, for good."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.card_exchange import tx

from firmware_sim import crypto
from firmware_sim.cardos import CardOS, t0_atr, t1_atr
from firmware_sim.keys import MasterKeys
from firmware_sim.profile import format_profile, load_sample, parse_profile
from firmware_sim.spec import tunion
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import TUnionApplet, add_tunion, tunion_fci

SERIAL = bytes.fromhex("29000000000000001B01")
SELECT = "00A4040008A000000632010105"
TERMINAL_NO = bytes.fromhex("290100000042")
NAMES = ("purchase", "maintenance")
MASTERS = {(a, name): bytes([a, ord(name[0])]) * 8 for a in (1, 3) for name in NAMES}


def card_with(
    alg: int = 1, protocol: str = "T=1", **options: object
) -> tuple[CardOS, TUnionApplet]:
    atr = t1_atr(b"BLOCK") if protocol == "T=1" else t0_atr(b"BLOCK")
    card = CardOS(atr, protocol)
    keys = MasterKeys("290100000042", MASTERS)
    applet = add_tunion(card, keys, algorithm=alg, balance=500, app_serial=SERIAL, **options)  # type: ignore[arg-type]
    card.power_on()
    fci = tunion_fci(applet.public_info.to_bytes())
    if protocol == "T=0":
        assert tx(card, SELECT) == (b"", 0x6100 | len(fci))
        assert tx(card, f"00C00000{len(fci):02X}") == (fci, 0x9000)
    else:
        assert tx(card, SELECT) == (fci, 0x9000)
    return card, applet


def damk(applet: TUnionApplet) -> bytes:
    info = applet.public_info
    master = MASTERS[(applet.algorithm, "maintenance")]
    return crypto.maintenance_key(applet.algorithm, master, info.issuer_id, info.app_serial)


def block_command(applet: TUnionApplet, challenge: bytes, p2: int = 0x00) -> str:
    header = bytes((0x84, 0x1E, 0x00, p2, 0x04))
    mac = crypto.application_block_mac(applet.algorithm, damk(applet), challenge, header)
    return (header + mac).hex()


def challenge(card: CardOS) -> bytes:
    data, sw = tx(card, "0084000004")
    assert sw == 0x9000 and len(data) == 4
    return data


@pytest.mark.parametrize("alg", [1, 3])
@pytest.mark.parametrize("p2", [0x00, 0x01])
def test_block_with_a_good_mac_lasts_across_power_off(alg: int, p2: int) -> None:
    card, applet = card_with(alg)
    fci = tunion_fci(applet.public_info.to_bytes())
    assert tx(card, block_command(applet, challenge(card), p2)) == (b"", 0x9000)
    assert applet.blocked == p2
    for _ in range(2):
        assert tx(card, SELECT) == (fci, 0x6283)
        assert tx(card, "805C000204") == (b"", 0x9303)
        init = "805003020B01" + "00000001" + TERMINAL_NO.hex() + "0F"
        assert tx(card, init) == (b"", 0x9303)
        # reads still work: a reader may show why
        assert tx(card, "00B095001E") == (applet.public_info.to_bytes(), 0x9000)
        assert tx(card, "00B201D480")[1] == 0x9000
        assert tx(card, "00B201C417") == (b"", 0x6A83)
        card.power_off()
        card.power_on()


def test_t0_select_of_a_blocked_purse_ends_its_get_response_with_6283() -> None:
    card, applet = card_with(protocol="T=0")
    assert tx(card, block_command(applet, challenge(card))) == (b"", 0x9000)
    fci = tunion_fci(applet.public_info.to_bytes())
    assert tx(card, SELECT) == (b"", 0x6100 | len(fci))
    assert tx(card, f"00C00000{len(fci):02X}") == (fci, 0x6283)


def test_wrong_mac_is_6988_and_uses_up_the_challenge() -> None:
    card, applet = card_with()
    random = challenge(card)
    good = block_command(applet, random)
    bad = good[:-8] + bytes(b ^ 0x55 for b in bytes.fromhex(good[-8:])).hex()
    assert tx(card, bad) == (b"", 0x6988)
    assert tx(card, good) == (b"", 0x6984)  # the challenge served one command
    assert applet.blocked is None
    assert tx(card, SELECT)[1] == 0x9000
    assert tx(card, "805C000204") == ((500).to_bytes(4, "big"), 0x9000)


def test_no_challenge_is_6984() -> None:
    card, applet = card_with()
    assert tx(card, "841E00000400000000") == (b"", 0x6984)
    random = challenge(card)
    card.power_off()
    card.power_on()  # a challenge is RAM
    tx(card, SELECT)
    assert tx(card, block_command(applet, random)) == (b"", 0x6984)
    assert applet.blocked is None


def test_an_8_byte_challenge_is_the_whole_initial_value() -> None:
    card, applet = card_with()
    random, sw = tx(card, "0084000008")  # the card OS's length stays
    assert sw == 0x9000 and len(random) == 8
    assert tx(card, block_command(applet, random)) == (b"", 0x9000)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("841E00020400000000", 0x6A86),  # P2 not 00/01
        ("841E01000400000000", 0x6A86),  # P1 not 00
        ("841E000003000000", 0x6700),  # Lc not 4
        ("841E000000", 0x6700),
    ],
)
def test_block_parameter_errors(apdu: str, sw: int) -> None:
    card, applet = card_with()
    challenge(card)
    assert tx(card, apdu) == (b"", sw)
    assert applet.blocked is None


def test_get_challenge_of_other_lengths_is_the_card_os() -> None:
    card, _ = card_with()
    assert tx(card, "0084000010") == (b"", 0x6700)  # not in the card's challenge_lengths
    assert tx(card, "0084010004") == (b"", 0x6A86)


def test_a_card_without_maintenance_key_refuses() -> None:
    card = CardOS(t1_atr(b"BLOCK"), "T=1")
    applet = add_tunion(card, purchase_key=bytes(16), algorithm=1, app_serial=SERIAL)
    card.power_on()
    tx(card, SELECT)
    challenge(card)
    assert tx(card, "841E00000400000000") == (b"", 0x6A88)
    assert applet.blocked is None


def test_a_permanent_block_stays_permanent() -> None:
    card, applet = card_with()
    assert tx(card, block_command(applet, challenge(card), 0x01))[1] == 0x9000
    assert tx(card, block_command(applet, challenge(card), 0x00))[1] == 0x9000
    assert applet.blocked == tunion.BLOCK_PERMANENT


def test_block_abandons_a_purchase_in_progress() -> None:
    card, applet = card_with()
    assert tx(card, "805003020B01" + "00000001" + TERMINAL_NO.hex() + "0F")[1] == 0x9000
    assert tx(card, block_command(applet, challenge(card)))[1] == 0x9000
    debit = "805401000F" + "00000001" + "20250301" + "081500" + "00000000" + "08"
    assert tx(card, debit) == (b"", 0x6985)
    assert applet.balance == 500


def test_profile_maintenance_key() -> None:
    profile = load_sample("tunion-plain")
    assert profile.tunion is not None
    key = bytes(range(16, 32))
    settings = dataclasses.replace(profile.tunion, maintenance_key=key)
    profile = dataclasses.replace(profile, tunion=settings)
    again = parse_profile(format_profile(profile), "p.toml")
    assert again.tunion is not None and again.tunion.maintenance_key == key
    assert key.hex() not in repr(again.tunion).lower()
    card = build_card(again)
    card.power_on()
    tx(card, SELECT)
    applet = next(a for a in card.applets if isinstance(a, TUnionApplet))
    random = challenge(card)
    header = bytes.fromhex("841E000004")
    mac = crypto.application_block_mac(applet.algorithm, key, random, header)
    assert tx(card, (header + mac).hex()) == (b"", 0x9000)
