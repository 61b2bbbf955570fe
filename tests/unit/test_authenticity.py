"""Every verdict of the card verification flow, with in-process simulated cards."""

from __future__ import annotations

import datetime

import pytest
from card_exchange import InProcessConnection

from firmware_sim.issuing import CARD_KINDS, issue_world
from firmware_sim.profile import load_profile, load_sample
from firmware_sim.ssc_applet import build_card
from terminal import ldt33
from terminal.pki.truststore import load_trust_store
from terminal.reader import CardChannel
from terminal.secure.software import SoftwareSecureModule
from terminal.ssc.authenticity import Check, Verdict, verify_card

TODAY = datetime.date(2026, 11, 27)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return issue_world(tmp_path_factory.mktemp("world"), TODAY)


@pytest.fixture(scope="module")
def module(world):
    return SoftwareSecureModule.from_file(world["keys"])


@pytest.fixture(scope="module")
def store(world):
    return load_trust_store(world["trust_store"], TODAY)


def run(card_file, module, store, **kwargs):
    card = build_card(load_profile(card_file))
    connection = InProcessConnection(card)
    channel = CardChannel(connection)
    historical = ldt33.historical_bytes(connection.atr)
    return verify_card(channel, historical, module, store, TODAY, **kwargs), channel


@pytest.mark.parametrize("name", list(CARD_KINDS))
def test_every_issued_card_gets_its_verdict(world, module, store, name):
    card = world["cards"][name]
    verification, _channel = run(card["file"], module, store)
    assert verification.verdict.value == card["expected"], verification.reason


def test_genuine_3_0_card_nine_apdus_and_holder_unlocked(world, module, store):
    verification, channel = run(world["cards"]["genuine-sc-3.0"]["file"], module, store)
    assert verification.verdict is Verdict.GENUINE
    assert verification.read.holder is not None and verification.read.unreadable == ()
    assert {name: c.check for name, c in verification.checks.items()} == {
        "internal_auth": Check.PASSED,
        "external_auth": Check.PASSED,
        "pki": Check.PASSED,
    }
    assert channel.apdu_count == 9


def test_3_0_card_without_psam_is_verified_by_pki_alone(world, store):
    verification, channel = run(world["cards"]["genuine-sc-3.0"]["file"], None, store)
    assert verification.verdict is Verdict.GENUINE
    assert verification.read.holder is None  # RKSSSE needs a secure module
    assert [(u.file, u.sw) for u in verification.read.unreadable] == [("EF06", 0x6982)]
    assert channel.apdu_count == 5  # SELECT, EF05, SELECT PKI, READ BINARY, sign


def test_clone_is_cloned_even_without_a_secure_module(world, store):
    verification, _ = run(world["cards"]["cloned-sc-3.0"]["file"], None, store)
    assert verification.verdict is Verdict.CLONED


def test_2_0_card_without_secure_module_is_unverified(world, store):
    verification, _ = run(world["cards"]["genuine-cq-2.0"]["file"], None, store)
    assert verification.verdict is Verdict.UNVERIFIED
    assert verification.read.holder is not None


def test_forged_card_holder_data_is_not_read(world, module, store):
    verification, _ = run(world["cards"]["forged-cq-2.0"]["file"], module, store)
    assert verification.verdict is Verdict.FORGED
    assert verification.read.holder is None


def test_sample_card_without_keys_is_forged(module, store, tmp_path):
    path = tmp_path / "plain.toml"
    from firmware_sim.profile import format_profile

    path.write_text(format_profile(load_sample("chongqing-2.0")))
    verification, _ = run(path, module, store)
    assert verification.verdict is Verdict.FORGED
    assert "6A88" in verification.reason
