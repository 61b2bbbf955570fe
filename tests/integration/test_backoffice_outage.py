"""The real back office goes away in the middle of a sync and comes back: nothing is lost,
nothing is stored twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import os

import pytest
from helpers.backoffice_storage import KINDS, storage_for

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from terminal.errors import SyncError
from terminal.host.clock import SystemClock
from terminal.journal.entry import TransactionRecord
from terminal.journal.store import Journal
from terminal.privacy.cardtoken import card_token
from terminal.sync.auth import load_credentials
from terminal.sync.uploader import Uploader

pytestmark = pytest.mark.integration

TERMINAL = "T-OUTAGE"


def append(journal: Journal, token_key: bytes, count: int) -> None:
    for i in range(count):
        journal.append(
            TransactionRecord(
                kind="card",
                service="bus-fare",
                decision="accept",
                reason="ok",
                amount=200,
                card_token=card_token(token_key, f"B{i:07d}0"),
                region="500103",
                category="3",
            )
        )


@pytest.mark.parametrize("kind", KINDS)
def test_outage_and_return(kind, tmp_path):
    key, token_key, secret = generate_publication_key(), new_token_key(), os.urandom(32)
    clock = SystemClock()
    with storage_for(kind, tmp_path) as storage:
        storage.enrol(TERMINAL, secret, clock.now())
        office = BackOffice(storage, key)

        def credentials_for(url: str):
            path = tmp_path / "creds.toml"
            path.write_text(format_credentials(TERMINAL, secret, url, key, token_key, None))
            path.chmod(0o600)
            return load_credentials(path)

        with Journal.open(tmp_path / "journal.db", TERMINAL, clock) as journal:
            server = office.serve()
            append(journal, token_key, 40)
            assert Uploader(journal, credentials_for(server.url), clock, batch_size=15).run_once()
            assert storage.acked_up_to(TERMINAL) == 40
            down_url = server.url
            server.shutdown()

            append(journal, token_key, 40)  # the terminal goes on while the office is down
            with pytest.raises(SyncError):
                Uploader(journal, credentials_for(down_url), clock).run_once()
            assert journal.stats().unacked == 40

            server = office.serve()  # back, on another port
            try:
                result = Uploader(journal, credentials_for(server.url), clock).run_once()
            finally:
                server.shutdown()
            assert result.pending == 0 and journal.stats().unacked == 0
        stored = storage.entries(TERMINAL, 0, 1000)
        assert [e["seq"] for e in stored] == list(range(1, 81))
