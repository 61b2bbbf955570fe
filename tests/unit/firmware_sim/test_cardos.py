"""The card OS on a small generic file tree, through CardOS.process(bytes) only."""

from __future__ import annotations

import pytest
from helpers.card_exchange import tx
from helpers.card_faults import answer_of
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.apdu import Command, Response
from firmware_sim.cardos import (
    Applet,
    CardOS,
    LeMode,
    atr_checksum,
    contactless_atr,
    t0_atr,
    t1_atr,
)
from firmware_sim.filesystem import DedicatedFile, RecordEF, TransparentEF
from terminal.iso7816.apdu import CommandAPDU, ResponseAPDU
from terminal.iso7816.status_words import SW

HIST = bytes.fromhex("00814A44468660500110000001")
APP_NAME = bytes.fromhex("A0000000011000")
NESTED_NAME = bytes.fromhex("A000000001100001")
OTHER_NAME = bytes.fromhex("A0000000012000")
APP_FCI = bytes.fromhex("6F098407A0000000011000")
BINARY = bytes(range(256)) + bytes(range(44))  # 300 bytes
SMALL = b"hello"
RECORDS = [bytes.fromhex("0102AABB"), bytes.fromhex("0201CC"), bytes.fromhex("0101DD")]
BIG_RECORDS = [bytes([0x10 + i, 198]) + bytes([i]) * 198 for i in range(3)]  # 600 bytes
SECRET = "SECRET"


def make_card(
    protocol: str = "T=1",
    le_mode: str = "exact",
    uid: bytes | None = None,
    **options: object,
) -> CardOS:
    """MF
    ├─ DF 1000 (name A0000000011000, FCI)
    │   ├─ EF 1001 transparent 300 bytes, SFI 1
    │   ├─ EF 1002 records 01.. 02.. 01.., SFI 2
    │   ├─ EF 1003 record, SFI 3, needs SECRET
    │   ├─ EF 1004 transparent, SFI 4, needs SECRET
    │   ├─ EF 1005 three 200-byte records, SFI 5
    │   └─ DF 1100 (name A000000001100001)
    ├─ EF 2001 transparent "hello", SFI 4
    └─ DF 2000 (name A0000000012000, no FCI)
    """
    atr = t1_atr(HIST) if protocol == "T=1" else t0_atr(HIST)
    card = CardOS(atr, protocol, uid, le_mode=le_mode, **options)  # type: ignore[arg-type]
    app = card.mf.add(DedicatedFile(0x1000, name=APP_NAME, fci=APP_FCI))
    app.add(TransparentEF(0x1001, BINARY, sfi=1))
    app.add(RecordEF(0x1002, sfi=2, records=list(RECORDS)))
    app.add(RecordEF(0x1003, sfi=3, read_access=SECRET, records=[b"\x05\x01\xee"]))
    app.add(TransparentEF(0x1004, b"secret", sfi=4, read_access=SECRET))
    app.add(RecordEF(0x1005, sfi=5, records=list(BIG_RECORDS)))
    app.add(DedicatedFile(0x1100, name=NESTED_NAME, fci=b"\x6f\x00"))
    card.mf.add(TransparentEF(0x2001, SMALL, sfi=4))
    card.mf.add(DedicatedFile(0x2000, name=OTHER_NAME))
    card.power_on()
    return card


def select_app(card: CardOS) -> None:
    """SELECT by name, P2 00: the FCI answers directly (T=1) or as 61xx (T=0)."""
    sw = tx(card, "00A4040007" + APP_NAME.hex())[1]
    assert sw == SW.OK or sw >> 8 == 0x61


# --- life cycle and class/instruction checks ------------------------------------------------


def test_power_on_returns_atr_and_exposes_protocol() -> None:
    card = make_card("T=0")
    assert card.power_on() == card.atr == t0_atr(HIST)
    assert card.protocol == "T=0"
    assert card.powered
    card.power_off()
    assert not card.powered


@pytest.mark.parametrize(
    "apdu",
    ["", "00", "00A404", "00A404000F01", "00B200", "00A40400000002A0"],
)
def test_malformed_apdu_is_6700(apdu: str) -> None:
    assert tx(make_card(), apdu) == (b"", SW.WRONG_LENGTH)


def test_unknown_ins_is_6d00_and_unknown_cla_is_6e00() -> None:
    card = make_card()
    assert tx(card, "00EE000000")[1] == SW.INS_NOT_SUPPORTED
    assert tx(card, "8050010200")[1] == SW.CLA_NOT_SUPPORTED
    assert tx(card, "0CB0000000")[1] == SW.CLA_NOT_SUPPORTED


def test_a_class_the_card_knows_answers_6d00_for_an_unknown_instruction() -> None:
    card = make_card(proprietary_classes=[0x80])
    assert tx(card, "8050010200")[1] == SW.INS_NOT_SUPPORTED  # no application selected
    assert tx(card, "84B0000000")[1] == SW.CLA_NOT_SUPPORTED  # secure messaging: not offered


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"atr": b""}, "TS"),
        ({"atr": b"\x12\x00"}, "TS"),
        ({"protocol": "T=2"}, "protocol"),
        ({"uid": b"\x01\x02"}, "UID"),
    ],
)
def test_constructor_rejects_nonsense(kwargs: dict[str, object], problem: str) -> None:
    args: dict[str, object] = {"atr": t0_atr(HIST), **kwargs}
    with pytest.raises(ValueError, match=problem):
        CardOS(**args)  # type: ignore[arg-type]


# --- SELECT ---------------------------------------------------------------------------------


def test_select_df_by_fid_answers_fci_and_by_3f00_returns_to_mf() -> None:
    card = make_card()
    assert tx(card, "00A40000021000" + "0B") == (APP_FCI, SW.OK)
    assert card.current_df.fid == 0x1000
    assert tx(card, "00A40000023F00")[1] == SW.OK
    assert card.current_df is card.mf


def test_select_without_data_selects_mf() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00A40000")[1] == SW.OK
    assert card.current_df is card.mf


def test_select_by_fid_finds_parent_and_siblings() -> None:
    card = make_card()
    assert tx(card, "00A40000021000")[1] == SW.OK
    assert tx(card, "00A40000021100")[1] == SW.OK  # child of the current DF
    assert card.current_df.fid == 0x1100
    assert tx(card, "00A40000021001")[1] == SW.OK  # child of the parent
    assert card.current_ef is not None and card.current_ef.fid == 0x1001
    assert card.current_df.fid == 0x1000
    assert tx(card, "00A40000022000")[1] == SW.OK  # sibling of the current DF
    assert card.current_df.fid == 0x2000
    assert tx(card, "00A40000021001")[1] == SW.FILE_NOT_FOUND  # now two levels away


def test_select_parent_and_child_df() -> None:
    card = make_card()
    assert tx(card, "00A40100021000")[1] == SW.OK
    assert tx(card, "00A40100021001")[1] == SW.FILE_NOT_FOUND  # an EF is no DF
    assert tx(card, "00A40300")[1] == SW.OK
    assert card.current_df is card.mf
    assert tx(card, "00A40300")[1] == SW.FILE_NOT_FOUND  # nothing above the MF
    assert tx(card, "00A40300021000")[1] == SW.WRONG_LENGTH


def test_select_ef_under_current_df_only() -> None:
    card = make_card()
    assert tx(card, "00A40200021001")[1] == SW.FILE_NOT_FOUND
    select_app(card)
    assert tx(card, "00A40200021001")[1] == SW.OK
    assert tx(card, "00A40200021100")[1] == SW.FILE_NOT_FOUND  # a DF is no EF


def test_select_ef_with_p2_00_answers_no_data() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00A40200021001") == (b"", SW.OK)


def test_select_by_name_searches_whole_tree() -> None:
    card = make_card()
    assert tx(card, "00A4040008" + NESTED_NAME.hex())[1] == SW.OK
    assert card.current_df.fid == 0x1100
    assert tx(card, "00A4040007" + OTHER_NAME.hex()) == (b"", SW.OK)  # DF without FCI
    assert card.current_df.fid == 0x2000


def test_select_by_a_right_truncated_name_only_with_the_option() -> None:
    strict = make_card()
    assert tx(strict, "00A4040005A000000001") == (b"", SW.FILE_NOT_FOUND)
    assert strict.current_df is strict.mf
    card = make_card(partial_df_name=True)
    assert tx(card, "00A4040005A000000001")[1] == SW.OK  # right-truncated name
    assert card.current_df.fid == 0x1000
    assert tx(card, "00A4040008" + NESTED_NAME.hex())[1] == SW.OK  # the exact name wins
    assert card.current_df.fid == 0x1100
    assert tx(card, "00A4040005A000000099")[1] == SW.FILE_NOT_FOUND


def test_failed_select_keeps_current_file() -> None:
    card = make_card()
    assert tx(card, "00A40000021002")[1] == SW.FILE_NOT_FOUND  # not visible from the MF
    select_app(card)
    tx(card, "00A40200021002")
    assert tx(card, "00A40000029999")[1] == SW.FILE_NOT_FOUND
    assert card.current_ef is not None and card.current_ef.fid == 0x1002


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00A40800021000", SW.WRONG_P1P2),  # P1 08: path from MF, not supported
        ("00A40004021000", SW.WRONG_P1P2),  # P2 04: FCP, not supported
        ("00A4000003100000", SW.WRONG_LENGTH),
        ("00A402000110", SW.WRONG_LENGTH),
        ("00A401000110", SW.WRONG_LENGTH),
        ("00A40400" + "11" + "A0" * 17, SW.WRONG_LENGTH),
        ("00A40400", SW.WRONG_LENGTH),
    ],
)
def test_select_parameter_errors(apdu: str, sw: int) -> None:
    assert tx(make_card(), apdu) == (b"", sw)


# --- strict SELECT (SSC specification: P2 00 or 02 only) ------------------------------------


@pytest.mark.parametrize("p2", ["0C", "04", "08", "01", "03", "FF"])
def test_select_p2_other_than_00_02_is_6a86(p2: str) -> None:
    card = make_card()
    assert tx(card, f"00A404{p2}07" + APP_NAME.hex()) == (b"", SW.WRONG_P1P2)
    assert card.current_df is card.mf  # nothing was selected


def test_select_p2_0c_only_on_a_lenient_card() -> None:
    card = make_card(select_p2_0c=True)
    assert tx(card, "00A4040C07" + APP_NAME.hex()) == (b"", SW.OK)  # no FCI
    assert card.current_df.fid == 0x1000


def test_select_next_occurrence_walks_the_names_sharing_a_prefix() -> None:
    card = make_card(partial_df_name=True)
    prefix = "A000000001"
    assert tx(card, "00A4040005" + prefix)[1] == SW.OK
    assert card.current_df.fid == 0x1000
    assert tx(card, "00A4040205" + prefix) == (b"\x6f\x00", SW.OK)  # DF 1100, its FCI
    assert card.current_df.fid == 0x1100
    assert tx(card, "00A4040205" + prefix) == (b"", SW.OK)  # DF 2000 has no FCI
    assert card.current_df.fid == 0x2000
    assert tx(card, "00A4040205" + prefix)[1] == SW.FILE_NOT_FOUND
    assert card.current_df.fid == 0x2000


def test_a_blocked_df_is_refused_however_it_is_named() -> None:
    card = make_card(partial_df_name=True)
    blocked = card.mf.child(0x1000)
    assert isinstance(blocked, DedicatedFile)
    blocked.blocked = True
    for select in (
        "00A4040007" + APP_NAME.hex(),  # DF name
        "00A4040005A000000001",  # right-truncated name
        "00A40000021000",  # FID
        "00A40100021000",  # child DF
        "00A4040008" + NESTED_NAME.hex(),  # a DF inside the blocked one
    ):
        assert tx(card, select) == (b"", 0x9303), select
        assert card.current_df is card.mf  # the selection stays where it was
    assert tx(card, "00A4040007" + OTHER_NAME.hex()) == (b"", SW.OK)  # others still select
    assert tx(card, "00B0000005")[1] == SW.COMMAND_NOT_ALLOWED  # no EF became current
    assert tx(card, "00A40000023F00")[1] == SW.OK


def test_select_next_occurrence_only_by_name() -> None:
    assert tx(make_card(), "00A40002021000")[1] == SW.WRONG_P1P2


def test_select_ef_then_read_by_identifier_as_real_readers_do() -> None:
    # 00 A4 02 00 02 EF05 then 00 B2 07 00 0B: P2 00 is "identifier P1 in the current EF"
    card = make_card(sfi_record_id=False)
    select_app(card)
    assert tx(card, "00A40200021002") == (b"", SW.OK)
    assert tx(card, "00B2020003") == (RECORDS[1], SW.OK)
    assert tx(card, "00B2020403") == (RECORDS[1], SW.OK)  # record number 2 of the current EF


def test_sfi_plus_identifier_is_a_capability() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00B2011004") == (b"", SW.WRONG_P1P2)  # SFI 2, identifier 01
    assert tx(card, "00B2011404") == (RECORDS[0], SW.OK)  # SFI 2, record 1 still works
    card = make_card(sfi_record_id=True)
    select_app(card)
    assert tx(card, "00B2011004") == (RECORDS[0], SW.OK)


def test_extended_length_read_only_with_the_option() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00B08100000010") == (b"", SW.WRONG_LENGTH)  # case 2 extended
    card = make_card(extended_length=True)
    select_app(card)
    assert tx(card, "00B08100000010") == (BINARY[:16], SW.OK)  # case 2 extended, Le 0010


def test_card_os_is_strict_by_default() -> None:
    """Only the specification's command set: every capability beyond it is an option."""
    card = CardOS(t1_atr(HIST), "T=1")
    app = card.mf.add(DedicatedFile(0x1000, name=APP_NAME, fci=APP_FCI))
    app.add(RecordEF(0x1002, sfi=2, records=list(RECORDS)))
    card.power_on()
    assert tx(card, "00A4040005A000000001") == (b"", SW.FILE_NOT_FOUND)  # truncated name
    select_app(card)
    assert tx(card, "00B2011500") == (b"", SW.WRONG_P1P2)  # 'P1 to last'
    assert tx(card, "00B2011004") == (b"", SW.WRONG_P1P2)  # SFI + identifier
    assert tx(card, "00B20114000004") == (b"", SW.WRONG_LENGTH)  # extended Le
    assert tx(card, "0084000004") == (b"", SW.WRONG_LENGTH)  # only 00 84 00 00 08
    assert tx(card, "0084000010") == (b"", SW.WRONG_LENGTH)
    assert len(tx(card, "0084000008")[0]) == 8
    assert tx(card, "8050010200")[1] == SW.CLA_NOT_SUPPORTED  # no proprietary class


def test_challenge_lengths_must_be_iso_ones() -> None:
    with pytest.raises(ValueError, match="challenge lengths"):
        CardOS(t1_atr(HIST), "T=1", challenge_lengths=[5])
    with pytest.raises(ValueError, match="challenge lengths"):
        CardOS(t1_atr(HIST), "T=1", challenge_lengths=[])


def test_challenge_is_taken_once() -> None:
    card = make_card()
    challenge, _ = tx(card, "0084000008")
    assert card.take_challenge() == challenge
    assert card.take_challenge() is None


# --- READ BINARY ----------------------------------------------------------------------------


def test_read_binary_by_offset_and_by_sfi() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00B0810010") == (BINARY[:16], SW.OK)  # SFI 1, offset 0
    assert tx(card, "00B0001004") == (BINARY[0x10:0x14], SW.OK)  # current EF, offset 16
    assert tx(card, "00B0810A02") == (BINARY[10:12], SW.OK)  # SFI 1, offset 10 in P2
    assert tx(card, "00B0000000") == (BINARY[:256], SW.OK)  # Le 00 = 256


def test_read_binary_past_the_end() -> None:
    card = make_card()
    select_app(card)
    tx(card, "00A40200021001")
    assert tx(card, "00B0012040") == (BINARY[0x120:], SW.END_OF_FILE)
    assert tx(card, "00B0012C01") == (b"", SW.WRONG_PARAMETERS)  # offset 300 = size
    assert tx(card, "00B07FFF01") == (b"", SW.WRONG_PARAMETERS)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00B0820000", SW.COMMAND_INCOMPATIBLE),  # SFI 2 is a record EF
        ("00B0890000", SW.FILE_NOT_FOUND),  # no SFI 9
        ("00B0840000", SW.SECURITY_NOT_SATISFIED),  # SFI 4 needs SECRET
        ("00B0C10000", SW.WRONG_P1P2),  # P1 bits 7-6 set with bit 8
        ("00B00000020000", SW.WRONG_LENGTH),
    ],
)
def test_read_binary_errors(apdu: str, sw: int) -> None:
    card = make_card()
    select_app(card)
    assert tx(card, apdu) == (b"", sw)


def test_read_binary_without_current_ef_is_6986() -> None:
    assert tx(make_card(), "00B0000005")[1] == SW.COMMAND_NOT_ALLOWED


def test_read_binary_sfi_resolves_in_current_df() -> None:
    card = make_card()
    assert tx(card, "00B0840005") == (SMALL, SW.OK)  # SFI 4 in the MF: "hello"
    select_app(card)
    card.grant(SECRET)
    assert tx(card, "00B0840006") == (b"secret", SW.OK)  # SFI 4 in DF 1000


# --- READ RECORD ----------------------------------------------------------------------------


def test_read_record_by_number_of_current_ef() -> None:
    card = make_card()
    select_app(card)
    tx(card, "00A40200021002")
    assert tx(card, "00B2020403") == (RECORDS[1], SW.OK)
    assert tx(card, "00B2040400") == (b"", SW.RECORD_NOT_FOUND)
    assert tx(card, "00B2000400") == (b"", SW.RECORD_NOT_FOUND)  # no current record


def test_read_record_by_identifier_takes_first_occurrence() -> None:
    card = make_card()
    select_app(card)
    tx(card, "00A40200021002")
    assert tx(card, "00B2010004") == (RECORDS[0], SW.OK)
    assert tx(card, "00B2020003") == (RECORDS[1], SW.OK)
    assert tx(card, "00B2770000") == (b"", SW.RECORD_NOT_FOUND)


def test_read_record_by_sfi_makes_the_ef_current() -> None:
    card = make_card(sfi_record_id=True)
    select_app(card)
    assert card.current_ef is None
    assert tx(card, "00B2031403") == (RECORDS[2], SW.OK)  # SFI 2, record 3
    assert card.current_ef is not None and card.current_ef.fid == 0x1002
    assert tx(card, "00B2010404") == (RECORDS[0], SW.OK)  # SFI 0: the current EF
    assert tx(card, "00B2021003") == (RECORDS[1], SW.OK)  # SFI 2, identifier 02


def test_read_record_from_p1_to_last() -> None:
    card = make_card(multi_record=True)
    select_app(card)
    assert tx(card, "00B2021506") == (RECORDS[1] + RECORDS[2], SW.OK)
    assert tx(card, "00B2041500") == (b"", SW.RECORD_NOT_FOUND)


def test_read_record_mode_5_refused_without_multi_record() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00B2011500") == (b"", SW.WRONG_P1P2)
    assert tx(card, "00B2011404") == (RECORDS[0], SW.OK)


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00B2014C00", SW.FILE_NOT_FOUND),  # SFI 9
        ("00B2010C00", SW.COMMAND_INCOMPATIBLE),  # SFI 1 is transparent
        ("00B2011C00", SW.SECURITY_NOT_SATISFIED),  # SFI 3 needs SECRET
        ("00B2011100", SW.WRONG_P1P2),  # mode 1 (last occurrence) not supported
        ("00B201FC00", SW.WRONG_P1P2),  # SFI 31 is RFU
        ("00B201140101", SW.WRONG_LENGTH),  # command data
    ],
)
def test_read_record_errors(apdu: str, sw: int) -> None:
    card = make_card()
    select_app(card)
    assert tx(card, apdu) == (b"", sw)


def test_read_record_without_current_ef_is_6986() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00B2010400")[1] == SW.COMMAND_NOT_ALLOWED


def test_access_condition_met_after_grant_and_lost_on_revoke() -> None:
    card = make_card()
    select_app(card)
    assert tx(card, "00B2011C03")[1] == SW.SECURITY_NOT_SATISFIED
    card.grant(SECRET)
    assert card.is_granted(SECRET)
    assert tx(card, "00B2011C03") == (b"\x05\x01\xee", SW.OK)
    card.revoke(SECRET)
    assert tx(card, "00B2011C03")[1] == SW.SECURITY_NOT_SATISFIED


# --- Le rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("le_mode", "le", "expected"),
    [
        ("exact", "04", (RECORDS[0], SW.OK)),
        ("exact", "00", (b"", 0x6C04)),
        ("exact", "", (b"", 0x6C04)),  # no Le counts as 256
        ("exact", "05", (b"", 0x6C04)),
        ("exact", "03", (b"", 0x6C04)),
        ("lenient", "04", (RECORDS[0], SW.OK)),
        ("lenient", "00", (RECORDS[0], SW.OK)),
        ("lenient", "", (RECORDS[0], SW.OK)),
        ("lenient", "FF", (RECORDS[0], SW.OK)),
        ("lenient", "03", (b"", 0x6C04)),
    ],
)
def test_le_modes(le_mode: str, le: str, expected: tuple[bytes, int]) -> None:
    card = make_card(le_mode=le_mode)
    select_app(card)
    assert tx(card, "00B20114" + le) == expected


def test_le_mode_accepts_enum_and_string() -> None:
    assert make_card(le_mode="lenient").le_mode is LeMode.LENIENT
    assert CardOS(t0_atr(HIST), le_mode=LeMode.EXACT).le_mode is LeMode.EXACT


def test_6cxx_then_reissue_with_exact_le() -> None:
    card = make_card(sfi_record_id=True)
    select_app(card)
    data, sw = tx(card, "00B2021000")
    assert sw >> 8 == 0x6C and data == b""
    cmd = CommandAPDU(0x00, 0xB2, 0x02, 0x10, le=sw & 0xFF)
    assert tx(card, cmd.to_bytes()) == (RECORDS[1], SW.OK)


# --- T=0 / T=1 and GET RESPONSE -------------------------------------------------------------


def test_t0_case4_answers_61xx_then_get_response() -> None:
    card = make_card("T=0")
    assert tx(card, "00A4040007" + APP_NAME.hex() + "00") == (b"", 0x6100 | len(APP_FCI))
    assert tx(card, "00C0000000") == (b"", 0x6C00 | len(APP_FCI))  # wrong Le, data kept
    assert tx(card, f"00C00000{len(APP_FCI):02X}") == (APP_FCI, SW.OK)
    assert tx(card, f"00C00000{len(APP_FCI):02X}") == (b"", SW.CONDITIONS_NOT_SATISFIED)


def test_t0_case3_select_with_fci_also_answers_61xx() -> None:
    card = make_card("T=0")
    assert tx(card, "00A4040007" + APP_NAME.hex()) == (b"", 0x6100 | len(APP_FCI))


def test_t0_case2_follows_le_rules_directly() -> None:
    card = make_card("T=0")
    select_app(card)
    assert tx(card, "00B2011400") == (b"", 0x6C04)
    assert tx(card, "00B2011404") == (RECORDS[0], SW.OK)


def test_t1_case4_and_case3_answer_data_directly() -> None:
    card = make_card("T=1")
    # Le 00 on a command with data asks for "all, up to 256": the FCI, not 6Cxx.
    assert tx(card, "00A4040007" + APP_NAME.hex() + "00") == (APP_FCI, SW.OK)
    assert tx(card, "00A4040007" + APP_NAME.hex() + "0B") == (APP_FCI, SW.OK)
    assert tx(card, "00A4040007" + APP_NAME.hex() + "05") == (b"", 0x6C0B)
    assert tx(card, "00A4040007" + APP_NAME.hex()) == (APP_FCI, SW.OK)


def test_get_response_with_nothing_pending_is_6985() -> None:
    assert tx(make_card("T=0"), "00C0000000") == (b"", SW.CONDITIONS_NOT_SATISFIED)


def test_any_other_command_drops_pending_data() -> None:
    card = make_card("T=0")
    tx(card, "00A4040007" + APP_NAME.hex())
    tx(card, "0084000008")
    assert tx(card, "00C000000B") == (b"", SW.CONDITIONS_NOT_SATISFIED)


@pytest.mark.parametrize(
    ("apdu", "sw"), [("00C001000B", SW.WRONG_P1P2), ("00C00000010000", SW.WRONG_LENGTH)]
)
def test_get_response_parameter_errors(apdu: str, sw: int) -> None:
    card = make_card("T=0")
    tx(card, "00A4040007" + APP_NAME.hex())
    assert tx(card, apdu) == (b"", sw)


@pytest.mark.parametrize("protocol", ["T=0", "T=1"])
def test_response_longer_than_256_comes_in_chunks(protocol: str) -> None:
    card = make_card(protocol, multi_record=True)
    select_app(card)
    whole = b"".join(BIG_RECORDS)
    data, sw = tx(card, "00B2012D00")  # SFI 5, records 1 to last: 600 bytes
    assert (data, sw) == (whole[:256], 0x6100)
    data, sw = tx(card, "00C0000000")
    assert (data, sw) == (whole[256:512], 0x6158)
    assert tx(card, "00C0000010") == (b"", 0x6C58)
    assert tx(card, "00C0000058") == (whole[512:], SW.OK)


def test_t0_case4_longer_than_256() -> None:
    card = make_card("T=0")
    card.mf.child(0x1000).fci = bytes(300)  # type: ignore[union-attr]
    assert tx(card, "00A4040007" + APP_NAME.hex()) == (b"", 0x6100)
    assert tx(card, "00C0000000") == (bytes(256), 0x612C)
    assert tx(card, "00C000002C") == (bytes(44), SW.OK)


# --- GET CHALLENGE --------------------------------------------------------------------------


@pytest.mark.parametrize("le", [4, 8, 16])
def test_get_challenge_returns_fresh_random_bytes(le: int) -> None:
    card = make_card(challenge_lengths=[4, 8, 16])
    first, sw = tx(card, f"00840000{le:02X}")
    assert sw == SW.OK and len(first) == le
    assert card.last_challenge == first
    second, _ = tx(card, f"00840000{le:02X}")
    assert second != first or le == 4  # 2**-32 chance of a 4-byte repeat
    assert card.last_challenge == second


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("0084000005", SW.WRONG_LENGTH),
        ("0084000000", SW.WRONG_LENGTH),
        ("00840000", SW.WRONG_LENGTH),
        ("00840000010008", SW.WRONG_LENGTH),
        ("0084010008", SW.WRONG_P1P2),
    ],
)
def test_get_challenge_errors(apdu: str, sw: int) -> None:
    assert tx(make_card(), apdu) == (b"", sw)


# --- FF CA (PC/SC GET DATA UID) -------------------------------------------------------------


UID = bytes.fromhex("04A1B2C3D4E5F6")


def test_get_uid_on_contactless_card() -> None:
    card = make_card(uid=UID)
    assert tx(card, "FFCA000000") == (UID, SW.OK)
    assert tx(card, "FFCA000007") == (UID, SW.OK)
    assert tx(card, "FFCA000004") == (b"", 0x6C07)
    assert tx(card, "FFCA000010") == (UID, SW.END_OF_FILE)
    assert tx(card, "FFCA010000") == (b"", SW.WRONG_P1P2)
    assert tx(card, "FFCB000000") == (b"", SW.INS_NOT_SUPPORTED)


def test_get_uid_on_contact_card_is_refused() -> None:
    assert tx(make_card(), "FFCA000000") == (b"", SW.CLA_NOT_SUPPORTED)


def test_get_uid_ignores_exact_le_mode() -> None:
    card = make_card("T=1", le_mode="exact", uid=UID[:4])
    assert tx(card, "FFCA000000") == (UID[:4], SW.OK)


# --- power-on resets volatile state ---------------------------------------------------------


def test_power_on_resets_selection_rights_pending_and_challenge() -> None:
    card = make_card("T=0")
    card.grant(SECRET)
    tx(card, "0084000008")
    select_app(card)
    tx(card, "00A40200021002")
    tx(card, "00A4040007" + APP_NAME.hex())  # leaves 61xx data pending
    card.power_on()
    assert card.current_df is card.mf and card.current_ef is None
    assert not card.is_granted(SECRET)
    assert card.last_challenge is None
    assert tx(card, "00C000000B") == (b"", SW.CONDITIONS_NOT_SATISFIED)
    assert tx(card, "00B2010404")[1] == SW.COMMAND_NOT_ALLOWED


def test_power_off_also_drops_volatile_state() -> None:
    card = make_card()
    card.grant(SECRET)
    card.power_off()
    assert not card.is_granted(SECRET)


# --- applets --------------------------------------------------------------------------------


class PurseApplet(Applet):
    """A toy applet: ``80 5C`` GET BALANCE while its DF is selected."""

    aid = bytes.fromhex("A000000632010105")

    def __init__(self) -> None:
        self.resets = 0
        self.balance = 1234

    def install(self, card: CardOS) -> None:
        self.root = card.mf.add(DedicatedFile(0x3000, name=self.aid))

    def process(self, card: CardOS, cmd: Command) -> Response | None:
        if cmd.cla == 0x80 and cmd.ins == 0x5C and self.is_selected(card):
            return card.respond(cmd, self.balance.to_bytes(4, "big"))
        if cmd.cla == 0x80 and cmd.ins == 0xEE:
            raise RuntimeError("applet bug")
        return None

    def reset(self) -> None:
        self.resets += 1


def test_applet_handles_its_command_when_selected() -> None:
    card = make_card()
    purse = card.install(PurseApplet())
    assert isinstance(purse, PurseApplet)
    assert tx(card, "805C000204")[1] == SW.CLA_NOT_SUPPORTED  # not selected: nobody answers
    assert tx(card, "00A4040008" + purse.aid.hex())[1] == SW.OK
    assert tx(card, "805C000204") == ((1234).to_bytes(4, "big"), SW.OK)
    assert tx(card, "805C000200") == (b"", 0x6C04)  # respond() applies the Le rules
    assert tx(card, "00B2010400")[1] == SW.COMMAND_NOT_ALLOWED  # the OS still answers


def test_applet_reset_on_power_on() -> None:
    card = make_card()
    purse = card.install(PurseApplet())
    card.power_on()
    card.power_on()
    assert isinstance(purse, PurseApplet) and purse.resets == 2


def test_fault_inside_the_card_answers_6f00() -> None:
    card = make_card()
    card.install(PurseApplet())
    assert tx(card, "80EE000000") == (b"", SW.NO_PRECISE_DIAGNOSIS)
    assert tx(card, "0084000008")[1] == SW.OK  # and the card carries on


# --- file tree construction -----------------------------------------------------------------


def test_tree_refuses_duplicate_fid_and_sfi() -> None:
    df = DedicatedFile(0x1000)
    df.add(TransparentEF(0x1001, sfi=1))
    with pytest.raises(ValueError, match="already has a child"):
        df.add(TransparentEF(0x1001))
    with pytest.raises(ValueError, match="SFI"):
        df.add(RecordEF(0x1002, sfi=1))
    with pytest.raises(ValueError, match="3F00"):
        df.add(DedicatedFile(0x3F00))


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransparentEF(0x1001, sfi=31),
        lambda: TransparentEF(0x3F00),
        lambda: RecordEF(0x1001, records=[b""]),
        lambda: DedicatedFile(0x1000, name=bytes(17)),
        lambda: DedicatedFile(0x10000),
    ],
)
def test_tree_refuses_invalid_files(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


# --- ATRs -----------------------------------------------------------------------------------


def test_t0_atr_layout() -> None:
    assert t0_atr(HIST) == bytes.fromhex("3B6D0000") + HIST


def test_t1_atr_offers_t1_with_valid_tck() -> None:
    atr = t1_atr(HIST)
    assert atr[:8] == bytes.fromhex("3BED00008131FE45")
    assert atr[8:-1] == HIST
    assert atr_checksum(atr) == 0  # XOR over T0..TCK


def test_contactless_atr_is_pcsc_pseudo_atr() -> None:
    atr = contactless_atr(HIST)
    assert atr[:4] == bytes.fromhex("3B8D8001")
    assert atr[4:-1] == HIST
    assert atr_checksum(atr) == 0


def test_atr_refuses_more_than_15_historical_bytes() -> None:
    with pytest.raises(ValueError, match="15"):
        t0_atr(bytes(16))


# --- robustness -----------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    # process() turns any crash into 6F00: a status word alone would not catch one.
    answer_of(make_card(uid=UID), raw)


_header = st.tuples(
    st.sampled_from([0x00, 0x80, 0x84, 0xFF, 0x0C]),
    st.sampled_from([0xA4, 0xB0, 0xB2, 0x84, 0xC0, 0xCA, 0x5C, 0x88, 0x00]),
    st.integers(0, 255),
    st.integers(0, 255),
)
_command = st.builds(
    lambda h, data, le: CommandAPDU(*h, data=data, le=le).to_bytes(),
    _header,
    st.binary(max_size=20),
    st.none() | st.integers(1, 300),
)


LENIENT = {
    "multi_record": True,
    "sfi_record_id": True,
    "partial_df_name": True,
    "extended_length": True,
    "challenge_lengths": [4, 8, 16],
    "proprietary_classes": [0x80],
}


@settings(max_examples=300)
@given(
    st.sampled_from(["T=0", "T=1"]),
    st.sampled_from(["exact", "lenient"]),
    st.booleans(),
    st.lists(_command, max_size=12),
)
def test_command_sequences_always_end_in_a_status_word(
    protocol: str, le_mode: str, lenient: bool, commands: list[bytes]
) -> None:
    card = make_card(protocol, le_mode, uid=UID, **(LENIENT if lenient else {}))
    card.install(PurseApplet())
    for raw in commands:
        answer = ResponseAPDU.from_bytes(answer_of(card, raw))
        assert answer.sw >> 8 in (0x90, 0x61, 0x62, 0x67, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E)
