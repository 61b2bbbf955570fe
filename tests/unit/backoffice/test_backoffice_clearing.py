"""Clearing (backoffice.clearing): the TAC check against TACs made the card's way by
firmware_sim (its own crypto, written from the spec apart from the back office's), the
verdicts, the clearing file and its checksum, the issuer key and operators files, and
``onecard backoffice clearing`` / ``tac-mismatches`` over both databases."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
from pathlib import Path

import pytest
from helpers.backoffice_storage import KINDS, storage_for

from backoffice.clearing import (
    MALFORMED,
    MISMATCH,
    NO_KEY,
    NO_TAC,
    VALID,
    Purchase,
    check_clearing_file,
    check_purchase,
    day_bounds,
    purchase_of_entry,
)
from backoffice.cli import add_commands
from backoffice.issuer_keys import (
    IssuerKeys,
    load_issuer_keys,
    load_operators,
    write_issuer_keys,
)
from backoffice.testing import chain_hash
from firmware_sim import crypto as card_crypto
from terminal.crypto.symmetric import SymmetricAlgorithm as Alg
from terminal.errors import ConfigError
from terminal.wire.canonical import canonical_json

ISSUER_ID = bytes.fromhex("0100690000000000")
SERIAL = bytes.fromhex("50000000000000000042")
TERMINAL_NUMBER = bytes.fromhex("500100000042")
DAY = dt.date(2026, 3, 4)
WHEN = dt.datetime(2026, 3, 4, 7, 8, 9)
CARD_ALG = {Alg.DES3: card_crypto.DES3, Alg.SM4: card_crypto.SM4}
ALG_ID = {Alg.DES3: 0x00, Alg.SM4: 0x04}


@pytest.fixture(scope="module")
def masters() -> IssuerKeys:
    # Made at test time, never committed.
    return IssuerKeys({Alg.DES3: secrets.token_bytes(16), Alg.SM4: secrets.token_bytes(16)})


def card_tac(masters: IssuerKeys, alg: Alg, amount: int, psam_serial: int, when=WHEN) -> str:
    """The TAC a firmware_sim card with this master makes."""
    flag = CARD_ALG[alg]
    dpk = card_crypto.purchase_key(flag, masters.masters[alg], ISSUER_ID, SERIAL)
    date = bytes.fromhex(when.strftime("%Y%m%d"))
    time = bytes.fromhex(when.strftime("%H%M%S"))
    tac = card_crypto.tac(flag, dpk, amount, 0x09, TERMINAL_NUMBER, psam_serial, date, time)
    return tac.hex().upper()


def extra_of(tac: str | None, alg: Alg | None, psam_serial: int = 7, when=WHEN) -> dict:
    extra: dict = {
        "counter": 3,
        "psam_serial": psam_serial,
        "issuer_id": ISSUER_ID.hex().upper(),
        "app_serial_low": SERIAL[2:].hex().upper(),
        "transaction_type": 0x09,
        "terminal_number": TERMINAL_NUMBER.hex().upper(),
        "purchase_time": when.strftime("%Y%m%d%H%M%S"),
        "mac2_verified": True,
    }
    if tac is not None:
        extra["tac"] = tac
    if alg is not None:
        extra["algorithm_id"] = ALG_ID[alg]
    return extra


def entry_body(terminal: str, seq: int, amount: int | None, extra: dict, time: float) -> str:
    entry = {
        "terminal_id": terminal,
        "seq": seq,
        "time": time,
        "kind": "card",
        "service": "bus-ride",
        "decision": "accept",
        "reason": "ok",
        "amount": amount,
        "card_token": "00" * 16,
        "region": "500000",
        "category": None,
        "extra": extra,
        "prev_hash": "0" * 64,
    }
    return canonical_json(entry).decode()


def purchase(masters, alg=Alg.DES3, **changes) -> Purchase:
    """A 200-fen purchase as journaled with its card's TAC, then ``changes`` made to it."""
    tac = card_tac(masters, alg, 200, 7)
    body = entry_body("T1", 1, 200, extra_of(tac, alg), 0.0)
    p = purchase_of_entry(body)
    assert p is not None
    return Purchase(**{**p.__dict__, **changes})


@pytest.mark.parametrize("alg", [Alg.DES3, Alg.SM4])
def test_a_cards_tac_verifies(masters, alg) -> None:
    assert check_purchase(purchase(masters, alg), masters)[0] == VALID
    # A recovered purchase does not say its algorithm: each master is tried.
    assert check_purchase(purchase(masters, alg, algorithm_id=None), masters)[0] == VALID


@pytest.mark.parametrize(
    "changes",
    [
        {"amount": 201},  # the journal says more than the card signed
        {"purchase_time": "20260304070810"},
        {"psam_serial": 8},
        {"terminal_number": "500100000043"},
        {"app_serial_low": "0000000000000043"},  # another card's key
        {"tac": "00000000"},
    ],
)
def test_anything_the_tac_covers_changed_is_a_mismatch(masters, changes) -> None:
    assert check_purchase(purchase(masters, **changes), masters)[0] == MISMATCH


def test_other_issuer_master_is_a_mismatch(masters) -> None:
    other = IssuerKeys({Alg.DES3: secrets.token_bytes(16)})
    assert check_purchase(purchase(masters), other)[0] == MISMATCH
    assert check_purchase(purchase(masters, Alg.SM4), other)[0] == NO_KEY


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer_id": None},
        {"psam_serial": None},
        {"transaction_type": 0x02},  # a load, not a purchase
        {"algorithm_id": 0x01},
        {"tac": None},  # ill-formed in the entry (not absent)
    ],
)
def test_what_cannot_be_checked_is_malformed(masters, changes) -> None:
    assert check_purchase(purchase(masters, **changes), masters)[0] == MALFORMED


def test_which_entries_are_purchases(masters) -> None:
    tac = card_tac(masters, Alg.DES3, 200, 7)
    assert purchase_of_entry(entry_body("T1", 1, None, extra_of(tac, Alg.DES3), 0)) is None
    assert purchase_of_entry(entry_body("T1", 1, 0, {}, 0)) is None  # free ride
    assert purchase_of_entry(entry_body("T1", 1, 200, {"verdict": "x"}, 0)) is None  # e-code
    recovered = {**extra_of(None, None), "recovered": True}
    p = purchase_of_entry(entry_body("T1", 1, 200, recovered, 0))
    assert p is not None and check_purchase(p, masters)[0] == NO_TAC
    hostile = {**extra_of("1e400", None), "psam_serial": True, "purchase_time": ["x"]}
    p = purchase_of_entry(entry_body("T1", 1, 200, hostile, 0))
    assert p is not None and check_purchase(p, masters)[0] == MALFORMED


# --- key files ------------------------------------------------------------------------------


def test_issuer_key_file_round_trips_and_refuses_mistakes(masters, tmp_path: Path) -> None:
    path = tmp_path / "issuer.toml"
    write_issuer_keys(masters, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_issuer_keys(path) == masters
    assert repr(masters) == "IssuerKeys(['DES3', 'SM4'])"  # never a key
    for text in (
        "",
        "[des3]\npurchase = '00'\n",
        "[des3]\npurchase = '" + "0" * 32 + "'\nirk = '" + "0" * 32 + "'\n",
        "[aes]\npurchase = '" + "0" * 32 + "'\n",
        "[des3]\n[des3]\n",
        "x = " + "[" * 100_000,
    ):
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_issuer_keys(path)
        assert "0" * 32 not in caught.value.reason  # a value is never quoted


def test_operators_file(tmp_path: Path) -> None:
    path = tmp_path / "operators.toml"
    path.write_text(
        '[operators.bus-1]\nterminals = ["T1", "T2"]\n[operators.bus-2]\nterminals = ["T3"]\n'
    )
    assert load_operators(path) == {"T1": "bus-1", "T2": "bus-1", "T3": "bus-2"}
    for text in (
        '[operators.a]\nterminals = ["T1"]\n[operators.b]\nterminals = ["T1"]\n',
        '[operators."a b"]\nterminals = []\n',
        '[operators.a]\nterminals = ["T 1"]\n',
        '[operators.a]\nterminals = "T1"\n',
        "[other]\n",
    ):
        path.write_text(text)
        with pytest.raises(ConfigError):
            load_operators(path)


# --- the run, through the CLI, on both databases --------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def ingest_bodies(storage, terminal: str, extras: list[tuple[int | None, dict]], time: float):
    """Store ``terminal``'s chain of entries with these amounts and extras."""
    from backoffice.ingest import parse_ingest_body

    prev, entries = "0" * 64, []
    for seq, (amount, extra) in enumerate(extras, start=1):
        entry = json.loads(entry_body(terminal, seq, amount, extra, time + seq))
        entry["prev_hash"] = prev
        entry["hash"] = prev = chain_hash(prev, entry)
        entries.append(entry)
    body = json.dumps({"terminal_id": terminal, "entries": entries}).encode()
    storage.ingest(terminal, parse_ingest_body(body, 5000).entries)


@pytest.mark.parametrize("kind", KINDS)
def test_clearing_run_writes_files_and_flags(masters, kind, tmp_path: Path, capsys) -> None:
    start, end = day_bounds(DAY)
    good = card_tac(masters, Alg.DES3, 200, 7)
    good_sm4 = card_tac(masters, Alg.SM4, 300, 8)
    with storage_for(kind, tmp_path) as storage:
        for terminal in ("T1", "T2", "T3"):
            storage.enrol(terminal, b"s" * 32, 0)
        ingest_bodies(
            storage,
            "T1",
            [
                (200, extra_of(good, Alg.DES3)),
                (300, extra_of(good_sm4, Alg.SM4, psam_serial=8)),
                (None, {"counter": 4}),  # a torn tap: no money, not cleared
            ],
            start + 100,
        )
        # T2 journals 250 for a purchase the card signed for 200: a mismatch.
        ingest_bodies(storage, "T2", [(250, extra_of(good, Alg.DES3))], start + 200)
        # T3's purchase is the day after: not in this day's files.
        ingest_bodies(storage, "T3", [(200, extra_of(good, Alg.DES3))], end + 10)
        if kind == "postgresql":
            url = storage.url + ("&" if "?" in storage.url else "?") + f"schema={storage.schema}"
        else:
            url = None
        db = url or str(tmp_path / "bo.sqlite")
        keys = tmp_path / "issuer.toml"
        write_issuer_keys(masters, keys)
        operators = tmp_path / "operators.toml"
        operators.write_text(
            '[operators.bus-1]\nterminals = ["T1"]\n[operators.bus-2]\nterminals = ["T2", "T3"]\n'
        )
        out = tmp_path / "out"
        argv = ["backoffice", "clearing", "--storage", db, "--date", DAY.isoformat()]
        argv += ["--out", str(out), "--issuer-keys", str(keys), "--operators", str(operators)]
        assert run_cli(argv) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["totals"]["bus-1"] == {
            "count": 2,
            "amount": 500,
            "valid_count": 2,
            "valid_amount": 500,
            "flagged_count": 0,
            "flagged_amount": 0,
        }
        assert report["totals"]["bus-2"]["flagged_count"] == 1
        assert [(f["terminal_id"], f["verdict"]) for f in report["flagged"]] == [("T2", MISMATCH)]

        data = (out / "clearing-bus-1-20260304.txt").read_bytes()
        assert check_clearing_file(data)
        lines = data.decode().splitlines()
        assert lines[0].startswith("H|ONECARD-CLEARING|1|bus-1|2026-03-04|")
        assert lines[1].split("|")[:3] == ["D", "T1", "1"] and lines[1].endswith(f"|{good}|valid")
        assert lines[2].split("|")[10:] == ["300", good_sm4, "valid"]
        assert lines[3] == "T|2|500|2|500|0|0" and lines[4].startswith("C|")
        tampered = data.replace(b"|200|", b"|201|")
        assert not check_clearing_file(tampered)
        bus2 = (out / "clearing-bus-2-20260304.txt").read_text().splitlines()
        assert [line.split("|")[-1] for line in bus2[1:-2]] == [MISMATCH]

        assert storage.tac_verdict_counts() == {VALID: 2, MISMATCH: 1}
        assert run_cli(["backoffice", "tac-mismatches", "--storage", db, "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(r["terminal_id"], r["seq"], r["amount"]) for r in rows] == [("T2", 1, 250)]
        # A second run gives the same verdicts, stored once per purchase.
        assert run_cli(argv) == 0
        capsys.readouterr()
        assert storage.tac_verdict_counts() == {VALID: 2, MISMATCH: 1}


# --- TAC key schemes (unconfirmed: configurable per algorithm in the issuer key file) ------


def separate_tac(tac_masters: IssuerKeys, alg: Alg, amount: int, psam_serial: int) -> str:
    """The TAC a firmware_sim card holding a DTK from the issuer's TAC master makes."""
    flag = CARD_ALG[alg]
    dtk = card_crypto.tac_card_key(flag, tac_masters.tac_masters[alg], ISSUER_ID, SERIAL)
    dpk = card_crypto.purchase_key(flag, tac_masters.masters[alg], ISSUER_ID, SERIAL)
    date, time = bytes.fromhex(WHEN.strftime("%Y%m%d")), bytes.fromhex(WHEN.strftime("%H%M%S"))
    tac = card_crypto.tac(
        flag, dpk, amount, 0x09, TERMINAL_NUMBER, psam_serial, date, time, dtk=dtk
    )
    return tac.hex().upper()


@pytest.mark.parametrize("alg", [Alg.DES3, Alg.SM4])
def test_the_key_files_tac_scheme_decides_which_cards_verify(masters, alg) -> None:
    with_tac = IssuerKeys(masters.masters, {a: secrets.token_bytes(16) for a in masters.masters})
    convention = card_tac(masters, alg, 200, 7)  # DPK-derived TAC key
    separate = separate_tac(with_tac, alg, 200, 7)  # DTK from the TAC master
    assert convention != separate

    def check(tac: str, keys: IssuerKeys) -> tuple[str, str]:
        p = purchase_of_entry(entry_body("T1", 1, 200, extra_of(tac, alg), 0.0))
        assert p is not None
        return check_purchase(p, keys)

    assert check(convention, masters)[0] == VALID
    assert check(separate, with_tac) == (VALID, f"verifies under the {alg.name} master "
                                                "(separate-master)")  # fmt: skip
    # The wrong scheme in the key file: every card of the other scheme is flagged, and the
    # reason names the scheme tried.
    verdict, reason = check(separate, masters)
    assert verdict == MISMATCH and f"{alg.name} dpk-variant" in reason
    verdict, reason = check(convention, with_tac)
    assert verdict == MISMATCH and f"{alg.name} separate-master" in reason
    # The scheme is per algorithm: a TAC master for the other algorithm only changes nothing.
    other = next(a for a in masters.masters if a is not alg)
    partial = IssuerKeys(masters.masters, {other: with_tac.tac_masters[other]})
    assert check(convention, partial)[0] == VALID
    assert check(separate, partial)[0] == MISMATCH


def test_issuer_key_file_takes_an_optional_tac_master(masters, tmp_path: Path) -> None:
    with_tac = IssuerKeys(masters.masters, {Alg.SM4: secrets.token_bytes(16)})
    path = tmp_path / "issuer.toml"
    write_issuer_keys(with_tac, path)
    assert load_issuer_keys(path) == with_tac
    assert repr(with_tac) == "IssuerKeys(['DES3', 'SM4'], tac=['SM4'])"  # never a key
    for text, words in [
        ('[des3]\npurchase = "' + "00" * 16 + '"\ntac = "12"\n', "[des3] tac must be 32 hex"),
        ('[des3]\ntac = "' + "00" * 16 + '"\n', "[des3] has no purchase key"),
        ('[des3]\npurchase = "' + "00" * 16 + '"\ntacs = "x"\n', "unknown key 'tacs'"),
    ]:
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_issuer_keys(path)
        assert words in caught.value.reason and "00" * 16 not in caught.value.reason


@pytest.mark.parametrize("scheme", ["dpk-variant", "separate-master"])
def test_cards_issued_with_each_scheme_clear_under_the_worlds_issuer_keys(
    scheme, tmp_path: Path
) -> None:
    """firmware_sim issues a world under ``scheme``; its cards pay through the terminal's
    purchase (a simulated PSAM); the journaled purchases verify under the issuer key file
    the world wrote, and are flagged under the same masters with the other scheme."""
    from drivers.inprocess import InProcessConnection
    from firmware_sim.issuing import issue_world
    from firmware_sim.profile import load_profile
    from firmware_sim.psam_applet import build_psam
    from firmware_sim.ssc_applet import build_card
    from terminal.devices.reader import CardChannel
    from terminal.secure import PsamSecureModule
    from terminal.secure.keyfile import load_key_file
    from terminal.transit import PurchaseStatus
    from terminal.transit import purchase as pay

    manifest = issue_world(tmp_path, DAY, tac_scheme=scheme)
    assert manifest["tac_scheme"] == scheme
    keys = load_issuer_keys(str(manifest["issuer_keys"]))
    assert bool(keys.tac_masters) is (scheme == "separate-master")
    # The same masters with the other scheme: a key file that got the scheme wrong.
    wrong = (
        IssuerKeys(keys.masters)
        if keys.tac_masters
        else IssuerKeys(keys.masters, {a: secrets.token_bytes(16) for a in keys.masters})
    )
    psam = PsamSecureModule(InProcessConnection(build_psam(load_key_file(tmp_path / "keys.toml"))))
    cards = manifest["cards"]
    assert isinstance(cards, dict)
    algorithms = set()
    for seq, name in enumerate(["tunion-plain", "genuine-sc-3.0-transit"], start=1):
        profile = load_profile(cards[name]["file"])
        assert profile.tunion is not None
        assert (profile.tunion.tac_key is not None) is (scheme == "separate-master")
        algorithms.add(profile.tunion.algorithm)
        result = pay(CardChannel(InProcessConnection(build_card(profile, True))), psam, 120, WHEN)
        assert result.status is PurchaseStatus.DONE and result.tac_input is not None
        extra = {
            **result.tac_input.to_extra(),
            "tac": result.tac,
            "psam_serial": result.terminal_serial,
            "counter": result.counter,
        }
        p = purchase_of_entry(entry_body("T1", seq, 120, extra, 0.0))
        assert p is not None
        assert check_purchase(p, keys)[0] == VALID
        assert check_purchase(p, wrong)[0] == MISMATCH
    assert algorithms == {card_crypto.DES3, card_crypto.SM4}  # both ciphers covered
