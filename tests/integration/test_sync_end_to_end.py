"""``onecard sync`` against the real back office: the journal uploads, the hotlist, the
e-code trust list and the application list download verified; a tampered or rolled-back
publication is refused and the previous document stays in force."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key, hotlist_entry_for_card, prepare_document
from backoffice.publish import sign_document as office_sign
from backoffice.server import BackOffice
from backoffice.storage import open_storage
from firmware_sim.ecode_issuing import issuer_entry, make_issuer_key
from terminal.crypto.signing import Algorithm
from terminal.ecode.trustlist import IssuerKey
from terminal.host.clock import SystemClock
from terminal.journal.entry import TransactionRecord
from terminal.journal.store import Journal
from terminal.privacy.cardtoken import card_token

pytestmark = pytest.mark.integration

TERMINAL = "T-SYNC"
HOTLISTED = "A01000013"
APPLIST = {
    "services": [
        {
            "code": "museum-entry",
            "name": "Chongqing museums",
            "scope": "sichuan-chongqing",
            "fare": 0,
            "valid_from": "2025-01-01",
        }
    ]
}


def trust_list_body(issuer: IssuerKey) -> dict:
    return {
        "issued_at": dt.datetime.now(dt.UTC).isoformat(),
        "issuers": [
            {
                "key_id": issuer.key_id.hex(),
                "algorithm": issuer.algorithm.value,
                "public_key": issuer.public_key.hex(),
                "not_before": issuer.not_before.isoformat(),
                "not_after": issuer.not_after.isoformat(),
                "status": issuer.status.value,
            }
        ],
    }


def onecard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onecard.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def office(tmp_path):
    key, token_key, secret = generate_publication_key(), new_token_key(), os.urandom(32)
    storage = open_storage(tmp_path / "bo.sqlite")
    storage.enrol(TERMINAL, secret, SystemClock().now())
    backoffice = BackOffice(storage, key)
    server = backoffice.serve()
    credentials = tmp_path / "creds.toml"
    credentials.write_text(format_credentials(TERMINAL, secret, server.url, key, token_key, None))
    credentials.chmod(0o600)
    yield backoffice, storage, key, token_key, credentials
    server.shutdown()
    storage.close()


def test_sync_round_trip(office, tmp_path):
    backoffice, storage, key, token_key, credentials = office
    now = dt.datetime.now(dt.UTC)
    issuer_key, _ = make_issuer_key()
    issuer = issuer_entry(
        issuer_key, Algorithm.SM2, now - dt.timedelta(days=1), now + dt.timedelta(days=365)
    )
    backoffice.publish("trustlist", trust_list_body(issuer))
    backoffice.publish("applist", APPLIST)
    storage.hotlist_change(hotlist_entry_for_card(token_key, HOTLISTED), True)
    journal_path, documents = tmp_path / "journal.db", tmp_path / "documents"
    with Journal.open(journal_path, TERMINAL, SystemClock()) as journal:
        for _ in range(25):
            journal.append(
                TransactionRecord(
                    kind="code",
                    service="museum-entry",
                    decision="accept",
                    reason="ok",
                    amount=None,
                    card_token=card_token(token_key, "B02000020"),
                    region="510104",
                    category="4",
                )
            )
    sync = [
        "sync",
        "--once",
        "--credentials",
        str(credentials),
        "--journal",
        str(journal_path),
        "--documents",
        str(documents),
    ]

    result = onecard(*sync)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["upload"]["acked_up_to"] == 25
    assert {name: d["outcome"] for name, d in summary["documents"].items()} == {
        "hotlist": "applied",
        "trustlist": "applied",
        "applist": "applied",
    }
    assert storage.acked_up_to(TERMINAL) == 25
    lookup = ["hotlist", "lookup", "--credentials", str(credentials), "--documents", str(documents)]
    assert onecard(*lookup, HOTLISTED).returncode == 15
    assert onecard(*lookup, "B02000020").returncode == 0
    versions = summary["versions"]

    # A trust list signed by another key: refused, the previous one kept.
    forger = generate_publication_key()
    storage.publish_document(
        "trustlist",
        lambda v: office_sign(prepare_document("trustlist", trust_list_body(issuer), v), forger),
    )
    result = onecard(*sync)
    assert result.returncode == 14
    refused = json.loads(result.stdout)
    assert refused["documents"]["trustlist"]["outcome"] == "refused"
    assert refused["versions"]["trustlist"] == versions["trustlist"]

    # A newer application list is applied; then one carrying an older version number,
    # correctly signed - a rollback - is refused and the newer one stays.
    backoffice.publish("applist", APPLIST)
    newer = json.loads(onecard(*sync).stdout)["versions"]["applist"]
    assert newer > versions["applist"]
    storage.publish_document(
        "applist", lambda v: office_sign(prepare_document("applist", APPLIST, 1), key)
    )
    result = onecard(*sync)
    rolled = json.loads(result.stdout)
    assert rolled["documents"]["applist"]["outcome"] == "refused"
    assert rolled["versions"]["applist"] == newer
    assert onecard(*lookup, HOTLISTED).returncode == 15  # the hotlist still in force
