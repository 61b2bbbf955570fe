"""The ``onecard`` command line, run as a user runs it, against simulated cards."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.pcscd_service import start_pcscd, stop_pcscd

pytestmark = pytest.mark.integration

ONECARD = [sys.executable, "-m", "onecard.cli"]


def onecard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ONECARD, *args], capture_output=True, text=True, timeout=60)


def test_read_json(insert_card):
    card = insert_card("chongqing-2.0", slot=0)
    result = onecard("read", "--reader", card.reader, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in (
        "reader",
        "interface",
        "atr",
        "uid",
        "region",
        "card_id",
        "card_number",
        "card_number_valid",
        "category",
        "spec_version",
        "issue_date",
        "expiry_date",
        "holder",
        "unreadable",
        "apdu_count",
    ):
        assert key in data
    assert data["reader"] == card.reader
    assert data["holder"]["ssn"].count("*") == 10


def test_read_ireadcardbas(insert_card):
    card = insert_card("chongqing-2.0", slot=0)
    result = onecard("read", "--reader", card.reader, "--format", "ireadcardbas", "--reveal")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    fields = line.split("|")
    assert line.endswith("|") and len(fields) == 12
    region, ssn, card_number, card_id, name, historical, version, issued, expires, term = fields[
        :10
    ]
    assert region.startswith("50") and len(ssn) == 18 and len(card_number) == 9
    assert card_id.startswith(region) and name and len(historical) == 26
    assert version.startswith("2.0") and len(issued) == 8 and len(expires) == 8
    assert term == "000000000000"


def test_read_no_card_json_error(pcscd):
    result = onecard("read", "--reader", "No Such Reader", "--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"] == "no_reader"


def test_read_not_ssc_card(insert_card):
    from firmware_sim.cardos import CardOS

    blank = CardOS(atr=bytes.fromhex("3B6D000000814A444686605199000001AC"), protocol="T=0")
    card = insert_card(card=blank, slot=1)
    result = onecard("read", "--reader", card.reader, "--json")
    assert result.returncode == 5
    assert json.loads(result.stdout)["error"] == "not_ssc"
    result = onecard("read", "--reader", card.reader, "--format", "ireadcardbas")
    assert result.stdout.strip() == "-1"


def test_readers_json(insert_card):
    card = insert_card("chongqing-2.0", slot=3, contactless=True)
    result = onecard("readers", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["reader"]: row for row in json.loads(result.stdout)}
    assert rows[card.reader]["card_present"] and rows[card.reader]["interface"] == "contactless"


def test_pcsc_service_not_running(pcscd):
    stop_pcscd()
    try:
        result = onecard("read", "--json")
        assert result.returncode == 7
        assert json.loads(result.stdout)["error"] == "pcsc_unavailable"
        result = onecard("readers")
        assert result.returncode == 7
        assert "pcsc_unavailable" in result.stderr
    finally:
        start_pcscd()


def test_help_explains_exit_codes():
    result = onecard("read", "--help")
    assert result.returncode == 0
    assert "not a social security card" in result.stdout and "--reveal" in result.stdout
