"""onecard sim issue world: the new samples are personalised with genuine keys derived by the
simulator's crypto (Zhejiang factor included) and listed with their verdict and purpose."""

from __future__ import annotations

import datetime
import json
import tomllib

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
from firmware_sim.profile import format_profile, load_profile, load_sample, parse_profile
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


def test_separate_tac_master_gives_each_epurse_its_dtk(tmp_path) -> None:
    """The separate-master TAC scheme: issuer-keys.toml holds a TAC master per algorithm,
    each e-purse's profile its DTK (diversified from it like the DPK), and the profile
    round-trips it; the default world's e-purses hold none and its file no TAC master."""
    default = issue_world(tmp_path / "default", datetime.date(2024, 1, 1))
    assert default["tac_scheme"] == "dpk-variant"
    assert "tac =" not in (tmp_path / "default" / "issuer-keys.toml").read_text()
    plain = load_profile(default["cards"]["tunion-plain"]["file"])
    assert plain.tunion is not None and plain.tunion.tac_key is None

    out = tmp_path / "separate"
    manifest = issue_world(out, datetime.date(2024, 1, 1), tac_scheme="separate-master")
    assert oct((out / "issuer-keys.toml").stat().st_mode & 0o777) == "0o600"
    tables = tomllib.loads((out / "issuer-keys.toml").read_text())
    masters = MasterKeys.coerce(load_key_file(out / "keys.toml"))
    for name in ("tunion-plain", "genuine-sc-3.0-transit"):
        profile = load_profile(manifest["cards"][name]["file"])
        settings = profile.tunion
        assert settings is not None and settings.tac_key is not None
        table = tables["des3" if settings.algorithm == crypto.DES3 else "sm4"]
        assert bytes.fromhex(table["purchase"]) == masters.purchase_master(settings.algorithm)
        info = settings.public_info
        dtk = crypto.tac_card_key(
            settings.algorithm, bytes.fromhex(table["tac"]), info.issuer_id, info.app_serial
        )
        assert settings.tac_key == dtk and settings.tac_key != settings.purchase_key
        assert parse_profile(format_profile(profile), "x.toml").tunion == settings
    with pytest.raises(ValueError, match="unknown TAC key scheme"):
        issue_world(tmp_path / "bad", tac_scheme="dtk")


def test_add_tunion_tac_scheme_options() -> None:
    """``add_tunion``'s TAC scheme: the DTK from the TAC master with separate-master; a TAC
    master with the default scheme, or separate-master without one, is refused."""
    from firmware_sim.tunion_applet import add_tunion

    keys = MasterKeys("000000000001", {(crypto.DES3, "purchase"): bytes(range(16))})
    tac_master = bytes(range(16, 32))
    profile = load_sample("chongqing-2.0")
    applet = add_tunion(
        build_card(profile), keys, tac_scheme="separate-master", tac_master=tac_master
    )
    info = applet.public_info
    assert applet._tac_key == crypto.tac_card_key(
        crypto.DES3, tac_master, info.issuer_id, info.app_serial
    )
    assert add_tunion(build_card(profile), keys)._tac_key is None
    for kwargs, words in [
        ({"tac_master": tac_master}, "for the separate-master TAC scheme"),
        ({"tac_scheme": "separate-master"}, "needs the TAC master or key"),
        ({"tac_scheme": "dtk"}, "unknown TAC key scheme"),
    ]:
        with pytest.raises(ValueError, match=words):
            add_tunion(build_card(profile), keys, **kwargs)


@pytest.mark.parametrize("name", ["genuine-sc-3.0-transit", "tunion-plain", "tunion-bit31"])
def test_epurses_hold_their_damk_and_the_worlds_psam_blocks_them(world, name: str) -> None:
    """The key file's maintenance masters: every e-purse holds its DAMK, and a PSAM made
    from the same key file computes the MAC that blocks it (80 1A, 80 FA 05 00, 84 1E)."""
    from firmware_sim.psam_applet import build_psam

    _, manifest, masters = world
    profile = load_profile(manifest["cards"][name]["file"])
    settings = profile.tunion
    assert settings is not None
    alg, info = settings.algorithm, settings.public_info
    master = masters.maintenance_master(alg)
    assert master is not None
    damk = crypto.maintenance_key(alg, master, info.issuer_id, info.app_serial)
    assert settings.maintenance_key == damk != settings.purchase_key
    card = build_card(profile, contactless=True)
    card.power_on()
    assert tx(card, "00A4040008A000000632010105")[1] == 0x9000
    sam = build_psam(masters)
    sam.power_on()
    assert tx(sam, "00A4040006D15600000590")[1] == 0x9000
    version = {crypto.DES3: "02", crypto.SM4: "03"}[alg]
    data = info.serial_low8 + info.issuer_id
    assert tx(sam, f"801A45{version}10" + data.hex()) == (b"", 0x9000)
    random, _ = tx(card, "0084000004")
    mac, sw = tx(sam, "80FA050010" + random.hex() + "00000000" + "841E000004800000")
    assert sw == 0x9000
    assert tx(card, "841E000004" + mac.hex()) == (b"", 0x9000)
    assert tx(card, "00A4040008A000000632010105")[1] == 0x6283
