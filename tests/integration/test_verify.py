"""Every verdict through the real pcscd + vpcd stack, with a software module and a PSAM."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest

from firmware_sim.issuing import CARD_KINDS, issue_world
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from terminal.pki.truststore import load_trust_store
from terminal.secure.keyfile import load_key_file
from terminal.secure.psam import PsamSecureModule
from terminal.secure.software import SoftwareSecureModule
from terminal.ssc.reading import verify_card_in_reader

pytestmark = pytest.mark.integration

TODAY = datetime.date.today()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return issue_world(tmp_path_factory.mktemp("world"), TODAY)


@pytest.mark.parametrize("name", list(CARD_KINDS))
def test_verdict_through_pcscd(world, insert_card, backend, name):
    card = world["cards"][name]
    inserted = insert_card(card=build_card(load_profile(card["file"])), slot=0)
    module = SoftwareSecureModule.from_file(world["keys"])
    store = load_trust_store(world["trust_store"], TODAY)
    _reading, verification = verify_card_in_reader(backend, inserted.reader, module, store, TODAY)
    assert verification.verdict.value == card["expected"], verification.reason


def test_genuine_3_0_card_with_psam_in_a_pcsc_slot(world, insert_card, backend):
    psam = insert_card(card=build_psam(load_key_file(world["keys"])), slot=2)
    card = insert_card(
        card=build_card(load_profile(world["cards"]["genuine-sc-3.0"]["file"])), slot=1
    )
    module = PsamSecureModule(backend.connect(psam.reader))
    try:
        store = load_trust_store(world["trust_store"], TODAY)
        reading, verification = verify_card_in_reader(backend, card.reader, module, store, TODAY)
    finally:
        module.close()
    assert verification.verdict.value == "genuine", verification.reason
    assert reading is not None and reading.ssc.holder is not None
    assert reading.apdu_count <= 10


def test_forged_card_with_psam(world, insert_card, backend):
    psam = insert_card(card=build_psam(load_key_file(world["keys"])), slot=2)
    card = insert_card(
        card=build_card(load_profile(world["cards"]["forged-cq-2.0"]["file"])), slot=0
    )
    module = PsamSecureModule(backend.connect(psam.reader))
    try:
        _reading, verification = verify_card_in_reader(backend, card.reader, module, None, TODAY)
    finally:
        module.close()
    assert verification.verdict.value == "forged"


def onecard_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onecard.cli", "verify", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_cli_json(world, insert_card):
    card = insert_card(
        card=build_card(load_profile(world["cards"]["genuine-sc-3.0"]["file"])), slot=3
    )
    result = onecard_verify(
        "--reader",
        card.reader,
        "--keys",
        world["keys"],
        "--trust",
        world["trust_store"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["verdict"] == "genuine" and data["region"].startswith("51")
    assert data["holder"]["ssn"].count("*") == 10


def test_verify_cli_not_genuine_exit_code(world, insert_card):
    card = insert_card(
        card=build_card(load_profile(world["cards"]["cloned-sc-3.0"]["file"])), slot=3
    )
    result = onecard_verify(
        "--reader",
        card.reader,
        "--trust",
        world["trust_store"],
    )
    assert result.returncode == 13
    assert json.loads(result.stdout)["verdict"] == "cloned"
