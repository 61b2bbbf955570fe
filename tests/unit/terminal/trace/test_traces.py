"""Trace replay: the field's exchanges, replayed by a strict card, against the terminal's flows.

Every file in tests/traces/ runs the flow its header names (``# flow:``) through the real
terminal code path over :class:`firmware_sim.trace_card.TraceBackend`, must use every recorded
exchange and random value, and must give the outcome of its ``# expect:`` lines. A new file is
picked up with no change here (docs/traces.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from helpers.paths import TRACES
from helpers.trace_flows import expectation_failures, run_trace_flow
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import inprocess
from firmware_sim.trace_card import (
    CARD_READER,
    NO_PRECISE_DIAGNOSIS,
    PSAM_READER,
    TraceBackend,
    TraceCard,
    TraceMismatch,
    TraceRandom,
    TraceReplay,
)
from onecard import cli
from terminal.devices.reader import CardChannel, Interface, hide_pin
from terminal.errors import ParseError
from terminal.iso7816.apdu import CommandAPDU
from terminal.iso7816.tlv import records_by_tag
from terminal.ssc.pin import PinOutcome, verify_pin
from terminal.ssc.records import decode_holder_data
from terminal.trace.format import (
    Exchange,
    Expectation,
    Flow,
    Slot,
    Trace,
    TraceFileError,
    TraceFormat,
    decode_trace_bytes,
    format_trace,
    parse_trace,
    pseudo_atr_from_ats,
)
from terminal.trace.record import (
    HOLDER_TAGS,
    PRIVACY_NOTE,
    RecordingBackend,
    anonymise_holder_records,
    holder_filler,
)

TRACES_DIR = TRACES
TRACE_FILES = sorted(TRACES_DIR.glob("*.trace"))

KNOWN_TERMINAL_GAPS: dict[str, str] = {}
"""Trace file name -> why the terminal does not yet do what the card needs: the replay is
marked xfail(strict=True), so it turns red the day the terminal is fixed (then drop the line)."""

SSSE_NAME = "7378312E73682EC9E7BBE1B1A3D5CF"
SELECT_SSSE = f"00A404000F{SSSE_NAME}"
FCI_3_0 = f"6F1C840F{SSSE_NAME}A50988011E9F0C03860103"


def load(path: Path) -> Trace:
    return parse_trace(decode_trace_bytes(path.read_bytes()))


def _params() -> list[object]:
    out = []
    for path in TRACE_FILES:
        gap = KNOWN_TERMINAL_GAPS.get(path.name)
        marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
        out.append(pytest.param(path, marks=marks, id=path.stem))
    return out


# --- every trace replays --------------------------------------------------------------------


def test_there_are_traces_of_every_flow() -> None:
    flows = {load(path).flow for path in TRACE_FILES}
    assert flows == {Flow.READ, Flow.VERIFY, Flow.PURCHASE}


@pytest.mark.parametrize("path", _params())
def test_trace_replays_through_the_terminal(path: Path) -> None:
    trace = load(path)
    assert trace.flow is not None, "a trace names its flow (# flow: read|verify|purchase)"
    assert trace.expect, "a trace says what the flow must give (# expect: key=value)"
    backend = TraceBackend(trace)
    outcome = run_trace_flow(trace, backend, backend.card_reader, backend.psam_reader)
    backend.assert_complete()
    assert expectation_failures(trace, outcome) == []


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.stem for p in TRACE_FILES])
def test_trace_file_is_documented_and_round_trips(path: Path) -> None:
    trace = load(path)
    assert trace.title and trace.header("card") and trace.header("source")
    assert trace.atr is not None
    assert all(e.answer is not None for e in trace.exchanges)
    assert parse_trace(format_trace(trace)) == trace


@pytest.mark.parametrize("path", TRACE_FILES, ids=[p.stem for p in TRACE_FILES])
def test_holder_data_in_committed_traces_is_synthetic(path: Path) -> None:
    """No real person in a committed trace: SSNs carry the never-issued sequence 000, names
    are the placeholder names."""
    placeholders = {"张三", "李四", "王五", "测试"}
    selected = None
    for e in load(path).exchanges:
        if e.command[1:2] == b"\xa4" and len(e.command) == 7:
            selected = e.command[5:7]
        if selected != b"\xef\x06" or e.command[1] != 0xB2 or e.answer is None:
            continue
        if e.answer[-2:] != b"\x90\x00":
            continue
        holder = decode_holder_data(records_by_tag(e.answer[:-2]))
        if holder.ssn is not None:
            assert holder.ssn[14:17] == "000", "use sequence 000 in a synthetic SSN"
        if holder.name is not None:
            assert holder.name in placeholders


# --- the strict trace card ------------------------------------------------------------------

SMALL = f"""# onecard-trace: 1
# atr: 3B6D000000814A4446866051996D1E2F30
请求=[SLOT:0][Len:20][{SELECT_SSSE}]
应答=[SLOT:0][Len:32][{FCI_3_0}9000]
请求=[SLOT:17][Len:5][00B0960006]
应答=[SLOT:17][Len:8][5101000000019000]
请求=[SLOT:0][Len:5][00B2030006]
应答=[SLOT:0][Len:8][0304332E30309000]
"""


def _small() -> tuple[TraceBackend, object, object]:
    backend = TraceBackend(parse_trace(SMALL))
    return backend, backend.connect(CARD_READER), backend.connect(PSAM_READER)


def test_trace_card_answers_the_recorded_exchanges_in_order() -> None:
    backend, card, psam = _small()
    assert card.transmit_raw(bytes.fromhex(SELECT_SSSE)).hex().upper() == FCI_3_0 + "9000"
    assert psam.transmit_raw(bytes.fromhex("00B0960006")) == bytes.fromhex("5101000000019000")
    assert card.transmit_raw(bytes.fromhex("00B2030006"))[-2:] == b"\x90\x00"
    backend.assert_complete()
    assert [r.name for r in backend.readers()] == [CARD_READER, PSAM_READER]
    assert card.interface is Interface.CONTACT and card.protocol == "T=0"


def test_trace_card_fails_on_a_changed_p2() -> None:
    backend, card, _ = _small()
    with pytest.raises(TraceMismatch) as failure:
        card.transmit_raw(bytes.fromhex(f"00A4040C0F{SSSE_NAME}"))
    message = str(failure.value)
    assert "exchange 1" in message and "line 3" in message
    assert "00 A4 04 00 0F" in message and "00 A4 04 0C 0F" in message
    assert "byte 3 (P2)" in message
    with pytest.raises(TraceMismatch):
        backend.assert_complete()


def test_trace_card_fails_on_a_missing_or_added_le() -> None:
    _, card, psam = _small()
    card.transmit_raw(bytes.fromhex(SELECT_SSSE))
    with pytest.raises(TraceMismatch, match=r"shorter \(missing 06"):
        psam.transmit_raw(bytes.fromhex("00B0960000")[:4])
    _, card, _ = _small()
    with pytest.raises(TraceMismatch, match=r"longer \(extra 00"):
        card.transmit_raw(bytes.fromhex(SELECT_SSSE + "00"))


def test_trace_card_fails_on_an_extra_command() -> None:
    _, card, psam = _small()
    card.transmit_raw(bytes.fromhex(SELECT_SSSE))
    psam.transmit_raw(bytes.fromhex("00B0960006"))
    card.transmit_raw(bytes.fromhex("00B2030006"))
    with pytest.raises(
        TraceMismatch, match=r"after the end of the trace \(3 exchanges\): the card"
    ):
        card.transmit_raw(bytes.fromhex("00B2070009"))


def test_trace_card_fails_on_the_wrong_order() -> None:
    _, card, psam = _small()
    with pytest.raises(TraceMismatch, match="for the card; the psam received 00 B0 96 00 06"):
        psam.transmit_raw(bytes.fromhex("00B0960006"))
    _, card, _ = _small()
    card.transmit_raw(bytes.fromhex(SELECT_SSSE))
    with pytest.raises(TraceMismatch, match="for the psam; the card received 00 B2 03 00 06"):
        card.transmit_raw(bytes.fromhex("00B2030006"))


def test_unused_exchanges_fail_the_replay() -> None:
    backend, card, _ = _small()
    card.transmit_raw(bytes.fromhex(SELECT_SSSE))
    with pytest.raises(TraceMismatch, match=r"2 recorded exchange\(s\) not used.*00 B0 96 00 06"):
        backend.assert_complete()


def test_a_failed_replay_stays_failed() -> None:
    _, card, _ = _small()
    with pytest.raises(TraceMismatch):
        card.transmit_raw(bytes.fromhex("00B2030006"))
    with pytest.raises(TraceMismatch, match="already failed"):
        card.transmit_raw(bytes.fromhex(SELECT_SSSE))


def test_trace_card_over_vpcd_keeps_the_mismatch_and_answers_6f00() -> None:
    replay = TraceReplay(parse_trace(SMALL))
    card = TraceCard(replay, Slot.CARD)
    assert card.power_on() == card.atr == bytes.fromhex("3B6D000000814A4446866051996D1E2F30")
    assert card.process(bytes.fromhex(SELECT_SSSE))[-2:] == b"\x90\x00"
    assert card.process(bytes.fromhex("00B2030006")) == NO_PRECISE_DIAGNOSIS  # PSAM's turn
    with pytest.raises(TraceMismatch, match="for the psam"):
        replay.assert_complete()


def test_trace_random_hands_out_the_recorded_values() -> None:
    random = TraceRandom([bytes.fromhex("832859DC5C8D44E4"), bytes(4)])
    assert random(8) == bytes.fromhex("832859DC5C8D44E4")
    with pytest.raises(TraceMismatch):
        random.assert_complete()
    with pytest.raises(TraceMismatch, match="asked for 8 bytes, the trace records 4"):
        random(8)
    random = TraceRandom([])
    with pytest.raises(TraceMismatch, match="records 0"):
        random(8)


def test_pin_verify_has_the_public_logs_shape() -> None:
    """The EgAPP log's PIN session: SELECT SSSE, then 00 20 00 00 03 12 34 56 (its test PIN)."""
    trace = parse_trace(
        f"""# onecard-trace: 1
# ats: 127880A0020081544C96868451011A2B3C4D
请求=[SLOT:0][Len:20][{SELECT_SSSE}]
应答=[SLOT:0][Len:32][{FCI_3_0}9000]
请求=[SLOT:0][Len:8][0020000003123456]
应答=[SLOT:0][Len:2][9000]
"""
    )
    backend = TraceBackend(trace)
    assert verify_pin(CardChannel(backend.connect(CARD_READER)), "123456").outcome is PinOutcome.OK
    backend.assert_complete()


# --- the public formats, as they are (synthetic values in their shapes) ----------------------

ATS = "127880A0020081544C96868451011A2B3C4D"
VENDOR_LOG = f"""[14:31:26] function=EgAPP_GetDllinfo, Type=0; reader.cpp[82];

[14:31:26] 设备初始化,端口号[100],波特率[115200]; reader.cpp[1885];

[14:31:26] IC卡上电复位[SLOT:17],iDEV_TYPE=1; reader.cpp[2337];

[14:31:26] -193=IC_CpuReset_Hex(180，0); reader.cpp[724];

[14:31:26] IC卡上电复位[SLOT:0],iDEV_TYPE=1; reader.cpp[2337];

[14:31:26] DCIC32系列-TYPEA卡复位成功,复位信息:[{ATS}],退出函数[ 0 ]; reader.cpp[639];

[14:31:26] 复位成功,复位信息[127880A0020081544C96868451011A2B3C4D],退出函数[ 0 ]; reader.cpp[2400];

[14:31:26] 请求=[SLOT:0][Len:20][{SELECT_SSSE}]; reader.cpp[2831];

[14:31:26] 请求=[SLOT:0][Len:20][{SELECT_SSSE}]; reader.cpp[2525];

[14:31:26] 应答=[SLOT:0][Len:32][{FCI_3_0}9000],APDU返回值=0; reader.cpp[2604];

[14:31:26] 应答=[SLOT:0][32][{FCI_3_0}9000],退出函数[0]; reader.cpp[2838];

[14:31:26] 请求=[SLOT:0][Len:5][0084000008]; reader.cpp[2831];

[14:31:26] 请求=[SLOT:0][Len:5][0084000008]; reader.cpp[2525];

[14:31:26] 应答=[SLOT:0][Len:10][5B2AFCA5DD0ACDF29000],APDU返回值=0; reader.cpp[2604];

[14:31:26] 应答=[SLOT:0][10][5B2AFCA5DD0ACDF29000],退出函数[0]; reader.cpp[2838];

[14:31:26] 请求=[SLOT:0][Len:5][0084000008]; reader.cpp[2831];

[14:31:26] 请求=[SLOT:0][Len:5][0084000008]; reader.cpp[2525];

[14:31:26] 应答=[SLOT:0][Len:10][832859DC5C8D44E49000],APDU返回值=0; reader.cpp[2604];

[14:31:26] 应答=[SLOT:0][10][832859DC5C8D44E49000],退出函数[0]; reader.cpp[2838];

[14:31:27] 密钥[Addr:004C]属性:密钥标识[0A],PSAM卡密钥用途[67],PSAM卡用途标识[0A]; iccard.cpp[7654];
"""


def test_vendor_reader_log_parses_as_it_is() -> None:
    trace = parse_trace(VENDOR_LOG)
    assert trace.format is TraceFormat.READER_LOG
    assert trace.interface is Interface.CONTACTLESS and trace.protocol == "T=1"
    assert trace.ats == bytes.fromhex("127880A0020081544C96868451011A2B3C4D")
    assert trace.atr == pseudo_atr_from_ats(trace.ats)
    # The two layers' copies folded; two GET CHALLENGEs in a row stay two.
    commands = [e.command.hex().upper() for e in trace.exchanges]
    assert commands == [SELECT_SSSE, "0084000008", "0084000008"]
    assert trace.exchanges[2].answer == bytes.fromhex("832859DC5C8D44E49000")


def test_pseudo_atr_of_the_public_logs_ats_shape() -> None:
    # ATS: TL 12, T0 78 (TA TB TC present, FSCI 8), TA 80, TB A0, TC 02, 13 historical bytes.
    atr = pseudo_atr_from_ats(bytes.fromhex("127880A0020081544C96868451011A2B3C4D"))
    assert atr[:4] == bytes.fromhex("3B8D8001")
    assert atr[4:17] == bytes.fromhex("0081544C96868451011A2B3C4D")
    tck = 0
    for b in atr[1:]:
        tck ^= b
    assert tck == 0  # TCK makes the XOR of T0..TCK zero


HSM_STREAM = f"""上电3B6D000000814A4446866051996D1E2F30

{SELECT_SSSE}
{FCI_3_0}9000

00A4020002EF05
9000

----------------------------------------------
0084000008
//原始信息
DBF7A936D0D18C9E9000

008800001032D9E876ADB31BBFDBF7A936D0D18C9E
F4A0CF965BDCEA309000//内部认证

加密机:
519900|3B6D000000814A4446866051996D1E2F30|03|32D9E876ADB31BBF|

F4A0CF965BDCEA30DBF7A936D0D18C9E|774A08EDF447A1DEE603E2CAADAF02B6|
--------------------------------------
00A4020002EF05


00B2030006

UNBLOCK PIN
一、
//获取外部认证原始信息
0084000008
1B0D7286F2DC77AF

密钥地址：0090
加密机返回：
50C45431554CBADC1B0D7286F2DC77AF
"""


def test_hsm_command_stream_parses_as_it_is() -> None:
    trace = parse_trace(HSM_STREAM)
    assert trace.format is TraceFormat.HSM_LOG
    assert trace.atr == bytes.fromhex("3B6D000000814A4446866051996D1E2F30")
    assert trace.interface is Interface.CONTACT and trace.protocol == "T=0"
    got = [
        (e.command.hex().upper(), e.answer.hex().upper() if e.answer else None)
        for e in trace.exchanges
    ]
    assert got == [
        (SELECT_SSSE, FCI_3_0 + "9000"),
        ("00A4020002EF05", "9000"),
        ("0084000008", "DBF7A936D0D18C9E9000"),
        ("008800001032D9E876ADB31BBFDBF7A936D0D18C9E", "F4A0CF965BDCEA309000"),
        ("00A4020002EF05", None),  # the stream wrote no answer
        ("00B2030006", None),
        ("0084000008", None),  # an answer written without status word
    ]
    assert "without status word: 1B0D7286F2DC77AF" in trace.exchanges[-1].note


def test_a_trace_with_an_unanswered_exchange_fails_the_replay_there() -> None:
    backend = TraceBackend(parse_trace(HSM_STREAM))
    card = backend.connect(CARD_READER)
    for e in backend.trace.exchanges[:4]:
        card.transmit_raw(e.command)
    with pytest.raises(TraceMismatch, match="no answer"):
        card.transmit_raw(bytes.fromhex("00A4020002EF05"))


# --- malformed traces: one typed error naming the line ---------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("# onecard-trace: 1\n请求=[SLOT:0][Len:6][00A4020002EF05]\n", 2, "Len says 6"),
        ("# onecard-trace: 1\n请求=[SLOT:3][Len:5][00B2030006]\n", 2, "SLOT:3"),
        ("# onecard-trace: 1\n应答=[SLOT:0][Len:2][9000]\n", 2, "without a command"),
        ("# onecard-trace: 1\n请求=[SLOT:0][Len:3][00A402]\n", 2, "no header"),
        ("# onecard-trace: 1\n请求=[SLOT:0][Len:5][00B2030006]\nnoise\n", 3, "neither"),
        (
            "# onecard-trace: 1\n请求=[SLOT:17][Len:5][00B0960006]\n应答=[SLOT:0][Len:2][9000]\n",
            3,
            "on the card slot to a command for the psam",
        ),
        ("# onecard-trace: 1\n# atr: 3B6D\n请求=[SLOT:0][Len:5][0084000008]\n", 2, "cut short"),
        ("# onecard-trace: 1\n# flow: pay\n请求=[SLOT:0][Len:5][0084000008]\n", 2, "flow"),
        ("# onecard-trace: 1\n# expect: verdict\n", 2, "key=value"),
        ("# onecard-trace: 1\n# random: 12G4\n", 2, "not hex"),
        ("# onecard-trace: 1\n# atr: 3B00\n# atr: 3B00\n", 3, "twice"),
        ("[1:2:3] 请求=[SLOT:0][Len:x][00]\n", 1, "malformed"),
        ("0084000008\n9000\nABCD\n", 3, "neither a command nor an answer"),
    ],
)
def test_malformed_trace_is_a_parse_error_naming_the_line(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(TraceFileError) as failure:
        parse_trace(text)
    assert isinstance(failure.value, ParseError)
    assert failure.value.line == line
    assert reason in failure.value.reason


def test_empty_text_is_not_a_trace() -> None:
    with pytest.raises(TraceFileError, match="no exchange"):
        parse_trace("")
    with pytest.raises(TraceFileError, match="version"):
        parse_trace("# onecard-trace: 2\n")


def test_vendor_logs_in_gb18030_decode() -> None:
    assert decode_trace_bytes(VENDOR_LOG.encode("gb18030")) == VENDOR_LOG
    assert decode_trace_bytes(b"\xef\xbb\xbf# x\n") == "# x\n"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_give_the_typed_error(raw: bytes) -> None:
    with contextlib.suppress(TraceFileError):
        decode_trace_bytes(raw)


_FRAGMENTS = st.sampled_from(
    [
        "# onecard-trace: 1",
        "# atr: 3B6D000000814A4446866051996D1E2F30",
        "# ats: 127880A0020081544C96868451011A2B3C4D",
        "# flow: verify",
        "# protocol: T=1",
        "# random: 832859DC5C8D44E4",
        "# expect: verdict=genuine",
        "# when: 2026-12-06T08:15:00",
        "请求=[SLOT:0][Len:5][0084000008]",
        "应答=[SLOT:0][Len:10][832859DC5C8D44E49000]",
        "请求=[SLOT:17][Len:5][00B0960006]",
        "应答=[SLOT:17][2][9000]",
        "复位信息[127880A0020081544C96868451011A2B3C4D]",
        "上电3B6D000000814A4446866051996D1E2F30",
        "0084000008",
        "9000",
        "// comment",
        "加密机:",
        "a|b|",
        "----",
        "",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_gives_a_trace_or_the_typed_error(text: str) -> None:
    with contextlib.suppress(TraceFileError):
        parse_trace(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_FRAGMENTS, st.text(max_size=30)), max_size=20))
def test_lines_of_the_grammar_give_a_trace_or_the_typed_error(lines: list[str]) -> None:
    try:
        trace = parse_trace("\n".join(lines))
    except TraceFileError:
        return
    assert trace.exchanges


_HEX = st.binary(min_size=4, max_size=40)
_EXCHANGES = st.lists(
    st.builds(
        Exchange,
        st.sampled_from(Slot),
        _HEX,
        st.one_of(st.none(), st.binary(min_size=2, max_size=40)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    exchanges=_EXCHANGES,
    randoms=st.lists(st.binary(min_size=1, max_size=16), max_size=4),
    flow=st.one_of(st.none(), st.sampled_from(Flow)),
    expect=st.lists(
        st.builds(
            Expectation,
            st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
            st.from_regex(r"[A-Za-z0-9=:.]{1,12}", fullmatch=True),
        ),
        max_size=3,
    ),
    protocol=st.sampled_from(["T=0", "T=1"]),
    interface=st.sampled_from(Interface),
)
def test_written_trace_reads_back_equal(
    exchanges: list[Exchange],
    randoms: list[bytes],
    flow: Flow | None,
    expect: list[Expectation],
    protocol: str,
    interface: Interface,
) -> None:
    trace = Trace(
        exchanges=tuple(exchanges),
        atr=bytes.fromhex("3B6D000000814A4446866051996D1E2F30"),
        protocol=protocol,
        interface=interface,
        title="a title",
        randoms=tuple(randoms),
        flow=flow,
        today=dt.date(2026, 12, 6),
        when=dt.datetime(2026, 12, 6, 8, 15),
        amount=200,
        expect=tuple(expect),
        extra=(("card", "synthetic"),),
    )
    assert parse_trace(format_trace(trace)) == trace


# --- recording ------------------------------------------------------------------------------


def _record(path: Path, raw: bool) -> tuple[Trace, Trace, dict[str, str]]:
    original = load(path)
    replay = TraceBackend(original)
    recorder = RecordingBackend(replay, psam_reader=replay.psam_reader, raw=raw)
    outcome = run_trace_flow(original, recorder, replay.card_reader, replay.psam_reader)
    replay.assert_complete()
    recorded = recorder.trace(flow=original.flow, randoms=original.randoms, today=original.today)
    return original, recorded, outcome


GENUINE = TRACES_DIR / "sichuan-3.0-contactless-verify-genuine.trace"


def test_recording_raw_keeps_every_exchange_as_it_crossed() -> None:
    original, recorded, _ = _record(GENUINE, raw=True)
    assert recorded.exchanges == original.exchanges
    assert recorded.atr == original.atr and recorded.interface is Interface.CONTACTLESS
    assert recorded.header("holder-data") == "raw"
    assert recorded.header("reader") == CARD_READER


def test_recording_replaces_holder_data_by_default_and_replays() -> None:
    original, recorded, outcome = _record(GENUINE, raw=False)
    assert len(recorded.exchanges) == len(original.exchanges)
    holder_records = 0
    values: dict[int, bytes] = {}
    for before, after in zip(original.exchanges, recorded.exchanges, strict=True):
        assert after.command == before.command
        assert before.answer is not None and after.answer is not None
        is_holder = before.command[1] == 0xB2 and before.command[2] in HOLDER_TAGS
        if not is_holder:
            assert after.answer == before.answer
            continue
        # Same length and status word, the values replaced by the filler.
        holder_records += 1
        assert after.answer[-2:] == before.answer[-2:]
        assert after.answer == anonymise_holder_records(before.answer[:-2]) + b"\x90\x00"
        values.update(records_by_tag(after.answer[:-2]))
    assert holder_records == 7
    holder = decode_holder_data(values)
    assert holder.ssn == "0" * 18 and holder.name == "测试" and holder.sex == "9"
    assert holder.birth_date == dt.date(1970, 1, 1)
    assert recorded.header("holder-data") == PRIVACY_NOTE
    # The anonymised recording is a trace that replays with the same verdict.
    again = parse_trace(format_trace(recorded))
    backend = TraceBackend(again)
    assert run_trace_flow(again, backend)["verdict"] == outcome["verdict"] == "genuine"
    backend.assert_complete()


def test_recording_never_writes_a_pin() -> None:
    trace = parse_trace(
        f"""# onecard-trace: 1
# atr: 3B6D000000814A4446866051996D1E2F30
请求=[SLOT:0][Len:20][{SELECT_SSSE}]
应答=[SLOT:0][Len:32][{FCI_3_0}9000]
请求=[SLOT:0][Len:8][0020000003123456]
应答=[SLOT:0][Len:2][63C2]
"""
    )
    recorder = RecordingBackend(TraceBackend(trace), raw=True)
    verify_pin(CardChannel(recorder.connect(CARD_READER)), "123456")
    text = format_trace(recorder.trace())
    assert "0020000003000000" in text and "123456" not in text


def test_holder_filler_keeps_lengths_and_whole_gbk_characters() -> None:
    assert holder_filler(0x09, 30) == "测试".encode("gbk") + bytes(26)
    assert holder_filler(0x09, 3) == "测".encode("gbk") + bytes(1)
    assert holder_filler(0x4E, 20) == bytes(20)
    assert anonymise_holder_records(bytes.fromhex("0A0131")) == bytes.fromhex("0A0139")
    assert anonymise_holder_records(bytes.fromhex("0A05")) == bytes(2)  # cut short: zeroed


# --- the privacy filter fails closed --------------------------------------------------------

SMALL_ATR = "3B6D000000814A4446866051996D1E2F30"
SSN_RECORD = b"\x08\x12" + b"500103198506150014"  # a synthetic holder's tag 08 record
SSN_HEX = SSN_RECORD[2:].hex().upper()


def _recorded(pairs: list[tuple[str, str]], raw: bool = False) -> list[Exchange]:
    """Send ``pairs`` (command hex, answer hex) through a recorder; what it wrote."""
    exchanges = tuple(Exchange(Slot.CARD, bytes.fromhex(c), bytes.fromhex(a)) for c, a in pairs)
    trace = Trace(exchanges, atr=bytes.fromhex(SMALL_ATR))
    recorder = RecordingBackend(TraceBackend(trace), raw=raw)
    card = recorder.connect(CARD_READER)
    for exchange in exchanges:
        card.transmit_raw(exchange.command)
    return recorder.exchanges


def _written(exchanges: list[Exchange]) -> str:
    return "".join((e.answer or b"").hex().upper() for e in exchanges)


def test_a_get_response_answered_6cxx_keeps_the_holder_answer_masked() -> None:
    """T=0: a holder read answered 61xx, GET RESPONSE with a wrong Le answered 6Cxx, the
    GET RESPONSE re-sent: its answer is the holder's record."""
    written = _recorded(
        [
            (SELECT_SSSE, "9000"),
            ("00A4020002EF06", "9000"),
            ("00B2080014", "6114"),
            ("00C0000010", "6C14"),
            ("00C0000014", SSN_RECORD.hex() + "9000"),
        ]
    )
    assert SSN_HEX not in _written(written)
    assert written[-1].answer == b"\x08\x12" + b"0" * 18 + b"\x90\x00"


def test_an_sfi_read_of_ef06_makes_it_current_for_the_recorder() -> None:
    """``00 B2 01 34`` (SFI 06) makes EF06 the current EF on the card: ``00 B2 08 00``
    then reads it without a SELECT."""
    written = _recorded(
        [
            (SELECT_SSSE, "9000"),
            ("00B2013400", "6C14"),  # SFI 06, record 1: refused Le, EF06 current all the same
            ("00B2080014", SSN_RECORD.hex() + "9000"),  # identifier 08 in the current EF
        ]
    )
    assert SSN_HEX not in _written(written)


@pytest.mark.parametrize(
    "pairs",
    [
        [(SELECT_SSSE, "9000"), ("00B0870004", "A1B2C3D49000")],  # EF07 by SFI
        [(SELECT_SSSE, "9000"), ("00A4020002EF08", "9000"), ("00B0000004", "A1B2C3D49000")],
        [(SELECT_SSSE, "9000"), ("00B1EF08045402000000", "A1B2C3D49000")],  # odd INS: file unknown
    ],
    ids=["ef07-by-sfi", "ef08-selected", "odd-read-binary"],
)
def test_biometric_and_unknown_reads_are_zeroed(pairs: list[tuple[str, str]]) -> None:
    written = _recorded(pairs)
    assert written[-1].answer == bytes(4) + b"\x90\x00"
    assert _recorded(pairs, raw=True)[-1].answer == bytes.fromhex("A1B2C3D49000")


def test_a_failed_select_of_another_file_keeps_ef06_masked() -> None:
    written = _recorded(
        [
            (SELECT_SSSE, "9000"),
            ("00A4020002EF06", "9000"),
            ("00A4020002EF09", "6A82"),  # the card kept EF06 current
            ("00B2080014", SSN_RECORD.hex() + "9000"),
            ("00A4020002EF05", "9000"),  # EF05: nothing personal
            ("00B207000B", "07094130313030303031339000"),
        ]
    )
    assert SSN_HEX not in _written(written)
    assert written[-1].answer == bytes.fromhex("07094130313030303031339000")


def test_authentication_answers_are_kept_while_ef06_is_current() -> None:
    """A cryptogram or a challenge holds no file data: masking it would break a verify
    trace (the PSAM exchanges carry the real bytes)."""
    written = _recorded(
        [
            (SELECT_SSSE, "9000"),
            ("00B2013500", "6C14"),  # EF06 current by SFI (multi-record probe)
            ("0084000008", "42CF103E5F0E4D0A9000"),
            ("008800001032D9E876ADB31BBFDBF7A936D0D18C9E", "6108"),
            ("00C0000008", "F4A0CF965BDCEA309000"),
        ]
    )
    assert written[2].answer == bytes.fromhex("42CF103E5F0E4D0A9000")
    assert written[4].answer == bytes.fromhex("F4A0CF965BDCEA309000")


def test_a_lost_exchange_leaves_the_recorder_masking() -> None:
    trace = Trace(
        (
            Exchange(Slot.CARD, bytes.fromhex("00A4020002EF05"), b"\x90\x00"),
            Exchange(Slot.CARD, bytes.fromhex("00A4020002EF06"), None),
        ),
        atr=bytes.fromhex(SMALL_ATR),
    )
    recorder = RecordingBackend(TraceBackend(trace))
    card = recorder.connect(CARD_READER)
    card.transmit_raw(bytes.fromhex("00A4020002EF05"))
    with pytest.raises(TraceMismatch):
        card.transmit_raw(bytes.fromhex("00A4020002EF06"))
    assert recorder.exchanges[-1].answer is None


@pytest.mark.parametrize(
    "command",
    [
        "0020000003123456",
        "0024000007123456FF987654",
        "002C0000081234567812345678",
        "805E010007123456FF987654",
    ],
)
def test_pin_commands_are_never_written(command: str) -> None:
    """VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER (unblock) and CHANGE PIN: one list,
    the reader's, for the diagnostic trace and for trace files."""
    raw = bytes.fromhex(command)
    written = _recorded([(command, "9000")], raw=True)[0].command
    assert written == hide_pin(raw) and written[:5] == raw[:5]
    assert written[5:] == bytes(len(raw) - 5)
    trace = Trace((Exchange(Slot.CARD, raw, b"\x90\x00"),), atr=bytes.fromhex(SMALL_ATR))
    channel = CardChannel(TraceBackend(trace).connect(CARD_READER))
    channel.trace = []
    channel.transmit(CommandAPDU.from_bytes(raw))
    assert channel.trace == [(written, b"\x90\x00")]


def test_recording_every_committed_trace_keeps_its_outcome() -> None:
    """The filter masks only what may not be written: every trace in tests/traces recorded
    through it replays through the terminal with the same outcome."""
    for path in TRACE_FILES:
        original, recorded, outcome = _record(path, raw=False)
        again = parse_trace(
            format_trace(dataclasses.replace(original, exchanges=recorded.exchanges))
        )
        backend = TraceBackend(again)
        assert run_trace_flow(again, backend) == outcome, path.name
        backend.assert_complete()


# --- the command line -----------------------------------------------------------------------


def test_onecard_verify_trace_records_a_trace_that_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = load(GENUINE)
    backend = TraceBackend(original)
    inprocess.plug(backend)
    monkeypatch.setattr("terminal.ssc.auth.random_bytes", TraceRandom(original.randoms))
    out = tmp_path / "field.trace"
    argv = [
        "verify",
        "--backend",
        "inprocess",
        "--reader",
        CARD_READER,
        "--psam",
        PSAM_READER,
        "--today",
        "2026-12-06",
    ]
    assert cli.main([*argv, "--trace", str(out), "--json"]) == 0
    backend.assert_complete()
    capsys.readouterr()

    recorded = parse_trace(out.read_text(encoding="utf-8"))
    assert recorded.flow is Flow.VERIFY and recorded.today == dt.date(2026, 12, 6)
    assert recorded.randoms == original.randoms
    assert recorded.atr == original.atr and recorded.has_psam
    assert Expectation("verdict", "genuine") in recorded.expect
    assert "张三".encode("gbk").hex().upper() not in out.read_text(encoding="utf-8")
    again = TraceBackend(recorded)
    outcome = run_trace_flow(recorded, again)
    again.assert_complete()
    assert expectation_failures(recorded, outcome) == []


def test_onecard_read_trace_is_written_also_when_the_read_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = parse_trace(
        f"""# onecard-trace: 1
# atr: 3B6D000000814A4446866051996D1E2F30
请求=[SLOT:0][Len:20][{SELECT_SSSE}]
应答=[SLOT:0][Len:2][6A82]
"""
    )
    inprocess.plug(TraceBackend(trace))
    out = tmp_path / "failing.trace"
    assert (
        cli.main(["read", "--backend", "inprocess", "--reader", CARD_READER, "--trace", str(out)])
        == 5
    )  # not an SSC
    capsys.readouterr()
    recorded = parse_trace(out.read_text(encoding="utf-8"))
    assert recorded.exchanges == trace.exchanges and recorded.flow is Flow.READ
    assert recorded.expect == ()


def test_onecard_trace_files_are_readable_by_their_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace holds the card's identifiers (card number, serial, UID) even with the holder
    data masked: written 0600, atomically, whatever the umask."""
    original = load(TRACES_DIR / "sichuan-3.0-contactless-read.trace")
    inprocess.plug(TraceBackend(original))
    out = tmp_path / "card.trace"
    old_umask = os.umask(0o022)
    try:
        assert (
            cli.main(
                ["read", "--backend", "inprocess", "--reader", CARD_READER, "--trace", str(out)]
            )
            == 0
        )
    finally:
        os.umask(old_umask)
    capsys.readouterr()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert parse_trace(out.read_text(encoding="utf-8")).exchanges == original.exchanges
