"""The replay cache: once only, durable across re-opening, lazy purge."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from terminal.ecode.replay import PURGE_INTERVAL, ReplayCache, ReplayKey
from terminal.errors import ReplayCacheError
from terminal.host.clock import FixedClock

NOW = 1_795_000_000


def _key(nonce: bytes = b"12345678", card: bytes = b"card", issued_at: int = NOW) -> ReplayKey:
    return ReplayKey(b"K" * 8, nonce, card, issued_at, issued_at + 60 + 30)


def test_once_only_in_memory() -> None:
    cache = ReplayCache.in_memory(FixedClock(NOW))
    assert cache.record(_key())
    assert not cache.record(_key())
    # any part of the identity differs: another code
    assert cache.record(_key(nonce=b"87654321"))
    assert cache.record(_key(card=b"other"))
    assert cache.record(_key(issued_at=NOW + 1))
    assert len(cache) == 4


def test_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    clock = FixedClock(NOW)
    with ReplayCache(path, clock) as cache:
        assert cache.record(_key())
    with ReplayCache(path, clock) as cache:
        assert not cache.record(_key())
        assert cache.record(_key(nonce=b"abcdefgh"))


def test_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    cache = ReplayCache(path, FixedClock(NOW))
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cache._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    cache.record(_key())
    # committed: another connection sees it at once (no open transaction)
    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM seen_codes").fetchone()[0] == 1
    other.close()
    cache.close()


def test_lazy_purge_after_expiry_and_skew() -> None:
    clock = FixedClock(NOW)
    cache = ReplayCache.in_memory(clock, skew_seconds=30)
    assert cache.record(_key())  # expires_at = NOW + 90
    clock.advance(90 + 30)  # at expiry + skew: still kept
    assert cache.purge() == 0
    clock.advance(1)
    assert cache.purge() == 1
    assert cache.record(_key(nonce=b"x" * 8))
    clock.advance(PURGE_INTERVAL + 200)
    # the next check purges lazily on its own
    assert cache.record(_key(nonce=b"y" * 8))
    assert len(cache) == 1


def test_threads_record_once() -> None:
    cache = ReplayCache.in_memory(FixedClock(NOW))
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        ok = cache.record(_key())
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_unopenable(tmp_path: Path) -> None:
    with pytest.raises(ReplayCacheError):
        ReplayCache(tmp_path / "no" / "such" / "dir" / "r.sqlite", FixedClock(NOW))


def test_closed_cache_fails_typed() -> None:
    cache = ReplayCache.in_memory(FixedClock(NOW))
    cache.close()
    with pytest.raises(ReplayCacheError):
        cache.record(_key())
