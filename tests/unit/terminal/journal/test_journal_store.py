"""The SQLite journal: durable appends, acks, purge with an anchor, verification, refusal when
full, and damaged files detected without being touched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.paths import REPO_ROOT

from terminal.errors import (
    JournalCorruptError,
    JournalEntryError,
    JournalError,
    JournalFullError,
    OneCardError,
)
from terminal.host.clock import FixedClock
from terminal.journal.entry import TransactionRecord, entry_from_json, verify_chain
from terminal.journal.store import Journal
from terminal.wire.journal import ZERO_HASH

TERMINAL = "T0001"
REPO = REPO_ROOT


def record(n: int = 0, **changes: object) -> TransactionRecord:
    fields: dict[str, object] = {
        "kind": "card",
        "service": "bus-fare",
        "decision": "accept",
        "reason": "ok",
        "amount": 200 + n,
        "card_token": n.to_bytes(16, "big"),
        "region": "500100",
        "category": "3",
        "extra": {"tac": f"{n:08x}"},
    }
    fields.update(changes)
    return TransactionRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def journal(path: Path, clock: FixedClock) -> Iterator[Journal]:
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:
        yield j


def fill(journal: Journal, n: int, clock: FixedClock | None = None) -> None:
    for i in range(n):
        journal.append(record(i))
        if clock is not None:
            clock.advance(1)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def raw(path: Path) -> sqlite3.Connection:
    """A connection behind the journal's back, as a tamperer (or a bug) would have."""
    return sqlite3.connect(path, isolation_level=None)


# --- appending and reading ----------------------------------------------------------------


def test_append_assigns_seq_and_chains(journal: Journal, clock: FixedClock) -> None:
    first = journal.append(record(1))
    clock.advance(2.5)
    second = journal.append(record(2, decision="refuse", reason="hotlisted", amount=None))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == ZERO_HASH and second.prev_hash == first.hash
    assert first.terminal_id == TERMINAL and second.time == first.time + 2.5
    assert second.computed_hash() == second.hash
    assert journal.unacked() == [first, second]
    stats = journal.stats()
    assert (stats.entries, stats.unacked, stats.last_seq, stats.acked_up_to) == (2, 2, 2, 0)
    assert stats.size_bytes > 0


def test_durable_settings_are_wal_and_full(journal: Journal, path: Path) -> None:
    assert journal.durability() == {"journal_mode": "wal", "synchronous": "FULL"}
    # WAL is a property of the file: any other connection sees it too.
    assert raw(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_entries_survive_reopening(path: Path, clock: FixedClock) -> None:
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:
        fill(j, 5)
        j.ack(3)
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:
        assert [e.seq for e in j.unacked()] == [4, 5]
        assert j.append(record(9)).seq == 6
        assert j.verify().ok


def test_journal_of_another_terminal_is_refused(path: Path, clock: FixedClock) -> None:
    Journal.open(path, TERMINAL, clock, min_free_bytes=0).close()
    with pytest.raises(JournalError, match="T0001"):
        Journal.open(path, "T0002", clock)


def test_no_personal_fields_reach_the_journal(journal: Journal) -> None:
    with pytest.raises(JournalEntryError):
        journal.append(record(extra={"name": "张三"}))  # refused when the record is built
    with pytest.raises(JournalEntryError):
        journal.append({"kind": "card", "name": "张三"})  # type: ignore[arg-type]
    assert journal.stats().last_seq == 0


def test_unacked_pages_in_seq_order(journal: Journal) -> None:
    fill(journal, 25)
    journal.ack(5)
    page = journal.unacked(limit=10)
    assert [e.seq for e in page] == list(range(6, 16))
    assert [e.seq for e in journal.unacked(limit=10, after_seq=page[-1].seq)] == list(range(16, 26))
    assert journal.unacked(limit=10, after_seq=25) == []
    assert [e.seq for e in journal.entries(after_seq=2, limit=3)] == [3, 4, 5]


def test_ack_is_monotonic_and_bounded(journal: Journal) -> None:
    fill(journal, 5)
    assert journal.ack(3) == 3
    assert journal.ack(1) == 3  # an older answer never un-acknowledges
    with pytest.raises(JournalError):
        journal.ack(6)
    assert journal.stats().acked_up_to == 3


def test_concurrent_appends_from_threads_make_one_chain(journal: Journal) -> None:
    def worker(base: int) -> None:
        for i in range(25):
            journal.append(record(base + i))

    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert journal.stats().last_seq == 100
    assert journal.verify() == journal.verify().__class__(True, 100)


def test_export_writes_entries_as_json_lines(journal: Journal) -> None:
    fill(journal, 4)
    out = io.StringIO()
    assert journal.export(out) == 4
    entries = [entry_from_json(json.loads(line)) for line in out.getvalue().splitlines()]
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert verify_chain(entries, terminal_id=TERMINAL).ok


def test_read_only_journal_reads_but_never_writes(journal: Journal, path: Path) -> None:
    fill(journal, 3)
    with Journal.open_read_only(path) as ro:
        assert ro.terminal_id == TERMINAL
        assert ro.verify().ok and ro.stats().last_seq == 3
        with pytest.raises(JournalError, match="read-only"):
            ro.append(record())
        with pytest.raises(JournalError):
            ro.ack(1)
    with pytest.raises(JournalError, match="no journal"):
        Journal.open_read_only(path.with_name("absent.db"))


def test_closed_journal_refuses_use(path: Path, clock: FixedClock) -> None:
    j = Journal.open(path, TERMINAL, clock, min_free_bytes=0)
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append(record())


# --- purge --------------------------------------------------------------------------------


def test_purge_deletes_only_old_acked_entries_and_keeps_an_anchor(
    journal: Journal, clock: FixedClock
) -> None:
    fill(journal, 10, clock)  # times t0 .. t0+9
    journal.ack(6)
    clock.advance(100)  # now t0+110: entries 1..10 are 110..101 s old
    assert journal.purge(retention_seconds=105.5) == 5  # 1..5 old enough (and acked)
    stats = journal.stats()
    assert (stats.anchor_seq, stats.entries, stats.acked_up_to) == (5, 5, 6)
    assert [e.seq for e in journal.entries()] == [6, 7, 8, 9, 10]
    report = journal.verify()
    assert report.ok and report.checked == 5
    assert journal.purge(retention_seconds=0) == 1  # only acked ones, however old
    assert journal.verify().ok
    assert journal.append(record(99)).seq == 11


def test_purge_only_drops_a_prefix_when_the_clock_went_back(
    journal: Journal, clock: FixedClock
) -> None:
    fill(journal, 3, clock)
    clock.advance(-10)  # wall clock set back: entry 4 is "older" than entry 3
    fill(journal, 3, clock)
    journal.ack(6)
    clock.set(clock.now() + 50)
    purged = journal.purge(retention_seconds=55.5)
    assert journal.verify().ok
    assert journal.stats().anchor_seq == purged


def test_purge_of_a_large_journal_goes_in_chunks(journal: Journal, clock: FixedClock) -> None:
    journal.append_batch(record(i) for i in range(25_000))
    journal.ack(25_000)
    clock.advance(10)
    assert journal.purge(retention_seconds=1) == 25_000
    assert journal.stats().entries == 0
    assert journal.verify().ok
    assert journal.append(record()).seq == 25_001
    assert journal.verify().ok


# --- tampering found by verify ------------------------------------------------------------


def test_edited_field_is_detected(journal: Journal, path: Path) -> None:
    fill(journal, 10)
    raw(path).execute(
        "UPDATE entries SET body = replace(body, '\"amount\":204', '\"amount\":1') WHERE seq = 5"
    )
    report = journal.verify()
    assert not report.ok and report.first_bad_seq == 5 and report.checked == 4


def test_deleted_middle_row_is_detected(journal: Journal, path: Path) -> None:
    fill(journal, 10)
    raw(path).execute("DELETE FROM entries WHERE seq = 6")
    report = journal.verify()
    assert not report.ok and report.first_bad_seq == 6


def test_deleted_last_row_is_detected(journal: Journal, path: Path) -> None:
    fill(journal, 10)
    raw(path).execute("DELETE FROM entries WHERE seq = 10")
    report = journal.verify()
    assert not report.ok and report.first_bad_seq == 10


def test_deleted_first_rows_after_the_anchor_are_detected(journal: Journal, path: Path) -> None:
    fill(journal, 10)
    raw(path).execute("DELETE FROM entries WHERE seq <= 2")
    assert journal.verify().first_bad_seq == 1


def test_edited_hash_is_detected(journal: Journal, path: Path) -> None:
    fill(journal, 5)
    raw(path).execute("UPDATE entries SET hash = ? WHERE seq = 3", ("ab" * 32,))
    assert journal.verify().first_bad_seq == 3


def test_tampered_unacked_entry_is_found_at_open(path: Path, clock: FixedClock) -> None:
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:
        fill(j, 8)
    raw(path).execute(
        "UPDATE entries SET body = replace(body, 'accept', 'refuse') WHERE seq = 4"
    ).connection.close()
    before = sha256(path)
    with pytest.raises(JournalCorruptError, match="seq 4"):
        Journal.open(path, TERMINAL, clock)
    assert sha256(path) == before


def test_deleted_rows_are_found_at_open(path: Path, clock: FixedClock) -> None:
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:
        fill(j, 8)
    raw(path).execute("DELETE FROM entries WHERE seq = 8").connection.close()
    with pytest.raises(JournalCorruptError, match="head"):
        Journal.open(path, TERMINAL, clock)


# --- refusing when full -------------------------------------------------------------------


def test_max_entries_refuses_new_transactions(path: Path, clock: FixedClock) -> None:
    with Journal.open(path, TERMINAL, clock, max_entries=5, min_free_bytes=0) as j:
        fill(j, 5)
        with pytest.raises(JournalFullError) as caught:
            j.append(record(6))
        assert isinstance(caught.value, OneCardError)
        assert "limit is 5" in caught.value.reason and caught.value.code == "journal_full"
        assert j.stats().last_seq == 5
        j.ack(5)
        clock.advance(10)
        j.purge(retention_seconds=1)  # uploading and purging makes room again
        assert j.append(record(6)).seq == 6


def test_low_free_disk_space_refuses(
    path: Path, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Journal.open(path, TERMINAL, clock, min_free_bytes=10_000_000) as j:
        j.append(record(1))
        real = os.statvfs

        def tiny_disk(p: object) -> object:
            st = real(p)  # type: ignore[arg-type]
            return SimpleNamespace(f_bavail=2, f_frsize=st.f_frsize)

        monkeypatch.setattr(os, "statvfs", tiny_disk)
        with pytest.raises(JournalFullError, match="free"):
            j.append(record(2))
        monkeypatch.setattr(os, "statvfs", real)
        assert j.append(record(2)).seq == 2
        assert j.verify().ok


def test_sqlite_full_refuses_and_writes_nothing(path: Path, clock: FixedClock) -> None:
    # A size cap of a few pages makes SQLite answer SQLITE_FULL, as a full disk would.
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0, max_bytes=40 * 4096) as j:
        big = {"tac": "x" * 900}
        written = 0
        with pytest.raises(JournalFullError, match="full"):
            for i in range(10_000):
                j.append(record(i, extra=big))
                written += 1
        assert written > 0
        stats = j.stats()
        assert stats.last_seq == written  # the refused transaction left no trace
        assert j.verify() == j.verify().__class__(True, written)
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0) as j:  # no cap: room again
        assert j.append(record()).seq == written + 1
        assert j.verify().ok


class _FailingCommit:
    """A connection whose COMMIT fails as a failing disk makes it fail."""

    def __init__(self, conn: sqlite3.Connection, code: int) -> None:
        self._conn = conn
        self._code = code

    def execute(self, sql: str, *args: object) -> object:
        if sql == "COMMIT":
            error = sqlite3.OperationalError("disk I/O error")
            error.sqlite_errorcode = self._code  # type: ignore[attr-defined]
            raise error
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


@pytest.mark.parametrize("code", [10, 13, 10 | (4 << 8)])  # IOERR, FULL, IOERR_FSYNC
def test_io_error_on_commit_refuses_and_writes_nothing(journal: Journal, code: int) -> None:
    fill(journal, 2)
    real = journal._conn
    journal._conn = _FailingCommit(real, code)  # type: ignore[assignment]
    with pytest.raises(JournalFullError, match="nothing was recorded"):
        journal.append(record(3))
    journal._conn = real
    assert journal.stats().last_seq == 2
    assert journal.append(record(3)).seq == 3
    assert journal.verify().ok


# --- damaged files: detected at open, left untouched --------------------------------------


def make_journal(path: Path, n: int = 300) -> None:
    with Journal.open(path, TERMINAL, FixedClock(), min_free_bytes=0) as j:
        j.append_batch(record(i) for i in range(n))


def assert_refused_untouched(path: Path, match: str | None = None) -> JournalCorruptError:
    before = sha256(path)
    with pytest.raises(JournalCorruptError, match=match) as caught:
        Journal.open(path, TERMINAL, FixedClock())
    assert sha256(path) == before
    assert caught.value.path == str(path) and str(path) in caught.value.reason
    assert caught.value.to_json()["error"] == "journal_corrupt"
    return caught.value


def test_garbage_file_is_refused_untouched(path: Path) -> None:
    path.write_bytes(os.urandom(8192))
    assert_refused_untouched(path, "not an SQLite database")


def test_empty_file_is_refused_untouched(path: Path) -> None:
    path.write_bytes(b"")
    assert_refused_untouched(path, "empty")


def test_truncated_journal_is_refused_untouched(path: Path) -> None:
    make_journal(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused_untouched(path)


def test_flipped_bytes_in_an_entry_are_refused_untouched(path: Path) -> None:
    make_journal(path)
    with Journal.open_read_only(path) as j:
        target = next(e for e in j.entries() if e.seq == 150)
    data = bytearray(path.read_bytes())
    at = data.find(b'"tac":"%08x"' % (target.seq - 1))
    assert at > len(data) // 10
    data[at + 8] ^= 0x01  # one bit of the TAC of entry 150, in the middle of the file
    path.write_bytes(bytes(data))
    assert_refused_untouched(path, "seq 150")


def test_flipped_page_header_is_refused_untouched(path: Path) -> None:
    make_journal(path)
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    for i in range(8):  # the b-tree page header of a page in the middle
        data[middle + i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_refused_untouched(path)


def test_missing_meta_is_refused_untouched(path: Path) -> None:
    make_journal(path, 3)
    conn = raw(path)
    conn.execute("DELETE FROM meta WHERE key = 'head'")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert_refused_untouched(path, "meta")


def test_foreign_database_is_refused_untouched(path: Path) -> None:
    conn = raw(path)
    conn.execute("CREATE TABLE other (x)")
    conn.close()
    assert_refused_untouched(path, "table")


# --- processes ----------------------------------------------------------------------------


def test_journal_is_not_carried_across_fork(journal: Journal) -> None:
    journal.append(record())
    pid = os.fork()
    if pid == 0:  # child: the inherited journal must refuse; exit code says what happened
        try:
            journal.append(record())
        except JournalError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert journal.append(record()).seq == 2


CHILD = """
import sys
from terminal.host.clock import SystemClock
from terminal.journal.entry import TransactionRecord
from terminal.journal.store import Journal
j = Journal.open(sys.argv[1], "T0001", SystemClock(), min_free_bytes=0)
r = TransactionRecord(kind="code", service="museum-entry", decision="accept", reason="ok",
                      amount=None, card_token=bytes(16), region="510100", category=None)
while True:
    e = j.append(r)
    sys.stdout.write(f"{e.seq} {e.hash}\\n")
    sys.stdout.flush()
"""


def test_kill_9_between_appends_loses_no_returned_entry(path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdout is not None
    returned = [child.stdout.readline().split() for _ in range(200)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with Journal.open(path, TERMINAL, FixedClock(), min_free_bytes=0) as j:
        stored = {e.seq: e.hash for e in j.entries()}
        assert all(stored[int(seq)] == hash_hex for seq, hash_hex in returned)
        assert j.verify().ok


def test_wire_page_is_the_entry_as_it_travels(journal: Journal) -> None:
    fill(journal, 5)
    journal.append(record(9, extra={"note": "中文", "n": 1.5}))
    wire = journal.wire_page(after_seq=2, limit=10)
    assert [seq for seq, _ in wire] == [3, 4, 5, 6]
    entries = list(journal.entries(after_seq=2))
    assert [json.loads(text) for _, text in wire] == [e.to_json_dict() for e in entries]


# --- onecard journal list|verify|export ---------------------------------------------------


def run_cli(*argv: str) -> int:
    import argparse

    from onecard.commands.journal import add_commands

    parser = argparse.ArgumentParser(prog="onecard")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_cli_list_verify_export(
    journal: Journal, path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(journal, 6)
    journal.ack(4)
    assert run_cli("journal", "list", "--journal", str(path), "--unacked", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [5, 6]
    assert run_cli("journal", "list", "--journal", str(path), "--limit", "2") == 0
    out = capsys.readouterr().out
    assert "bus-fare" in out and "acked" in out and len(out.splitlines()) == 2
    assert run_cli("journal", "verify", "--journal", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    exported = tmp_path / "out.jsonl"
    assert run_cli("journal", "export", "--journal", str(path), "-o", str(exported)) == 0
    assert len(exported.read_text().splitlines()) == 6

    raw(path).execute("UPDATE entries SET body = replace(body, 'accept', 'refuse') WHERE seq = 5")
    assert run_cli("journal", "verify", "--journal", str(path)) == 2
    assert "BROKEN at seq 5" in capsys.readouterr().out


def test_cli_reports_a_missing_or_damaged_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        run_cli("journal", "verify", "--journal", str(tmp_path / "absent.db"))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(JournalCorruptError):
        run_cli("journal", "list", "--journal", str(garbage))


def test_open_walks_only_the_newest_unacked_entries(path: Path, clock: FixedClock) -> None:
    make_journal(path, 50)
    raw(path).execute(
        "UPDATE entries SET body = replace(body, 'accept', 'refuse') WHERE seq = 10"
    ).connection.close()
    with Journal.open(path, TERMINAL, clock, min_free_bytes=0, check_entries=20) as j:
        assert j.verify().first_bad_seq == 10  # beyond the start-up window: verify finds it
    with pytest.raises(JournalCorruptError, match="seq 10"):
        Journal.open(path, TERMINAL, clock, check_entries=41)
