"""What the sync side reads from outside - downloaded documents, the back office's answers,
events, the event outbox's rows, the credentials file - gives a value or its typed error
for any input, within a time and memory bound (issue 17). Each input that once leaked is a
regression test here: a document holding ``1e400``, a 4,301-digit integer or a lone
surrogate (``ValueError``/``UnicodeEncodeError``), an ingest answer nested deep
(``RecursionError``), an event likewise, a credentials file with an array where a string
belongs (``TypeError``)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from helpers.hostile import (
    DEADLINE,
    EXAMPLES,
    LARGE_INPUTS,
    bounded,
    hostile_json,
    json_fragments,
    nested,
    total,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from terminal.crypto import signing
from terminal.crypto.signing import Algorithm
from terminal.ecode.trustlist import trust_list_from_body
from terminal.errors import ConfigError, OneCardError, SyncError
from terminal.host.clock import FixedClock
from terminal.sync.auth import parse_credentials
from terminal.sync.client import parse_acked_answer
from terminal.sync.downloads import DocumentStore, Downloader, Outcome
from terminal.sync.events import EventOutbox, EventOutboxError
from terminal.wire.canonical import JsonError, parse_json
from terminal.wire.document import DocumentError, sign_document
from terminal.wire.events import EventError, event_from_json

ALG = Algorithm.ECDSA_P256
KEY = signing.generate_private_key(ALG)
PUBLIC = signing.public_key_bytes(KEY)
KINDS = ("hotlist-delta", "trustlist", "applist")


def _store(directory: Path) -> DocumentStore:
    return DocumentStore(directory, PUBLIC, ALG, trust_list_parser=trust_list_from_body)


def _apply(store: DocumentStore, kind: str, raw: bytes) -> object:
    apply = {
        "hotlist-delta": store.apply_hotlist_delta,
        "trustlist": store.apply_trust_list,
        "applist": store.apply_application_list,
    }[kind]
    return apply(raw)


# --- documents --------------------------------------------------------------------------------

LEAKED_DOCUMENTS = {
    "1e400": b'{"kind":"applist","version":1e400,"signature":{}}',
    "4301 digits": b'{"kind":"applist","version":' + b"1" * 4301 + b',"signature":{}}',
    "lone surrogate": b'{"kind":"applist","version":1,"name":"\\ud800","signature":{}}',
    "deep": nested(100_000).encode(),
    "key twice": b'{"kind":"applist","kind":"trustlist","version":1,"signature":{}}',
}


@pytest.mark.parametrize("name", sorted(LEAKED_DOCUMENTS))
@pytest.mark.parametrize("kind", KINDS)
def test_documents_that_leaked_are_refused(tmp_path: Path, kind: str, name: str) -> None:
    with pytest.raises(DocumentError):
        _apply(_store(tmp_path), kind, LEAKED_DOCUMENTS[name])


@pytest.mark.parametrize("name", sorted(LEAKED_DOCUMENTS))
def test_a_download_round_refuses_them_with_the_document_code(tmp_path: Path, name: str) -> None:
    raw = LEAKED_DOCUMENTS[name]
    report = Downloader(_store(tmp_path), lambda path: raw, FixedClock(0.0)).run_once()
    assert {r.outcome for r in report.results.values()} == {Outcome.REFUSED}
    assert {r.code for r in report.results.values()} == {"bad_document"}  # not internal_error


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(st.sampled_from(KINDS), hostile_json({"kind": "applist", "version": 2, "services": []}))
def test_any_downloaded_bytes_are_applied_or_refused_typed(
    tmp_path_factory: pytest.TempPathFactory, kind: str, raw: bytes
) -> None:
    total(lambda r: _apply(_store(tmp_path_factory.mktemp("docs")), kind, r), raw, OneCardError)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(
    st.sampled_from(KINDS),
    hostile_json({"version": 2, "base": 0, "added": [], "services": [], "issuers": []}),
)
def test_any_signed_body_is_applied_or_refused_typed(
    tmp_path_factory: pytest.TempPathFactory, kind: str, raw: bytes
) -> None:
    """What the back office signed is strict JSON, but its content may be anything: the
    hotlist, trust list and application list parsers behind the signature are total."""
    try:
        body = parse_json(raw)
    except JsonError:
        return
    if not isinstance(body, dict):
        return
    body = {**body, "kind": kind}
    body.setdefault("version", 2)
    try:
        signed = sign_document(body, KEY, ALG)
    except DocumentError:
        return  # a body the back office refuses to sign
    total(lambda r: _apply(_store(tmp_path_factory.mktemp("docs")), kind, r), signed, OneCardError)


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_documents_are_refused_within_bounds(tmp_path: Path, name: str) -> None:
    store = _store(tmp_path)
    bounded(lambda: total(lambda r: _apply(store, "applist", r), LARGE_INPUTS[name], OneCardError))


# --- the back office's answers ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        nested(100_000).encode(),  # was RecursionError
        nested(100_000, kind="{").encode(),
        b'{"acked_up_to": 1e400}',
        b'{"acked_up_to": ' + b"1" * 4301 + b"}",
        b'{"acked_up_to": 1, "acked_up_to": 9}',
        b'{"acked_up_to": 1, "note": "\\ud800"}',
    ],
    ids=["deep arrays", "deep objects", "1e400", "4301 digits", "key twice", "lone surrogate"],
)
@pytest.mark.parametrize("status", [200, 409, 503])
def test_answers_that_leaked_are_sync_errors(status: int, body: bytes) -> None:
    with pytest.raises(SyncError):
        parse_acked_answer(status, body)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(st.sampled_from([200, 201, 400, 401, 409, 500, 503]), hostile_json({"acked_up_to": 3}))
def test_parse_acked_answer_is_total(status: int, body: bytes) -> None:
    acked = total(lambda b: parse_acked_answer(status, b), body, SyncError)
    assert acked is None or (status == 200 and isinstance(acked, int) and acked >= 0)


@pytest.mark.parametrize("name", sorted(LARGE_INPUTS))
def test_large_answers_are_refused_within_bounds(name: str) -> None:
    bounded(lambda: total(lambda b: parse_acked_answer(200, b), LARGE_INPUTS[name], SyncError))


# --- events -------------------------------------------------------------------------------

_EVENT = {"id": 1, "kind": "call_staff", "at": 1.0, "detail": {}}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id":1,"kind":"call_staff","at":1,"detail":{"a":' + nested(100_000).encode() + b"}}",
        b'{"id":1,"kind":"call_staff","at":1e400,"detail":{}}',
        b'{"id":' + b"1" * 4301 + b',"kind":"call_staff","at":1,"detail":{}}',
        b'{"id":1,"kind":"call_staff","at":1,"detail":{"source":"\\ud800"}}',
        b'{"id":1,"id":2,"kind":"call_staff","at":1,"detail":{}}',
    ],
    ids=["deep detail", "1e400", "4301 digits", "lone surrogate", "key twice"],
)
def test_events_that_leaked_are_event_errors(raw: bytes) -> None:
    with pytest.raises(EventError):
        event_from_json(raw)
    with pytest.raises(EventError):
        event_from_json(raw.decode("utf-8", "surrogatepass"))


def test_a_decoded_event_nested_deep_is_an_event_error() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]  # type: ignore[assignment]
    with pytest.raises(EventError):
        event_from_json({**_EVENT, "detail": {"a": deep}})


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(hostile_json(_EVENT))
def test_event_from_json_is_total(raw: bytes) -> None:
    total(event_from_json, raw, EventError)


# --- the event outbox's rows (a damaged file holds anything) -------------------------------


@pytest.fixture(scope="module")
def outbox_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outbox") / "events.db"
    with EventOutbox.open(path, "T0001", FixedClock(1.0)) as outbox:
        outbox.add("call_staff", {"source": "holder_screen"})
    return path


_ROW_VALUES = st.one_of(
    json_fragments(),
    st.binary(max_size=16),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(st.sampled_from(["detail", "kind", "at", "id"]), _ROW_VALUES)
def test_any_stored_event_row_is_read_or_refused_typed(
    outbox_file: Path, column: str, value: object
) -> None:
    try:
        with contextlib.closing(sqlite3.connect(outbox_file)) as db, db:
            db.execute(f"UPDATE events SET {column} = ?", (value,))
    except (sqlite3.Error, OverflowError):
        return  # a value SQLite or the schema refuses (NOT NULL, an integer key, > 64 bits)
    try:
        with EventOutbox.open(outbox_file, "T0001", FixedClock(1.0)) as outbox:
            total(outbox.pending, 10, EventOutboxError)
    except EventOutboxError:
        pass  # refused at open: a damaged outbox
    finally:
        with contextlib.closing(sqlite3.connect(outbox_file)) as db, db:
            db.execute(
                "UPDATE events SET id = 1, kind = 'call_staff', at = 1.0,"
                ' detail = \'{"source":"holder_screen"}\''
            )


def test_a_stored_event_detail_that_is_a_blob_is_a_corrupt_outbox(outbox_file: Path) -> None:
    with contextlib.closing(sqlite3.connect(outbox_file)) as db, db:
        db.execute("UPDATE events SET detail = ?", (b"\xff\xfe",))
    try:
        with (
            EventOutbox.open(outbox_file, "T0001", FixedClock(1.0)) as outbox,
            pytest.raises(EventOutboxError, match="unreadable event"),
        ):
            outbox.pending()
    finally:
        with contextlib.closing(sqlite3.connect(outbox_file)) as db, db:
            db.execute('UPDATE events SET detail = \'{"source":"holder_screen"}\'')


# --- the credentials file -----------------------------------------------------------------

GOOD_CREDENTIALS = f"""
terminal_id = "T0001"
secret = "{"11" * 32}"
backoffice_url = "https://127.0.0.1:8443"
publication_key = "{PUBLIC.hex()}"
publication_algorithm = "ecdsa-p256"
token_key = "{"22" * 32}"
"""


def test_good_credentials_parse() -> None:
    assert parse_credentials(GOOD_CREDENTIALS, "creds.toml").terminal_id == "T0001"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ('publication_algorithm = ["sm2"]', "publication_algorithm"),  # was TypeError
        ("publication_algorithm = { a = 1 }", "publication_algorithm"),
        ('backoffice_url = "http://[::1"', "backoffice_url"),  # was ValueError
        ('backoffice_url = "http://127.0.0.1:99999"', "backoffice_url"),  # failed in the client
        ('ca_file = "ca\\u0000.pem"', "ca_file"),
        ("nested = " + nested(3000), "nests arrays or tables too deeply"),  # was RecursionError
        ("nested = " + "{a = " * 3000 + "1" + "}" * 3000, "too deeply"),
        ("big = " + "1" * 4301, "not a TOML credentials file"),
        ('terminal_id = "T0001"', "not a TOML credentials file"),  # a key twice
    ],
)
def test_credentials_that_leaked_are_config_errors_naming_the_file(
    change: str, reason: str
) -> None:
    key = change.split(" = ")[0]
    lines = [line for line in GOOD_CREDENTIALS.splitlines() if not line.startswith(key + " =")]
    text = "\n".join(lines) + "\n" + change + "\n"
    if key == "terminal_id":
        text = GOOD_CREDENTIALS + change + "\n"
    with pytest.raises(ConfigError, match=reason) as info:
        parse_credentials(text, "creds.toml")
    assert info.value.reason.startswith("creds.toml: ")
    assert "11" * 32 not in info.value.reason and "22" * 32 not in info.value.reason


_TOML_VALUES = st.one_of(
    st.sampled_from(['"x"', "1", "1e400", "inf", "nan", "[1, 2]", "{ a = 1 }", '"\\ud800"']),
    st.sampled_from([nested(d) for d in (10, 300, 3000)]),
    st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
    st.text(max_size=20),
)


@settings(max_examples=EXAMPLES, deadline=DEADLINE)
@given(
    st.sampled_from(
        ["terminal_id", "secret", "backoffice_url", "publication_key", "ca_file", "other"]
    ),
    _TOML_VALUES,
)
def test_parse_credentials_is_total(key: str, value: str) -> None:
    lines = [line for line in GOOD_CREDENTIALS.splitlines() if not line.startswith(key + " =")]
    total(parse_credentials, "\n".join(lines) + f"\n{key} = {value}\n", ConfigError)


def test_a_huge_credentials_file_is_refused_within_bounds(tmp_path: Path) -> None:
    from terminal.sync.auth import load_credentials

    path = tmp_path / "creds.toml"
    path.write_text("a = " + nested(1 << 19))
    bounded(lambda: total(load_credentials, path, ConfigError))
    path.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(ConfigError, match="larger than"):
        load_credentials(path)
