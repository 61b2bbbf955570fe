"""PostgreSQL schema migrations (backoffice.migrations) and the journal entries partitioned
by the month they arrived: applied once, safe when several processes start together, an
older database taken over with its rows, and exactly-once across a month's turn."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from helpers.backoffice_storage import postgres_url
from psycopg import sql

from backoffice import migrations
from backoffice.errors import DuplicateConflictError
from backoffice.ingest import parse_ingest_body
from backoffice.storage import PostgresStorage
from backoffice.testing import make_entries
from terminal.host.clock import FixedClock

JAN_31_LATE = dt.datetime(2027, 1, 31, 23, 59, tzinfo=migrations.CST).timestamp()
FEB_1 = dt.datetime(2027, 2, 1, 0, 1, tzinfo=migrations.CST).timestamp()


@pytest.fixture
def schema() -> Iterator[str]:
    url = postgres_url()
    name = f"bo_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@contextlib.contextmanager
def opened(schema: str, clock: FixedClock | None = None) -> Iterator[PostgresStorage]:
    store = PostgresStorage(postgres_url(), schema=schema, clock=clock)
    try:
        yield store
    finally:
        store.close()


def entries_of(count: int, start: int = 1, prev: str = "0" * 64, **overrides):
    raw = make_entries("T1", count, start=start, prev_hash=prev, **overrides)
    body = {"terminal_id": "T1", "entries": raw}
    return parse_ingest_body(json.dumps(body).encode(), 5000).entries, raw


def test_month_arithmetic():
    assert migrations.month_of(JAN_31_LATE) == dt.date(2027, 1, 1)
    assert migrations.month_of(FEB_1) == dt.date(2027, 2, 1)
    # 16:30 UTC on 31 January is already 1 February in China.
    utc = dt.datetime(2027, 1, 31, 16, 30, tzinfo=dt.UTC).timestamp()
    assert migrations.month_of(utc) == dt.date(2027, 2, 1)
    assert migrations.next_month(dt.date(2027, 12, 1)) == dt.date(2028, 1, 1)
    assert migrations.partition_name(dt.date(2027, 2, 1)) == "entries_2027_02"


def test_fresh_schema_is_migrated_once(schema):
    clock = FixedClock(JAN_31_LATE)
    with opened(schema, clock) as store:
        assert store.schema_version() == migrations.MIGRATIONS[-1].version
    with opened(schema, clock) as store, store._tx() as cur:
        cur.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [row[0] for row in cur.fetchall()] == [m.version for m in migrations.MIGRATIONS]
        assert migrations.existing_months(cur) >= {dt.date(2027, 1, 1), dt.date(2027, 2, 1)}
        cur.execute("SELECT relkind FROM pg_class WHERE oid = 'entries'::regclass")
        assert cur.fetchone()[0] == "p"  # partitioned


def test_workers_starting_together_migrate_once(schema):
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker() -> None:
        try:
            start.wait()
            with opened(schema):
                pass
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with opened(schema) as store, store._tx() as cur:
        cur.execute("SELECT version, count(*) FROM schema_migrations GROUP BY version")
        assert all(count == 1 for _, count in cur.fetchall())


def test_a_database_from_before_migrations_is_taken_over(schema):
    # The tables exactly as the back office made them before it had migrations.
    with psycopg.connect(postgres_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        for statement in migrations.BASE_SCHEMA.split(";"):
            conn.execute(statement)
        conn.execute("INSERT INTO terminals VALUES ('T1', %s, false, 0, NULL, 0, 0)", (b"k" * 32,))
    entries, _ = entries_of(3)
    with psycopg.connect(postgres_url(), autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        with conn.cursor() as cur:
            for entry in entries:
                cur.execute(
                    "INSERT INTO entries VALUES (" + ", ".join(["%s"] * 15) + ")", entry.row()
                )
            cur.execute("UPDATE terminals SET acked_up_to = 3, max_seq = 3")
    with opened(schema, FixedClock(FEB_1)) as store:
        assert store.schema_version() == migrations.MIGRATIONS[-1].version
        assert [e["seq"] for e in store.entries("T1")] == [1, 2, 3]
        assert store.entry_months() == ["2027-02"]
        more, _ = entries_of(2, start=4, prev=entries[-1].hash)
        assert store.ingest("T1", more).acked_up_to == 5


def test_exactly_once_across_the_turn_of_a_month(schema):
    clock = FixedClock(JAN_31_LATE)
    with opened(schema, clock) as store:
        store.enrol("T1", b"s" * 32, clock.now())
        first, raw = entries_of(10)
        assert store.ingest("T1", first).acked_up_to == 10
        clock.set(FEB_1)
        # The answer was lost; the terminal sends the batch again after midnight.
        again = store.ingest("T1", first)
        assert (again.acked_up_to, again.stored, again.skipped) == (10, 0, 10)
        later, _ = entries_of(10, start=11, prev=raw[-1]["hash"])
        assert store.ingest("T1", later).acked_up_to == 20
        # A rewritten entry stored in January is refused in February.
        rewritten, _ = entries_of(10, reason="rewritten")
        with pytest.raises(DuplicateConflictError):
            store.ingest("T1", rewritten)
        assert [e["seq"] for e in store.entries("T1")] == list(range(1, 21))
        assert store.entry_months() == ["2027-01", "2027-02"]
        # A month no partition was made for ahead is made when its first upload comes.
        clock.set(dt.datetime(2027, 6, 15, tzinfo=migrations.CST).timestamp())
        june, _ = entries_of(1, start=21, prev=store.entries("T1", 19)[0]["hash"])
        assert store.ingest("T1", june).acked_up_to == 21
        assert store.entry_months() == ["2027-01", "2027-02", "2027-06"]
