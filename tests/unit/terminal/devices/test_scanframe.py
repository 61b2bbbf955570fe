"""Serial scanner framing: suffixes, AIM prefixes, bounds (terminal.devices.scanframe)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminal.devices.scanframe import (
    TRIGGER,
    UNTRIGGER,
    Frame,
    FrameDecoder,
    Suffix,
    encode_frame,
    serial_command,
    split_aim,
)


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[Frame]:
    return [frame for chunk in chunks for frame in decoder.feed(chunk)]


def cut(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


def payload(suffix: Suffix) -> st.SearchStrategy[bytes]:
    """Non-empty binary data that does not contain the suffix."""
    return st.binary(min_size=1, max_size=200).filter(lambda b: suffix.value not in b)


# --- commands and AIM prefixes ------------------------------------------------------------


def test_trigger_commands_are_syn_letter_cr() -> None:
    assert bytes.fromhex("16540D") == TRIGGER
    assert bytes.fromhex("16550D") == UNTRIGGER
    assert serial_command(b"M") == b"\x16M\r"


@pytest.mark.parametrize(
    ("data", "frame"),
    [
        (b"]Q1abc", Frame(b"abc", "Q1")),
        (b"]d2\x00\x01", Frame(b"\x00\x01", "d2")),
        (b"]E0", Frame(b"", "E0")),
        (b"]QAx", Frame(b"x", "QA")),
        (b"]1Qabc", Frame(b"]1Qabc", None)),
        (b"]Q", Frame(b"]Q", None)),
        (b"]Q\x00a", Frame(b"]Q\x00a", None)),
        (b"Q1abc", Frame(b"Q1abc", None)),
        (b"", Frame(b"", None)),
    ],
)
def test_split_aim(data: bytes, frame: Frame) -> None:
    assert split_aim(data) == frame


def test_encode_frame_refuses_a_bad_identifier() -> None:
    assert encode_frame(b"x", "Q1", b"\r\n") == b"]Q1x\r\n"
    assert encode_frame(b"x", None) == b"x\r"
    with pytest.raises(ValueError):
        encode_frame(b"x", "Q")
    with pytest.raises(ValueError):
        encode_frame(b"x", "1Q")


# --- suffixes -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", list(Suffix))
def test_frames_end_at_the_suffix(suffix: Suffix) -> None:
    decoder = FrameDecoder(suffix)
    stream = b"]Q1first" + suffix.value + b"second" + suffix.value + b"third"
    assert decoder.feed(stream) == [Frame(b"first", "Q1"), Frame(b"second")]
    assert decoder.pending == len(b"third")
    assert decoder.feed(suffix.value) == [Frame(b"third")]


def test_crlf_mode_keeps_lone_cr_and_lf_as_data() -> None:
    decoder = FrameDecoder(Suffix.CRLF)
    assert decoder.feed(b"a\rb\nc\r") == []
    assert decoder.feed(b"\n") == [Frame(b"a\rb\nc")]
    assert decoder.feed(b"x\r\r\n") == [Frame(b"x\r")]


def test_crlf_split_between_chunks() -> None:
    decoder = FrameDecoder(Suffix.CRLF)
    assert decoder.feed(b"]Q1abc\r") == []
    assert decoder.feed(b"\n]Q1def\r") == [Frame(b"abc", "Q1")]
    assert decoder.feed(b"\n") == [Frame(b"def", "Q1")]


def test_empty_frames_are_skipped_and_counted() -> None:
    decoder = FrameDecoder(Suffix.CR)
    assert decoder.feed(b"\r\rabc\r\n") == [Frame(b"abc")]
    assert decoder.empty == 2
    # the LF of a CR LF scanner read in CR mode starts the next frame
    assert decoder.feed(b"def\r") == [Frame(b"\ndef")]


def test_aim_stripping_can_be_turned_off() -> None:
    assert FrameDecoder(strip_aim=False).feed(b"]Q1abc\r") == [Frame(b"]Q1abc")]


# --- bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", list(Suffix))
def test_frame_of_max_size_is_kept(suffix: Suffix) -> None:
    decoder = FrameDecoder(suffix, max_frame=8)
    assert decoder.feed(b"12345678" + suffix.value) == [Frame(b"12345678")]
    assert decoder.overflows == 0


@pytest.mark.parametrize("suffix", list(Suffix))
def test_overlong_frame_in_one_chunk_is_dropped(suffix: Suffix) -> None:
    decoder = FrameDecoder(suffix, max_frame=8)
    assert decoder.feed(b"123456789" + suffix.value + b"ok" + suffix.value) == [Frame(b"ok")]
    assert decoder.overflows == 1


@pytest.mark.parametrize("suffix", list(Suffix))
def test_overlong_frame_fed_bytewise_is_dropped_with_bounded_memory(suffix: Suffix) -> None:
    decoder = FrameDecoder(suffix, max_frame=8)
    for byte in b"x" * 10_000:
        assert decoder.feed(bytes([byte])) == []
        assert len(decoder._buffer) <= 8 + len(suffix.value) - 1
    assert decoder.overflows == 1
    assert decoder.pending == 0
    assert decoder.feed(suffix.value + b"ok" + suffix.value) == [Frame(b"ok")]
    assert decoder.overflows == 1


def test_reset_forgets_the_unfinished_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"half")
    decoder.reset()
    assert decoder.feed(b"whole\r") == [Frame(b"whole")]


def test_max_frame_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame=0)


# --- properties ---------------------------------------------------------------------------


@st.composite
def framed_stream(draw: st.DrawFn) -> tuple[Suffix, list[bytes], bytes, list[int]]:
    suffix = draw(st.sampled_from(list(Suffix)))
    frames = draw(st.lists(payload(suffix), max_size=20))
    symbologies = draw(st.lists(st.sampled_from([None, "Q1", "d2", "E0"]), min_size=len(frames)))
    stream = b"".join(
        encode_frame(f, s, suffix.value) for f, s in zip(frames, symbologies, strict=False)
    )
    cuts = draw(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
    wire = [encode_frame(f, s, b"") for f, s in zip(frames, symbologies, strict=False)]
    return suffix, wire, stream, cuts


@given(framed_stream())
def test_any_chunking_gives_the_same_frames(case: tuple[Suffix, list[bytes], bytes, list[int]]):
    suffix, wire, stream, cuts = case
    expected = [split_aim(w) for w in wire]
    assert FrameDecoder(suffix).feed(stream) == expected
    decoder = FrameDecoder(suffix)
    assert feed_all(decoder, cut(stream, cuts)) == expected
    assert decoder.pending == 0
    assert decoder.overflows == 0


@given(
    st.sampled_from(list(Suffix)),
    st.binary(max_size=2000),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
    st.integers(min_value=5, max_value=64),
)
def test_garbage_never_crashes_and_stays_bounded(
    suffix: Suffix, garbage: bytes, cuts: list[int], max_frame: int
) -> None:
    decoder = FrameDecoder(suffix, max_frame=max_frame)
    for chunk in cut(garbage, cuts):
        for frame in decoder.feed(chunk):
            assert 0 < len(frame.raw) + (3 if frame.symbology else 0) <= max_frame
            assert suffix.value not in frame.raw
        assert len(decoder._buffer) <= max_frame + len(suffix.value) - 1
    # after any garbage, a suffix resynchronises: the next frame comes through whole
    assert decoder.feed(suffix.value + b"]Q1ok" + suffix.value)[-1:] == [Frame(b"ok", "Q1")]


@given(st.sampled_from(list(Suffix)), st.binary(min_size=1, max_size=300))
def test_overflow_counts_each_overlong_frame_once(suffix: Suffix, body: bytes) -> None:
    while suffix.value in body:  # one pass can make a new CR LF out of CR CR LF LF
        body = body.replace(suffix.value, b"")
    decoder = FrameDecoder(suffix, max_frame=16)
    frames = decoder.feed(body + suffix.value)
    if len(body) > 16:
        assert (frames, decoder.overflows) == ([], 1)
    elif body:
        assert decoder.overflows == 0
        assert frames == [split_aim(body)]
