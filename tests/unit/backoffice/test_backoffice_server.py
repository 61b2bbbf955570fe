"""The back office's request handling without sockets (BackOffice.handle), and its CLI."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backoffice import keys
from backoffice.cli import add_commands as add_backoffice_commands
from backoffice.cli import serve_limits
from backoffice.errors import BackOfficeError
from backoffice.limits import ServeLimits
from backoffice.publish import generate_publication_key
from backoffice.server import (
    MAX_BODY_BYTES,
    MAX_EVENTS_BODY_BYTES,
    BackOffice,
    busy_response,
    parse_since,
)
from backoffice.storage import open_storage
from backoffice.testing import make_entries
from terminal.crypto import signing
from terminal.errors import ConfigError, OneCardError
from terminal.host.clock import FixedClock
from terminal.wire.canonical import canonical_json
from terminal.wire.document import verify_document
from terminal.wire.requests import request_headers

SECRET = bytes(range(32))


@pytest.fixture
def backoffice(tmp_path):
    storage = open_storage(tmp_path / "bo.sqlite")
    storage.enrol("T0001", SECRET, 0)
    yield BackOffice(storage, generate_publication_key(), FixedClock())
    storage.close()


def call(bo: BackOffice, method: str, path: str, body: bytes = b"", offset: float = 0):
    headers = request_headers("T0001", SECRET, method, path, body, bo.clock.now() + offset)
    response = bo.handle(method, path, headers, body)
    return response.status, json.loads(response.payload())


def test_ingest_and_errors(backoffice):
    body = json.dumps({"terminal_id": "T0001", "entries": make_entries("T0001", 3)}).encode()
    assert call(backoffice, "POST", "/v1/ingest", body) == (200, {"acked_up_to": 3})
    assert call(backoffice, "POST", "/v1/ingest", body, offset=400)[0] == 401
    assert call(backoffice, "POST", "/v1/ingest?x=1", body)[0] == 400
    assert call(backoffice, "GET", "/health") == (200, {"status": "ok"})
    assert call(backoffice, "DELETE", "/v1/applist")[0] == 405


def test_unexpected_exception_is_a_bare_500(backoffice, monkeypatch):
    def boom(*_):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(backoffice.storage, "hotlist_snapshot", boom)
    status, body = call(backoffice, "GET", "/v1/hotlist?since=0")
    assert status == 500 and "secret detail" not in json.dumps(body)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_signed_garbage_is_a_400_never_a_crash(backoffice, raw):
    # The fixture is shared by all examples: garbage never stores anything anyway.
    status, body = call(backoffice, "POST", "/v1/ingest", raw)
    assert status in (200, 400, 403)
    assert set(body) == ({"acked_up_to"} if status == 200 else {"error", "reason"})


def refusal(bo: BackOffice, method: str, path: str, headers, length: int) -> tuple[int, str]:
    with pytest.raises(BackOfficeError) as caught:
        bo.admit(method, path, headers, length)
    return caught.value.http_status, caught.value.code


def test_admit_decides_from_the_headers_alone(backoffice):
    signed = request_headers("T0001", SECRET, "POST", "/v1/ingest", b"", backoffice.clock.now())
    stranger = dict(signed, **{"X-Onecard-Terminal": "T0009"})
    stale = request_headers("T0001", SECRET, "POST", "/v1/ingest", b"", 0)
    assert refusal(backoffice, "POST", "/v1/ingest", stranger, 10) == (401, "unauthenticated")
    assert refusal(backoffice, "POST", "/v1/ingest", {}, 10) == (401, "unauthenticated")
    assert refusal(backoffice, "POST", "/v1/ingest", stale, 10) == (401, "clock_skew")
    assert refusal(backoffice, "POST", "/v1/nothing", signed, 10) == (404, "not_found")
    assert refusal(backoffice, "GET", "/v1/ingest", signed, 0) == (405, "method_not_allowed")
    # Each endpoint's own limit: GETs take no body, events far less than an upload.
    assert refusal(backoffice, "GET", "/v1/applist", signed, 1) == (413, "payload_too_large")
    assert refusal(backoffice, "GET", "/health", {}, 1) == (413, "payload_too_large")
    over_events = MAX_EVENTS_BODY_BYTES + 1
    assert refusal(backoffice, "POST", "/v1/events", signed, over_events)[0] == 413
    assert refusal(backoffice, "POST", "/v1/ingest", signed, MAX_BODY_BYTES + 1)[0] == 413
    admission = backoffice.admit("POST", "/v1/ingest", signed, over_events)
    assert admission.claim is not None and admission.claim.terminal_id == "T0001"
    backoffice.storage.revoke("T0001", 0)
    assert refusal(backoffice, "POST", "/v1/ingest", signed, 10) == (403, "revoked")


def test_respond_checks_the_signature_over_the_body(backoffice):
    body = json.dumps({"terminal_id": "T0001", "entries": make_entries("T0001", 2)}).encode()
    headers = request_headers("T0001", SECRET, "POST", "/v1/ingest", body, backoffice.clock.now())
    admission = backoffice.admit("POST", "/v1/ingest", headers, len(body))
    forged = body.replace(b'"seq":', b'"seq": ')
    assert backoffice.respond(admission, forged).status == 400  # not the length announced
    forged = body.replace(b"T0001", b"T0002")
    response = backoffice.respond(admission, forged)
    assert (response.status, response.body["error"]) == (401, "unauthenticated")
    assert backoffice.respond(admission, body).body == {"acked_up_to": 2}


def test_busy_answer():
    response = busy_response(7)
    assert (response.status, response.body["error"], response.close) == (503, "busy", True)
    assert response.headers == {"Retry-After": "7"}


def test_errors_are_the_ones_docs_sync_md_lists():
    # The table of docs/sync.md ("Answers of the back office") against the typed errors.
    doc = (Path(__file__).parents[3] / "docs" / "sync.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `?(\d{3})`? \| `([a-z_]+)` \|", doc, re.MULTILINE))
    raised = {
        (str(cls.http_status), cls.code)
        for cls in _subclasses(BackOfficeError)
        if cls.__module__ == "backoffice.errors" and not issubclass(cls, ConfigError)
    }
    raised -= {("500", "backoffice_error"), ("409", "conflict")}  # bases, never raised
    assert raised <= rows, raised - rows
    answered = {("500", "internal_error"), ("503", "busy")}  # answered without a class
    assert rows == raised | answered, rows - raised - answered


def _subclasses(cls: type) -> set[type]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _subclasses(sub)
    return found


@pytest.mark.parametrize("query, since", [("", 0), ("since=0", 0), ("since=17", 17)])
def test_parse_since(query, since):
    assert parse_since(query) == since


@pytest.mark.parametrize(
    "query", ["since=", "since=x", "since=-1", "a=1", "since=1&since=2", "since=١"]
)
def test_parse_since_refuses(query):
    with pytest.raises(OneCardError):
        parse_since(query)


def run(args: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="onecard")
    sub = parser.add_subparsers(dest="command", required=True)
    add_backoffice_commands(sub)
    ns = parser.parse_args(args)
    assert ns.func(ns) == 0
    return ns


def test_cli_serve_limits():
    parser = argparse.ArgumentParser(prog="onecard")
    add_backoffice_commands(parser.add_subparsers(dest="command", required=True))
    base = ["backoffice", "serve", "--publication-key", "k"]
    assert serve_limits(parser.parse_args(base)) == ServeLimits()
    args = parser.parse_args(
        [*base, "--idle-timeout", "2", "--header-timeout", "3.5", "--body-grace", "4",
         "--min-body-rate", "1000", "--max-connections", "9"]
    )  # fmt: skip
    assert serve_limits(args) == ServeLimits(
        idle_timeout=2, header_timeout=3.5, body_grace=4, min_body_rate=1000, max_connections=9
    )
    for bad in (["--header-timeout", "0"], ["--max-connections", "0"], ["--idle-timeout", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, *bad])


def test_cli_init_enrol_revoke_hotlist_publish(tmp_path, capsys):
    d = tmp_path / "bo"
    db = str(tmp_path / "bo.sqlite")
    run(["backoffice", "init", "--dir", str(d), "--tls"])
    out = json.loads(capsys.readouterr().out)
    for name in ("publication.key", "token.key", "backoffice-key.pem"):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600
    assert out["publication_algorithm"] == "sm2"
    creds = tmp_path / "creds.toml"
    run(
        [
            "backoffice", "enrol", "T0001", "--storage", db,
            "--publication-key", str(d / "publication.key"), "--url", "https://127.0.0.1:8443",
            "--token-key", str(d / "token.key"), "--ca-file", out["tls_cert"], "--out", str(creds),
        ]
    )  # fmt: skip
    capsys.readouterr()
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    data = tomllib.loads(creds.read_text())
    assert data["terminal_id"] == "T0001" and len(bytes.fromhex(data["secret"])) == 32
    assert data["publication_key"] == out["publication_key"]
    assert data["token_key"] == keys.load_token_key(d / "token.key").hex()
    assert data["backoffice_url"] == "https://127.0.0.1:8443" and data["ca_file"]
    storage = open_storage(db)
    assert storage.terminal_key("T0001").secret.hex() == data["secret"]
    run(["backoffice", "revoke", "T0001", "--storage", db])
    assert json.loads(capsys.readouterr().out) == {"revoked": "T0001"}
    assert storage.terminal_key("T0001").revoked

    run(["backoffice", "hotlist", "add", "A12345678", "--token-key", str(d / "token.key"),
         "--storage", db])  # fmt: skip
    added = json.loads(capsys.readouterr().out)
    assert added["version"] == 1
    run(["backoffice", "hotlist", "add", "--token", "ab" * 16, "--storage", db])
    run(["backoffice", "hotlist", "remove", "--token", added["entry"], "--storage", db])
    assert storage.hotlist_snapshot(0).full == ("ab" * 8,)

    body = tmp_path / "applist.json"
    body.write_text(json.dumps({"services": [{"code": "museum-entry"}]}))
    for _ in range(2):
        run(["backoffice", "publish-applist", str(body), "--storage", db,
             "--publication-key", str(d / "publication.key")])  # fmt: skip
    doc = storage.document("applist")
    assert doc["version"] == 2
    pub = bytes.fromhex(out["publication_key"])
    assert verify_document(canonical_json(doc), pub, signing.Algorithm.SM2, "applist") == {
        k: v for k, v in doc.items() if k != "signature"
    }
    storage.close()
