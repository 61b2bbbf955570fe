"""Every verdict of the card verification flow, with in-process simulated cards."""

from __future__ import annotations

import datetime

import pytest

from drivers.inprocess import InProcessConnection
from firmware_sim.issuing import CARD_KINDS, issue_world
from firmware_sim.profile import load_profile, load_sample
from firmware_sim.ssc_applet import build_card
from terminal.devices.reader import CardChannel
from terminal.iso7816 import atr
from terminal.pki.truststore import load_trust_store
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
    historical = atr.historical_bytes(connection.atr)
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


def wrong_rkssse_card(world):
    """A genuine 3.0 card whose RKSSSE is not the one this terminal's module derives (the
    module holds another issuer's read key)."""
    import dataclasses
    import secrets

    profile = load_profile(world["cards"]["genuine-sc-3.0"]["file"])
    keys = dataclasses.replace(profile.keys, rkssse=secrets.token_bytes(16))
    return build_card(dataclasses.replace(profile, keys=keys))


def verify_on(card, module, store, **kwargs):
    connection = InProcessConnection(card)
    channel = CardChannel(connection)
    historical = atr.historical_bytes(connection.atr)
    return verify_card(channel, historical, module, store, TODAY, **kwargs), channel


def test_refused_external_authentication_reports_the_cards_word(world, module, store):
    card = wrong_rkssse_card(world)
    verification, _ = verify_on(card, module, store)
    assert verification.verdict is Verdict.GENUINE  # it holds its IRK and its private key
    refusal = verification.checks["external_auth"]
    assert refusal.check is Check.FAILED and refusal.sw is not None and refusal.sw >> 4 == 0x63C
    assert [(u.file, u.sw) for u in verification.read.unreadable] == [("EF06", refusal.sw)]


def test_a_refused_kind_of_card_is_not_asked_again(world, module, store):
    """Each refused EXTERNAL AUTHENTICATE costs the card a try: after one refusal for a
    region, the terminal stops spending the tries of that region's cards."""
    from terminal.ssc.authenticity import RkssseRefusals

    refusals = RkssseRefusals()
    card = wrong_rkssse_card(world)
    applet = card.applets[0]
    verify_on(card, module, store, rkssse_refusals=refusals)
    tries = applet.external_auth_tries
    second, channel = verify_on(card, module, store, rkssse_refusals=refusals)
    assert applet.external_auth_tries == tries  # nothing spent
    assert second.checks["external_auth"].check is Check.SKIPPED
    assert second.verdict is Verdict.GENUINE
    # SELECT, EF05, INTERNAL AUTHENTICATE, then PKI (SELECT, READ BINARY, sign): no GET
    # CHALLENGE, no EXTERNAL AUTHENTICATE, no EF06 read.
    assert channel.apdu_count == 6


def test_holder_data_that_will_not_read_leaves_the_verdict_alone(world, module, store):
    """EF06 is not evidence about authenticity: a card whose EF06 answers out of spec is
    still genuine, its EF06 reported unreadable."""
    card = build_card(load_profile(world["cards"]["genuine-cq-2.0"]["file"]))
    ef06 = next(f for f in card.mf.walk() if getattr(f, "fid", None) == 0xEF06)
    ef06.records[0] = b"\x08\x20" + bytes(5)  # a record whose length byte overruns it
    verification, _ = verify_on(card, module, store)
    assert verification.verdict is Verdict.GENUINE
    # The multi-record answer does not parse: read per tag, the odd record reported alone.
    holder = verification.read.holder
    assert holder is not None and holder.ssn is None and holder.name
    assert [(u.file, u.tag) for u in verification.read.unreadable] == [("EF06", 0x08)]
