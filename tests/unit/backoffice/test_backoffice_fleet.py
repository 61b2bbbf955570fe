"""The fleet: heartbeats on the wire (terminal.wire.heartbeat), from the status snapshot
(terminal.sync.heartbeat), through the back office's endpoint (BackOffice.handle), the
fleet view (backoffice.fleet), ``/metrics`` (backoffice.metrics, multiprocess mode
included) and ``onecard backoffice fleet``."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from helpers.backoffice_storage import KINDS, storage_for
from helpers.hostile import DEADLINE, EXAMPLES, hostile_json, total
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from backoffice import metrics
from backoffice.cli import add_commands
from backoffice.fleet import fleet_view
from backoffice.fleet_storage import StoredHeartbeat
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from terminal.errors import SyncRejectedError
from terminal.host.clock import FixedClock
from terminal.sync.heartbeat import HeartbeatSender, heartbeat_from_status
from terminal.wire.heartbeat import (
    HEARTBEAT_PATH,
    Heartbeat,
    HeartbeatError,
    heartbeat_body,
    parse_heartbeat_body,
)
from terminal.wire.requests import request_headers

SECRET = bytes(range(32))
NOW = 1_800_000_000.0
SNAPSHOT = {
    "status": "ok",
    "readers": {"Virtual PCD 00 00": "card", "Virtual PCD 00 01": "empty"},
    "scanners": {"/dev/pts/7": "connected"},
    "links": [
        {"name": "pcsc", "state": "up", "since": 1.0, "reconnects": 0, "reason": ""},
        {"name": "backoffice", "state": "down", "since": 2.0, "reconnects": 1, "reason": "x"},
    ],
    "workers": [{"name": "backoffice-uploader", "state": "running", "restarts": 0}],
    "documents": {"hotlist": 3, "trustlist": 0, "applist": 2},
    "journal_unacked": 17,
    "events_unsent": 2,
    "recent_errors": [
        {"at": NOW - 10, "level": "ERROR", "logger": "x", "message": "m"},
        {"at": NOW - 5000, "level": "WARNING", "logger": "x", "message": "old"},
    ],
}


def good_heartbeat(terminal_id: str = "T0001") -> Heartbeat:
    return heartbeat_from_status(terminal_id, SNAPSHOT, NOW, "0.1.0")


# --- the wire -------------------------------------------------------------------------------


def test_heartbeat_from_status_round_trips() -> None:
    beat = good_heartbeat()
    assert beat.recent_errors == 1  # the old warning is outside the window
    assert beat.journal_backlog == 17 and beat.events_unsent == 2
    assert beat.links == {"pcsc": "up", "backoffice": "down"}
    assert beat.workers == {"backoffice-uploader": "running"}
    assert parse_heartbeat_body(heartbeat_body(beat)) == beat


def test_strange_device_names_are_narrowed_not_refused() -> None:
    snapshot = {
        "readers": {"Lecteur \u00e9\u00e8\n" + "x" * 200: "Card Present!"},
        "links": [{"name": "", "state": ""}],
        "journal_unacked": True,  # not a count: left out, not sent as 1
    }
    beat = heartbeat_from_status("T0001", snapshot, NOW, "0.1.0")
    id_named = heartbeat_from_status("T0001", {"scanners": {"11010519491231002X": "up"}}, NOW, "1")
    assert list(id_named.scanners) == ["1101**********002X"]
    (name,) = beat.readers
    assert len(name) == 96 and name.isascii() and beat.readers[name] == "card_present_"
    assert beat.links == {"?": "unknown"} and beat.journal_backlog is None
    parse_heartbeat_body(heartbeat_body(beat))


@pytest.mark.parametrize(
    "change",
    [
        {"terminal_id": "T 1"},
        {"sent_at": -1},
        {"sent_at": True},
        {"software_version": ""},
        {"journal_backlog": -1},
        {"journal_backlog": 1.5},
        {"recent_errors": None},
        {"readers": {"r": "UP"}},
        {"readers": {"r\n": "up"}},
        {"readers": ["r"]},
        {"documents": {"hotlist": "3"}},
        {"links": {f"l{i}": "up" for i in range(65)}},
        {"unknown": 1},
        # Nothing personal, whatever the field: an ID number as a reader name is refused.
        {"readers": {"11010519491231002X": "card"}},
    ],
)
def test_bad_heartbeats_are_refused_with_their_error(change: dict) -> None:
    obj = {**good_heartbeat().to_json(), **change}
    with pytest.raises(HeartbeatError):
        parse_heartbeat_body(json.dumps(obj).encode())


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(raw=hostile_json(good_heartbeat().to_json()))
def test_hostile_heartbeats_give_a_heartbeat_or_its_error(raw: bytes) -> None:
    result = total(parse_heartbeat_body, raw, HeartbeatError)
    assert result is None or isinstance(result, Heartbeat)


# --- the back office's endpoint -------------------------------------------------------------


@pytest.fixture(params=KINDS)
def office(request, tmp_path: Path):
    with storage_for(request.param, tmp_path) as storage:
        storage.enrol("T0001", SECRET, NOW - 100)
        storage.enrol("T0002", SECRET, NOW - 100_000)  # never heard from: silent
        storage.enrol("T0003", SECRET, NOW - 100_000)
        storage.revoke("T0003", NOW - 50_000)
        yield BackOffice(storage, generate_publication_key(), FixedClock(NOW), silent_after=600)


def post(office: BackOffice, body: bytes, terminal: str = "T0001") -> tuple[int, dict]:
    headers = request_headers(terminal, SECRET, "POST", HEARTBEAT_PATH, body, office.clock.now())
    response = office.handle("POST", HEARTBEAT_PATH, headers, body)
    return response.status, json.loads(response.payload())


def scrape(office: BackOffice) -> dict[tuple[str, tuple], float]:
    response = office.handle("GET", "/metrics", {}, b"")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.payload().decode())
        for sample in family.samples
    }


def test_heartbeat_is_stored_latest_only_and_counted(office: BackOffice) -> None:
    first = good_heartbeat()
    assert post(office, heartbeat_body(first)) == (200, {"received_at": NOW})
    office.clock.advance(30)
    second = heartbeat_from_status("T0001", {**SNAPSHOT, "journal_unacked": 0}, NOW + 30, "0.2.0")
    assert post(office, heartbeat_body(second))[0] == 200
    states = {
        s.terminal_id: s for s in fleet_view(office.storage.fleet(), {"hotlist": 5}, NOW + 60, 600)
    }
    t1 = states["T0001"]
    assert t1.software_version == "0.2.0" and t1.journal_backlog == 0
    assert t1.last_seen == NOW + 30 and t1.state == "degraded" and not t1.silent
    assert t1.links_down == ("backoffice",) and t1.document_lag == {"hotlist": 2}
    assert states["T0002"].state == "silent" and states["T0002"].silent
    assert states["T0003"].state == "revoked" and not states["T0003"].silent

    samples = scrape(office)
    assert samples[("onecard_backoffice_heartbeats_total", (("outcome", "stored"),))] == 2
    assert samples[("onecard_backoffice_terminals_silent", ())] == 1
    assert samples[("onecard_backoffice_terminals", (("state", "degraded"),))] == 1
    assert samples[("onecard_backoffice_terminal_journal_backlog", (("terminal", "T0001"),))] == 0
    age = ("onecard_backoffice_terminal_heartbeat_age_seconds", (("terminal", "T0001"),))
    assert samples[age] == 0


def test_hostile_heartbeat_is_a_400_never_a_crash(office: BackOffice) -> None:
    for raw in (b"", b"[", b'{"a":1,"a":1}', b"1e400", json.dumps({"x": 1}).encode()):
        status, body = post(office, raw)
        assert status == 400 and body["error"] == "bad_request", (raw, body)
    # Another terminal's heartbeat, signed by T0002: refused, nothing stored for either.
    status, body = post(office, heartbeat_body(good_heartbeat("T0001")), terminal="T0002")
    assert status == 403
    assert all(s.heartbeat is None for s in office.storage.fleet())
    samples = scrape(office)
    assert samples[("onecard_backoffice_heartbeats_total", (("outcome", "refused"),))] == 6


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=hostile_json(good_heartbeat().to_json()) | st.binary(max_size=300))
def test_signed_garbage_heartbeat_is_a_typed_answer(tmp_path: Path, raw: bytes) -> None:
    # One database for every example (a function-scoped directory): enrolled once, anew.
    with storage_for("sqlite", tmp_path) as storage:
        storage.enrol("T0001", SECRET, NOW, replace=True)
        office = BackOffice(storage, generate_publication_key(), FixedClock(NOW))
        status, body = post(office, raw)
    assert status in (200, 400, 413)  # 413: over the heartbeat body limit
    assert set(body) == ({"received_at"} if status == 200 else {"error", "reason"})


# --- the terminal's sender ------------------------------------------------------------------


def test_sender_posts_signed_heartbeats_and_survives_refusals(office: BackOffice) -> None:
    answers: list[int] = []

    def transport(path: str, body: bytes) -> tuple[int, bytes]:
        response = office.handle(
            "POST", path, request_headers("T0001", SECRET, "POST", path, body, NOW), body
        )
        answers.append(response.status)
        return response.status, response.payload()

    sender = HeartbeatSender("T0001", lambda: SNAPSHOT, transport, FixedClock(NOW), 60, "0.1.0")
    assert sender.send_once() == NOW
    assert office.storage.fleet()[0].heartbeat["journal_backlog"] == 17

    refused = HeartbeatSender("T0002", lambda: SNAPSHOT, transport, FixedClock(NOW), 60, "0.1.0")
    with pytest.raises(SyncRejectedError):
        refused.send_once()  # signed as T0001: the back office answers 403
    stop = threading.Event()

    def one_round(path: str, body: bytes) -> tuple[int, bytes]:
        stop.set()  # the worker logs the refusal, and the stop ends it at its wait
        return transport(path, body)

    worker = HeartbeatSender("T0002", lambda: SNAPSHOT, one_round, FixedClock(NOW), 60, "0.1.0")
    worker.run(stop)
    assert worker.last_error is not None and worker.last_error.startswith("sync_rejected")
    assert answers == [200, 403, 403]


# --- multiprocess metrics -------------------------------------------------------------------


def _worker_counts(directory: str, entries: int) -> None:
    import os

    os.environ[metrics.MULTIPROC_ENV] = directory
    # A fresh interpreter (spawn): prometheus-client reads the directory when imported.
    from backoffice.metrics import BackOfficeMetrics

    worker = BackOfficeMetrics()
    worker.ingest_entries.inc(entries)
    with worker.timed(worker.ingest_seconds, worker.ingest_batches):
        pass


def test_workers_metrics_are_summed_in_multiprocess_mode(
    office: BackOffice, tmp_path: Path, monkeypatch
) -> None:
    directory = str(tmp_path / "metrics")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    metrics.prepare_multiprocess(directory)
    context = multiprocessing.get_context("spawn")
    for entries in (3, 4):
        process = context.Process(target=_worker_counts, args=(directory, entries))
        process.start()
        process.join(60)
        assert process.exitcode == 0
    samples = scrape(office)  # whichever process answers sums every worker's files
    assert samples[("onecard_backoffice_ingest_entries_total", ())] == 7
    assert samples[("onecard_backoffice_ingest_batches_total", (("outcome", "stored"),))] == 2
    assert samples[("onecard_backoffice_ingest_seconds_count", ())] == 2
    # The database's figures are not summed: the same from any worker.
    assert samples[("onecard_backoffice_terminals_silent", ())] == 1


# --- fleet view and CLI ---------------------------------------------------------------------


def test_fleet_view_new_and_silent_thresholds() -> None:
    new = StoredHeartbeat("A", False, NOW - 10, 0, None, None)
    quiet = StoredHeartbeat("B", False, NOW - 10_000, 0, NOW - 601, good_heartbeat("B").to_json())
    fine = StoredHeartbeat("C", False, NOW - 10_000, 5, NOW - 599, good_heartbeat("C").to_json())
    states = fleet_view([new, quiet, fine], {}, NOW, 600)
    assert [(s.state, s.silent) for s in states] == [
        ("new", False),
        ("silent", True),
        ("degraded", False),  # its heartbeat says a link is down and an error was logged
    ]
    assert states[2].clock_offset == pytest.approx(599)


def test_a_document_only_some_terminals_use_is_no_lag_for_the_others() -> None:
    beat = good_heartbeat("C").to_json()
    plain = StoredHeartbeat("C", False, NOW - 100, 5, NOW - 10, beat)
    published = {"hotlist": 5, "fares": 3, "reservations": 2}
    (state,) = fleet_view([plain], published, NOW, 600)
    # The hotlist is every terminal's; the fare table and reservations only their users'.
    assert set(state.document_lag) == {"hotlist"}
    rail_beat = {**beat, "documents": {**beat.get("documents", {}), "fares": 1}}
    rail = StoredHeartbeat("R", False, NOW - 100, 5, NOW - 10, rail_beat)
    (state,) = fleet_view([rail], published, NOW, 600)
    assert state.document_lag["fares"] == 2 and "reservations" not in state.document_lag


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_fleet_cli_lists_and_flags_silent_terminals(tmp_path: Path, capsys) -> None:
    # The CLI measures silence by the system clock: the terminals are placed around it.
    now = time.time()
    with storage_for("sqlite", tmp_path) as storage:
        storage.enrol("T0001", SECRET, now)
        storage.enrol("T0002", SECRET, now - 10_000)  # never heard from since
        office = BackOffice(storage, generate_publication_key(), FixedClock(now))
        assert post(office, heartbeat_body(good_heartbeat()))[0] == 200
    db = str(tmp_path / "bo.sqlite")
    argv = ["backoffice", "fleet", "--storage", db, "--silent-after", "600"]
    assert run_cli([*argv, "--json"]) == 0
    rows = {
        json.loads(line)["terminal_id"]: json.loads(line)
        for line in capsys.readouterr().out.splitlines()
    }
    assert rows["T0001"]["silent"] is False and rows["T0001"]["state"] == "degraded"
    assert rows["T0001"]["readers"] == {"Virtual PCD 00 00": "card", "Virtual PCD 00 01": "empty"}
    assert rows["T0002"]["silent"] is True and rows["T0002"]["last_seen"] is None
    assert run_cli(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["TERMINAL", "STATE"]
    assert table[1].split()[:2] == ["T0001", "degraded"]
    assert table[2].split()[:3] == ["T0002", "!silent", "never"]
    assert table[-1] == "2 terminals, 1 silent for more than 600s"
    # A longer threshold: nobody is silent.
    assert run_cli([*argv[:-1], "100000", "--json"]) == 0
    assert not any(json.loads(line)["silent"] for line in capsys.readouterr().out.splitlines())


def test_a_new_start_clears_only_metric_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    names = ["counter_12.db", "histogram_9.db", "gauge_livesum_3.db", "bo.sqlite", "keep.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert metrics.prepare_multiprocess(str(tmp_path)) == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bo.sqlite", "keep.db"]
    assert metrics.multiprocess_dir() == str(tmp_path)


def test_a_temporary_metrics_directory_is_removed_at_shutdown(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(metrics.tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "/elsewhere")
    with metrics.multiprocess_directory() as directory:
        assert Path(directory).parent == tmp_path and Path(directory).is_dir()
        assert metrics.multiprocess_dir() == directory
        (Path(directory) / "counter_77.db").write_bytes(b"")  # what a worker leaves
    assert not Path(directory).exists()
    assert metrics.multiprocess_dir() == "/elsewhere"  # the environment as it was


def test_a_given_metrics_directory_is_kept_and_dead_workers_marked(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    given = tmp_path / "metrics"
    given.mkdir()
    (given / "counter_5.db").write_bytes(b"")  # a stale file of an earlier start
    with metrics.multiprocess_directory(str(given)) as directory:
        assert directory == str(given) and not (given / "counter_5.db").exists()
        for name in ("gauge_livesum_41.db", "gauge_liveall_41.db", "gauge_livesum_42.db"):
            (given / name).write_bytes(b"")
        (given / "counter_41.db").write_bytes(b"")
        metrics.mark_worker_dead(41)
        # Only the dead worker's live gauges go; its counters stay in the totals.
        assert sorted(p.name for p in given.iterdir()) == ["counter_41.db", "gauge_livesum_42.db"]
    assert given.is_dir() and metrics.multiprocess_dir() is None
    metrics.mark_worker_dead(42)  # no directory set: nothing to do, nothing removed
    assert (given / "gauge_livesum_42.db").exists()
