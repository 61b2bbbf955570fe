"""File 0x1A (公共交通过程信息变长记录文件) and the composite purchase that writes it with
the 0x1E trip record: read, stage, write atomically on DEBIT, nothing on a failed DEBIT, and
the status words of commands out of spec."""

from __future__ import annotations

import zlib

import pytest
from helpers.card_exchange import tx

from firmware_sim import crypto
from firmware_sim.cardos import CardOS, t0_atr, t1_atr
from firmware_sim.profile import format_profile, load_sample, parse_profile
from firmware_sim.spec import tunion
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import TUnionApplet, add_tunion
from terminal.errors import ConfigError

SERIAL = bytes.fromhex("29000000000000001A01")
KEY = bytes(range(16))
SELECT = "00A4040008A000000632010105"
TERMINAL_NO = bytes.fromhex("290100000042")
DATE, TIME = bytes.fromhex("20250301"), bytes.fromhex("081500")
READ_RAIL = "00B201D480"  # record 1 of SFI 1A, as real terminals read it
FRESH = bytes.fromhex("01020080") + bytes(124)


def card_with(protocol: str = "T=1", **options: object) -> tuple[CardOS, TUnionApplet]:
    atr = t1_atr(b"RAIL") if protocol == "T=1" else t0_atr(b"RAIL")
    card = CardOS(atr, protocol)
    kwargs: dict[str, object] = {"purchase_key": KEY, "algorithm": 1, "balance": 1000}
    kwargs.update(options)
    applet = add_tunion(card, app_serial=SERIAL, **kwargs)  # type: ignore[arg-type]
    card.power_on()
    assert exchange(card, SELECT)[1] == 0x9000
    return card, applet


def exchange(card: CardOS, apdu: str) -> tuple[bytes, int]:
    """``apdu``, then GET RESPONSE when a T=0 card announces its data with 61xx."""
    data, sw = tx(card, apdu)
    if sw >> 8 == 0x61:
        return tx(card, f"00C00000{sw & 0xFF:02X}")
    return data, sw


def rail_record(record_id: int = 0x02, status: int = 0x01) -> bytes:
    """A rail record an entry gate could write: header, status, in/out 55, CRC."""
    record = bytearray(FRESH)
    record[1] = record_id
    record[6:14] = bytes.fromhex("0000000000000001")
    record[14] = status
    record[15:17] = b"\x29\x00"
    record[67:74] = bytes.fromhex("20250301081500")
    record[122] = 0x55
    record[124:128] = tunion.rail_crc(bytes(record))
    return bytes(record)


def trip_record() -> bytes:
    """A 0x1E trip record in the real layout (48 bytes)."""
    record = (
        b"\x09"
        + bytes(2)
        + TERMINAL_NO
        + b"\x01"
        + bytes.fromhex("0001 0203 0004 00")
        + (200).to_bytes(4, "big")
        + (800).to_bytes(4, "big")
        + bytes.fromhex("20250301081500")
        + b"\x29\x00"
        + bytes(8)
        + bytes(6)
    )
    assert len(record) == tunion.TRIP_RECORDS.length
    return record


def initialize(card: CardOS, amount: int, p1: int = 0x03) -> tuple[int, bytes]:
    init = f"8050{p1:02X}020B01" + amount.to_bytes(4, "big").hex() + TERMINAL_NO.hex() + "0F"
    answer, sw = exchange(card, init)
    assert sw == 0x9000, hex(sw)
    return int.from_bytes(answer[4:6], "big"), answer[11:15]


def debit(card: CardOS, amount: int, counter: int, random: bytes, *, right: bool = True) -> int:
    sk = crypto.purchase_session_key(1, KEY, random, counter, 7)
    mac1 = crypto.mac1(1, sk, amount, tunion.TYPE_COMPOSITE, TERMINAL_NO, DATE, TIME)
    if not right:
        mac1 = bytes(b ^ 0xFF for b in mac1)
    data = (7).to_bytes(4, "big") + DATE + TIME + mac1
    return exchange(card, "805401000F" + data.hex() + "08")[1]


# --- reading ---------------------------------------------------------------------------------


def test_a_fresh_card_answers_one_never_used_record() -> None:
    card, _ = card_with()
    assert tx(card, READ_RAIL) == (FRESH, 0x9000)
    assert tx(card, "00B201D400") == (b"", 0x6C80)  # Le 00: exact length, as every file
    assert tx(card, "00B201D47F") == (b"", 0x6C80)
    assert tx(card, "00B202D480") == (b"", 0x6A83)  # no record 2


def test_the_record_identifier_is_a_parameter() -> None:
    card, _ = card_with(rail_record_id=0x27)
    data, sw = tx(card, READ_RAIL)
    assert sw == 0x9000 and data[:4] == bytes.fromhex("01270080") and data[4:] == bytes(124)


def test_a_card_without_the_file_answers_6a82() -> None:
    card, applet = card_with(rail_record=False)
    assert applet.rail_ef is None
    assert tx(card, READ_RAIL) == (b"", 0x6A82)
    initialize(card, 100)
    assert tx(card, "80DC02D080" + rail_record().hex())[1] == 0x6A82


def test_a_record_written_elsewhere_is_answered_as_is() -> None:
    other = bytes(range(128))
    card, _ = card_with(rail_record_data=other)
    assert tx(card, READ_RAIL) == (other, 0x9000)


def test_t0_reads_the_record_without_get_response() -> None:
    card, _ = card_with("T=0")
    assert tx(card, READ_RAIL) == (FRESH, 0x9000)


def test_rail_crc_is_zlib_crc32_of_bytes_6_to_123() -> None:
    record = rail_record()
    assert record[124:] == zlib.crc32(record[6:124]).to_bytes(4, "big")


# --- the composite purchase --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["T=1", "T=0"])
def test_debit_writes_0x1a_and_0x1e_with_the_balance(protocol: str) -> None:
    card, applet = card_with(protocol)
    counter, random = initialize(card, 200)
    first = rail_record(status=0x01)
    assert tx(card, "80DC02D080" + first.hex()) == (b"", 0x9000)
    written = rail_record(status=0x02)  # a second one for the same file replaces it
    assert tx(card, "80DC02D080" + written.hex()) == (b"", 0x9000)
    trip = trip_record()
    assert tx(card, "80DC00F030" + trip.hex()) == (b"", 0x9000)
    assert tx(card, READ_RAIL) == (FRESH, 0x9000)  # staged only: nothing written yet
    assert tx(card, "00B201F430") == (b"", 0x6A83)
    assert debit(card, 200, counter, random) == 0x9000
    assert applet.balance == 800 and applet.counter == 1
    assert tx(card, READ_RAIL) == (written, 0x9000)
    assert tx(card, "00B201F430") == (trip, 0x9000)
    assert tx(card, "00B201C417")[0][9] == tunion.TYPE_COMPOSITE
    card.power_off()
    card.power_on()  # EEPROM
    exchange(card, SELECT)
    assert tx(card, READ_RAIL) == (written, 0x9000)
    assert tx(card, "00B201F430") == (trip, 0x9000)


def test_a_debit_that_fails_writes_nothing() -> None:
    card, applet = card_with()
    counter, random = initialize(card, 200)
    assert tx(card, "80DC02D080" + rail_record().hex())[1] == 0x9000
    assert tx(card, "80DC00F030" + trip_record().hex())[1] == 0x9000
    assert debit(card, 200, counter, random, right=False) == 0x9302
    assert applet.balance == 1000 and applet.counter == 0
    assert tx(card, READ_RAIL) == (FRESH, 0x9000)
    assert tx(card, "00B201F430") == (b"", 0x6A83)
    # the staged records went with the purchase: a new one starts clean
    counter, random = initialize(card, 100)
    assert debit(card, 100, counter, random) == 0x9000
    assert tx(card, READ_RAIL) == (FRESH, 0x9000)
    assert tx(card, "00B201F430") == (b"", 0x6A83)


def test_power_loss_before_debit_drops_the_staged_records() -> None:
    card, applet = card_with()
    initialize(card, 200)
    assert tx(card, "80DC02D080" + rail_record().hex())[1] == 0x9000
    card.power_off()
    card.power_on()
    tx(card, SELECT)
    assert tx(card, READ_RAIL) == (FRESH, 0x9000)
    assert applet.balance == 1000


def test_only_the_rail_record_may_be_staged() -> None:
    card, _ = card_with()
    counter, random = initialize(card, 200)
    assert tx(card, "80DC02D080" + rail_record().hex())[1] == 0x9000
    assert debit(card, 200, counter, random) == 0x9000
    assert tx(card, READ_RAIL) == (rail_record(), 0x9000)
    assert tx(card, "00B201F430") == (b"", 0x6A83)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("80DC03D080" + rail_record(0x03).hex(), 0x6A83),  # no record with id 03
        ("80DC02D080" + rail_record(0x03).hex(), 0x6A80),  # P1 is not byte 1
        ("80DC02D07F" + rail_record().hex()[:-2], 0x6700),  # Lc not 80
        ("80DC02D030" + trip_record().hex(), 0x6700),
        ("80DC01F030" + trip_record().hex(), 0x6A86),  # cyclic 0x1E: P1 00 only
        ("80DC00F031" + trip_record().hex() + "00", 0x6700),  # Lc not 30
        ("80DC00E830" + trip_record().hex(), 0x6A86),  # P2 names no cache file
        ("80DC02D480" + rail_record().hex(), 0x6A86),  # P2 with mode bits
    ],
)
def test_update_capp_data_cache_out_of_spec(apdu: str, sw: int) -> None:
    card, _ = card_with()
    initialize(card, 200)
    assert tx(card, apdu) == (b"", sw)


def test_update_needs_a_composite_initialize() -> None:
    card, _ = card_with()
    assert tx(card, "80DC02D080" + rail_record().hex()) == (b"", 0x6985)
    initialize(card, 200, p1=0x01)
    assert tx(card, "80DC02D080" + rail_record().hex()) == (b"", 0x6985)
    assert tx(card, "80DC00F030" + trip_record().hex()) == (b"", 0x6985)


# --- profiles -----------------------------------------------------------------------------------


def test_profile_keys_for_the_rail_record() -> None:
    sample = load_sample("tunion-plain").tunion
    assert sample is not None and sample.rail_record and sample.rail_record_id == 2
    text = format_profile(load_sample("tunion-plain")).replace(
        "rail_record = true", "rail_record = false"
    )
    settings = parse_profile(text, "p.toml").tunion
    assert settings is not None and not settings.rail_record
    card = build_card(parse_profile(text, "p.toml"))
    card.power_on()
    tx(card, SELECT)
    assert tx(card, READ_RAIL) == (b"", 0x6A82)

    record = rail_record(0x09)
    text = format_profile(load_sample("tunion-plain")).replace(
        "rail_record_id = 2", f'rail_record_id = 9\nrail_record_hex = "{record.hex()}"'
    )
    profile = parse_profile(text, "p.toml")
    assert profile.tunion is not None and profile.tunion.rail_record_data == record
    assert parse_profile(format_profile(profile), "p.toml") == profile
    card = build_card(profile)
    card.power_on()
    tx(card, SELECT)
    assert tx(card, READ_RAIL) == (record, 0x9000)


@pytest.mark.parametrize(
    ("replace", "words"),
    [
        ('rail_record_hex = "00"', "128 bytes of hex"),
        ('rail_record = false\nrail_record_hex = "' + "00" * 128 + '"', "without file 0x1A"),
        ("rail_record_id = 256", "outside 0..255"),
    ],
)
def test_bad_rail_profile_keys(replace: str, words: str) -> None:
    text = format_profile(load_sample("tunion-plain"))
    text = text.replace("rail_record = true\n", "").replace("rail_record_id = 2\n", "")
    text = text.replace("[tunion]\n", "[tunion]\n" + replace + "\n", 1)
    with pytest.raises(ConfigError, match=words):
        parse_profile(text, "p.toml")
