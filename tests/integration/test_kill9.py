"""kill -9 the terminal at random points while it journals and syncs, 100 rounds per storage:
the back office ends with exactly the journal's transactions - every one the terminal
reported as accepted among them - none twice, the chain intact."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.backoffice_storage import KINDS, storage_for
from helpers.paths import HELPERS

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from terminal.host.clock import SystemClock
from terminal.journal.store import Journal
from terminal.sync.auth import load_credentials
from terminal.sync.uploader import Uploader
from terminal.wire.journal import ZERO_HASH

pytestmark = pytest.mark.integration

ROUNDS = 100
CHILD = HELPERS / "fault_terminal.py"
TERMINAL = "T-FAULT"


@pytest.fixture(params=KINDS)
def backoffice(request, tmp_path):
    key = generate_publication_key()
    with storage_for(request.param, tmp_path) as storage:
        office = BackOffice(storage, key)
        server = office.serve()
        secret = os.urandom(32)
        storage.enrol(TERMINAL, secret, SystemClock().now())
        credentials = tmp_path / "creds.toml"
        credentials.write_text(
            format_credentials(TERMINAL, secret, server.url, key, new_token_key(), None)
        )
        credentials.chmod(0o600)
        try:
            yield storage, credentials
        finally:
            server.shutdown()


def run_round(journal: Path, credentials: Path, rng: random.Random) -> tuple[list[int], list[int]]:
    """Start the terminal, let it report a random number of transactions, kill -9 it: the
    seqs read before the kill, and every seq it printed before it died (the terminal runs
    on while the test reads, so the pipe holds more than was read)."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(journal), str(credentials), str(rng.randrange(2**31))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    reported = []
    try:
        for _ in range(rng.randint(1, 12)):
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"terminal died by itself: {child.stderr.read().decode()[-2000:]}")
            reported.append(int(line))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        # What it wrote before it died is still in the pipe.
        printed = reported + [int(line) for line in child.stdout.read().split()]
        child.stdout.close()
        child.stderr.close()
    return reported, printed


def test_kill9_rounds(backoffice, tmp_path):
    storage, credentials = backoffice
    journal_path = tmp_path / "journal.db"
    rng = random.Random(20261127)
    reported: list[int] = []
    printed: list[int] = []
    for _ in range(ROUNDS):
        read, told = run_round(journal_path, credentials, rng)
        reported += read
        printed += told

    clock = SystemClock()
    creds = load_credentials(credentials)
    with Journal.open(journal_path, TERMINAL, clock) as journal:
        report = journal.verify()
        assert report.ok, report.reason
        uploader = Uploader(journal, creds, clock)
        for _ in range(100):
            if uploader.run_once().pending == 0:
                break
        last_seq = journal.stats().last_seq
        journal_hashes = {e.seq: e.hash for e in journal.entries(0, last_seq + 1)}

    assert len(reported) == len(set(reported)), "a seq was reported twice"
    assert set(reported) <= set(journal_hashes), "a reported transaction is not in the journal"
    assert storage.acked_up_to(TERMINAL) == last_seq
    stored = storage.entries(TERMINAL, 0, last_seq + 10)
    assert [e["seq"] for e in stored] == list(range(1, last_seq + 1)), "missing or doubled"
    # The stored chain, recomputed from the stored entries, is intact and is the journal's.
    previous = ZERO_HASH
    for entry in stored:
        body = {k: v for k, v in entry.items() if k != "hash"}
        assert body["prev_hash"] == previous
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(bytes.fromhex(previous) + canonical.encode()).hexdigest()
        assert digest == entry["hash"] == journal_hashes[entry["seq"]]
        previous = entry["hash"]
    # At most one transaction per round was journaled but not yet told when killed (the
    # append returned, the print did not happen): what the terminal printed is counted in
    # full, not what the test happened to read before the kill.
    assert len(printed) == len(set(printed)) and set(printed) <= set(journal_hashes)
    assert last_seq - len(printed) <= ROUNDS
