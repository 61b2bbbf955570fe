"""E-codes issued by the tools, read by the real drivers, verified: accepted once, refused
when replayed, expired, forged or from an unknown issuer - from a pty scanner and a video."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.camera import CameraScanner
from drivers.serial_scanner import SerialScanner
from firmware_sim.ecode_issuing import issue_code, issue_ecode_world, read_private_key
from firmware_sim.qr_frames import make_scan_video
from firmware_sim.scanner import PtyScanner
from terminal.crypto.signing import Algorithm
from terminal.ecode import base45
from terminal.ecode.payload import PREFIX
from terminal.ecode.replay import ReplayCache
from terminal.ecode.trustlist import load_trust_list
from terminal.ecode.verify import CodeVerifier
from terminal.host.clock import SystemClock

pytestmark = pytest.mark.integration

EVENT_WAIT = 10.0


@pytest.fixture
def world(tmp_path):
    return issue_ecode_world(tmp_path / "world")


def code(world, issuer="issuer", at=None):
    algorithm = Algorithm(world["algorithm"])
    entry = world[issuer]
    card = world["card"]
    return issue_code(
        read_private_key(entry["private_key"], algorithm),
        bytes.fromhex(entry["key_id"]),
        algorithm,
        card["region"],
        card["card_number"],
        card["category"],
        int(time.time()) if at is None else at,
    )


def forged(text: str) -> str:
    """The same code with one signature byte changed: what a forger without the key makes."""
    raw = bytearray(base45.decode(text[len(PREFIX) :]))
    raw[-5] ^= 0x01
    return PREFIX + base45.encode(bytes(raw))


def verifier(world, tmp_path):
    algorithm = Algorithm(world["algorithm"])
    root = bytes.fromhex(Path(world["root"]["public_key"]).read_text().strip())
    clock = SystemClock()
    trust = load_trust_list(world["trust_list"], root, algorithm)
    return CodeVerifier(trust, ReplayCache(tmp_path / "replay.db", clock), clock)


def scenario(world):
    valid = code(world)
    return [
        (valid, "valid"),
        (valid, "replayed"),
        (code(world, at=int(time.time()) - 3600), "expired"),
        (forged(code(world)), "bad_signature"),
        (code(world, issuer="unknown_issuer"), "unknown_issuer"),
        (code(world, issuer="revoked_issuer"), "issuer_revoked"),
    ]


def test_codes_from_a_pty_scanner(world, tmp_path):
    check = verifier(world, tmp_path)
    with PtyScanner(tmp_path) as device, SerialScanner(device.port) as scanner:
        assert scanner.wait_connected(EVENT_WAIT)
        for text, expected in scenario(world):
            assert device.scan(text)
            event = scanner.read(timeout=EVENT_WAIT)
            assert event is not None and event.symbology == "Q1"
            assert check.verify(event.text).verdict.value == expected


def test_replay_cache_survives_a_restart(world, tmp_path):
    text = code(world)
    assert verifier(world, tmp_path).verify(text).verdict.value == "valid"
    # A new verifier on the same cache file: the terminal restarted.
    assert verifier(world, tmp_path).verify(text).verdict.value == "replayed"


def test_codes_from_a_video_file(world, tmp_path):
    steps = [(text, expected) for text, expected in scenario(world) if expected != "replayed"]
    video = make_scan_video([text for text, _ in steps], tmp_path / "scan.avi")
    check = verifier(world, tmp_path)
    verdicts = []
    with CameraScanner(str(video), realtime=False, dedupe_seconds=0.5) as camera:
        while (event := camera.read(timeout=EVENT_WAIT)) is not None:
            verdicts.append(check.verify(event.text).verdict.value)
        assert camera.exhausted
    assert verdicts == [expected for _, expected in steps]


def test_scan_cli_on_a_video_then_replayed(world, tmp_path):
    first = code(world)
    video = make_scan_video([first, first], tmp_path / "again.avi", gap_frames=40)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "onecard.cli",
            "scan",
            "--camera",
            str(video),
            "--world",
            str(tmp_path / "world"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["verdict"] for line in lines] == ["valid", "replayed"]
    assert all(line["text"] == first for line in lines)


def test_scan_image_cli_json_lines(world, tmp_path):
    from firmware_sim.qr_frames import render_code

    good, unknown = code(world), code(world, issuer="unknown_issuer")
    render_code(good, tmp_path / "good.png")
    render_code(unknown, tmp_path / "unknown.png")
    blank = tmp_path / "blank.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(blank), np.full((200, 200), 255, np.uint8))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "onecard.cli",
            "code",
            "scan-image",
            str(tmp_path / "good.png"),
            str(tmp_path / "unknown.png"),
            str(blank),
            "--world",
            str(tmp_path / "world"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("verdict") for line in lines] == ["valid", "unknown_issuer", None]
    assert lines[1]["text"] == unknown  # the text is printed even when verification fails
    assert "error" in lines[2] and "text" not in lines[2]
    assert result.returncode == 13
