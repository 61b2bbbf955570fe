"""Terminal events and their outbox (terminal/sync/events.py, docs/sync.md "Terminal
events"): the message and its strict parser, and the durable outbox."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers.paths import REPO_ROOT
from hypothesis import given
from hypothesis import strategies as st

from terminal.errors import OneCardError, ParseError
from terminal.host.clock import FixedClock
from terminal.sync.auth import TerminalCredentials
from terminal.sync.events import (
    EventOutbox,
    EventOutboxCorruptError,
    EventOutboxError,
    EventSender,
)
from terminal.wire.events import (
    EVENT_KINDS,
    MAX_DETAIL_BYTES,
    EventError,
    TerminalEvent,
    event_from_json,
    events_body,
)

TERMINAL = "T0001"
REPO = REPO_ROOT


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def outbox(tmp_path, clock):
    with EventOutbox.open(tmp_path / "events.db", TERMINAL, clock) as box:
        yield box


# --- the event ----------------------------------------------------------------------------


def test_event_round_trip_and_body():
    event = TerminalEvent(7, "call_staff", 1_795_000_000.125, {"source": "holder_screen", "n": 2})
    assert event.to_json() == {
        "id": 7,
        "kind": "call_staff",
        "at": 1_795_000_000.125,
        "detail": {"n": 2, "source": "holder_screen"},
    }
    assert event_from_json(event.to_json()) == event
    assert event_from_json(json.dumps(event.to_json())) == event
    body = events_body(TERMINAL, [event])
    assert (
        body
        == json.dumps(
            {"terminal_id": TERMINAL, "events": [event.to_json()]},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    )
    assert isinstance(EventError("x"), ParseError)  # one typed family


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'{"id":1,"kind":"call_staff","at":1}',
        b'{"id":1,"kind":"call_staff","at":1,"detail":{},"extra":1}',
        b'{"id":1,"id":1,"kind":"call_staff","at":1,"detail":{}}',
        b'{"id":0,"kind":"call_staff","at":1,"detail":{}}',
        b'{"id":true,"kind":"call_staff","at":1,"detail":{}}',
        b'{"id":1.0,"kind":"call_staff","at":1,"detail":{}}',
        b'{"id":9223372036854775808,"kind":"call_staff","at":1,"detail":{}}',
        b'{"id":1,"kind":"call_police","at":1,"detail":{}}',
        b'{"id":1,"kind":["call_staff"],"at":1,"detail":{}}',
        b'{"id":1,"kind":"call_staff","at":NaN,"detail":{}}',
        b'{"id":1,"kind":"call_staff","at":1e400,"detail":{}}',
        b'{"id":1,"kind":"call_staff","at":-1,"detail":{}}',
        b'{"id":1,"kind":"call_staff","at":"now","detail":{}}',
        b'{"id":1,"kind":"call_staff","at":1,"detail":[]}',
        b'{"id":1,"kind":"call_staff","at":1,"detail":{"a":{"b":1}}}',
        b'{"id":1,"kind":"call_staff","at":1,"detail":{"a":1.5}}',
        b'{"id":1,"kind":"call_staff","at":1,"detail":{"a b":1}}',
        b'{"id":1,"kind":"call_staff","at":1,"detail":{"name":"x"}}',
        b"\xff\xfe",
    ],
)
def test_event_from_json_refuses(raw):
    with pytest.raises(EventError):
        event_from_json(raw)


_detail_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.text(alphabet=st.characters(codec="utf-8", categories=["L", "Nd"]), max_size=12),
)
# Keys that cannot spell a personal word (those are refused: see the personal-data tests).
_details = st.dictionaries(
    st.sampled_from(["source", "lane", "button", "screen", "reason"])
    | st.from_regex(r"k[0-9_.:-]{1,6}", fullmatch=True),
    _detail_values,
    max_size=5,
)
_events = st.builds(
    TerminalEvent,
    id=st.integers(min_value=1, max_value=2**63 - 1),
    kind=st.sampled_from(sorted(EVENT_KINDS)),
    at=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    detail=_details,
)


@given(_events)
def test_event_from_json_round_trips_valid_events(event):
    assert event_from_json(event.to_json()) == event
    text = json.dumps(event.to_json(), ensure_ascii=False)
    assert event_from_json(text) == event
    assert event_from_json(text.encode()) == event


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.one_of(_json, st.binary(max_size=64), st.text(max_size=64)))
def test_event_from_json_is_total(value):
    # Anything at all: an event or an EventError, never another exception.
    try:
        event = event_from_json(value)
    except EventError as exc:
        assert exc.reason
    else:
        assert event_from_json(event.to_json()) == event


@given(
    _events,
    st.sampled_from(["id", "kind", "at", "detail"]),
    _json,
)
def test_event_from_json_mutated_field(event, name, value):
    obj = event.to_json()
    obj[name] = value
    try:
        parsed = event_from_json(obj)
    except EventError:
        return
    assert parsed.to_json()[name] == value


# --- the outbox ---------------------------------------------------------------------------


def test_add_assigns_ids_and_survives_close_and_reopen(tmp_path, clock):
    path = tmp_path / "events.db"
    with EventOutbox.open(path, TERMINAL, clock) as box:
        assert (box.last_id, box.sent_up_to, box.unsent(), box.pending()) == (0, 0, 0, [])
        first = box.add("call_staff", {"source": "holder_screen"})
        clock.advance(1.23456)
        second = box.add("call_acknowledged")
        assert (first.id, second.id) == (1, 2)
        assert first.at == 1_795_000_000.0 and second.at == 1_795_000_001.235
        assert second.detail == {}
    with EventOutbox.open(path, TERMINAL, clock) as box:
        assert box.pending() == [first, second]
        assert box.add("call_cancelled").id == 3
        assert box.unsent() == 3
    # The WAL mode is in the file; synchronous is per connection, so ask the outbox's.
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_event_is_on_disk_when_add_returns(tmp_path):
    # A process that dies right after add() - no close, no exit handlers - keeps the event.
    path = tmp_path / "events.db"
    script = (
        "import os, sys\n"
        "from terminal.host.clock import FixedClock\n"
        "from terminal.sync.events import EventOutbox\n"
        f"box = EventOutbox.open({str(path)!r}, {TERMINAL!r}, FixedClock())\n"
        "box.add('call_staff', {'lane': 2})\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    with EventOutbox.open(path, TERMINAL, FixedClock()) as box:
        [event] = box.pending()
        assert (event.id, event.kind, dict(event.detail)) == (1, "call_staff", {"lane": 2})


def test_mark_sent_and_unsent(tmp_path, clock):
    path = tmp_path / "events.db"
    with EventOutbox.open(path, TERMINAL, clock) as box:
        for _ in range(5):
            box.add("call_staff")
        assert box.mark_sent(3) == 3
        assert [e.id for e in box.pending()] == [4, 5]
        assert [e.id for e in box.pending(limit=1)] == [4]
        assert box.unsent() == 2
        assert box.mark_sent(1) == 3  # never backwards
        with pytest.raises(EventOutboxError):
            box.mark_sent(6)  # the back office holds an event this outbox never wrote
    with EventOutbox.open(path, TERMINAL, clock) as box:
        assert (box.sent_up_to, box.unsent()) == (3, 2)
        assert box.mark_sent(5) == 5 and box.pending() == [] and box.unsent() == 0


def test_recent_is_newest_first_and_sent_events_are_pruned(tmp_path, clock):
    path = tmp_path / "events.db"
    with EventOutbox.open(path, TERMINAL, clock, keep_sent=2) as box:
        for kind in ("call_staff", "call_acknowledged", "call_staff", "call_cancelled"):
            box.add(kind)
        assert [e.id for e in box.recent(limit=3)] == [4, 3, 2]
        box.mark_sent(4)
        assert [e.id for e in box.recent()] == [4, 3]
    with EventOutbox.open(path, TERMINAL, clock, keep_sent=2) as box:
        assert box.add("call_staff").id == 5  # ids never reused after pruning


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("call_police", None),
        ("", None),
        (None, None),
        ("call_staff", ["lane", 1]),
        ("call_staff", {"lane": 1.5}),
        ("call_staff", {"lane": [1]}),
        ("call_staff", {"lane": {"a": 1}}),
        ("call_staff", {"": 1}),
        ("call_staff", {"lane number": 1}),
        ("call_staff", {1: 1}),
        ("call_staff", {"note": "x" * MAX_DETAIL_BYTES}),
    ],
)
def test_add_refuses_invalid_kind_or_detail(outbox, kind, detail):
    with pytest.raises(EventError):
        outbox.add(kind, detail)
    assert outbox.last_id == 0  # nothing written


@pytest.mark.parametrize(
    "detail",
    [
        {"name": "张三"},
        {"holderName": "x"},
        {"holder_name": "x"},
        {"ID-Number": "x"},
        {"phone": "13800000000"},
        {"姓名": "x"},
        {"note": "110101199003071234"},  # a resident ID number, whatever the key
    ],
)
def test_add_refuses_personal_data(outbox, detail):
    with pytest.raises(EventError, match=r"personal|ID number"):
        outbox.add("call_staff", detail)
    assert outbox.unsent() == 0


def test_concurrent_adds_get_distinct_consecutive_ids(outbox):
    threads, per_thread = 8, 40
    start = threading.Barrier(threads + 2)  # the adders, the sender and this thread
    added: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def adder(lane: int) -> None:
        start.wait()
        try:
            for _ in range(per_thread):
                event = outbox.add("call_staff", {"lane": lane})
                with lock:
                    added.append(event.id)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    def sender() -> None:
        # Marks sent what it reads, as the EventSender does, while adds go on.
        start.wait()
        try:
            for _ in range(50):
                page = outbox.pending(limit=7)
                if page:
                    outbox.mark_sent(page[-1].id)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=adder, args=(i,)) for i in range(threads)]
    workers.append(threading.Thread(target=sender))
    for w in workers:
        w.start()
    start.wait()
    for w in workers:
        w.join(timeout=60)
    assert not errors
    assert sorted(added) == list(range(1, threads * per_thread + 1))
    assert outbox.last_id == threads * per_thread
    assert outbox.unsent() == outbox.last_id - outbox.sent_up_to


# --- files that are not a sound outbox ----------------------------------------------------


def _without_table(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE other (x)")


def _with_unsent_event_deleted(path: Path) -> None:
    with EventOutbox.open(path, TERMINAL, FixedClock()) as box:
        box.add("call_staff")
        box.add("call_staff")
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM events WHERE id = 1")


def _with_meta_damaged(path: Path) -> None:
    with EventOutbox.open(path, TERMINAL, FixedClock()):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = 'x' WHERE key = 'last_id'")


def _with_garbage_pages(path: Path) -> None:
    with EventOutbox.open(path, TERMINAL, FixedClock()) as box:
        for _ in range(50):
            box.add("call_staff", {"note": "a" * 200})
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"not a database at all, just text"),
        lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84),
        _without_table,
        _with_unsent_event_deleted,
        _with_meta_damaged,
        _with_garbage_pages,
    ],
)
def test_a_damaged_file_is_a_typed_error_with_the_path(tmp_path, damage):
    path = tmp_path / "events.db"
    damage(path)
    with pytest.raises(EventOutboxError) as info:
        EventOutbox.open(path, TERMINAL, FixedClock())
    assert isinstance(info.value, OneCardError) and info.value.reason
    if isinstance(info.value, EventOutboxCorruptError):
        assert info.value.to_json()["path"] == str(path)
    else:
        pytest.fail(f"not reported as damage: {info.value!r}")


def test_unopenable_or_foreign_outbox(tmp_path, clock):
    with pytest.raises(EventOutboxError, match="cannot create"):
        EventOutbox.open(tmp_path / "missing" / "events.db", TERMINAL, clock)
    with pytest.raises(EventOutboxError):
        EventOutbox.open(tmp_path / "events.db", "not a terminal id", clock)
    EventOutbox.open(tmp_path / "events.db", TERMINAL, clock).close()
    with pytest.raises(EventOutboxError, match="T0001"):
        EventOutbox.open(tmp_path / "events.db", "T0002", clock)
    box = EventOutbox.open(tmp_path / "events.db", TERMINAL, clock)
    box.close()
    with pytest.raises(EventOutboxError, match="closed"):
        box.add("call_staff")


# --- the sender (its wire is tested against the real back office in integration) ---------


def _credentials(terminal_id: str) -> TerminalCredentials:
    return TerminalCredentials(
        terminal_id=terminal_id,
        secret=bytes(32),
        backoffice_url="http://127.0.0.1:9",
        publication_key=b"\x04" + bytes(64),
        publication_algorithm="sm2",
        token_key=bytes(32),
    )


def test_sender_checks_its_configuration(outbox, clock):
    with pytest.raises(EventOutboxError):
        EventSender(outbox, _credentials("T0002"), clock)
    with pytest.raises(ValueError):
        EventSender(outbox, _credentials(TERMINAL), clock, batch_size=1001)
    sender = EventSender(outbox, _credentials(TERMINAL), clock)
    assert sender.run_once().requests == 0  # nothing to send: no connection at all
    assert sender.wait_sent(timeout=0)  # nothing recorded, so everything is sent
