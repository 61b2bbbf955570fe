"""Storage, on SQLite and on PostgreSQL: every test runs against both.

PostgreSQL tests use ``ONECARD_TEST_PG_URL`` and a fresh schema per test (dropped after).
Without the variable they fail in CI (``CI`` set) and are skipped locally.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest

from backoffice.errors import (
    BadRequestError,
    ChainBrokenError,
    DuplicateConflictError,
    EnrolmentError,
)
from backoffice.ingest import parse_ingest_request
from backoffice.storage import PostgresStorage, SqliteStorage, open_storage
from backoffice.testing import make_entries

PG_URL_ENV = "ONECARD_TEST_PG_URL"
SECRET = bytes(32)
NOW = 1_795_000_000.0


def pg_url_or_skip() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_URL_ENV} is not set: the PostgreSQL back office tests need it in CI")
        pytest.skip(f"{PG_URL_ENV} not set: PostgreSQL storage not tested")
    return url


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path) -> Iterator[SqliteStorage | PostgresStorage]:
    if request.param == "sqlite":
        store = open_storage(tmp_path / "bo.sqlite", hotlist_history=5)
        yield store
        store.close()
        return
    url = pg_url_or_skip()
    schema = f"bo_test_{uuid.uuid4().hex[:12]}"
    store = PostgresStorage(url, schema=schema, hotlist_history=5)
    try:
        yield store
    finally:
        store.close()
        drop_schema(url, schema)


def batch(entries):
    return parse_ingest_request({"terminal_id": entries[0]["terminal_id"], "entries": entries})


def ingest(storage, entries):
    b = batch(entries)
    return storage.ingest(b.terminal_id, b.entries)


def test_enrol_revoke_and_keys(storage):
    assert storage.terminal_key("T0001") is None
    storage.enrol("T0001", SECRET, NOW)
    key = storage.terminal_key("T0001")
    assert key.secret == SECRET and not key.revoked
    with pytest.raises(EnrolmentError):
        storage.enrol("T0001", SECRET, NOW)
    storage.revoke("T0001", NOW)
    assert storage.terminal_key("T0001").revoked
    storage.enrol("T0001", b"\x01" * 32, NOW, replace=True)
    key = storage.terminal_key("T0001")
    assert key.secret == b"\x01" * 32 and not key.revoked
    with pytest.raises(EnrolmentError):
        storage.revoke("T9999", NOW)


def test_ingest_idempotent_and_acked(storage):
    storage.enrol("T0001", SECRET, NOW)
    entries = make_entries("T0001", 10)
    result = ingest(storage, entries[:6])
    assert (result.acked_up_to, result.stored, result.skipped) == (6, 6, 0)
    result = ingest(storage, entries[4:])
    assert (result.acked_up_to, result.stored, result.skipped) == (10, 4, 2)
    result = ingest(storage, entries)
    assert (result.acked_up_to, result.stored, result.skipped) == (10, 0, 10)
    assert storage.acked_up_to("T0001") == 10
    # What is stored is every contract field, as sent.
    assert storage.entries("T0001") == entries
    assert storage.entries("T0001", after=8, limit=1) == entries[8:9]


def test_conflicts_store_nothing_of_the_batch(storage):
    storage.enrol("T0001", SECRET, NOW)
    entries = make_entries("T0001", 4)
    ingest(storage, entries[:2])
    rewritten = make_entries("T0001", 4, reason="rewritten")
    with pytest.raises(DuplicateConflictError):
        ingest(storage, rewritten)
    forked = make_entries("T0001", 3, start=3, prev_hash="ab" * 32)
    with pytest.raises(ChainBrokenError):
        ingest(storage, forked)
    # A batch whose first entries are fine and whose last is broken: nothing of it stored.
    bad_tail = entries[2:] + make_entries("T0001", 1, start=5, prev_hash="cd" * 32)
    with pytest.raises(ChainBrokenError):
        ingest(storage, bad_tail)
    assert storage.acked_up_to("T0001") == 2
    assert len(storage.entries("T0001")) == 2


def test_gaps_hold_acked_until_filled(storage):
    storage.enrol("T0001", SECRET, NOW)
    entries = make_entries("T0001", 9)
    assert ingest(storage, entries[:3]).acked_up_to == 3
    assert ingest(storage, entries[6:]).acked_up_to == 3  # 7..9 stored, 4..6 missing
    assert ingest(storage, entries[3:5]).acked_up_to == 3 + 2
    assert ingest(storage, entries[5:6]).acked_up_to == 9
    assert storage.entries("T0001") == entries
    # A sparse batch (not a contiguous run) goes through the exact seq list.
    other = make_entries("T0002", 40)
    storage.enrol("T0002", SECRET, NOW)
    assert ingest(storage, [other[0], other[30]]).acked_up_to == 1


def test_unknown_terminal_and_foreign_entries(storage):
    entries = make_entries("T0001", 1)
    with pytest.raises(EnrolmentError):
        ingest(storage, entries)
    storage.enrol("T0002", SECRET, NOW)
    with pytest.raises(BadRequestError):
        storage.ingest("T0002", batch(entries).entries)


def test_empty_batch_reports_acked(storage):
    storage.enrol("T0001", SECRET, NOW)
    ingest(storage, make_entries("T0001", 2))
    assert storage.ingest("T0001", ()).acked_up_to == 2


def test_concurrent_batches_of_one_terminal_are_serialised(storage):
    storage.enrol("T0001", SECRET, NOW)
    entries = make_entries("T0001", 200)
    errors: list[BaseException] = []

    def upload(chunk):
        try:
            ingest(storage, chunk)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    # Overlapping batches racing: each is all-or-nothing and none may fail.
    threads = [
        threading.Thread(target=upload, args=(entries[i : i + 100],)) for i in range(0, 200, 50)
    ]
    threads += [threading.Thread(target=upload, args=(entries,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert storage.acked_up_to("T0001") == 200


def test_hotlist_versions_and_history(storage):
    a, b, c = "a" * 16, "b" * 16, "c" * 16
    snap = storage.hotlist_snapshot(0)
    assert (snap.version, snap.full) == (0, ())
    assert storage.hotlist_change(a, True) == 1
    assert storage.hotlist_change(a, True) == 1  # already there: no new version
    assert storage.hotlist_change(b, True) == 2
    assert storage.hotlist_change(a, False) == 3
    assert storage.hotlist_change(c, False) == 3  # not there: no new version
    snap = storage.hotlist_snapshot(1)
    assert [(x.version, x.entry, x.added) for x in snap.changes] == [(2, b, True), (3, a, False)]
    assert storage.hotlist_snapshot(0).full == (b,)
    for _ in range(4):  # history is 5 versions: the oldest changes go
        storage.hotlist_change(c, True)
        storage.hotlist_change(c, False)
    snap = storage.hotlist_snapshot(1)
    assert snap.version == 11 and snap.floor == 6 and snap.changes is None
    assert snap.full == (b,)
    assert len(storage.hotlist_snapshot(6).changes) == 5


def test_documents(storage):
    assert storage.document("trustlist") is None
    doc = storage.publish_document("trustlist", lambda v: {"kind": "trustlist", "version": v})
    assert doc == {"kind": "trustlist", "version": 1}
    storage.publish_document("trustlist", lambda v: {"kind": "trustlist", "version": v, "x": "中"})
    assert storage.document("trustlist") == {"kind": "trustlist", "version": 2, "x": "中"}
    assert storage.document("applist") is None


def test_open_storage_urls(tmp_path):
    store = open_storage(f"sqlite://{tmp_path}/a/b.sqlite")
    assert isinstance(store, SqliteStorage) and store.path == f"{tmp_path}/a/b.sqlite"
    store.close()
    from backoffice.errors import StorageError

    with pytest.raises(StorageError):
        open_storage("mysql://x/y")
    with pytest.raises(StorageError):
        open_storage("sqlite://")


def test_open_storage_postgres_schema_parameter():
    url = pg_url_or_skip()
    schema = f"bo_test_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in url else "?"
    store = open_storage(f"{url}{sep}schema={schema}")
    try:
        assert isinstance(store, PostgresStorage) and store.schema == schema
        store.enrol("T0001", SECRET, NOW)
        assert store.terminal_key("T0001") is not None
    finally:
        store.close()
        drop_schema(url, schema)
