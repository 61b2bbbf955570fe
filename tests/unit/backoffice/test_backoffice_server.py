"""The back office's request handling without sockets (BackOffice.handle), and its CLI."""

from __future__ import annotations

import argparse
import json
import os
import stat
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backoffice import keys
from backoffice.cli import add_commands as add_backoffice_commands
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice, parse_since
from backoffice.storage import open_storage
from backoffice.testing import make_entries
from terminal.crypto import signing
from terminal.errors import OneCardError
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
