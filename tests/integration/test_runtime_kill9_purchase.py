"""kill -9 the validator mid-purchase, restart it, let it sync: the card, the journal and the
back office agree.

The validator runs as ``onecard run --profile validator`` in a child process, with a PSAM
in vpcd slot 2 and a back office (the real server, SQLite) configured for sync. Each round
starts the child, presents the e-purse card in slot 0 and kills the child with SIGKILL at a
point chosen at random: just before or just after the card answers one of its APDUs (the
DEBIT among them), or once the child has told the rider. The card lives in this process, so
every debit it commits is seen here, with the counter it ran under.

At the end the journal is synced to the back office and:

* no purchase is charged twice: one debit per tap at most, each journaled once at most;
* no journal entry without a debit: every accepted fare names a counter the card debited;
* the back office stores exactly the journal (every seq once, the same hashes);
* the card's balance is its start minus the fares of all debits.

* every debit is journaled: a kill between the card's DEBIT and the journal append leaves
  the purchase in the validator's durable pending record, and the card's next tap settles
  it (GET TRANSACTION PROVE) and journals it - so after one last, unkilled tap nothing is
  missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers.backoffice_storage import storage_for
from helpers.pcscd_service import wait_for_service
from test_runtime_validator import ADULT_FARE, SERVICE, TERMINAL_ID, epurse_card, write_world

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key
from backoffice.server import BackOffice
from drivers.pcsc import PcscBackend, wait_for_card
from firmware_sim.psam_applet import build_psam
from firmware_sim.vpcd import reader_name
from terminal.devices.reader import CardChannel
from terminal.host.clock import SystemClock
from terminal.journal.store import Journal
from terminal.sync.auth import load_credentials
from terminal.sync.uploader import Uploader
from terminal.transit.selection import read_balance

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

ROUNDS = 10
SEED = 20261127
START_BALANCE = 100_000
PSAM_SLOT = 2
CARD_SLOT = 0
INS_DEBIT = 0x54
CALIBRATION = 10**6
"""A kill point no tap reaches: the calibration tap runs to the end."""
ONECARD = (sys.executable, "-m", "onecard.cli")
CHILD_TIMEOUT = 60.0
"""Seconds to wait for the child to start or to tell the rider (a hang, not a timing)."""
# The applist the back office publishes: the same fare rules as the validator test.
APPLIST = {
    "services": [
        {
            "code": SERVICE,
            "name": "Bus line 1",
            "scope": "sichuan-chongqing",
            "fare": ADULT_FARE,
            "category_fares": {"4": 0},
            "valid_from": "2020-01-01",
        }
    ]
}


@dataclass
class KillPoint:
    """Where a round kills the child: at the card's ``apdu``-th APDU of the tap - as the card
    receives it (``before``: the command is in flight, the card still carries it out) or once
    the card has answered it - or, with ``apdu`` None, once the rider was told."""

    apdu: int | None
    before: bool = False

    def __str__(self) -> str:
        if self.apdu == CALIBRATION:
            return "calibration, not killed"
        if self.apdu is None:
            return "after told"
        return f"{'before' if self.before else 'after'} APDU {self.apdu}"


@dataclass
class Round:
    point: KillPoint
    debits: list[int] = field(default_factory=list)
    """Counters the card debited under during this round."""
    killed_after_debit: bool = False
    """The switch killed the child after this round's DEBIT was committed on the card."""
    killed_at: str = ""


class KillSwitch:
    """Wraps the simulated card's ``process``: counts the APDUs of the current tap, records
    each committed debit (the counter moves), and kills the child at the chosen APDU."""

    def __init__(self, card: object, applet: object) -> None:
        self._applet = applet
        self._process: Callable[[bytes], bytes] = card.process
        card.process = self.process  # the vpcd bridge calls card.process for every APDU
        self._lock = threading.Lock()
        self.round: Round | None = None
        self.pid: int | None = None
        self.count = 0
        self.killed = threading.Event()

    def arm(self, round_: Round, pid: int) -> None:
        with self._lock:
            self.round, self.pid, self.count = round_, pid, 0
            self.killed.clear()

    def disarm(self) -> None:
        with self._lock:
            self.pid = None

    def kill(self, where: str) -> None:
        # Called with the lock held.
        if self.pid is not None and not self.killed.is_set():
            os.kill(self.pid, signal.SIGKILL)
            self.killed.set()
            assert self.round is not None
            self.round.killed_at = where

    def process(self, apdu: bytes) -> bytes:
        with self._lock:
            self.count += 1
            point = self.round.point if self.round is not None else None
            hit = point is not None and point.apdu == self.count
            if hit and point.before:
                self.kill(f"before APDU {self.count} ({apdu[:2].hex()})")
            counter = self._applet.counter
            answer = self._process(apdu)
            debited = self._applet.counter != counter
            if debited and self.round is not None:
                self.round.debits.append(counter)
            if hit and not point.before:
                self.kill(f"after APDU {self.count} ({apdu[:2].hex()})")
            if hit and self.round is not None:
                # The card has debited in this tap (DEBIT itself - a command already in flight
                # is carried out whether its sender lives or not - or the T=0 GET RESPONSE
                # that would fetch DEBIT's answer): the child died before its journal append.
                self.round.killed_after_debit = bool(self.round.debits)
            return answer


class Child:
    """``onecard run --profile <profile>`` (a validator unless told) with its output lines
    on a queue."""

    def __init__(self, config: Path, profile: str = "validator") -> None:
        self.process = subprocess.Popen(
            [*ONECARD, "run", "--profile", profile, "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=self._drain, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def wait_for(self, predicate: Callable[[str], bool]) -> str | None:
        """The first output line that satisfies ``predicate``; None if the child ended."""
        while True:
            try:
                line = self.lines.get(timeout=CHILD_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"the validator said nothing: {''.join(self.stderr)[-2000:]}")
            if line is None:
                return None
            if predicate(line):
                return line

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        for thread in self._threads:
            thread.join(timeout=10)


def sync_journal(tmp: Path, terminal_id: str) -> tuple[list[Any], int]:
    """The journal in ``tmp`` (verified) uploaded to the back office of ``creds.toml`` to
    the end, as a restarted terminal does: its entries and its last seq."""
    clock = SystemClock()
    with Journal.open(tmp / "journal.db", terminal_id, clock) as journal:
        assert journal.verify().ok
        uploader = Uploader(journal, load_credentials(tmp / "creds.toml"), clock)
        for _ in range(100):
            if uploader.run_once().pending == 0:
                break
        return list(journal.entries()), journal.stats().last_seq


def card_balance(inserted: Any) -> int:
    """The e-purse balance of the card ``inserted`` put back, read through pcscd."""
    inserted.bridge.insert()
    assert wait_for_card(inserted.reader, present=True)
    connection = PcscBackend().connect(inserted.reader)
    try:
        return read_balance(CardChannel(connection))
    finally:
        connection.close()
        inserted.remove()


def told(line: str) -> bool:
    return line.startswith(("[ACCEPTED]", "[REFUSED]", "[ERROR]"))


@contextlib.contextmanager
def enrolled_office(
    tmp_path: Path, terminal_id: str, published: dict[str, object]
) -> Iterator[tuple[Any, Path]]:
    """A back office (the real server, SQLite) with the documents ``published`` (kind ->
    body) and ``terminal_id`` enrolled: (storage, the terminal's credentials file)."""
    key = generate_publication_key()
    with storage_for("sqlite", tmp_path) as storage:
        backoffice = BackOffice(storage, key)
        for kind, body in published.items():
            backoffice.publish(kind, body)
        server = backoffice.serve()
        secret = os.urandom(32)
        storage.enrol(terminal_id, secret, SystemClock().now())
        credentials = tmp_path / "creds.toml"
        credentials.write_text(
            format_credentials(terminal_id, secret, server.url, key, new_token_key(), None)
        )
        credentials.chmod(0o600)
        try:
            yield storage, credentials
        finally:
            server.shutdown()


@pytest.fixture
def office(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    with enrolled_office(tmp_path, TERMINAL_ID, {"applist": APPLIST}) as served:
        yield served


def write_config(tmp: Path, psam: str, card_reader: str) -> Path:
    path = tmp / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "{TERMINAL_ID}"
profile = "validator"
service = "{SERVICE}"

[readers]
names = ["{card_reader}"]
psam = "{psam}"

[backoffice]
credentials = "creds.toml"
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"

[validator]
# Every round is a new tap of the same card: no repeat-tap window (a restarted validator
# rebuilds it from the journal, and would refuse the rounds as repeats).
repeat_seconds = 0

[status]
port = 0
"""
    )
    return path


def kill_points(rng: random.Random, debit_apdu: int, apdus: int) -> list[KillPoint]:
    """One kill point per round: the first rounds hit the known window (right after DEBIT),
    after the rider was told (the round that settles the first), and the moment before
    DEBIT - after a settled round, so that the tap reaches DEBIT; the rest are random."""
    points = [KillPoint(debit_apdu), KillPoint(None), KillPoint(debit_apdu, before=True)]
    while len(points) < ROUNDS:
        if rng.random() < 0.2:
            points.append(KillPoint(None))
        else:
            points.append(KillPoint(rng.randint(1, apdus), before=rng.random() < 0.5))
    return points


def test_kill9_mid_purchase(tmp_path: Path, insert_card, office) -> None:
    storage, credentials = office
    world = write_world(tmp_path)
    # This terminal's documents come from the back office, not from the world's publisher.
    (tmp_path / "documents" / "applist.json").unlink()
    (tmp_path / "creds.toml").write_bytes(credentials.read_bytes())
    (tmp_path / "creds.toml").chmod(0o600)
    names = wait_for_service()
    card_reader = reader_name(CARD_SLOT, names)
    assert card_reader is not None
    psam = insert_card(card=build_psam(world["keyset"]), slot=PSAM_SLOT)
    config = write_config(tmp_path, psam.reader, card_reader)
    # The application list, downloaded before the first tap (the runtime downloads in the
    # background, so without it the very first tap could meet no list).
    sync = subprocess.run(
        [
            *(*ONECARD, "sync", "--once", "--credentials", str(tmp_path / "creds.toml")),
            *("--journal", str(tmp_path / "journal.db")),
            *("--documents", str(tmp_path / "documents")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # (Exit 14: the back office has published no hotlist or trust list; not needed here.)
    summary = json.loads(sync.stdout)
    assert summary["documents"]["applist"]["outcome"] == "applied", sync.stdout + sync.stderr

    card, applet = epurse_card(world, "genuine-cq-2.0", balance=START_BALANCE, serial=9)
    switch = KillSwitch(card, applet)
    inserted = insert_card(card=card, slot=CARD_SLOT)
    inserted.remove()

    # A first, unkilled tap measures where the DEBIT falls among the tap's card APDUs.
    calibration = Round(KillPoint(CALIBRATION))
    child = Child(config)
    try:
        assert child.wait_for(lambda line: '"started"' in line), "".join(child.stderr)
        switch.arm(calibration, child.process.pid)
        debit_at: list[int] = []
        original = switch._process

        def spy(apdu: bytes) -> bytes:
            if len(apdu) > 1 and apdu[1] == INS_DEBIT:
                debit_at.append(switch.count)
            return original(apdu)

        switch._process = spy
        inserted.bridge.insert()
        assert wait_for_card(inserted.reader, present=True)
        assert child.wait_for(told), "".join(child.stderr)
        switch._process = original
        apdus = switch.count
        switch.disarm()
    finally:
        child.kill()
    inserted.remove()
    assert calibration.debits == [0] and len(debit_at) == 1, (calibration, debit_at)

    rng = random.Random(SEED)
    rounds = [calibration]
    for point in kill_points(rng, debit_at[0], apdus):
        round_ = Round(point)
        rounds.append(round_)
        child = Child(config)
        try:
            assert child.wait_for(lambda line: '"started"' in line), "".join(child.stderr)
            switch.arm(round_, child.process.pid)
            inserted.bridge.insert()
            assert wait_for_card(inserted.reader, present=True)
            if point.apdu is None or point.apdu > apdus:
                child.wait_for(told)
                round_.killed_at = "after told"
            else:
                # The switch kills it in the card's APDU handler; the output ends with it. A
                # tap that settles a pending purchase takes another path and may not reach
                # this APDU: it is told, and killed then.
                if child.wait_for(told) is not None:
                    round_.killed_at = "after told (kill point not reached)"
                else:
                    assert switch.killed.is_set(), f"{point}: the child ended by itself"
        finally:
            switch.disarm()
            child.kill()
        inserted.remove()

    # One last tap, not killed: it settles whatever purchase the last kill left pending (or,
    # with nothing pending, is a ride of its own).
    settle = Round(KillPoint(CALIBRATION))
    rounds.append(settle)
    child = Child(config)
    try:
        assert child.wait_for(lambda line: '"started"' in line), "".join(child.stderr)
        switch.arm(settle, child.process.pid)
        inserted.bridge.insert()
        assert wait_for_card(inserted.reader, present=True)
        assert child.wait_for(told), "".join(child.stderr)
    finally:
        switch.disarm()
        child.kill()
    inserted.remove()

    # Restarted once more, the terminal syncs what it journaled (here in-process, to the end).
    entries, last_seq = sync_journal(tmp_path, TERMINAL_ID)
    # The card's balance, read through pcscd, is the object's.
    balance = card_balance(inserted)
    assert balance == applet.balance

    debits = [counter for r in rounds for counter in r.debits]
    accepted = [e for e in entries if e.decision == "accept" and e.kind == "card"]
    journaled = [int(e.extra["counter"]) for e in accepted]
    # Never charged twice: one debit per tap, each counter once, each journaled once.
    assert all(len(r.debits) <= 1 for r in rounds), "\n".join(map(str, rounds))
    assert len(debits) == len(set(debits)) == applet.counter
    assert len(journaled) == len(set(journaled)), "a purchase journaled twice"
    # No fare journaled without a debit on the card.
    assert set(journaled) <= set(debits)
    assert all(e.amount == ADULT_FARE for e in accepted)
    # A TAC for every purchase the terminal saw finish; a settled one found in the card's
    # purchase log (which holds no TAC) is marked recovered instead.
    assert all(e.extra.get("tac") or e.extra.get("recovered") for e in accepted)
    assert START_BALANCE - balance == ADULT_FARE * len(debits)
    # The back office holds exactly the journal.
    stored = storage.entries(TERMINAL_ID, 0, last_seq + 10)
    assert [s["seq"] for s in stored] == [e.seq for e in entries] == list(range(1, last_seq + 1))
    assert [s["hash"] for s in stored] == [e.hash for e in entries]
    assert sum(s["amount"] or 0 for s in stored if s["decision"] == "accept") == sum(
        e.amount or 0 for e in accepted
    )
    # Every debit is in the journal: the pending record closed the window between the card's
    # DEBIT and the journal append.
    missing = sorted(set(debits) - set(journaled))
    assert missing == [], "\n".join(map(str, rounds))
    assert any(r.killed_after_debit for r in rounds), "the first round kills right after DEBIT"
    assert any(e.reason == "torn_purchase_recovered" for e in accepted), "nothing was settled"
