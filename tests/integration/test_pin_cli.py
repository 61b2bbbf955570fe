"""``onecard pin verify|change`` through pcscd + vpcd."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from firmware_sim.profile import load_sample
from firmware_sim.ssc_applet import build_card

pytestmark = pytest.mark.integration


def pin(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onecard.cli", "pin", *args, "--pin-stdin", "--json"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_verify_wrong_blocked_and_counter_survives_reinsertion(insert_card):
    card_os = build_card(load_sample("chongqing-2.0"))
    card = insert_card(card=card_os, slot=0)
    ok = pin("verify", "--reader", card.reader, stdin="123456\n")
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"result": "ok", "tries_left": None}
    wrong = pin("verify", "--reader", card.reader, stdin="999999\n")
    assert wrong.returncode == 11 and json.loads(wrong.stdout)["tries_left"] == 2
    assert "999999" not in wrong.stdout + wrong.stderr
    card.remove()
    card = insert_card(card=card_os, slot=0)  # the same card, powered anew
    assert pin("verify", "--reader", card.reader, stdin="999999\n").returncode == 11
    blocked = pin("verify", "--reader", card.reader, stdin="999999\n")
    assert blocked.returncode == 12 and json.loads(blocked.stdout)["result"] == "blocked"


def test_change_pin(insert_card):
    card = insert_card("chongqing-2.0", slot=1)
    changed = pin("change", "--reader", card.reader, stdin="123456\n246810\n246810\n")
    assert changed.returncode == 0, changed.stderr
    assert pin("verify", "--reader", card.reader, stdin="246810\n").returncode == 0
    mismatch = pin("change", "--reader", card.reader, stdin="246810\n111111\n222222\n")
    assert mismatch.returncode == 10
