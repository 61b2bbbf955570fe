"""Cards as the field has them, through the real pcscd + vpcd stack.

The sample profiles made after real card logs and reader code (domain.md 5b): a Chongqing
2.0 T=0 card without algorithm template or tag 4E, a Zhejiang county card (its own key
diversification factor), a contactless Sichuan 3.0 card with the T-Union e-purse, a plain
T-Union card of another city, and a T-Union card whose balance carries bit 31 and whose
purchase log is mostly empty records. Each is read, verified with a PSAM in a PC/SC slot,
and - where it has an e-purse - paid with and read by ``onecard purse``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.pcsc import wait_for_card
from firmware_sim.issuing import issue_world
from firmware_sim.profile import CardProfile, load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from terminal.devices.reader import CardChannel
from terminal.errors import ReaderError
from terminal.pki.truststore import load_trust_store
from terminal.secure.keyfile import load_key_file
from terminal.secure.psam import PsamSecureModule
from terminal.ssc.reading import read_card, verify_card_in_reader
from terminal.ssc.session import ReadMode
from terminal.transit import PurchaseStatus, purchase, read_balance, recover

pytestmark = pytest.mark.integration

TODAY = dt.date.today()
WHEN = dt.datetime.combine(TODAY, dt.time(8, 15, 0))
CARD_SLOT, PSAM_SLOT = 0, 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return issue_world(tmp_path_factory.mktemp("world"), TODAY)


def profile_of(world: dict, name: str) -> CardProfile:
    return load_profile(world["cards"][name]["file"])


@pytest.fixture
def psam(world, insert_card, backend):
    inserted = insert_card(card=build_psam(load_key_file(world["keys"])), slot=PSAM_SLOT)
    module = PsamSecureModule.open(backend, inserted.reader)
    yield module
    module.close()


def onecard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onecard.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- social security cards --------------------------------------------------------------------


def test_chongqing_t0_card_without_template_reads_as_the_field_does(world, insert_card, backend):
    card = insert_card(card=build_card(profile_of(world, "genuine-cq-2.0-t0")), slot=CARD_SLOT)
    reading = read_card(backend, card.reader)
    assert reading.protocol == "T=0"
    assert reading.ssc.mode is ReadMode.PER_TAG  # the card has no multi-record mode
    assert reading.ssc.fci.algorithm is None and reading.to_json()["algorithm"] == 1
    assert reading.ssc.holder is not None and reading.ssc.holder.name
    assert reading.ssc.unreadable == ()  # no tag 4E is no anomaly on a 2.0 card
    # SELECT + GET RESPONSE, the refused probe, SELECT EF05 + 7 records, SELECT EF06 + 7.
    assert reading.apdu_count == 2 + 1 + (1 + 7) + (1 + 7)


@pytest.mark.parametrize(
    ("name", "contactless"),
    [("genuine-cq-2.0-t0", False), ("genuine-zj-2.0", False), ("genuine-sc-3.0-transit", True)],
)
def test_field_cards_are_genuine_with_a_psam(world, insert_card, backend, psam, name, contactless):
    card = insert_card(card=build_card(profile_of(world, name), contactless), slot=CARD_SLOT)
    store = load_trust_store(world["trust_store"], TODAY)
    reading, verification = verify_card_in_reader(backend, card.reader, psam, store, TODAY)
    assert verification.verdict.value == "genuine", verification.reason
    assert verification.checks["internal_auth"].check.value == "passed"
    assert reading is not None and reading.ssc.holder is not None
    if name == "genuine-sc-3.0-transit":  # 3.0: EF06 unlocked by RKSSSE (key id 0A)
        assert verification.checks["external_auth"].check.value == "passed"
        assert verification.checks["pki"].check.value == "passed"


def test_zhejiang_card_keys_are_not_the_six_digit_factor(world, insert_card, backend, psam):
    """A Zhejiang card whose region reads 330381 but whose keys were made with 330381sx
    (the factor every other region uses) is not the issuer's: forged."""
    from firmware_sim import crypto
    from firmware_sim.keys import MasterKeys

    profile = profile_of(world, "genuine-zj-2.0")
    masters = MasterKeys.coerce(load_key_file(world["keys"]))
    master = masters.key(1, "irk")
    assert master is not None
    level1 = crypto.diversify(1, master, b"330381sx")  # the factor of other regions
    wrong = crypto.diversify(1, level1, profile.card.historical[5:13])
    keys = dataclasses.replace(profile.keys, irk=wrong)
    card = insert_card(card=build_card(dataclasses.replace(profile, keys=keys)), slot=CARD_SLOT)
    _reading, verification = verify_card_in_reader(backend, card.reader, psam, None, TODAY)
    assert verification.verdict.value == "forged"


def test_plain_tunion_card_is_no_social_security_card(world, insert_card):
    card = insert_card(card=build_card(profile_of(world, "tunion-plain")), slot=CARD_SLOT)
    done = onecard("read", "--reader", card.reader, "--json")
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout)["error"] == "not_ssc"


# --- e-purses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "contactless", "balance"),
    [
        ("genuine-sc-3.0-transit", True, 2000),
        ("tunion-plain", False, 12345),
        ("tunion-bit31", False, 860),
    ],
)
def test_purse_command_reads_every_transit_card(world, insert_card, name, contactless, balance):
    card = insert_card(card=build_card(profile_of(world, name), contactless), slot=CARD_SLOT)
    done = onecard("purse", "--reader", card.reader, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["balance_fen"] == balance  # bit 31 is garbage: never 21 million yuan
    assert data["apdu_count"] >= 3
    if name == "tunion-bit31":
        assert len(data["purchase_log"]) == 2  # the empty records end the log


@pytest.mark.parametrize(
    ("name", "contactless", "most_apdus"),
    [("genuine-sc-3.0-transit", True, 4), ("tunion-plain", False, 4), ("tunion-bit31", False, 5)],
)
def test_every_transit_card_pays(world, insert_card, backend, psam, name, contactless, most_apdus):
    card = insert_card(card=build_card(profile_of(world, name), contactless), slot=CARD_SLOT)
    connection = backend.connect(card.reader)
    try:
        channel = CardChannel(connection)
        before = read_balance(channel)
        result = purchase(channel, psam, 200, WHEN)
        assert result.status is PurchaseStatus.DONE and result.mac2_verified, result
        assert result.apdu_count <= most_apdus  # 5 = READ BINARY 0x15 without 9F0C
        assert result.balance_before == before < 2**31
        assert read_balance(channel) == before - 200
    finally:
        connection.close()


def test_recovery_reads_an_empty_log_as_its_end(world, insert_card, backend, psam):
    """A fresh card (no purchase yet, log of empty records) pulled before DEBIT reached it:
    the next tap finds no debit - the all-zero record ends the log - and charges nothing."""
    profile = profile_of(world, "tunion-bit31")
    assert profile.tunion is not None
    fresh = dataclasses.replace(profile.tunion, counter=0, purchase_log=(), empty_log_records=10)
    card = insert_card(card=build_card(dataclasses.replace(profile, tunion=fresh)), slot=CARD_SLOT)
    # SELECT, READ BINARY 0x15, INITIALIZE, UPDATE CAPP DATA CACHE answered; the card leaves
    # instead of answering DEBIT, before it is processed.
    card.bridge.tear_after(4)
    connection = backend.connect(card.reader)
    try:
        torn = purchase(CardChannel(connection), psam, 300, WHEN)
    finally:
        with contextlib.suppress(ReaderError):
            connection.close()
    assert torn.status is PurchaseStatus.TORN and torn.pending is not None
    assert wait_for_card(card.reader, present=False)
    card.bridge.insert()
    assert wait_for_card(card.reader, present=True)
    connection = backend.connect(card.reader)
    try:
        channel = CardChannel(connection)
        settled = recover(channel, psam, torn.pending)
        assert settled.status is PurchaseStatus.NOT_CHARGED, settled
        assert read_balance(channel) == 860
    finally:
        connection.close()


def test_trace_of_a_field_card_is_recorded(world, insert_card, tmp_path: Path):
    """`onecard read --trace` writes what crossed the wire, holder data replaced."""
    card = insert_card(card=build_card(profile_of(world, "genuine-cq-2.0-t0")), slot=CARD_SLOT)
    trace = tmp_path / "field.trace"
    done = onecard("read", "--reader", card.reader, "--json", "--trace", str(trace))
    assert done.returncode == 0, done.stderr
    text = trace.read_text(encoding="utf-8")
    assert "00A4020002EF05" in text and "00A404000F7378312E73682EC9E7BBE1B1A3D5CF]" in text
    ssn = profile_of(world, "genuine-cq-2.0-t0").holder.ssn
    assert ssn.encode().hex().upper() not in text
