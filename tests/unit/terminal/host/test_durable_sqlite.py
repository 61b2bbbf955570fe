"""The one opener of the terminal's durable SQLite files (terminal/host/sqlite.py) and the
four stores that use it: the journal, the event outbox, the replay cache, the pending
purchases - created whole, checked read-only at open, WAL + synchronous=FULL, typed errors."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from terminal.ecode.replay import ReplayCache
from terminal.errors import (
    JournalCorruptError,
    OneCardError,
    ReplayCacheError,
    TransitError,
)
from terminal.host import sqlite as durable
from terminal.host.clock import FixedClock
from terminal.journal.store import Journal
from terminal.sync.events import EventOutbox, EventOutboxCorruptError
from terminal.transit.pending import PendingPurchases
from terminal.transit.purchase import PendingPurchase


class Failed(OneCardError):
    code = "failed"


class Damaged(OneCardError):
    code = "damaged"

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class Full(OneCardError):
    code = "full"


ERRORS = durable.StoreErrors("the test store", Failed, Damaged, Full)
TABLES = {"things": ["id", "name"]}


def build(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    conn.execute("INSERT INTO things (name) VALUES ('first')")


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM things").fetchone()[0])


def open_test_store(path: Path) -> tuple[sqlite3.Connection, int]:
    return durable.open_store(path, ERRORS, build=build, tables=TABLES, check=count)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_store_is_created_whole_and_opened_durable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn, checked = open_test_store(path)
    assert checked == 1  # the store's own check ran, on the file as built
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".new")] == []
    again, checked = open_test_store(path)  # opened, not built again
    assert checked == 1
    again.close()


def test_creation_never_replaces_a_file_that_appeared(tmp_path: Path) -> None:
    path = tmp_path / "store.db"

    def racing_build(conn: sqlite3.Connection) -> None:
        build(conn)
        other = sqlite3.connect(path)  # another process creates the store meanwhile
        other.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        other.executemany("INSERT INTO things (name) VALUES (?)", [("a",), ("b",)])
        other.commit()
        other.close()

    durable.create_whole(path, ERRORS, racing_build)
    conn = sqlite3.connect(path)
    assert count(conn) == 2  # theirs kept
    conn.close()


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"not a database, just text" * 10), "not an SQLite database"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84), None),
    ],
    ids=["empty", "text", "header only"],
)
def test_a_damaged_file_is_refused_untouched(
    tmp_path: Path, damage: Callable[[Path], object], match: str
) -> None:
    path = tmp_path / "store.db"
    damage(path)
    before = digest(path)
    with pytest.raises(Damaged, match=match) as caught:
        open_test_store(path)
    assert caught.value.path == str(path)
    assert digest(path) == before


def test_damaged_pages_and_foreign_tables_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(Damaged, match="table things"):
        open_test_store(foreign)

    damaged = tmp_path / "pages.db"
    conn, _ = open_test_store(damaged)
    conn.executemany("INSERT INTO things (name) VALUES (?)", [("x" * 300,)] * 200)
    conn.close()
    data = bytearray(damaged.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)
    damaged.write_bytes(bytes(data))
    with pytest.raises(Damaged):
        open_test_store(damaged)


def test_no_directory_is_a_typed_failure(tmp_path: Path) -> None:
    with pytest.raises(Failed, match=r"cannot create the test store.*does not exist"):
        open_test_store(tmp_path / "missing" / "store.db")


@pytest.mark.parametrize(
    ("code", "error", "match"),
    [
        (13, Full, "full.*nothing was recorded"),  # SQLITE_FULL
        (10 | (4 << 8), Full, "I/O error.*nothing was recorded"),  # SQLITE_IOERR_FSYNC
        (11, Damaged, "writing: disk trouble"),  # SQLITE_CORRUPT
        (26, Damaged, "writing: disk trouble"),  # SQLITE_NOTADB
        (5, Failed, "busy"),  # SQLITE_BUSY: not the file's fault
    ],
)
def test_sqlite_failures_are_the_stores_typed_errors(
    code: int, error: type[OneCardError], match: str
) -> None:
    exc = sqlite3.OperationalError("busy" if code == 5 else "disk trouble")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    typed = ERRORS.of(exc, "/data/store.db", "writing")
    assert type(typed) is error
    assert re.search(match, typed.reason)


def test_a_failed_write_rolls_back(tmp_path: Path) -> None:
    conn, _ = open_test_store(tmp_path / "store.db")
    with pytest.raises(Failed), durable.write_transaction(conn, ERRORS, "store.db", "writing"):
        conn.execute("INSERT INTO things (name) VALUES ('second')")
        conn.execute("INSERT INTO nowhere VALUES (1)")
    assert count(conn) == 1 and not conn.in_transaction
    conn.close()


# --- the four stores ----------------------------------------------------------------------


def _journal(path: Path) -> object:
    return Journal.open(path, "T0001", FixedClock(), min_free_bytes=0)


def _outbox(path: Path) -> object:
    return EventOutbox.open(path, "T0001", FixedClock())


def _replay(path: Path) -> object:
    return ReplayCache(path, FixedClock())


def _pending(path: Path) -> object:
    return PendingPurchases(path)


STORES = [
    (_journal, JournalCorruptError, lambda s: s._conn),
    (_outbox, EventOutboxCorruptError, lambda s: s._conn),
    (_replay, ReplayCacheError, lambda s: s._db),
    (_pending, TransitError, lambda s: s._db),
]


@pytest.mark.parametrize(("open_", "error", "conn_of"), STORES, ids=lambda v: v.__name__)
def test_every_store_is_opened_durable_and_refuses_damage(
    tmp_path: Path,
    open_: Callable[[Path], object],
    error: type[OneCardError],
    conn_of: Callable[[object], sqlite3.Connection],
) -> None:
    path = tmp_path / "store.db"
    store = open_(path)
    conn = conn_of(store)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()  # type: ignore[attr-defined]
    open_(path).close()  # type: ignore[attr-defined]  # and opened again as it was
    for damage in (b"", b"garbage, not a database" * 20):
        path.write_bytes(damage)
        before = digest(path)
        with pytest.raises(error):
            open_(path)
        assert digest(path) == before


def test_a_full_disk_refuses_a_pending_purchase_with_a_typed_error(tmp_path: Path) -> None:
    # A size cap of a few pages makes SQLite answer SQLITE_FULL, as a full disk would; the
    # validator must then not send DEBIT.
    store = PendingPurchases(tmp_path / "pending.db")
    store._db.execute("PRAGMA max_page_count=3")
    with pytest.raises(TransitError, match="full"):
        for i in range(1000):
            purchase = PendingPurchase(
                app_serial=bytes(10),
                counter=i,
                amount=200,
                transaction_type=9,
                terminal_number=bytes(6),
                terminal_serial=i,
                when=dt.datetime(2026, 11, 27, 8, 15, tzinfo=dt.UTC),
                balance_before=5000,
            )
            store.put(i.to_bytes(16, "big"), purchase, 1.0)
    store.close()


def test_an_older_replay_cache_without_its_table_gets_it(tmp_path: Path) -> None:
    # Before files were created whole a crash could leave a database without the table;
    # the cache has always made it then, and still does (CREATE ... IF NOT EXISTS).
    path = tmp_path / "replay.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    with ReplayCache(path, FixedClock()) as cache:
        assert len(cache) == 0
