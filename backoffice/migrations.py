"""The PostgreSQL schema of the back office, as numbered migrations.

Each migration is applied once, in order, and recorded in ``schema_migrations`` (version,
name, when). :func:`migrate` runs at every start of a back office process: in one
transaction under a transaction-scoped advisory lock (one per schema), so that workers
starting together apply each migration once - the others wait, then find nothing to do -
and a migration that fails leaves the schema as it was. A database made before migrations
existed (the tables of version 1, no ``schema_migrations``) is taken as it is: version 1
creates only what is missing.

The journal entries (the transactions) are partitioned by month: ``entries`` is a
``PARTITION BY RANGE (received_month)`` table - the month (China Standard Time) in which
the back office stored the entry - with one partition a month, made as needed by
:func:`ensure_month` (the month an upload arrives in and the next, so that the turn of a
month never waits on DDL). Partitioning by when an entry arrived, not by the terminal's
clock, keeps the partitions few and dense whatever a terminal's clock says, and lets an
operator detach and archive a month once it is cleared. A terminal's ``(terminal_id,
seq)`` is unique across partitions because ingest decides each terminal's batch under a
lock of its ``terminals`` row after looking the seqs up in every partition (the primary key
of each partition, ``(terminal_id, seq, received_month)``, holds within a month).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 7245110
"""First key of the back office's advisory locks (the second: the schema's hash)."""
LOCK_MIGRATE = "SELECT pg_advisory_xact_lock(7245110, hashtext(current_schema()))"
LOCK_PARTITIONS = "SELECT pg_advisory_xact_lock(7245111, hashtext(current_schema()))"
CST = dt.timezone(dt.timedelta(hours=8), "CST")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Any, dt.date], None]
    """(cursor, the current month) -> None; runs inside the migration transaction."""


BASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS terminals (
    terminal_id TEXT PRIMARY KEY,
    secret BYTEA NOT NULL,
    revoked BOOLEAN NOT NULL,
    enrolled_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    acked_up_to BIGINT NOT NULL,
    max_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    terminal_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    amount BIGINT,
    card_token TEXT NOT NULL,
    region TEXT NOT NULL,
    category TEXT,
    extra TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (terminal_id, seq)
);
CREATE TABLE IF NOT EXISTS terminal_events (
    terminal_id TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    detail TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (terminal_id, event_id)
);
CREATE INDEX IF NOT EXISTS terminal_events_at ON terminal_events (at);
CREATE TABLE IF NOT EXISTS hotlist_changes (
    version BIGINT PRIMARY KEY,
    entry TEXT NOT NULL,
    added BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS hotlist_current (
    entry TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('hotlist_version', 0) ON CONFLICT DO NOTHING;
INSERT INTO meta (name, value) VALUES ('hotlist_floor', 0) ON CONFLICT DO NOTHING
"""


def _base(cur: Any, month: dt.date) -> None:
    for statement in BASE_SCHEMA.split(";"):
        cur.execute(statement)


_ENTRY_COLUMNS_SQL = (
    "terminal_id, seq, time, kind, service, decision, reason, amount, card_token, region, "
    "category, extra, prev_hash, hash, body"
)


def _partition_entries(cur: Any, month: dt.date) -> None:
    cur.execute("ALTER TABLE entries RENAME TO entries_unpartitioned")
    # Index names are per schema: the new table's primary key takes the old one's name.
    cur.execute(
        "ALTER TABLE entries_unpartitioned "
        "RENAME CONSTRAINT entries_pkey TO entries_unpartitioned_pkey"
    )
    cur.execute(
        """
        CREATE TABLE entries (
            terminal_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            time DOUBLE PRECISION NOT NULL,
            kind TEXT NOT NULL,
            service TEXT NOT NULL,
            decision TEXT NOT NULL,
            reason TEXT NOT NULL,
            amount BIGINT,
            card_token TEXT NOT NULL,
            region TEXT NOT NULL,
            category TEXT,
            extra TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            body TEXT NOT NULL,
            -- The default serves hand-written inserts; the back office gives the month.
            received_month DATE NOT NULL
                DEFAULT (date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai'))::date,
            PRIMARY KEY (terminal_id, seq, received_month)
        ) PARTITION BY RANGE (received_month)
        """
    )
    _create_months(cur, month)
    # Entries stored before partitioning arrived by now: they go to this month.
    cur.execute(
        f"INSERT INTO entries ({_ENTRY_COLUMNS_SQL}, received_month) "
        f"SELECT {_ENTRY_COLUMNS_SQL}, %s FROM entries_unpartitioned",
        (month,),
    )
    cur.execute("DROP TABLE entries_unpartitioned")


def _fleet_and_clearing(cur: Any, month: dt.date) -> None:
    from backoffice.fleet_storage import FLEET_SCHEMA

    for statement in FLEET_SCHEMA.split(";"):
        cur.execute(statement)


def _venue_occupancy(cur: Any, month: dt.date) -> None:
    from backoffice.venue import VENUE_SCHEMA

    for statement in VENUE_SCHEMA.split(";"):
        cur.execute(statement)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "base tables", _base),
    Migration(2, "journal entries partitioned by the month they arrived", _partition_entries),
    Migration(3, "terminal heartbeats and TAC verdicts (fleet, clearing)", _fleet_and_clearing),
    Migration(4, "venue occupancy counters and maxima", _venue_occupancy),
)
"""Append only: a released migration is never edited, a change is a new one."""


def month_of(when: float) -> dt.date:
    """The first day of the month (China Standard Time) of Unix time ``when``."""
    day = dt.datetime.fromtimestamp(when, CST).date()
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def partition_name(month: dt.date) -> str:
    return f"entries_{month.year:04d}_{month.month:02d}"


def _create_months(cur: Any, month: dt.date) -> None:
    from psycopg import sql

    for first in (month, next_month(month)):
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF entries FOR VALUES FROM ({}) TO ({})"
            ).format(
                sql.Identifier(partition_name(first)),
                sql.Literal(first),
                sql.Literal(next_month(first)),
            )
        )


def migrate(cur: Any, now: float) -> list[int]:
    """Apply the migrations not applied yet, inside the caller's transaction (``cur``);
    return the versions applied now."""
    cur.execute(LOCK_MIGRATE)
    cur.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    cur.execute("SELECT version FROM schema_migrations")
    done = {int(row[0]) for row in cur.fetchall()}
    month = month_of(now)
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        log.info("applying migration %d: %s", migration.version, migration.name)
        migration.apply(cur, month)
        cur.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
        applied.append(migration.version)
    return applied


def ensure_month(cur: Any, month: dt.date) -> None:
    """Make the partitions of ``month`` and the next if missing, inside the caller's
    transaction, under the partitions' advisory lock (workers may meet here)."""
    cur.execute(LOCK_PARTITIONS)
    _create_months(cur, month)


def existing_months(cur: Any) -> set[dt.date]:
    """The months ``entries`` has a partition for."""
    cur.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE p.relname = 'entries' AND n.nspname = current_schema()"
    )
    months = set()
    for (name,) in cur.fetchall():
        parts = str(name).split("_")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            months.add(dt.date(int(parts[1]), int(parts[2]), 1))
    return months
