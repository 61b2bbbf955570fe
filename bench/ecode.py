"""Benchmark: the electronic-card path, all figures of the e-code issue in one run.

1. Serial scan-to-verdict: from the simulated scanner writing a code on a real pty to the
   verdict (our SerialScanner + CodeVerifier with the on-disk replay cache, native SM2),
   median and p95, against the naive driver (blocking ``read_until`` in the caller's thread)
   doing the same verification, with the ratio.
2. Verify throughput per back-end and cache (bench/ecode_verify.py).
3. Decode rate on >= 200 distorted images in four levels, zxing-cpp vs OpenCV, and decode
   frames per second at 640x480 and 1280x720 (bench/ecode_decode.py).

    .venv/bin/python bench/ecode.py [--rounds 5] [--scans 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import ecode_decode
import ecode_verify
from serial_scan import BaselineReader, percentile

from drivers.serial_scanner import SerialScanner
from firmware_sim.ecode_issuing import issue_code, issue_ecode_world, read_private_key
from firmware_sim.scanner import PtyScanner
from terminal.crypto.signing import Algorithm, sm2_backend
from terminal.ecode.replay import ReplayCache
from terminal.ecode.trustlist import load_trust_list
from terminal.ecode.verify import CodeVerifier
from terminal.host.clock import SystemClock


def scan_to_verdict(rounds: int, scans: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = issue_ecode_world(Path(tmp) / "world")
        algorithm = Algorithm(world["algorithm"])
        root = bytes.fromhex(Path(world["root"]["public_key"]).read_text().strip())
        clock = SystemClock()
        trust = load_trust_list(world["trust_list"], root, algorithm)
        issuer = world["issuer"]
        key = read_private_key(issuer["private_key"], algorithm)
        card = world["card"]

        def fresh() -> str:
            return issue_code(
                key,
                bytes.fromhex(issuer["key_id"]),
                algorithm,
                card["region"],
                card["card_number"],
                card["category"],
                int(time.time()),
            )

        times: dict[str, list[float]] = {"ours": [], "baseline": []}
        medians: dict[str, list[float]] = {"ours": [], "baseline": []}
        with PtyScanner(Path(tmp)) as device:
            for _ in range(rounds):
                for name in ("ours", "baseline"):
                    cache = ReplayCache(Path(tmp) / f"replay-{name}.db", clock)
                    verifier = CodeVerifier(trust, cache, clock)
                    reader = (
                        SerialScanner(device.port)
                        if name == "ours"
                        else BaselineReader(device.port)
                    )
                    if name == "ours":
                        assert reader.wait_connected(5)
                    codes = [fresh() for _ in range(scans)]
                    per_round = []
                    for text in codes:
                        started = time.perf_counter()
                        device.scan(text)
                        event = reader.read(5) if name == "ours" else reader.read()
                        assert event is not None
                        result = verifier.verify(event.text)
                        per_round.append((time.perf_counter() - started) * 1000)
                        assert result.verdict.value == "valid", result.reason
                    reader.close()
                    cache.close()
                    times[name] += per_round
                    medians[name].append(statistics.median(per_round))
    print(
        f"\nserial scan-to-verdict over a pty, {rounds} rounds x {scans} codes "
        f"(SM2 {sm2_backend()}, on-disk replay cache)"
    )
    print(f"{'path':<28}{'median ms':>10}{'p95 ms':>9}  round medians ms")
    for name, label in (("ours", "ours (SerialScanner)"), ("baseline", "baseline (read_until)")):
        spread = " ".join(f"{m:.2f}" for m in medians[name])
        print(
            f"{label:<28}{statistics.median(times[name]):>10.2f}"
            f"{percentile(times[name], 0.95):>9.2f}  {spread}"
        )
    ratio = statistics.median(times["baseline"]) / statistics.median(times["ours"])
    print(f"baseline/ours median x{ratio:.2f}; target: <= 5 ms median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scans", type=int, default=200)
    args = parser.parse_args()
    scan_to_verdict(args.rounds, args.scans)
    print()
    sys.argv = [sys.argv[0], str(args.rounds), "200"]
    ecode_verify.main()
    print()
    ecode_decode.decode_rates(50, 1)
    ecode_decode.throughput(args.rounds, 1)


if __name__ == "__main__":
    main()
