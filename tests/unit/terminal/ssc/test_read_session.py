"""The SSC basic read session, against in-process simulated cards (no PC/SC)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.card_exchange import ScriptedConnection
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.inprocess import InProcessConnection
from firmware_sim.cardos import CardOS, LeMode
from firmware_sim.profile import load_sample
from firmware_sim.spec.ssc import RKSSSE
from firmware_sim.ssc_applet import build_card
from terminal.devices.reader import CardChannel
from terminal.errors import CardError, CardUnresponsiveError, NotSocialSecurityCardError, ParseError
from terminal.iso7816.apdu import ResponseAPDU
from terminal.iso7816.status_words import SW
from terminal.ssc import layout
from terminal.ssc.session import BasicReadSession, ReadMode, ReadModeMemo, read_ssc


def channel_for(sample: str, **card_changes: object) -> tuple[CardChannel, CardOS]:
    profile = load_sample(sample)
    if card_changes:
        profile = dataclasses.replace(
            profile, card=dataclasses.replace(profile.card, **card_changes)
        )
    card = build_card(profile)
    return CardChannel(InProcessConnection(card)), card


def test_multi_record_read_of_2_0_card():
    channel, _card = channel_for("chongqing-2.0")
    result = read_ssc(channel)
    assert result.mode is ReadMode.MULTI_RECORD
    assert result.issuer.card_number_valid
    assert result.holder is not None and result.holder.name
    assert result.unreadable == ()
    assert channel.apdu_count == 4  # T=0: SELECT + GET RESPONSE, EF05, EF06


def test_t1_card_reads_in_three_apdus_and_3_0_holder_data_is_refused():
    channel, _card = channel_for("sichuan-3.0")
    result = read_ssc(channel)
    assert channel.apdu_count == 3
    assert result.holder is None
    assert [(u.file, u.tag, u.sw) for u in result.unreadable] == [("EF06", None, 0x6982)]


def test_3_0_holder_data_readable_once_granted():
    channel, card = channel_for("sichuan-3.0")
    card.grant(RKSSSE)
    result = read_ssc(channel)
    assert result.holder is not None
    assert result.holder.name and len(result.holder.name.encode("gbk")) > 30  # 09 + 4E


def test_card_without_multi_record_falls_back_to_one_apdu_per_record():
    channel, _card = channel_for("chongqing-1.0")
    result = read_ssc(channel)
    assert result.mode is ReadMode.PER_TAG
    # SELECT + GET RESPONSE (T=0), the refused multi-record read, then as the field reads:
    # SELECT EF05 and 7 records, SELECT EF06 and 6 records (a 1.0 card has no tag 4E).
    assert channel.apdu_count == 2 + 1 + (1 + 7) + (1 + 6)
    assert result.holder is not None and result.holder.birth_date is not None


def test_lenient_le_card_reads_the_same():
    strict, _ = channel_for("chongqing-2.0")
    lenient, _ = channel_for("chongqing-2.0", le_mode=LeMode.LENIENT)
    assert read_ssc(strict) == read_ssc(lenient)


@pytest.mark.parametrize("mode", list(ReadMode))
def test_every_forced_mode_reads_the_same_data(mode):
    reference = read_ssc(channel_for("chongqing-2.0")[0])
    channel, _card = channel_for("chongqing-2.0")
    result = read_ssc(channel, mode)
    assert (result.issuer, result.holder) == (reference.issuer, reference.holder)


def test_card_without_ssse_is_not_ssc():
    blank = CardOS(atr=bytes.fromhex("3B6D000000814A444686605199000001AC"))
    with pytest.raises(NotSocialSecurityCardError):
        read_ssc(CardChannel(InProcessConnection(blank)))


def test_session_is_a_pure_state_machine():
    session = BasicReadSession()
    first = session.next_command()
    assert first is not None and first.ins == 0xA4
    with pytest.raises(RuntimeError):
        session.result()
    with pytest.raises(NotSocialSecurityCardError):
        session.receive(ResponseAPDU(b"", SW.FILE_NOT_FOUND))


def test_unexpected_status_on_select_is_a_card_error():
    session = BasicReadSession()
    with pytest.raises(CardError) as info:
        session.receive(ResponseAPDU(b"", SW.APPLICATION_BLOCKED))
    assert info.value.sw == 0x9303


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120).map(lambda b: ResponseAPDU(b, 0x9000)), max_size=6))
def test_garbage_answers_give_typed_errors_only(answers):
    """A card that answers 9000 with random data: a typed error or a result, never a crash."""
    session = BasicReadSession()
    try:
        for answer in answers:
            if session.next_command() is None:
                break
            session.receive(answer)
    except (ParseError, CardError):
        pass


class LoopingConnection(InProcessConnection):
    def transmit_raw(self, apdu: bytes) -> bytes:
        return b"\x61\x10"


def test_channel_bounds_a_card_that_answers_61xx_forever():
    channel = CardChannel(LoopingConnection(CardOS(atr=b"\x3b\x00")))
    with pytest.raises(CardUnresponsiveError):
        read_ssc(channel)


# --- cards as the field has them: scripted answers (no simulator) ----------------------------

SELECT_SSSE = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF"
FCI_3_0 = "6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103"
FCI_NO_TEMPLATE = "6F16840F7378312E73682EC9E7BBE1B1A3D5CFA50388011E"
EF05_RECORDS = {
    0x01: "0110519900D15600000510000B26FFFFFFFF",
    0x02: "020133",
    0x03: "0304332E3030",
    0x04: "040C915600000251990051990001",
    0x05: "050420200131",
    0x06: "060420300131",
    0x07: "0709443231343335363958",
}


def scripted(answers: dict[str, str]) -> CardChannel:
    """A card that answers each listed command (hex) with the listed answer (hex, SW
    included) and everything else with 6D00 - as strict as a card that knows nothing more."""
    table = {bytes.fromhex(k): bytes.fromhex(v) for k, v in answers.items()}
    return CardChannel(ScriptedConnection(table))


def per_tag_script(fci: str = FCI_3_0, multi: str = "6A86", **extra: str) -> dict[str, str]:
    script = {SELECT_SSSE: fci + "9000", "00B2012D3F": multi, "00A4020002EF05": "9000"}
    for tag, record in EF05_RECORDS.items():
        script[f"00B2{tag:02X}00{len(record) // 2:02X}"] = record + "9000"
    script.update(extra)
    return script


def test_read_as_real_readers_do_when_multi_record_is_refused():
    channel = scripted(per_tag_script())
    result = read_ssc(channel, read_holder=False)
    assert result.mode is ReadMode.PER_TAG
    assert result.issuer.card_id == "519900D15600000510000B26FFFFFFFF"
    assert result.issuer.region == "519900" and result.issuer.card_number == "D2143569X"
    assert result.fci.algorithm == 3
    assert channel.apdu_count == 1 + 1 + 1 + 7


@pytest.mark.parametrize(
    "multi",
    ["6A82", "6A81", "6B00", "6D00", "6E00", "6F00", "6700", "6985", "6982", "6983", "9303"],
)
def test_any_refusal_of_multi_record_falls_back_rather_than_failing(multi):
    result = read_ssc(scripted(per_tag_script(multi=multi)), read_holder=False)
    assert result.mode is ReadMode.PER_TAG and result.issuer.card_number == "D2143569X"


def test_multi_record_answer_without_the_identity_falls_back():
    """A card that ignores the 'to last' mode bits and answers record 1 alone."""
    only_first = EF05_RECORDS[0x01] + "9000"
    result = read_ssc(scripted(per_tag_script(multi=only_first)), read_holder=False)
    assert result.mode is ReadMode.PER_TAG and result.issuer.card_number == "D2143569X"


def test_fci_without_algorithm_template_reads():
    result = read_ssc(scripted(per_tag_script(fci=FCI_NO_TEMPLATE)), read_holder=False)
    assert result.fci.algorithm is None


def test_longer_card_number_is_cut_to_nine_characters():
    script = per_tag_script()
    script["00B207000B"] = "6C0C"
    script["00B207000C"] = "070A4432313433353639583F9000"
    result = read_ssc(scripted(script), read_holder=False)
    assert result.issuer.card_number == "D2143569X" and result.issuer.card_number_valid


def test_empty_spec_version_reads_holder_data_as_a_1_0_card():
    script = per_tag_script(fci=FCI_NO_TEMPLATE)
    script["00B2030006"] = "030400000000" + "9000"
    script["00A4020002EF06"] = "9000"
    holder = {
        0x08: "0812" + b"500103198506150014".hex(),
        0x09: "091E" + "张测试".encode("gbk").hex().ljust(60, "0"),
        0x0A: "0A0131",
        0x0B: "0B0101",
        0x0C: "0C03500103",
        0x0D: "0D0419850615",
    }
    for tag, record in holder.items():
        script[f"00B2{tag:02X}00{len(record) // 2:02X}"] = record + "9000"
    result = read_ssc(scripted(script))
    assert result.issuer.generation is layout.Generation.V1
    assert result.holder is not None and result.holder.name == "张测试"
    assert result.unreadable == ()  # no tag 4E asked of a 1.0 card


def test_2_0_card_without_tag_4e_is_not_an_anomaly():
    script = per_tag_script()
    script["00B2030006"] = "0304322E3030" + "9000"
    script["00B2013D3F"] = "6A86"  # multi-record of EF06 is never asked: mode is settled
    script["00A4020002EF06"] = "9000"
    for tag, record in {
        0x08: "0812" + b"500103198506150014".hex(),
        0x09: "091E" + "张测试".encode("gbk").hex().ljust(60, "0"),
        0x4E: None,
        0x0A: "0A0131",
        0x0B: "0B0101",
        0x0C: "0C03500103",
        0x0D: "0D0419850615",
    }.items():
        length = 2 + layout.BY_TAG[tag].length
        script[f"00B2{tag:02X}00{length:02X}"] = "6A83" if record is None else record + "9000"
    result = read_ssc(scripted(script))
    assert result.holder is not None and result.holder.name == "张测试"
    assert result.unreadable == ()


def test_missing_card_number_is_a_card_error_naming_the_tag():
    script = per_tag_script()
    script["00B207000B"] = "6A83"
    with pytest.raises(CardError, match="EF05 tag 07") as info:
        read_ssc(scripted(script), read_holder=False)
    assert info.value.sw == 0x6A83


def test_missing_optional_record_is_reported_not_fatal():
    script = per_tag_script()
    script["00B204000E"] = "6A83"
    result = read_ssc(scripted(script), read_holder=False)
    assert result.issuer.institution is None
    assert [(u.file, u.tag, u.sw) for u in result.unreadable] == [("EF05", 0x04, 0x6A83)]


def test_unreadable_ef05_is_a_card_error_with_its_status_word():
    script = per_tag_script(multi="6A82")
    script["00A4020002EF05"] = "6982"
    with pytest.raises(CardError, match="EF05") as info:
        read_ssc(scripted(script), read_holder=False)
    assert info.value.sw == 0x6982


def test_refusal_after_the_mode_is_settled_is_the_file_talking():
    """EF05 came in one multi-record read: EF06's 6982 then means EF06 is locked."""
    channel, _card = channel_for("sichuan-3.0")
    result = read_ssc(channel)
    assert result.mode is ReadMode.MULTI_RECORD
    assert [(u.file, u.sw) for u in result.unreadable] == [("EF06", 0x6982)]
    assert channel.apdu_count == 3


def test_read_mode_memo_spares_the_probe_on_cards_of_a_kind_without_it():
    historical = bytes.fromhex("00814A444686605199000001AC")
    memo = ReadModeMemo()
    assert memo.mode_for(historical) is ReadMode.AUTO
    first = scripted(per_tag_script())
    memo.learn(historical, read_ssc(first, read_holder=False).mode)
    # Another card of the same chip, OS and manufacturer (T1..T7), another serial.
    sibling = historical[:7] + bytes.fromhex("500100000002")
    assert memo.mode_for(sibling) is ReadMode.PER_TAG
    second = scripted(per_tag_script())
    read_ssc(second, memo.mode_for(sibling), read_holder=False)
    assert second.apdu_count == first.apdu_count - 1  # no refused multi-record probe
    assert memo.mode_for(bytes.fromhex("0081AAAAAA8660")) is ReadMode.AUTO  # another OS


def test_read_mode_memo_never_forces_multi_record_and_is_bounded():
    memo = ReadModeMemo()
    memo.learn(bytes(13), ReadMode.MULTI_RECORD)
    assert memo.mode_for(bytes(13)) is ReadMode.AUTO
    for i in range(ReadModeMemo.MAX_KINDS + 10):
        memo.learn(i.to_bytes(7, "big"), ReadMode.PER_TAG)
    assert len(memo._modes) == ReadModeMemo.MAX_KINDS
    assert memo.mode_for((ReadModeMemo.MAX_KINDS + 9).to_bytes(7, "big")) is ReadMode.PER_TAG


def test_a_decision_read_asks_only_for_the_items_a_decision_needs():
    script = per_tag_script()
    channel = scripted(script)
    result = read_ssc(channel, read_holder=False, items=layout.DECISION_ITEMS)
    sent = channel.connection.sent
    assert b"\x00\xb2\x04\x00\x0e" not in sent and b"\x00\xb2\x05\x00\x06" not in sent
    assert channel.apdu_count == 1 + 1 + 1 + 5  # SELECT, probe, SELECT EF05, 01 02 03 06 07
    issuer = result.issuer
    assert issuer.card_number == "D2143569X" and issuer.category == "3"
    assert issuer.expiry_date is not None and issuer.generation is layout.Generation.V3
    assert issuer.institution is None and issuer.issue_date is None


def test_select_answered_without_fci_reads_as_a_des_card():
    script = per_tag_script(fci="")
    result = read_ssc(scripted(script), read_holder=False)
    assert result.fci.algorithm is None and result.issuer.card_number == "D2143569X"
