"""``onecard sim card``: a simulated card attached by the CLI, read by another process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from drivers.pcsc import wait_for_card
from firmware_sim.profile import sample_profile_path
from firmware_sim.vpcd import reader_name

pytestmark = pytest.mark.integration


def start_sim(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "onecard.cli", "sim", "card", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    banner = process.stdout.readline()  # printed once the card is in the slot
    assert "vpcd slot" in banner, process.stderr.read() if process.poll() is not None else banner
    return process


@pytest.mark.parametrize(
    ("args", "slot", "interface", "region"),
    [
        ((), 0, "contact", "50"),
        (
            ("--profile", str(sample_profile_path("sichuan-3.0")), "--slot", "3", "--contactless"),
            3,
            "contactless",
            "51",
        ),
    ],
)
def test_sim_card_until_sigterm(pcscd, args, slot, interface, region):
    name = reader_name(slot, pcscd)
    process = start_sim(*args)
    try:
        assert wait_for_card(name, present=True)
        result = subprocess.run(
            [sys.executable, "-m", "onecard.cli", "read", "--reader", name, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        data = json.loads(result.stdout)
        assert data["interface"] == interface and data["region"].startswith(region)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert wait_for_card(name, present=False)


def test_sim_card_unknown_profile_is_a_clear_error(pcscd):
    result = subprocess.run(
        [sys.executable, "-m", "onecard.cli", "sim", "card", "--profile", "no-such-card"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 10
    assert "no-such-card" in result.stderr and "chongqing-2.0" in result.stderr
