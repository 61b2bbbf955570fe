"""onecard sim issue world: the new samples are personalised with genuine keys derived by the
simulator's crypto (Zhejiang factor included) and listed with their verdict and purpose."""

from __future__ import annotations

import datetime
import json

import pytest
from helpers.card_exchange import tx

from firmware_sim import crypto
from firmware_sim.issuing import (
    CARD_KINDS,
    PURPOSE_TRANSIT,
    PURPOSE_VERIFICATION,
    TRANSIT_KINDS,
    card_keys,
    issue_world,
)
from firmware_sim.keys import MasterKeys
from firmware_sim.profile import load_profile, load_sample
from firmware_sim.spec.ssc import SSSE_NAME
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import TUnionApplet
from terminal.crypto.signing import Algorithm
from terminal.secure.keyfile import load_key_file

TODAY = datetime.date(2026, 11, 27)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    manifest = issue_world(out, TODAY, Algorithm.ECDSA_P256)
    return out, manifest, MasterKeys.coerce(load_key_file(manifest["keys"]))


def test_manifest_lists_every_card_with_verdict_and_purpose(world) -> None:
    out, manifest, _ = world
    cards = manifest["cards"]
    assert set(cards) == set(CARD_KINDS) | set(TRANSIT_KINDS)
    for name in ("genuine-cq-2.0-t0", "genuine-zj-2.0", "genuine-sc-3.0-transit"):
        assert cards[name]["expected"] == "genuine"
    assert cards["genuine-cq-2.0"]["purpose"] == PURPOSE_VERIFICATION
    assert cards["genuine-sc-3.0-transit"]["purpose"] == "verification+transit"
    for name in TRANSIT_KINDS:
        assert cards[name]["expected"] == "not_ssc" and cards[name]["purpose"] == PURPOSE_TRANSIT
    assert json.loads((out / "world.json").read_text()) == manifest
    for name, entry in cards.items():  # every file loads, holds keys where it should
        profile = load_profile(entry["file"])
        assert profile.name == name
        assert (profile.keys is not None) == (profile.has_ssse and name != "ssf33-cq-2.0")


def test_zhejiang_keys_use_the_zhejiang_factor(world) -> None:
    _, manifest, masters = world
    profile = load_profile(manifest["cards"]["genuine-zj-2.0"]["file"])
    master = masters.key(1, "irk")
    assert master is not None and profile.keys is not None
    level1 = crypto.diversify(1, master, b"330300sx")
    assert profile.keys.irk == crypto.diversify(1, level1, profile.card.historical[5:13])
    wrong = crypto.diversify(
        1, crypto.diversify(1, master, b"330381sx"), profile.card.historical[5:13]
    )
    assert profile.keys.irk != wrong


def test_genuine_new_cards_answer_a_module_computed_cryptogram(world) -> None:
    _, manifest, masters = world
    p, r = bytes.fromhex("1122334455667788"), bytes.fromhex("8877665544332211")
    for name in ("genuine-cq-2.0-t0", "genuine-zj-2.0", "genuine-sc-3.0-transit"):
        profile = load_profile(manifest["cards"][name]["file"])
        assert profile.issuer is not None
        alg = profile.card.algorithm
        master = masters.key(alg, "irk")
        assert master is not None
        card_key = crypto.ssc_card_key(alg, master, profile.issuer.region, profile.card.historical)
        expected = crypto.cryptogram(alg, crypto.session_key(alg, card_key, p), r)
        card = build_card(profile, contactless=True)
        card.power_on()
        assert tx(card, "00A404000F" + SSSE_NAME.hex())[1] == 0x9000
        assert tx(card, "0088000010" + (p + r).hex() + "08") == (expected, 0x9000), name


@pytest.mark.parametrize("name", ["genuine-sc-3.0-transit", "tunion-plain", "tunion-bit31"])
def test_epurse_purchase_keys_come_from_the_purchase_masters(world, name: str) -> None:
    _, manifest, masters = world
    profile = load_profile(manifest["cards"][name]["file"])
    settings = profile.tunion
    assert settings is not None
    master = masters.purchase_master(settings.algorithm)
    assert master is not None
    info = settings.public_info
    expected = crypto.purchase_key(settings.algorithm, master, info.issuer_id, info.app_serial)
    assert settings.purchase_key == expected
    card = build_card(profile)
    assert any(isinstance(a, TUnionApplet) for a in card.applets)


def test_card_keys_refuse_a_plain_tunion_profile() -> None:
    with pytest.raises(ValueError, match="no social security"):
        card_keys(load_sample("tunion-plain"), MasterKeys("000000000001", {}))
