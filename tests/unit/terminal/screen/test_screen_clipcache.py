"""The voice clip directory as a bounded cache (terminal/screen/clipcache.py): the bounds in
size and count, least recently used first, the kept clips, a restart, and the bound under
any sequence of stores and uses (hypothesis)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.screen.clipcache import ClipCache

PATTERN = re.compile(r"[0-9a-f]{4}\.wav")


def name(i: int) -> str:
    return f"{i:04x}.wav"


def store(cache: ClipCache, i: int, size: int) -> None:
    """What the catalog does with a new clip: room, the file, then stored."""
    cache.make_room(name(i), size)
    (cache.directory / name(i)).write_bytes(b"x" * size)
    cache.stored(name(i), size)


def on_disk(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_the_count_bound_removes_the_least_recently_used(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path, max_bytes=10_000, max_clips=3, pattern=PATTERN)
    for i in range(3):
        store(cache, i, 100)
    cache.used(name(0))  # served again: now the most recent
    store(cache, 3, 100)
    assert on_disk(tmp_path) == {name(0), name(2), name(3)}
    assert cache.totals == (3, 300)


def test_the_size_bound_removes_as_many_as_needed(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path, max_bytes=1000, max_clips=100, pattern=PATTERN)
    for i in range(4):
        store(cache, i, 250)
    store(cache, 4, 600)  # needs room of three
    assert on_disk(tmp_path) == {name(3), name(4)}
    assert cache.totals == (2, 850)


def test_kept_clips_are_neither_removed_nor_counted(tmp_path: Path) -> None:
    fixed = [name(0x100 + i) for i in range(5)]
    for kept in fixed:
        (tmp_path / kept).write_bytes(b"k" * 400)
    cache = ClipCache(tmp_path, max_bytes=500, max_clips=2, pattern=PATTERN)
    cache.keep(fixed)
    for i in range(6):
        store(cache, i, 200)
    assert on_disk(tmp_path) == {*fixed, name(4), name(5)}
    assert cache.totals == (2, 400)
    store(cache, 0x100, 400)  # a kept clip rendered again: nothing removed for it
    assert on_disk(tmp_path) == {*fixed, name(4), name(5)}


def test_keep_after_the_scan_takes_the_clip_out_of_the_count(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path, max_bytes=10_000, max_clips=2, pattern=PATTERN)
    store(cache, 1, 100)
    store(cache, 2, 100)
    cache.keep([name(1)])
    assert cache.totals == (1, 100)
    store(cache, 3, 100)
    assert on_disk(tmp_path) == {name(1), name(2), name(3)}


def test_other_files_are_left_alone(tmp_path: Path) -> None:
    others = ["notes.txt", ".0001.wav-abc.tmp", "ABCD.wav", "00001.wav"]
    for other in others:
        (tmp_path / other).write_bytes(b"o" * 1000)
    (tmp_path / "0fff.wav").mkdir()  # a directory with a clip's name: not a clip
    cache = ClipCache(tmp_path, max_bytes=300, max_clips=1, pattern=PATTERN)
    store(cache, 1, 100)
    store(cache, 2, 100)
    assert on_disk(tmp_path) == {*others, "0fff.wav", name(2)}


def test_a_restart_finds_the_clips_and_their_order(tmp_path: Path) -> None:
    first = ClipCache(tmp_path, max_bytes=10_000, max_clips=3, pattern=PATTERN)
    for i in range(3):
        store(first, i, 100)
        os.utime(tmp_path / name(i), (1000 + i, 1000 + i))
    first.used(name(0))  # touched: the most recent, also for the next run
    again = ClipCache(tmp_path, max_bytes=10_000, max_clips=3, pattern=PATTERN)
    assert again.totals == (3, 300)
    store(again, 3, 100)
    assert on_disk(tmp_path) == {name(0), name(2), name(3)}


def test_a_full_directory_is_brought_within_the_bounds_by_the_next_clip(tmp_path: Path) -> None:
    # What a terminal that ran without a bound left behind.
    for i in range(50):
        (tmp_path / name(i)).write_bytes(b"x" * 100)
        os.utime(tmp_path / name(i), (1000 + i, 1000 + i))
    cache = ClipCache(tmp_path, max_bytes=1000, max_clips=5, pattern=PATTERN)
    store(cache, 99, 100)
    assert on_disk(tmp_path) == {name(i) for i in (46, 47, 48, 49, 99)}


def test_a_clip_removed_by_hand_is_forgotten(tmp_path: Path) -> None:
    cache = ClipCache(tmp_path, max_bytes=10_000, max_clips=2, pattern=PATTERN)
    store(cache, 1, 100)
    store(cache, 2, 100)
    (tmp_path / name(1)).unlink()
    store(cache, 3, 100)
    assert on_disk(tmp_path) == {name(2), name(3)}
    assert cache.totals == (2, 200)


def test_bounds_must_hold_something(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ClipCache(tmp_path, max_bytes=0, max_clips=1, pattern=PATTERN)
    with pytest.raises(ValueError):
        ClipCache(tmp_path, max_bytes=1, max_clips=0, pattern=PATTERN)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("store"), st.integers(0, 40), st.integers(1, 400)),
        st.tuples(st.just("use"), st.integers(0, 40), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None)
@given(
    ops=operations,
    max_bytes=st.integers(400, 3000),
    max_clips=st.integers(1, 8),
    kept=st.sets(st.integers(0, 40), max_size=5),
)
def test_the_bounds_hold_under_any_stores_and_uses(
    ops: list[tuple[str, int, int]], max_bytes: int, max_clips: int, kept: set[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        cache = ClipCache(directory, max_bytes=max_bytes, max_clips=max_clips, pattern=PATTERN)
        cache.keep(name(i) for i in kept)
        stored_kept: set[str] = set()
        last = None
        for op, i, size in ops:
            if op == "store":
                store(cache, i, size)
                last = name(i)
                if i in kept:
                    stored_kept.add(name(i))
            else:
                cache.used(name(i))
        present = on_disk(directory)
        bounded = present - {name(i) for i in kept}
        assert stored_kept <= present  # the kept ones are all there
        assert len(bounded) <= max_clips
        assert sum((directory / n).stat().st_size for n in bounded) <= max_bytes
        assert cache.totals == (
            len(bounded),
            sum((directory / n).stat().st_size for n in bounded),
        )
        if last is not None:
            assert last in present  # the clip just stored is never the one removed
