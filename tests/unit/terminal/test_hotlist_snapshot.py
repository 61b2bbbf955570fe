"""The hotlist snapshot format (terminal.hotlist_snapshot): a round trip into the
terminal's own file format, and every damage - any truncation, any flipped byte, a
decompression bomb, entries out of order - refused with SnapshotError, the previous file
untouched and no temporary file left behind. Decoding holds one block, not the list."""

from __future__ import annotations

import io
import tracemalloc
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.hotlist import HotList
from terminal.hotlist_snapshot import (
    SnapshotError,
    compress_payload,
    encode_blocks,
    frame,
    install_snapshot,
    snapshot_header_body,
)
from terminal.wire.document import StaleDocumentError, sign_document

ALG = Algorithm.SM2


@cache
def _private() -> signing.PrivateKey:
    return signing.generate_private_key(ALG)


def public() -> bytes:
    return signing.public_key_bytes(_private())


def snapshot(version: int, keys: np.ndarray, block: int = 64, payload: bytes | None = None,
             entries: int | None = None) -> bytes:  # fmt: skip
    payload = compress_payload(keys, block) if payload is None else payload
    n = len(keys) if entries is None else entries
    header = sign_document(snapshot_header_body(version, n, block, payload), _private(), ALG)
    return frame(header) + payload


def random_keys(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.unique(rng.integers(0, (1 << 64) - 1, size=n, dtype=np.uint64, endpoint=True))


def install(tmp_path: Path, raw: bytes, current: int = 0) -> HotList:
    return install_snapshot(io.BytesIO(raw), public(), ALG, tmp_path / "hotlist.bin", current)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000])
def test_round_trip_into_the_terminal_format(tmp_path: Path, n: int) -> None:
    keys = random_keys(n) if n else np.empty(0, dtype="<u8")
    keys[: min(n, 1)] = 0  # the smallest key, 0, is a key like any other
    keys = np.unique(keys)
    hotlist = install(tmp_path, snapshot(9, keys))
    assert hotlist.version == 9 and hotlist.keys().tolist() == keys.tolist()
    assert HotList.load(tmp_path / "hotlist.bin").keys().tolist() == keys.tolist()


def test_the_largest_keys_survive_the_delta_coding(tmp_path: Path) -> None:
    keys = np.array([1, (1 << 63), (1 << 64) - 2, (1 << 64) - 1], dtype="<u8")
    assert install(tmp_path, snapshot(2, keys, block=2)).keys().tolist() == keys.tolist()


def test_not_newer_is_stale(tmp_path: Path) -> None:
    with pytest.raises(StaleDocumentError):
        install(tmp_path, snapshot(5, random_keys(10)), current=5)


GOOD_KEYS = random_keys(300, seed=7)


@cache
def good() -> bytes:
    return snapshot(3, GOOD_KEYS)


def _previous(tmp_path: Path) -> bytes:
    HotList.from_keys(1, [1, 2, 3]).save(tmp_path / "hotlist.bin")
    return (tmp_path / "hotlist.bin").read_bytes()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_or_flipped_byte_is_refused(tmp_path: Path, data: st.DataObject) -> None:
    raw = good()
    if data.draw(st.booleans()):
        damaged = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        at = data.draw(st.integers(0, len(raw) - 1))
        damaged = raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1 :]
    before = _previous(tmp_path)
    with pytest.raises(SnapshotError):
        install(tmp_path, damaged)
    assert (tmp_path / "hotlist.bin").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["hotlist.bin"]


def test_a_signed_but_unsorted_payload_is_refused(tmp_path: Path) -> None:
    # A back office bug, signed all the same: a zero difference (a duplicate).
    planes = np.array([5, 0, 7], dtype="<u8").view(np.uint8).reshape(-1, 8).T.tobytes()
    payload = zlib.compress(planes)
    with pytest.raises(SnapshotError, match="strictly increasing"):
        install(tmp_path, snapshot(2, np.zeros(3, dtype="<u8"), block=3, payload=payload))


def test_a_wrapping_difference_is_refused(tmp_path: Path) -> None:
    deltas = np.array([10, (1 << 64) - 5], dtype="<u8")  # 10, then 10 - 5 mod 2**64
    payload = zlib.compress(deltas.view(np.uint8).reshape(-1, 8).T.tobytes())
    with pytest.raises(SnapshotError, match="strictly increasing"):
        install(tmp_path, snapshot(2, np.zeros(2, dtype="<u8"), block=2, payload=payload))


def test_a_decompression_bomb_stops_at_the_entries_announced(tmp_path: Path) -> None:
    keys = random_keys(10)
    bomb = zlib.compressobj(9)
    # Ten good entries, then 200 MB of zeros: about 200 KB on the wire.
    payload = b"".join(
        [*(bomb.compress(b) for b in encode_blocks(keys, 64)),
         bomb.compress(bytes(200 * 1024 * 1024)), bomb.flush()]
    )  # fmt: skip
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError, match="more than its entries"):
            install(tmp_path, snapshot(2, keys, payload=payload))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


def test_more_entries_announced_than_sent_is_refused(tmp_path: Path) -> None:
    keys = random_keys(50)
    payload = compress_payload(keys, 64)
    with pytest.raises(SnapshotError, match="its header says 51"):
        install(tmp_path, snapshot(2, keys, payload=payload, entries=51))


def test_decoding_holds_a_block_not_the_list(tmp_path: Path) -> None:
    keys = random_keys(1_000_000, seed=3)
    raw = snapshot(4, keys, block=65536)
    tracemalloc.start()
    try:
        hotlist = install(tmp_path, raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(hotlist) == len(keys)
    # The loaded list itself is 8 MB; decoding adds a few blocks and buffers on top.
    assert peak < hotlist.keys().nbytes + 6 * 1024 * 1024


def test_the_new_list_serves_mapped_before_it_is_read_into_memory(tmp_path: Path) -> None:
    keys = random_keys(5000, seed=9)
    seen: list[HotList] = []
    loaded = install_snapshot(
        io.BytesIO(snapshot(6, keys)), public(), ALG, tmp_path / "hotlist.bin", 0, seen.append
    )
    (mapped,) = seen
    assert mapped.version == loaded.version == 6
    assert mapped.stats()["bytes"] == keys.nbytes  # no bucket index: it would touch every page
    for key in [int(k) for k in keys[::97]] + [0, 12345, (1 << 64) - 1]:
        assert mapped.contains_key(key) == loaded.contains_key(key) == (key in set(keys.tolist()))


@pytest.mark.parametrize(
    ("offset", "what"),
    [
        (0, "not a hotlist"),
        (24, "truncated or padded"),
        (20, "checksum"),
        (40, "checksum"),
        (64 + 8 * 3, "checksum"),
    ],
)
def test_verify_file_reads_in_chunks_and_refuses_damage(
    tmp_path: Path, offset: int, what: str
) -> None:
    from terminal.hotlist import HotlistError, verify_file

    path = tmp_path / "hotlist.bin"
    HotList.from_keys(4, [int(k) for k in random_keys(3000)]).save(path)
    assert verify_file(path) == (4, 3000)
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))
    with pytest.raises(HotlistError, match=what):
        verify_file(path)


def test_verify_file_checks_order_across_its_chunks(tmp_path: Path, monkeypatch) -> None:
    import hashlib
    import struct

    import terminal.hotlist as hotlist_module

    monkeypatch.setattr(hotlist_module, "_ORDER_CHUNK", 4)
    keys = np.array([1, 2, 3, 10, 9, 20, 30, 40], dtype="<u8")  # the fault between chunks
    head = struct.pack("<8sIIQQ", b"OCHOTLST", 1, 0, 2, len(keys))
    path = tmp_path / "hotlist.bin"
    path.write_bytes(head + hashlib.sha256(head + keys.tobytes()).digest() + keys.tobytes())
    with pytest.raises(hotlist_module.HotlistError, match="strictly increasing"):
        hotlist_module.verify_file(path)
