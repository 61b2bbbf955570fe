"""Never charge twice, never go quiet (issue 17), through pcscd + vpcd:

* a card left on the reader across a restart of the runtime is read again - a card found
  at start is a tap - and refused by the window rebuilt from the journal: the validator
  does not charge it again, the gate does not open again;
* after pcscd restarts, a fresh card pays with the PSAM again, the runtime never restarted
  (the PSAM module reopened its connection), and the status shows the PSAM's reconnection;
* a background worker that raises is restarted by the supervisor and shown on /health.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import InsertedCard
from helpers.pcscd_service import restart_pcscd
from test_runtime_gate import get
from test_runtime_gate import world as gate_world  # noqa: F401 - a fixture
from test_runtime_gate import write_config as write_gate_config
from test_runtime_validator import (
    ADULT_FARE,
    PSAM_SLOT,
    TERMINAL_ID,
    epurse_card,
    validator_config,
    write_world,
)

from drivers.pcsc import wait_for_card
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from onecard.runtime import build_runtime
from terminal.journal.store import Journal
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime
from terminal.runtime.supervisor import Worker

pytestmark = pytest.mark.integration

WAIT = 30.0


@contextlib.contextmanager
def running(config: Path, outputs: RecordingOutputs, *extra: Worker) -> Iterator[TerminalRuntime]:
    """``onecard run``'s runtime, built from ``config``, in a thread until the block ends."""
    runtime = build_runtime(load_config(config), outputs=outputs)
    runtime.background.extend(extra)
    with runtime.running(join_timeout=WAIT):
        yield runtime
    assert not runtime.looping


def validator_with_psam(
    tmp_path: Path, insert_card: Callable[..., InsertedCard]
) -> tuple[dict, InsertedCard, Path]:
    """The validator's world, its PSAM in slot 2, its ``terminal.toml``."""
    world = write_world(tmp_path)
    psam = insert_card(card=build_psam(world["keyset"]), slot=PSAM_SLOT)
    return world, psam, validator_config(tmp_path, psam.reader)


def test_a_card_left_on_the_validator_across_a_restart_is_not_charged_again(
    tmp_path: Path, insert_card: Callable[..., InsertedCard]
) -> None:
    world, _, config = validator_with_psam(tmp_path, insert_card)
    card, purse = epurse_card(world, "genuine-cq-2.0", balance=1000, serial=11)

    with running(config, RecordingOutputs()) as runtime:
        insert_card(card=card, slot=0)  # and left there
        assert runtime.wait_for_outcomes(1, WAIT), runtime.outcomes
        paid = runtime.outcomes[0]
    assert paid.accepted and paid.reason == "ok" and purse.counter == 1, paid

    # A new process would know nothing: a new runtime, the card still on the reader.
    with running(config, RecordingOutputs()) as runtime:
        assert runtime.wait_for_outcomes(1, WAIT), runtime.outcomes
        again = runtime.outcomes[0]
    assert again.decision == "refuse" and again.reason == "repeat_tap", again
    assert purse.counter == 1 and purse.balance == 1000 - ADULT_FARE

    with Journal.open(tmp_path / "journal.db", TERMINAL_ID) as journal:
        entries = list(journal.entries())
    assert [(e.reason, e.amount) for e in entries] == [("ok", ADULT_FARE), ("repeat_tap", None)]


def test_a_card_left_on_the_gate_across_a_restart_does_not_open_it_again(
    gate_world: dict,  # noqa: F811 - the fixture imported above
    insert_card: Callable[..., InsertedCard],
) -> None:
    config = write_gate_config(gate_world, scanner_port="")
    cards = gate_world["cards"]["cards"]
    first = RecordingOutputs()
    with running(config, first) as runtime:
        insert_card(card=build_card(load_profile(cards["genuine-cq-2.0"]["file"])), slot=0)
        assert runtime.wait_for_outcomes(1, WAIT), runtime.outcomes
        entered = runtime.outcomes[0]
    assert entered.accepted and entered.gate_opened and first.gate_openings == 1, entered

    failures = []

    def fails_once(stop: threading.Event) -> None:
        failures.append(1)
        if len(failures) == 1:
            raise RuntimeError("a bug nobody foresaw")
        stop.wait()

    second = RecordingOutputs()
    with running(config, second, Worker("flaky", fails_once)) as runtime:
        assert runtime.wait_for_outcomes(1, WAIT), runtime.outcomes
        again = runtime.outcomes[0]
        supervisor = runtime.supervisor
        assert supervisor is not None
        assert supervisor.wait_for(
            lambda s: (r := s.record("flaky")) is not None and r.restarts == 1, WAIT
        )
        _, body = get(runtime.status_server.port, "/health")  # type: ignore[union-attr]
    health = json.loads(body)
    assert again.decision == "refuse" and again.reason == "passback", again
    assert not again.gate_opened and second.gate_openings == 0
    workers = {w["name"]: w for w in health["workers"]}
    assert workers["flaky"]["restarts"] == 1
    assert workers["flaky"]["last_error"] == "RuntimeError: a bug nobody foresaw"
    assert workers["pcsc-watcher"]["state"] == "running"
    links = {link["name"]: link for link in health["links"]}
    assert links["pcsc"]["state"] == "up"


def test_after_a_pcscd_restart_a_fresh_card_pays_with_the_psam_again(
    tmp_path: Path, insert_card: Callable[..., InsertedCard]
) -> None:
    world, psam, config = validator_with_psam(tmp_path, insert_card)
    before, before_purse = epurse_card(world, "genuine-cq-2.0", balance=1000, serial=21)
    after, after_purse = epurse_card(
        world, "genuine-cq-2.0", card_number="A01000022", balance=1000, serial=22
    )
    with running(config, RecordingOutputs()) as runtime:
        inserted = insert_card(card=before, slot=0)
        assert runtime.wait_for_outcomes(1, WAIT), runtime.outcomes
        inserted.remove()
        assert runtime.outcomes[0].reason == "ok", runtime.outcomes

        restart_pcscd()
        # vpcd reconnects the PSAM's slot to the new pcscd by itself.
        assert psam.bridge.wait_connected(WAIT)
        assert wait_for_card(psam.reader, present=True, timeout=WAIT)

        inserted = insert_card(card=after, slot=1)
        assert runtime.wait_for_outcomes(2, WAIT), runtime.outcomes
        inserted.remove()
        paid = runtime.outcomes[1]
        links = {link["name"]: link for link in runtime.status.snapshot()["links"]}
    assert paid.accepted and paid.reason == "ok", paid
    assert before_purse.counter == 1 and after_purse.counter == 1
    assert after_purse.balance == 1000 - ADULT_FARE
    assert links["psam"]["state"] == "up" and links["psam"]["reconnects"] == 1, links
    assert links["pcsc"]["reconnects"] >= 1
