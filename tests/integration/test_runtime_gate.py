"""The gate profile end to end: pcscd + vpcd cards, a pty scanner, the status page."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.pcscd_service import start_pcscd, stop_pcscd

from firmware_sim.ecode_issuing import issue_code, issue_ecode_world, read_private_key
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.scanner import PtyScanner
from firmware_sim.ssc_applet import build_card
from onecard.runtime import build_runtime
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.journal.store import Journal
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.wire.document import sign_document

pytestmark = pytest.mark.integration


def messages(decision, reason, fare, balance):
    return decision, f"{decision}: {reason}"


@pytest.fixture
def world(tmp_path: Path) -> dict:
    cards = issue_world(tmp_path / "world")
    ecode = issue_ecode_world(tmp_path / "ecode")
    documents = tmp_path / "documents"
    documents.mkdir()
    publisher = generate_private_key(Algorithm.SM2)
    (tmp_path / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    body = {
        "kind": "applist",
        "version": 1,
        "services": [
            {
                "code": "museum-entry",
                "name": "Museum",
                "scope": "chongqing",
                "valid_from": "2020-01-01",
            }
        ],
    }
    (documents / "applist.json").write_bytes(sign_document(body, publisher, Algorithm.SM2))
    return {"tmp": tmp_path, "cards": cards, "ecode": ecode}


def write_config(world: dict, scanner_port: str) -> Path:
    tmp = world["tmp"]
    path = tmp / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "GATE-0001"
profile = "gate"
service = "museum-entry"

[readers]
names = []

[scanner]
serial = "{scanner_port}"

[security]
keys = "world/keys.toml"
trust_store = "world/trust.json"
ecode_world = "ecode"

[backoffice]
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"
publication_key = "publication.pub"

[gate]
passback_minutes = 10

[status]
port = 0
"""
    )
    return path


def code_for(world: dict) -> str:
    manifest = world["ecode"]
    alg = Algorithm(manifest["algorithm"])
    key = read_private_key(manifest["issuer"]["private_key"], alg)
    card = manifest["card"]
    return issue_code(
        key,
        bytes.fromhex(manifest["issuer"]["key_id"]),
        alg,
        card["region"],
        card["card_number"],
        card["category"],
        int(time.time()),
    )


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return answer.status, answer.read()


def test_gate_end_to_end(world: dict, insert_card) -> None:
    scanner = PtyScanner()
    outputs = RecordingOutputs()
    runtime = None
    try:
        config = load_config(write_config(world, scanner.port))
        runtime = build_runtime(config, outputs=outputs)
        runtime.steps.messages = messages
        runtime.start_sources()
        thread = threading.Thread(target=runtime.run, daemon=True)
        thread.start()
        cards = world["cards"]["cards"]

        def present(card_name: str, count: int, slot: int = 0):
            card = insert_card(card=build_card(load_profile(cards[card_name]["file"])), slot=slot)
            assert runtime.wait_for_outcomes(count, timeout=30), runtime.outcomes
            card.remove()
            return runtime.outcomes[count - 1]

        # A valid Chongqing card opens the gate and is journaled.
        first = present("genuine-cq-2.0", 1)
        assert first.accepted and first.reason == "ok" and first.journaled, first
        assert first.gate_opened and first.apdu_count > 0
        # The same card again within the passback window: refused, gate stays shut.
        again = present("genuine-cq-2.0", 2)
        assert again.decision == "refuse" and again.reason == "passback"
        # A Sichuan card at a Chongqing-only service.
        sichuan = present("genuine-sc-3.0", 3)
        assert sichuan.reason == "region_not_accepted", sichuan
        assert outputs.gate_openings == 1

        # An e-code through the pty scanner: accepted once, then refused as replayed.
        text = code_for(world)
        assert scanner.scan(text)
        assert runtime.wait_for_outcomes(4, timeout=15)
        assert runtime.outcomes[3].accepted and runtime.outcomes[3].kind == "code"
        assert scanner.scan(text)
        assert runtime.wait_for_outcomes(5, timeout=15)
        replay = runtime.outcomes[4]
        assert replay.decision == "refuse" and replay.reason == "not_authentic"

        # pcscd restarts mid-run: the next card is still processed.
        stop_pcscd()
        start_pcscd()
        after = present("genuine-sc-3.0", 6, slot=1)
        assert after.journaled and after.reason == "region_not_accepted"

        # The status page answers.
        port = runtime.status_server.port
        status, body = get(port, "/health")
        health = json.loads(body)
        assert status == 200 and health["profile"] == "gate"
        assert health["journal_unacked"] == 6  # 4 card taps and 2 codes, all journaled
        assert health["documents"]["applist"] == 1
        status, text_body = get(port, "/metrics")
        metrics = text_body.decode()
        assert 'onecard_transactions_total{profile="gate",decision="accept",reason="ok"} 2' in (
            metrics
        )
        assert "onecard_journal_unacked" in metrics

        runtime.request_stop()
        thread.join(timeout=15)
        assert not thread.is_alive()
    finally:
        if runtime is not None:
            runtime.shutdown()
        scanner.close()

    with Journal.open(world["tmp"] / "journal.db", "GATE-0001") as journal:
        entries = list(journal.entries())
    assert [e.reason for e in entries][:3] == ["ok", "passback", "region_not_accepted"]
    assert all("name" not in json.dumps(e.extra) for e in entries)
