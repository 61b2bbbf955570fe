"""The SSC basic read session, against in-process simulated cards (no PC/SC)."""

from __future__ import annotations

import dataclasses

import pytest
from card_exchange import InProcessConnection
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.cardos import CardOS, LeMode
from firmware_sim.profile import load_sample
from firmware_sim.ssc_applet import RKSSSE, build_card
from terminal.apdu import ResponseAPDU
from terminal.errors import CardError, CardUnresponsiveError, NotSocialSecurityCardError, ParseError
from terminal.reader import CardChannel
from terminal.ssc.session import BasicReadSession, ReadMode, read_ssc
from terminal.status import SW


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
    assert result.mode is ReadMode.PER_TAG_SFI
    assert channel.apdu_count == 2 + 1 + 7 + 6
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
