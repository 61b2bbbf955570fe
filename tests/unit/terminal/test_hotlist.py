"""The hotlist: membership by card token, deltas (rollback and base mismatch refused),
atomic save, refusal of corrupt files, and a set model under random delta sequences."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal import hotlist as hotlist_module
from terminal.hotlist import HEADER_LENGTH, MAX_KEY, HotList, HotlistError
from terminal.privacy.cardtoken import card_token, hotlist_key

KEY = bytes(range(32))


def token(card_number: str) -> bytes:
    return card_token(KEY, card_number)


LOST = token("D2143569X")
KEPT = token("A1234567X")


def test_empty() -> None:
    empty = HotList.empty()
    assert empty.version == 0
    assert len(empty) == 0
    assert not empty.contains(LOST)
    assert empty.stats()["entries"] == 0


def test_membership_by_token() -> None:
    hl = HotList.from_keys(5, [hotlist_key(LOST)])
    assert hl.contains(LOST)
    assert LOST in hl
    assert not hl.contains(KEPT)
    # Only the first 8 bytes count: the hotlist keeps 64-bit keys.
    assert hl.contains(LOST[:8] + bytes(8))
    assert hl.version == 5 and len(hl) == 1


@pytest.mark.parametrize("edge", [0, 1, (1 << 48) - 1, 1 << 48, (1 << 63), MAX_KEY - 1, MAX_KEY])
def test_bucket_edges(edge: int) -> None:
    # Keys at bucket boundaries (top 16 bits) and the extremes of the 64-bit range.
    hl = HotList.from_keys(1, [edge])
    assert hl.contains_key(edge)
    for other in (edge - 1, edge + 1):
        if 0 <= other <= MAX_KEY:
            assert not hl.contains_key(other)
    assert not hl.contains_key(-1)
    assert not hl.contains_key(MAX_KEY + 1)


def test_matches_numpy_on_many_keys() -> None:
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 2**64, 50_000, dtype=np.uint64, endpoint=False)
    hl = HotList.from_keys(1, keys)
    assert all(hl.contains_key(int(k)) for k in keys[:2000])
    probes = rng.integers(0, 2**64, 2000, dtype=np.uint64, endpoint=False)
    members = set(keys.tolist())
    assert [hl.contains_key(int(p)) for p in probes] == [int(p) in members for p in probes]


def test_short_token_is_refused() -> None:
    with pytest.raises(HotlistError, match="at least 8 bytes"):
        HotList.empty().contains(b"1234567")


def test_delta_adds_and_removes() -> None:
    hl = HotList.from_keys(1, [10, 20, 30])
    new = hl.apply_delta(2, 1, added=[25, 5, 40], removed=[20, 99])
    assert new.keys().tolist() == [5, 10, 25, 30, 40]
    assert new.version == 2
    # The old list is untouched: readers holding it never see half an update.
    assert hl.keys().tolist() == [10, 20, 30] and hl.version == 1


def test_delta_adding_a_present_key_is_harmless() -> None:
    hl = HotList.from_keys(1, [10, 20])
    assert hl.apply_delta(2, 1, [10, 10], []).keys().tolist() == [10, 20]


def test_full_replacement() -> None:
    hl = HotList.from_keys(3, [1, 2, 3])
    new = hl.apply_delta(4, 0, added=[9, 7, 7], removed=[])
    assert new.keys().tolist() == [7, 9] and new.version == 4
    with pytest.raises(HotlistError, match="cannot remove"):
        hl.apply_delta(4, 0, added=[9], removed=[1])


@pytest.mark.parametrize("version", [3, 2, 0])
def test_rollback_is_refused(version: int) -> None:
    hl = HotList.from_keys(3, [1])
    with pytest.raises(HotlistError, match="not newer"):
        hl.apply_delta(version, 3, [2], [])
    with pytest.raises(HotlistError, match="not newer"):
        hl.apply_delta(version, 0, [2], [])


def test_base_mismatch_is_refused() -> None:
    hl = HotList.from_keys(3, [1])
    with pytest.raises(HotlistError, match="built on version 2"):
        hl.apply_delta(4, 2, [2], [])


@pytest.mark.parametrize(
    ("added", "removed"),
    [([-1], []), ([MAX_KEY + 1], []), ([1.5], []), (["1"], []), ([True], []), ([], [-5])],
)
def test_bad_keys_are_refused(added: list[object], removed: list[object]) -> None:
    with pytest.raises(HotlistError, match="64-bit"):
        HotList.from_keys(1, [1]).apply_delta(2, 1, added, removed)  # type: ignore[arg-type]


def test_bad_key_arrays_are_refused() -> None:
    with pytest.raises(HotlistError, match="uint64"):
        HotList.empty().apply_delta(1, 0, np.array([1, 2], dtype=np.int64), [])


def test_contradictory_delta_is_refused() -> None:
    with pytest.raises(HotlistError, match="both adds and removes"):
        HotList.from_keys(1, [1]).apply_delta(2, 1, [5], [5])


@pytest.mark.parametrize("version", [-1, 2**63, "2", 1.0])
def test_bad_versions_are_refused(version: object) -> None:
    with pytest.raises(HotlistError):
        HotList.empty().apply_delta(version, 0, [], [])  # type: ignore[arg-type]


# --- persistence ----------------------------------------------------------------------------


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "hotlist.bin"
    keys = [MAX_KEY, 0, 1 << 63, 12345]
    HotList.from_keys(42, keys).save(path)
    loaded = HotList.load(path)
    assert loaded.version == 42
    assert loaded.keys().tolist() == sorted(keys)
    assert all(loaded.contains_key(k) for k in keys)
    assert path.stat().st_size == HEADER_LENGTH + 8 * len(keys)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_save_and_load_empty(tmp_path: Path) -> None:
    path = tmp_path / "hotlist.bin"
    HotList.empty().save(path)
    assert len(HotList.load(path)) == 0


def test_save_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hotlist.bin"
    HotList.from_keys(1, [1, 2]).save(path)
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hotlist_module.os, "replace", broken_replace)
    with pytest.raises(HotlistError, match="cannot save"):
        HotList.from_keys(2, [3]).save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_save_fsyncs_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(hotlist_module.os, "fsync", spy)
    HotList.from_keys(1, [1]).save(tmp_path / "h.bin")
    assert len(synced) == 2  # the temporary file, then the directory


def test_save_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(HotlistError, match="cannot save"):
        HotList.empty().save(tmp_path / "nowhere" / "h.bin")


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "hotlist.bin"
    HotList.from_keys(7, [3, 1, 2]).save(path)
    return path


def _corrupt(data: bytearray, how: str) -> bytes:
    if how == "magic":
        data[0:8] = b"NOTAHOTL"
    elif how == "format":
        data[8:12] = struct.pack("<I", 2)
    elif how == "reserved":
        data[12] = 1
    elif how == "version":
        data[16] ^= 1
    elif how == "entry":
        data[-1] ^= 0x80
    elif how == "checksum":
        data[40] ^= 1
    elif how == "truncated":
        del data[-3:]
    elif how == "padded":
        data += b"\0" * 8
    elif how == "short-header":
        del data[20:]
    elif how == "count":
        data[24:32] = struct.pack("<Q", 4)
    return bytes(data)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("magic", "bad magic"),
        ("format", "format version 2"),
        ("reserved", "reserved"),
        ("version", "checksum"),
        ("entry", "checksum"),
        ("checksum", "checksum"),
        ("truncated", "truncated"),
        ("padded", "padded"),
        ("short-header", "truncated header"),
        ("count", "header says 4 entries"),
    ],
)
def test_corrupt_file_is_refused_and_untouched(tmp_path: Path, how: str, reason: str) -> None:
    path = _saved(tmp_path)
    bad = _corrupt(bytearray(path.read_bytes()), how)
    path.write_bytes(bad)
    with pytest.raises(HotlistError, match=reason):
        HotList.load(path)
    assert path.read_bytes() == bad


def test_unsorted_file_with_a_good_checksum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.bin"
    # A writer that forgot to sort: right checksum, wrong order.
    keys = np.array([3, 1, 2], dtype="<u8")
    header = struct.pack("<8sIIQQ", b"OCHOTLST", 1, 0, 1, 3)
    checksum = hotlist_module._checksum(header, keys)
    path.write_bytes(header + checksum + keys.tobytes())
    with pytest.raises(HotlistError, match="not strictly increasing"):
        HotList.load(path)


def test_missing_file_is_a_hotlist_error(tmp_path: Path) -> None:
    with pytest.raises(HotlistError, match="cannot read"):
        HotList.load(tmp_path / "absent.bin")


def test_stats() -> None:
    stats = HotList.from_keys(9, range(1000)).stats()
    assert stats["version"] == 9 and stats["entries"] == 1000
    assert stats["bytes"] >= 8000


# --- model check ----------------------------------------------------------------------------

# Keys drawn from a small pool (plus the extremes and bucket edges) so deltas often add
# what is present and remove what is listed.
_POOL = st.one_of(
    st.integers(0, 64),
    st.sampled_from([MAX_KEY, MAX_KEY - 1, 1 << 48, (1 << 48) - 1, 1 << 63]),
    st.integers(0, MAX_KEY),
)


@st.composite
def _delta(draw: st.DrawFn) -> tuple[bool, list[int], list[int]]:
    full = draw(st.integers(0, 5)) == 0
    added = draw(st.lists(_POOL, max_size=12))
    removed = [] if full else draw(st.lists(_POOL, max_size=12))
    removed = [k for k in removed if k not in set(added)]
    return full, added, removed


@settings(max_examples=150, deadline=None)
@given(st.lists(_delta(), max_size=12), st.lists(_POOL, min_size=1, max_size=20))
def test_random_delta_sequences_match_a_set(
    tmp_path_factory: pytest.TempPathFactory,
    deltas: list[tuple[bool, list[int], list[int]]],
    probes: list[int],
) -> None:
    path = tmp_path_factory.mktemp("model") / "hotlist.bin"
    hl = HotList.empty()
    model: set[int] = set()
    for step, (full_drawn, added, drawn_removed) in enumerate(deltas, start=1):
        # Base 0 means a full list, so the first delta onto an empty list is always one.
        full = full_drawn or hl.version == 0
        removed = [] if full else drawn_removed
        base = 0 if full else hl.version
        hl = hl.apply_delta(step, base, added, removed)
        model = set(added) if full else (model - set(removed)) | set(added)
        if step % 3 == 0:
            hl.save(path)
            hl = HotList.load(path)
        assert hl.version == step
        assert len(hl) == len(model)
        assert hl.keys().tolist() == sorted(model)
    for key in [*probes, *model]:
        assert hl.contains_key(key) == (key in model)
