"""kill -9 the rail gates mid-ride, restart them, let them sync: the card, the journal and the
back office agree - at the entry gate and at the exit gate.

The bus validator's kill -9 test (``test_runtime_kill9_purchase.py``) for the metro: each
gate runs as ``onecard run --profile rail`` in a child process (``[transit] identify =
"purse"``, the journey record 0x1A on), with a PSAM in vpcd slot 2 and the real back office
(SQLite) configured for sync; the application list and the fare table are published there and
downloaded by the terminal before its first tap. Each round sets the card's journey record to
what the gate expects - inside the network (entered at Xiaoshizi 0101 some minutes ago) for
the exit gate at Lianglukou 0105, outside (the last journey closed) for the entry gate at
0101 - starts the child, presents the card in slot 0 and kills the child with SIGKILL just
before or just after the card answers one of its APDUs (DEBIT among them), or once it has
told the rider. Resetting the record between rounds leaves the card's last transaction (what
GET TRANSACTION PROVE answers) alone: a round killed after DEBIT leaves a pending purchase
that the next tap settles, whatever the record says then.

At the end, after one last unkilled tap and a sync:

* never charged twice: one debit per round at most, each counter once, each journaled once;
* no accepted ride without a debit, and every debit journaled (nothing missing);
* the exit: every accepted entry is the fare table's 300 fen (7 km), and the journal sums to
  what the card gave; the entry: every accepted entry is 0 fen and the balance is unchanged;
* the card's 0x1A record changed in a round exactly when the card debited in it (the
  composite purchase writes it with DEBIT or not at all), and reads back intact;
* the back office holds exactly the journal (every seq once, the same hashes);
* the windows were reached: a round killed with DEBIT in flight, one killed right after the
  card answered it, a settling tap killed right after GET TRANSACTION PROVE; and a tap settled
  a torn purchase (``torn_purchase_recovered``).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers.pcscd_service import wait_for_service
from test_runtime_kill9_purchase import (
    CALIBRATION,
    CARD_SLOT,
    INS_DEBIT,
    PSAM_SLOT,
    Child,
    KillPoint,
    KillSwitch,
    Round,
    card_balance,
    enrolled_office,
    sync_journal,
    told,
)

import bench.rail as rail
from drivers.pcsc import wait_for_card
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import add_tunion
from firmware_sim.vpcd import reader_name
from onecard.runtime import open_document_store
from terminal.host.clock import CST, SystemClock
from terminal.secure.keyfile import load_key_file
from terminal.sync.auth import load_credentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.downloads import Downloader
from terminal.transit.journey_record import (
    InOut,
    JourneyRecord,
    Station,
    decode_journey_record,
    fresh_record,
)

pytestmark = pytest.mark.integration

ROUNDS = 8
"""Killed rounds per gate (besides the calibration tap and the settling tap)."""
SEED = 20261204
START_BALANCE = 100_000
EXIT_FARE = 300
"""The fare table's fare from 0101 to 0105: 7 km, the band up to 11 km."""
CITY = "6900"
RECORD_ID = 0x02
SETTLE_PROVE_APDU = 2
"""GET TRANSACTION PROVE's place in a tap that settles a pending purchase (after SELECT)."""
ENTRY_STATION = Station.parse("0101")
EXIT_STATION = Station.parse("0105")
SERVICE = "metro"
GATES = {
    "exit": ("RAIL-EXIT-0105", EXIT_STATION),
    "entry": ("RAIL-ENTRY-0101", ENTRY_STATION),
}
# What the back office publishes: the application list (the metro takes social security
# cards and plain T-Union cards, the fare from the table) and the fare table of bench/rail.py.
APPLIST = {
    "services": [
        {
            "code": SERVICE,
            "name": "Metro",
            "scope": "national",
            "valid_from": "2020-01-01",
            "cards": ["ssc", "tunion"],
            "fare": 0,
        }
    ]
}
FARES = {k: v for k, v in rail.FARES.items() if k not in ("kind", "version")}


@dataclass
class Record:
    """The card's 0x1A record a round started from, the one it left, and the card APDUs
    (with their instructions) the round sent."""

    before: bytes
    after: bytes = b""
    apdus: list[str] = field(default_factory=list)


def local_now() -> dt.datetime:
    """Now as the card keeps it: local time, no zone."""
    return dt.datetime.now(CST).replace(tzinfo=None, microsecond=0)


def entered(minutes_ago: float) -> JourneyRecord:
    """Inside: entered at 0101 ``minutes_ago``, by another gate."""
    return fresh_record(RECORD_ID).entered(
        local_now() - dt.timedelta(minutes=minutes_ago),
        ENTRY_STATION,
        city_code=bytes.fromhex(CITY),
        operator=bytes(8),
        terminal_number=bytes.fromhex("000000000101"),
        serial=1,
        balance=START_BALANCE,
    )


def outside() -> JourneyRecord:
    """Outside: the last journey (0101 to 0105) closed an hour ago."""
    return entered(90).exited(
        local_now() - dt.timedelta(minutes=60),
        EXIT_STATION,
        EXIT_FARE,
        city_code=bytes.fromhex(CITY),
        operator=bytes(8),
        terminal_number=bytes.fromhex("000000000105"),
        serial=2,
    )


def write_config(tmp: Path, role: str, psam: str, card_reader: str) -> Path:
    terminal_id, station = GATES[role]
    path = tmp / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "{terminal_id}"
profile = "rail"
service = "{SERVICE}"

[readers]
names = ["{card_reader}"]
psam = "{psam}"

[backoffice]
credentials = "creds.toml"
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"

[transit]
identify = "purse"
journey_record = true
city_code = "{CITY}"

[rail]
station = "{station.code}"
role = "{role}"
# Every round is a new tap of the same card: no repeat-tap window (a restarted gate rebuilds
# it from the journal, and would refuse the rounds as repeats).
repeat_seconds = 0

[status]
port = 0
"""
    )
    return path


def kill_points(rng: random.Random, debit_apdu: int, apdus: int) -> list[KillPoint]:
    """Just before DEBIT (the card still carries it out); then, in the tap that settles it,
    right after GET TRANSACTION PROVE (the settled purchase not journaled yet: the next tap
    settles it again); after the rider was told (that tap settles it); right after DEBIT;
    after told (settling it); then random points, seeded. A kill at DEBIT leaves a pending
    purchase, and the next tap takes the short settling path: the windows at DEBIT are
    spaced so that each is reached."""
    points = [
        KillPoint(debit_apdu, before=True),
        KillPoint(SETTLE_PROVE_APDU),
        KillPoint(None),
        KillPoint(debit_apdu),
        KillPoint(None),
    ]
    while len(points) < ROUNDS:
        if rng.random() < 0.2:
            points.append(KillPoint(None))
        else:
            points.append(KillPoint(rng.randint(1, apdus), before=rng.random() < 0.5))
    return points


@pytest.fixture(params=list(GATES))
def role(request: pytest.FixtureRequest) -> str:
    """The gate under test: ``exit`` (0105) or ``entry`` (0101)."""
    return request.param


@pytest.fixture
def office(tmp_path: Path, role: str) -> Any:
    """The back office (SQLite) serving the application list and the fare table, and this
    gate enrolled: (storage, terminal id); the credentials are ``tmp_path/creds.toml``."""
    terminal_id = GATES[role][0]
    published = {"applist": APPLIST, "fares": FARES}
    with enrolled_office(tmp_path, terminal_id, published) as (storage, _credentials):
        yield storage, terminal_id


def download_documents(tmp: Path) -> None:
    """The application list and the fare table from the back office, verified and in
    force, before the first tap (``onecard sync --once`` fetches no fare table; the running
    gate fetches it only in the background)."""
    clock = SystemClock()
    credentials = load_credentials(tmp / "creds.toml")
    (tmp / "documents").mkdir()
    store = open_document_store(credentials, tmp / "documents")
    client = BackOfficeClient(credentials, clock)
    try:
        report = Downloader(store, client, clock, documents=("applist", "fares")).run_once()
    finally:
        client.close()
    outcomes = {name: result.outcome.value for name, result in report.results.items()}
    assert outcomes == {"applist": "applied", "fares": "applied"}, report.results
    assert (tmp / "documents" / "fares.json").exists()


def test_kill9_mid_ride_at_a_rail_gate(tmp_path: Path, insert_card, role: str, office) -> None:
    storage, terminal_id = office

    def expected() -> bytes:
        """The card's 0x1A record as the gate expects it: inside at the exit, else outside."""
        return (entered(10) if role == "exit" else outside()).to_bytes()

    world = issue_world(tmp_path / "world")
    keyset = load_key_file(world["keys"])
    download_documents(tmp_path)
    names = wait_for_service()
    card_reader = reader_name(CARD_SLOT, names)
    assert card_reader is not None
    psam = insert_card(card=build_psam(keyset), slot=PSAM_SLOT)
    config = write_config(tmp_path, role, psam.reader, card_reader)

    card = build_card(load_profile(world["cards"]["genuine-cq-2.0"]["file"]), contactless=True)
    applet = add_tunion(
        card,
        keyset,
        balance=START_BALANCE,
        app_serial=bytes.fromhex("50000000000000000077"),
        rail_record_data=expected(),
    )
    assert applet.rail_ef is not None
    switch = KillSwitch(card, applet)
    inserted = insert_card(card=card, slot=CARD_SLOT)
    inserted.remove()
    records: list[Record] = []
    card_process = switch._process

    def recording(apdu: bytes) -> bytes:
        # Under the switch (its lock held): what the card was sent in this round.
        records[-1].apdus.append(apdu[:2].hex())
        return card_process(apdu)

    switch._process = recording

    def tap(round_: Round) -> None:
        """One round: the record the gate expects, the child started, the card presented,
        the child killed at the round's point (or once it told the rider)."""
        before = expected()
        applet.rail_ef.records[0] = before  # EEPROM: as another gate left it
        records.append(Record(before))
        child = Child(config, "rail")
        try:
            assert child.wait_for(lambda line: '"started"' in line), "".join(child.stderr)
            switch.arm(round_, child.process.pid)
            inserted.bridge.insert()
            assert wait_for_card(inserted.reader, present=True)
            point = round_.point
            if point.apdu == CALIBRATION:
                assert child.wait_for(told), "".join(child.stderr)
            elif point.apdu is None:
                assert child.wait_for(told), "".join(child.stderr)
                round_.killed_at = "after told"
            elif child.wait_for(told) is not None:
                # A tap that settles a pending purchase takes another path (SELECT, GET
                # TRANSACTION PROVE) and may not reach this APDU: told, and killed then.
                round_.killed_at = "after told (kill point not reached)"
            else:
                assert switch.killed.is_set(), f"{point}: the child ended by itself"
        finally:
            switch.disarm()
            child.kill()
        inserted.remove()
        records[-1].after = bytes(applet.rail_ef.records[0])

    # A first, unkilled tap measures where the DEBIT falls among the tap's card APDUs.
    calibration = Round(KillPoint(CALIBRATION))
    tap(calibration)
    sent = records[0].apdus
    debit = f"80{INS_DEBIT:02x}"
    assert calibration.debits == [0] and sent.count(debit) == 1, (calibration, sent)
    debit_at = sent.index(debit) + 1

    rng = random.Random(f"{SEED}-{role}")
    rounds = [calibration]
    for point in kill_points(rng, debit_at, len(sent)):
        rounds.append(Round(point))
        tap(rounds[-1])
    # One last tap, not killed: it settles whatever the last kill left pending (or, with
    # nothing pending, is a ride of its own).
    rounds.append(Round(KillPoint(CALIBRATION)))
    tap(rounds[-1])
    switch._process = card_process
    story = "\n".join(
        f"{r.point}: killed {r.killed_at or '-'}, debits {r.debits}, sent {' '.join(x.apdus)}"
        for r, x in zip(rounds, records, strict=True)
    )

    # Restarted once more, the gate syncs what it journaled (here in-process, to the end).
    entries, last_seq = sync_journal(tmp_path, terminal_id)
    # The card's balance, read through pcscd, is the object's.
    balance = card_balance(inserted)
    assert balance == applet.balance

    debits = [counter for r in rounds for counter in r.debits]
    accepted = [e for e in entries if e.decision == "accept" and e.kind == "card"]
    journaled = [int(e.extra["counter"]) for e in accepted]
    # The card was always as the gate expects it (the record reset between rounds): no tap
    # was refused (exit_without_entry, already_inside), and a kill journals nothing torn.
    refused = [(e.seq, e.reason) for e in entries if e.kind == "card" and e.decision != "accept"]
    assert refused == [], story
    # Never charged twice: one debit per tap, each counter once, each journaled once.
    assert all(len(r.debits) <= 1 for r in rounds), story
    assert len(debits) == len(set(debits)) == applet.counter, story
    assert len(journaled) == len(set(journaled)), f"a ride journaled twice\n{story}"
    # No ride accepted without a debit on the card, and every debit in the journal: the
    # pending record closed the window between the card's DEBIT and the journal append.
    assert set(journaled) <= set(debits), story
    missing = sorted(set(debits) - set(journaled))
    assert missing == [], story
    assert all(e.extra.get("tac") or e.extra.get("recovered") for e in accepted)
    if role == "exit":
        assert all(e.amount == EXIT_FARE for e in accepted), [e.amount for e in accepted]
        assert sum(e.amount or 0 for e in accepted) == START_BALANCE - balance
        assert START_BALANCE - balance == EXIT_FARE * len(debits)
        rides = [e for e in accepted if e.reason == "ok"]
        assert all(e.extra["entry_station"] == "0101" for e in rides)
        assert all(e.extra["station"] == "0105" for e in rides)
    else:
        assert all((e.amount or 0) == 0 for e in accepted), [e.amount for e in accepted]
        assert balance == START_BALANCE
        rides = [e for e in accepted if e.reason == "ok"]
        assert all(e.extra["ride"] == "entry" for e in rides)
        assert all(e.extra["station"] == "0101" for e in rides)
    # The journey record moved in a round exactly when the card debited in it, to what this
    # gate writes; and it reads back intact.
    for round_, record in zip(rounds, records, strict=True):
        assert (record.after != record.before) == bool(round_.debits), (round_, story)
        after = decode_journey_record(record.after, RECORD_ID)
        if round_.debits:
            want = InOut.EXITED if role == "exit" else InOut.INSIDE
            assert after.inout is want, (round_, after)
    # The back office holds exactly the journal.
    stored = storage.entries(terminal_id, 0, last_seq + 10)
    assert [s["seq"] for s in stored] == [e.seq for e in entries] == list(range(1, last_seq + 1))
    assert [s["hash"] for s in stored] == [e.hash for e in entries]
    assert sum(s["amount"] or 0 for s in stored if s["decision"] == "accept") == sum(
        e.amount or 0 for e in accepted
    )
    # Both windows at DEBIT were reached (the command in flight, its answer not delivered),
    # and a settling tap was killed after the card proved the purchase.
    assert any(r.killed_at.startswith(f"before APDU {debit_at} ") for r in rounds), story
    assert any(r.killed_at.startswith(f"after APDU {debit_at} ") for r in rounds), story
    assert any(r.killed_at.startswith("after APDU 2 (805a)") for r in rounds), story
    assert any(r.killed_after_debit for r in rounds), story
    assert any(e.reason == "torn_purchase_recovered" for e in accepted), f"nothing settled\n{story}"
