"""Every durable file of the terminal is 0600 - the journal, the event outbox, the e-code
replay cache, the pending purchases, with the -wal and -shm files SQLite keeps beside them,
and the downloaded documents - under a permissive umask, and a store left 0644 from before
is narrowed when opened (issue 17: replay.db and the pending purchases were made 0644 beside
a 0600 journal)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.journal_records import transaction_record

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.ecode.replay import ReplayCache, ReplayKey
from terminal.host import sqlite as durable
from terminal.host.clock import FixedClock
from terminal.journal.store import Journal
from terminal.sync.downloads import APPLIST_FILE, HOTLIST_FILE, TRUSTLIST_FILE, DocumentStore
from terminal.sync.events import EventOutbox
from terminal.transit.pending import PendingPurchases
from terminal.transit.results import PendingPurchase
from terminal.wire.document import sign_document

NOW = 1_795_000_000.0


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """Anyone may read what is created: the mode must come from the code, not the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private_store(path: Path) -> None:
    """The store and its -wal and -shm files (which exist while it is open) are 0600."""
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    assert all(f.exists() for f in files), [f.name for f in files if not f.exists()]
    assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}


def test_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with contextlib.closing(Journal.open(path, "T0001", FixedClock(NOW))) as journal:
        journal.append(transaction_record())
        assert_private_store(path)


def test_journal_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from onecard.commands.journal import add_commands

    path, exported = tmp_path / "journal.db", tmp_path / "export.jsonl"
    with contextlib.closing(Journal.open(path, "T0001", FixedClock(NOW))) as journal:
        journal.append(transaction_record())
    parser = argparse.ArgumentParser(prog="onecard")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["journal", "export", "--journal", str(path), "-o", str(exported)])
    assert args.func(args) == 0
    assert mode(exported) == 0o600 and len(exported.read_text().splitlines()) == 1


def test_event_outbox(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with EventOutbox.open(path, "T0001", FixedClock(NOW)) as outbox:
        outbox.add("call_staff", {"source": "holder_screen"})
        assert_private_store(path)


def test_replay_cache(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    with ReplayCache(path, FixedClock(NOW)) as cache:
        assert cache.record(ReplayKey(b"k" * 8, b"n" * 8, b"D2143569X", int(NOW), int(NOW) + 90))
        assert_private_store(path)


def test_pending_purchases(tmp_path: Path) -> None:
    path = tmp_path / "pending.db"
    store = PendingPurchases(path)
    try:
        store.put(b"\x01" * 16, _pending(), NOW)
        assert_private_store(path)
    finally:
        store.close()


def test_a_store_left_readable_is_narrowed_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    ReplayCache(path, FixedClock(NOW)).close()
    path.chmod(0o644)  # as a file made before stores were created whole
    wal = Path(f"{path}-wal")
    wal.write_bytes(b"")  # a -wal left over, readable too
    wal.chmod(0o644)
    with ReplayCache(path, FixedClock(NOW)) as cache:
        cache.record(ReplayKey(b"k" * 8, b"n" * 8, b"D2143569X", int(NOW), int(NOW) + 90))
        assert_private_store(path)


def test_a_mode_that_cannot_change_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    path.chmod(0o644)

    def not_the_owner(file: object, new_mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", not_the_owner)
    errors = durable.StoreErrors("the store", RuntimeError, RuntimeError, RuntimeError)  # type: ignore[arg-type]
    durable.keep_private(path, errors)
    assert "cannot be made 0600" in caplog.text


def test_downloaded_documents(tmp_path: Path) -> None:
    key = signing.generate_private_key(Algorithm.ECDSA_P256)
    store = DocumentStore(tmp_path, signing.public_key_bytes(key), Algorithm.ECDSA_P256)
    store.apply_hotlist_delta(
        sign_document(
            {"kind": "hotlist-delta", "version": 1, "base": 0, "added": ["00" * 8], "removed": []},
            key,
            Algorithm.ECDSA_P256,
        )
    )
    store.apply_trust_list(
        sign_document({"kind": "trustlist", "version": 1, "issuers": []}, key, Algorithm.ECDSA_P256)
    )
    service = {"code": "museum-entry", "name": "Museum", "scope": "chongqing"}
    store.apply_application_list(
        sign_document(
            {
                "kind": "applist",
                "version": 1,
                "services": [{**service, "valid_from": "2025-01-01"}],
            },
            key,
            Algorithm.ECDSA_P256,
        )
    )
    names = (HOTLIST_FILE, TRUSTLIST_FILE, APPLIST_FILE)
    assert {n: oct(mode(tmp_path / n)) for n in names} == {n: "0o600" for n in names}


def _pending() -> PendingPurchase:
    when = dt.datetime(2026, 11, 27, 8, 15, 3, tzinfo=dt.UTC)
    return PendingPurchase(bytes(10), 7, 200, 9, bytes(6), 42, when, 5000)
