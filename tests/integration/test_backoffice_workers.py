"""Several back office processes on one PostgreSQL: ``onecard backoffice serve --workers 2``
as a real process tree, a terminal uploading with retries, and a worker killed with
SIGKILL in the middle of batches - the retries land on whichever worker takes the new
connection, and the back office ends with every entry exactly once, the chain intact."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import threading
import time

import pytest
from helpers.backoffice_workers import fresh_schema, serve_workers

from backoffice import keys
from backoffice.auth import new_secret
from backoffice.publish import generate_publication_key
from backoffice.storage import PostgresStorage
from backoffice.testing import make_entries
from terminal.wire.journal import ZERO_HASH

pytestmark = pytest.mark.integration

TERMINAL = "T-WORKERS"
BATCHES = 40
BATCH = 500
KILLS = (5, 15, 25)  # batch numbers during whose upload the serving worker is killed


def _signed(secret: bytes, method: str, path: str, body: bytes) -> dict[str, str]:
    when = str(int(time.time()))
    message = f"{method}\n{path}\n{when}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "X-Onecard-Terminal": TERMINAL,
        "X-Onecard-Time": when,
        "X-Onecard-Signature": hmac.new(secret, message, hashlib.sha256).hexdigest(),
    }


class Terminal:
    """A terminal's uploader as docs/sync.md asks: one kept-alive connection, and on a
    refused or broken connection or a 5xx, a new connection and the same batch again."""

    def __init__(self, port: int, secret: bytes) -> None:
        self.port, self.secret = port, secret
        self.conn: http.client.HTTPConnection | None = None
        self.answered_by: list[int] = []  # the worker pid of each 200
        self.retries = 0
        self.sending = threading.Event()  # set while a batch is on its way
        self.serving_pid = 0  # the worker the kept-alive connection is with

    def upload(self, body: bytes) -> dict:
        deadline = time.monotonic() + 60
        while True:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.sending.set()
                self.conn.request(
                    "POST", "/v1/ingest", body, _signed(self.secret, "POST", "/v1/ingest", body)
                )
                response = self.conn.getresponse()
                payload = response.read()
                worker = int(response.getheader("X-Onecard-Worker", "0"))
                if response.status == 200:
                    self.answered_by.append(worker)
                    self.serving_pid = worker
                    return json.loads(payload)
                assert response.status >= 500, (response.status, payload)
            except (OSError, http.client.HTTPException):
                pass  # the worker went away under us
            finally:
                self.sending.clear()
            self.retries += 1
            self.conn.close()
            self.conn = None
            assert time.monotonic() < deadline, "the back office never took the batch"
            time.sleep(0.05)


@pytest.fixture
def fleet(tmp_path):
    """A fresh schema, T-WORKERS enrolled, and ``serve --workers 2`` running on it."""
    key_file = tmp_path / "publication.key"
    keys.write_publication_key(generate_publication_key(), key_file)
    with fresh_schema() as (base, schema, url):
        storage = PostgresStorage(base, schema=schema)
        try:
            secret = new_secret()
            storage.enrol(TERMINAL, secret, time.time())
            with serve_workers(url, key_file) as served:
                yield storage, secret, served.port, served.process
        finally:
            storage.close()


def test_two_workers_one_killed_mid_batch_nothing_lost_nothing_doubled(fleet):
    storage, secret, port, server = fleet
    entries = make_entries(TERMINAL, BATCHES * BATCH, prev_hash=ZERO_HASH)
    bodies = [
        json.dumps({"terminal_id": TERMINAL, "entries": entries[i : i + BATCH]}).encode()
        for i in range(0, len(entries), BATCH)
    ]
    terminal = Terminal(port, secret)
    killed: list[int] = []
    for number, body in enumerate(bodies, start=1):
        if number in KILLS and terminal.serving_pid:
            # Kill the worker this connection is with while the batch is on its way to it.
            victim = terminal.serving_pid
            sender = threading.Thread(target=terminal.upload, args=(body,))
            sender.start()
            assert terminal.sending.wait(30)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            sender.join(90)
            assert not sender.is_alive()
        else:
            answer = terminal.upload(body)
            assert answer["acked_up_to"] == number * BATCH, (number, answer)
    print(
        f"\nkilled {killed}; retries {terminal.retries}; answers by worker "
        f"{ {pid: terminal.answered_by.count(pid) for pid in sorted(set(terminal.answered_by))} }"
    )
    assert server.poll() is None, "the supervisor itself went down"
    assert len(killed) == len(KILLS)
    assert terminal.retries >= len(KILLS), "no kill ever hit a batch in flight"
    served = set(terminal.answered_by)
    assert len(served) >= 2, f"every answer came from one worker: {served}"
    assert served - set(killed), "no answer from a worker that lived on or replaced one"

    total = BATCHES * BATCH
    assert storage.acked_up_to(TERMINAL) == total
    stored = storage.entries(TERMINAL, 0, total + 10)
    assert [e["seq"] for e in stored] == list(range(1, total + 1)), "missing or doubled"
    assert [e["hash"] for e in stored] == [e["hash"] for e in entries]
    previous = ZERO_HASH
    for entry in stored:
        assert entry["prev_hash"] == previous
        previous = entry["hash"]
