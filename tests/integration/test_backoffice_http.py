"""The back office as a real HTTP(S) server on a free loopback port, SQLite and PostgreSQL,
driven by a minimal client written here from docs/sync.md (http.client + the HMAC headers).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from helpers.backoffice_storage import KINDS, storage_for

from backoffice.auth import new_secret
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from backoffice.testing import make_entries
from backoffice.tls import make_self_signed
from terminal.crypto import signing
from terminal.host.clock import FixedClock

pytestmark = pytest.mark.integration


class Client:
    """A terminal's side of the wire, from the contract alone."""

    def __init__(self, url: str, terminal_id: str, secret: bytes, clock, ca_file=None):
        parts = urlsplit(url)
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)
            self.conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, context=context, timeout=30
            )
        else:
            self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.terminal_id, self.secret, self.clock = terminal_id, secret, clock

    def request(self, method: str, path: str, body: bytes = b"", time_offset: float = 0):
        when = str(int(self.clock.now() + time_offset))
        message = f"{method}\n{path}\n{when}\n{hashlib.sha256(body).hexdigest()}".encode()
        headers = {
            "X-Onecard-Terminal": self.terminal_id,
            "X-Onecard-Time": when,
            "X-Onecard-Signature": hmac.new(self.secret, message, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json",
        }
        self.conn.request(method, path, body=body if method == "POST" else None, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        assert response.getheader("Content-Type").startswith("application/json")
        return response.status, json.loads(payload)

    def ingest(self, entries, **kw):
        body = json.dumps({"terminal_id": self.terminal_id, "entries": entries}).encode()
        return self.request("POST", "/v1/ingest", body, **kw)

    def close(self):
        self.conn.close()


@pytest.fixture(params=KINDS)
def storage(request, tmp_path) -> Iterator:
    with storage_for(request.param, tmp_path, hotlist_history=3) as store:
        yield store


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["http", "https"])
def world(request, storage, tls_files):
    clock = FixedClock()
    key = generate_publication_key(signing.Algorithm.SM2)
    backoffice = BackOffice(storage, key, clock)
    cert, tls_key = tls_files
    if request.param == "https":
        server = backoffice.serve("127.0.0.1", 0, str(cert), str(tls_key))
    else:
        server = backoffice.serve("127.0.0.1", 0)
    clients = []

    def client(terminal_id="T0001", enrol=True, secret=None):
        if enrol:
            secret = new_secret()
            storage.enrol(terminal_id, secret, clock.now())
        c = Client(server.url, terminal_id, secret or new_secret(), clock, ca_file=str(cert))
        clients.append(c)
        return c

    yield backoffice, server, client, key
    for c in clients:
        c.close()
    server.shutdown()


def test_health_and_url(world):
    _, server, client, _ = world
    assert server.port > 0 and server.url.endswith(f":{server.port}")
    c = client()
    c.conn.request("GET", "/health")
    response = c.conn.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}


def test_ingest_flow(world):
    _, _, client, _ = world
    c = client()
    entries = make_entries("T0001", 30)
    assert c.ingest(entries[:10]) == (200, {"acked_up_to": 10})
    assert c.ingest(entries[:10]) == (200, {"acked_up_to": 10})  # idempotent re-send
    assert c.ingest(entries[5:30]) == (200, {"acked_up_to": 30})
    assert c.ingest([]) == (200, {"acked_up_to": 30})
    status, body = c.ingest(make_entries("T0001", 3, reason="rewritten"))
    assert status == 409 and body["error"] == "duplicate_conflict"
    status, body = c.ingest(make_entries("T0001", 2, start=31, prev_hash="ab" * 32))
    assert status == 409 and body["error"] == "chain_broken"
    tampered = make_entries("T0001", 2, start=31, prev_hash=entries[-1]["hash"])
    tampered[1]["amount"] = 1
    status, body = c.ingest(tampered)
    assert status == 409 and body["error"] == "chain_broken"
    # Nothing of the refused batches was stored.
    good = make_entries("T0001", 2, start=31, prev_hash=entries[-1]["hash"])
    assert c.ingest(good) == (200, {"acked_up_to": 32})


def test_authentication_failures(world):
    backoffice, _, client, _ = world
    stranger = client("T0009", enrol=False)
    status, body = stranger.ingest(make_entries("T0009", 1))
    assert (status, body["error"]) == (401, "unauthenticated")
    c = client("T0001")
    assert c.ingest(make_entries("T0001", 1), time_offset=-301)[0] == 401
    assert c.ingest(make_entries("T0001", 1), time_offset=299)[0] == 200
    impostor = client("T0001", enrol=False)  # right id, wrong secret
    assert impostor.request("GET", "/v1/applist")[0] == 401
    # Uploading another terminal's journal under one's own name is refused.
    status, body = c.request(
        "POST",
        "/v1/ingest",
        json.dumps({"terminal_id": "T0002", "entries": []}).encode(),
    )
    assert (status, body["error"]) == (403, "forbidden")
    backoffice.storage.revoke("T0001", 0)
    status, body = c.ingest(make_entries("T0001", 1))
    assert (status, body["error"]) == (403, "revoked")


def test_bad_requests_never_kill_the_server(world):
    _, server, client, _ = world
    c = client()
    for raw in (b"", b"{", b"\xff", b"[]", b'{"terminal_id":"T0001"}', b'{"a":NaN}'):
        status, body = c.request("POST", "/v1/ingest", raw)
        assert status == 400 and body["error"] == "bad_request", raw
    assert c.request("GET", "/v1/hotlist?since=-1")[0] == 400
    assert c.request("GET", "/v1/hotlist?since=1&since=2")[0] == 400
    assert c.request("GET", "/v1/nothing")[0] == 404
    assert c.request("GET", "/v1/ingest")[0] == 405
    # An oversized body is refused from its Content-Length, unread; the connection closes.
    c.conn.putrequest("POST", "/v1/ingest")
    c.conn.putheader("Content-Length", str(17 * 1024 * 1024))
    c.conn.endheaders()
    response = c.conn.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"] == "payload_too_large"
    c.conn.close()
    # Garbage on the raw socket (not even HTTP) - and the server still answers after.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw_sock:
        raw_sock.sendall(b"\x16\x03\x01 garbage\r\n\r\n")
        raw_sock.shutdown(socket.SHUT_WR)
        while raw_sock.recv(4096):
            pass
    assert c.ingest(make_entries("T0001", 1))[0] == 200


def test_hotlist_deltas(world):
    backoffice, _, client, key = world
    c = client()
    storage = backoffice.storage
    a, b, d = "a1" * 8, "b2" * 8, "d4" * 8
    status, doc = c.request("GET", "/v1/hotlist?since=0")
    assert status == 200 and (doc["version"], doc["base"], doc["added"]) == (0, 0, [])
    storage.hotlist_change(a, True)  # v1
    storage.hotlist_change(b, True)  # v2
    storage.hotlist_change(a, False)  # v3
    storage.hotlist_change(d, True)  # v4
    for path, expected in [
        ("/v1/hotlist?since=0", (4, 0, [b, d], [])),
        ("/v1/hotlist", (4, 0, [b, d], [])),
        ("/v1/hotlist?since=1", (4, 1, [d, b][::-1], [a])),
        ("/v1/hotlist?since=3", (4, 3, [d], [])),
        ("/v1/hotlist?since=4", (4, 4, [], [])),
        ("/v1/hotlist?since=99", (4, 0, [b, d], [])),  # another back office's numbers
    ]:
        status, doc = c.request("GET", path)
        assert status == 200 and doc["kind"] == "hotlist-delta"
        assert (doc["version"], doc["base"], doc["added"], doc["removed"]) == expected, path
        assert doc["signature"]["key_id"] == key.key_id
        body = {k: v for k, v in doc.items() if k != "signature"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert signing.verify(
            signing.Algorithm.SM2,
            key.public_key,
            canonical.encode(),
            bytes.fromhex(doc["signature"]["value"]),
        )
    # History is 3 versions: a terminal at v1 is now too far behind and gets the full list.
    storage.hotlist_change(a, True)  # v5
    status, doc = c.request("GET", "/v1/hotlist?since=1")
    assert (doc["version"], doc["base"], doc["added"], doc["removed"]) == (5, 0, [a, b, d], [])
    status, doc = c.request("GET", "/v1/hotlist?since=2")
    assert (doc["base"], doc["added"], doc["removed"]) == (2, [d], [])


def test_trust_and_application_lists(world):
    backoffice, _, client, key = world
    c = client()
    assert c.request("GET", "/v1/trustlist")[0] == 404
    backoffice.publish("trustlist", {"issuers": [{"id": "CQ", "key": "04ab"}]})
    backoffice.publish("applist", {"services": [{"code": "museum-entry", "name": "博物馆"}]})
    backoffice.publish("applist", {"services": []})
    for path, kind, version in (("/v1/trustlist", "trustlist", 1), ("/v1/applist", "applist", 2)):
        status, doc = c.request("GET", path)
        assert status == 200 and (doc["kind"], doc["version"]) == (kind, version)
        body = {k: v for k, v in doc.items() if k != "signature"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert signing.verify(
            key.algorithm,
            key.public_key,
            canonical.encode("utf-8"),
            bytes.fromhex(doc["signature"]["value"]),
        )


def test_https_refuses_a_client_that_does_not_trust_the_certificate(storage, tls_files):
    cert, tls_key = tls_files
    backoffice = BackOffice(storage, generate_publication_key(), FixedClock())
    with backoffice.serve("127.0.0.1", 0, str(cert), str(tls_key)) as server:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", server.port, context=ssl.create_default_context(), timeout=10
        )
        with pytest.raises(ssl.SSLError):
            conn.request("GET", "/health")
        conn.close()
        # The failed handshake did not hurt the server.
        ok = http.client.HTTPSConnection(
            "127.0.0.1",
            server.port,
            context=ssl.create_default_context(cafile=str(cert)),
            timeout=10,
        )
        ok.request("GET", "/health")
        assert ok.getresponse().status == 200
        ok.close()
