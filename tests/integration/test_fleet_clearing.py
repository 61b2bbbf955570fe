"""The fleet and clearing through the real stack (issue 16, items 5 and 6): a validator
runtime (pcscd + vpcd cards carrying the T-Union e-purse, a PSAM in slot 2) synced with a
back office served on uvicorn. Its heartbeat reaches the back office; its purchases - TACs
made by firmware_sim cards - are uploaded, and clearing verifies them with the issuer
master, while a second terminal's upload of the same purchases, tampered, is flagged; the
clearing files, ``/metrics`` and ``onecard backoffice fleet`` say so."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.backoffice_storage import storage_for
from helpers.pcscd_service import wait_for_service
from prometheus_client.parser import text_string_to_metric_families
from test_runtime_validator import ADULT_FARE, SERVICE, write_world

from backoffice.clearing import check_clearing_file
from backoffice.cli import format_credentials
from backoffice.issuer_keys import IssuerKeys, write_issuer_keys
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from firmware_sim import crypto as card_crypto
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import add_tunion
from firmware_sim.vpcd import reader_name
from onecard.runtime import build_runtime
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.host.clock import CST, SystemClock
from terminal.journal.entry import TransactionRecord
from terminal.journal.store import Journal
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.secure.keyfile import TransitKeyName
from terminal.sync.auth import load_credentials
from terminal.sync.uploader import Uploader

pytestmark = pytest.mark.integration

TERMINAL = "BUS-0001"
TAMPERING = "BUS-0666"
SILENT = "BUS-0404"
CARD_SLOT = 0
PSAM_SLOT = 2
ONECARD = (sys.executable, "-m", "onecard.cli")
WAIT = 60.0
APPLIST = {
    "services": [
        {
            "code": SERVICE,
            "name": "Bus line 1",
            "scope": "sichuan-chongqing",
            "fare": ADULT_FARE,
            "valid_from": "2020-01-01",
        }
    ]
}


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (without a fixed sleep) until ``predicate`` holds; fail after a generous bound."""
    pause = threading.Event()
    deadline = SystemClock().now() + WAIT
    while not predicate():
        if SystemClock().now() > deadline:
            pytest.fail(f"not within {WAIT:g} s: {what}")
        pause.wait(0.05)


def credentials_file(path: Path, terminal: str, secret: bytes, url: str, key, token_key) -> Path:
    path.write_text(format_credentials(terminal, secret, url, key, token_key, None))
    path.chmod(0o600)
    return path


@pytest.fixture
def office(tmp_path: Path) -> Iterator[dict]:
    key = generate_publication_key()
    token_key = new_token_key()
    with storage_for("sqlite", tmp_path / "office") as storage:
        backoffice = BackOffice(storage, key, silent_after=600)
        backoffice.publish("applist", APPLIST)
        server = backoffice.serve()
        now = SystemClock().now()
        creds = {}
        for terminal in (TERMINAL, TAMPERING):
            secret = os.urandom(32)
            storage.enrol(terminal, secret, now)
            creds[terminal] = credentials_file(
                tmp_path / f"{terminal}.toml", terminal, secret, server.url, key, token_key
            )
        storage.enrol(SILENT, os.urandom(32), now - 86_400)  # enrolled yesterday, never heard
        try:
            yield {
                "storage": storage,
                "db": str(tmp_path / "office" / "bo.sqlite"),
                "url": server.url,
                "credentials": creds,
            }
        finally:
            server.shutdown()


def write_config(tmp: Path, psam: str, card_reader: str) -> Path:
    path = tmp / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "{TERMINAL}"
profile = "validator"
service = "{SERVICE}"

[readers]
names = ["{card_reader}"]
psam = "{psam}"

[backoffice]
credentials = "{TERMINAL}.toml"
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"

[validator]
repeat_seconds = 0

[status]
port = -1
"""
    )
    return path


def onecard(*args: str, codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*ONECARD, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode in codes, done.stdout + done.stderr
    return done


@contextlib.contextmanager
def validator(config: Path) -> Iterator:
    runtime = build_runtime(load_config(config), outputs=RecordingOutputs())
    with runtime.running():
        yield runtime
    assert not runtime.looping


def tampered_records(journal_path: Path) -> list[TransactionRecord]:
    """The validator's purchases as a lying terminal would journal them: the first with a
    TAC not the card's, the second with more money than the card signed for."""
    journal = Journal.open_read_only(journal_path)
    try:
        paid = [e for e in journal.entries() if e.amount and "tac" in e.extra]
    finally:
        journal.close()
    assert len(paid) == 2
    records = []
    for index, entry in enumerate(paid):
        extra = dict(entry.extra)
        amount = entry.amount
        if index == 0:
            extra["tac"] = f"{int(str(extra['tac']), 16) ^ 1:08X}"
        else:
            amount = (amount or 0) + 100
        records.append(
            TransactionRecord(
                kind=entry.kind,
                service=entry.service,
                decision=entry.decision,
                reason=entry.reason,
                amount=amount,
                card_token=bytes.fromhex(entry.card_token),
                region=entry.region,
                category=entry.category,
                extra=extra,
            )
        )
    return records


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_heartbeats_and_clearing_through_the_real_stack(
    tmp_path: Path, insert_card, office: dict
) -> None:
    storage = office["storage"]
    world = write_world(tmp_path)
    (tmp_path / "documents" / "applist.json").unlink()  # this terminal's come from the office
    keyset = world["keyset"]
    names = wait_for_service()
    card_reader = reader_name(CARD_SLOT, names)
    assert card_reader is not None
    psam = insert_card(card=build_psam(keyset), slot=PSAM_SLOT)
    config = write_config(tmp_path, psam.reader, card_reader)
    # The application list before the first tap (the runtime downloads in the background).
    # (Exit 14: no hotlist or trust list published; not needed here.)
    sync = onecard(
        "sync",
        "--once",
        *("--credentials", str(office["credentials"][TERMINAL])),
        *("--journal", str(tmp_path / "journal.db")),
        *("--documents", str(tmp_path / "documents")),
        codes=(0, 14),
    )
    assert json.loads(sync.stdout)["documents"]["applist"]["outcome"] == "applied"

    profile = load_profile(world["cards"]["cards"]["genuine-cq-2.0"]["file"])
    with validator(config) as runtime:
        # The heartbeat goes out as the link starts, signed like every request.
        wait_until(
            lambda: any(s.heartbeat for s in storage.fleet() if s.terminal_id == TERMINAL),
            "the validator's first heartbeat",
        )
        for taps, (alg, serial) in enumerate(
            [(card_crypto.DES3, "50000000000000000011"), (card_crypto.SM4, "50000000000000000012")],
            start=1,
        ):
            card = build_card(profile)
            purse = add_tunion(
                card, keyset, algorithm=alg, balance=1000, app_serial=bytes.fromhex(serial)
            )
            inserted = insert_card(card=card, slot=CARD_SLOT)
            assert runtime.wait_for_outcomes(taps, timeout=WAIT), runtime.outcomes
            inserted.remove()
            outcome = runtime.outcomes[taps - 1]
            assert outcome.accepted and outcome.reason == "ok", outcome
            assert purse.balance == 1000 - ADULT_FARE
        wait_until(lambda: storage.acked_up_to(TERMINAL) >= 2, "the purchases uploaded")

    stored = {s.terminal_id: s for s in storage.fleet()}
    beat = stored[TERMINAL].heartbeat
    assert beat is not None and beat["documents"]["applist"] == 1
    assert beat["software_version"] and isinstance(beat["readers"], dict)
    assert not {"card_token", "app_serial", "name"} & set(json.dumps(beat).split('"'))

    # The purchases as journaled carry what their TAC covers - the serial's low 8 bytes only.
    journal = Journal.open_read_only(tmp_path / "journal.db")
    try:
        extras = [e.extra for e in journal.entries() if e.amount]
    finally:
        journal.close()
    assert [x["app_serial_low"] for x in extras] == ["0000000000000011", "0000000000000012"]
    assert [x["algorithm_id"] for x in extras] == [0x00, 0x04]

    # A lying terminal uploads the same purchases, tampered, through the real uploader.
    lying = Journal.open(tmp_path / "lying.db", TAMPERING)
    try:
        lying.append_batch(tampered_records(tmp_path / "journal.db"))
        creds = load_credentials(office["credentials"][TAMPERING])
        Uploader(lying, creds, SystemClock()).run_once()
    finally:
        lying.close()
    assert storage.acked_up_to(TAMPERING) == 2

    # Clearing, with the issuer masters (made at test time from the world's key set).
    masters = IssuerKeys(
        {alg: keyset.keys[(alg, TransitKeyName.PURCHASE)] for alg in (Alg.DES3, Alg.SM4)}
    )
    keys = tmp_path / "issuer.toml"
    write_issuer_keys(masters, keys)
    operators = tmp_path / "operators.toml"
    operators.write_text(
        f'[operators.bus-1]\nterminals = ["{TERMINAL}"]\n'
        f'[operators.bus-2]\nterminals = ["{TAMPERING}"]\n'
    )
    times = [e["time"] for e in storage.entries(TERMINAL)]
    day = dt.datetime.fromtimestamp(times[0], CST).date()
    assert all(dt.datetime.fromtimestamp(t, CST).date() == day for t in times)
    out = tmp_path / "clearing"
    done = onecard(
        "backoffice",
        "clearing",
        *("--storage", office["db"], "--date", day.isoformat(), "--out", str(out)),
        *("--issuer-keys", str(keys), "--operators", str(operators)),
    )
    report = json.loads(done.stdout)
    assert report["totals"]["bus-1"]["valid_count"] == 2
    assert report["totals"]["bus-1"]["valid_amount"] == 2 * ADULT_FARE
    assert report["totals"]["bus-2"]["flagged_count"] == 2
    flagged = [(f["terminal_id"], f["seq"], f["verdict"]) for f in report["flagged"]]
    assert flagged == [(TAMPERING, 1, "mismatch"), (TAMPERING, 2, "mismatch")]
    for operator, verdict in (("bus-1", "valid"), ("bus-2", "mismatch")):
        data = (out / f"clearing-{operator}-{day:%Y%m%d}.txt").read_bytes()
        assert check_clearing_file(data)
        lines = data.decode().splitlines()
        assert [line.split("|")[-1] for line in lines[1:-2]] == [verdict, verdict]

    listed = onecard("backoffice", "tac-mismatches", "--storage", office["db"], "--json")
    assert [json.loads(line)["terminal_id"] for line in listed.stdout.splitlines()] == [
        TAMPERING,
        TAMPERING,
    ]

    samples = scrape(office["url"])
    assert samples[("onecard_backoffice_tac_mismatches", ())] == 2
    assert samples[("onecard_backoffice_tac_checks", (("verdict", "valid"),))] == 2
    assert samples[("onecard_backoffice_ingest_entries_total", ())] >= 4
    assert samples[("onecard_backoffice_heartbeats_total", (("outcome", "stored"),))] >= 1
    assert samples[("onecard_backoffice_terminals_silent", ())] == 1
    assert samples[("onecard_backoffice_ingest_seconds_count", ())] >= 2

    fleet = onecard("backoffice", "fleet", "--storage", office["db"], "--json")
    rows = {json.loads(line)["terminal_id"]: json.loads(line) for line in fleet.stdout.splitlines()}
    assert rows[TERMINAL]["silent"] is False and rows[TERMINAL]["last_seen"] is not None
    assert rows[SILENT]["silent"] is True and rows[SILENT]["state"] == "silent"
    assert rows[TAMPERING]["state"] == "new"  # it uploaded, but never sent a heartbeat
