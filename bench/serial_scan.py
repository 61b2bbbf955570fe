"""Benchmark: scan-to-event latency over a pty, the serial scanner driver vs a naive read loop.

Latency is the time from :meth:`PtyScanner.scan` writing a frame to the pty master until
the reading side has the :class:`ScanEvent`. Ours is :class:`drivers.serial_scanner.SerialScanner`
(a reader thread, ``read(1)`` then ``in_waiting``, the frame decoder, a queue). The
baseline is the loop most scanner code starts as: ``serial.Serial(port, 9600)`` and
``read_until(b"\\r")`` in the caller's thread (pyserial's ``readline`` is ``read_until``
with LF; scanners here end frames with CR), then the AIM prefix split off. Each path has
its own simulated scanner; scans alternate between the paths, so machine noise hits both
alike. This measures the transport only - code verification is measured elsewhere.

    .venv/bin/python bench/serial_scan.py [--scans 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import string
import time
from collections.abc import Callable

import serial

from drivers.serial_scanner import SerialScanner
from firmware_sim.scanner import PtyScanner
from terminal.devices.scanframe import split_aim
from terminal.devices.scanner import ScanEvent

WAIT = 5.0
BAUD = 9600
PAYLOAD_SIZES = (48, 256)  # a short code, and one the size of an electronic-card QR


def payload(size: int, i: int) -> bytes:
    alphabet = (string.ascii_letters + string.digits).encode()
    return bytes(alphabet[(i + k) % len(alphabet)] for k in range(size))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class BaselineReader:
    """The naive driver: blocking ``read_until`` in the caller's thread."""

    def __init__(self, port: str) -> None:
        self.port = port
        self.serial = serial.Serial(port, BAUD, timeout=WAIT)

    def read(self) -> ScanEvent | None:
        line = self.serial.read_until(b"\r")
        if not line.endswith(b"\r"):
            return None
        frame = split_aim(line[:-1])
        return ScanEvent(
            text=frame.raw.decode("latin-1"),
            raw=frame.raw,
            symbology=frame.symbology,
            source=self.port,
            at=time.monotonic(),
        )

    def close(self) -> None:
        self.serial.close()


def one_scan(sim: PtyScanner, read: Callable[[], ScanEvent | None], data: bytes) -> float:
    started = time.perf_counter()
    sim.scan(data)
    event = read()
    elapsed = (time.perf_counter() - started) * 1e6
    assert event is not None and event.raw == data, "scan lost or garbled"
    return elapsed


def bench_size(size: int, scans: int, rounds: int) -> list[dict[str, object]]:
    with PtyScanner(name="ours0") as ours_sim, PtyScanner(name="base0") as base_sim:
        driver = SerialScanner(ours_sim.port, BAUD)
        baseline = BaselineReader(base_sim.port)
        try:
            paths: dict[str, tuple[PtyScanner, Callable[[], ScanEvent | None]]] = {
                "ours (SerialScanner)": (ours_sim, lambda: driver.read(WAIT)),
                "baseline (read_until)": (base_sim, baseline.read),
            }
            times: dict[str, list[float]] = {label: [] for label in paths}
            medians: dict[str, list[float]] = {label: [] for label in paths}
            for _ in range(10):  # warm-up: first-call costs are not what a kiosk pays
                for sim, read in paths.values():
                    one_scan(sim, read, payload(size, 0))
            for _ in range(rounds):
                per_round: dict[str, list[float]] = {label: [] for label in paths}
                for i in range(scans):
                    data = payload(size, i)
                    for label, (sim, read) in paths.items():
                        per_round[label].append(one_scan(sim, read, data))
                for label in paths:
                    times[label] += per_round[label]
                    medians[label].append(statistics.median(per_round[label]))
        finally:
            driver.close()
            baseline.close()
    return [
        {
            "size": size,
            "path": label,
            "median_us": statistics.median(times[label]),
            "p95_us": percentile(times[label], 0.95),
            "round_medians": medians[label],
        }
        for label in times
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=500, help="scans per path per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians reported)")
    args = parser.parse_args()

    rows = []
    for size in PAYLOAD_SIZES:
        rows += bench_size(size, args.scans, args.rounds)

    print(
        f"\nscan-to-event latency over a pty: {args.rounds} rounds x {args.scans} scans per "
        f"path, frame = ]Q1 + payload + CR"
    )
    header = f"{'payload':>7} {'path':<22} {'median us':>9} {'p95 us':>8} {'round medians us':<36}"
    print(header)
    print("-" * len(header))
    for row in rows:
        spread = " ".join(f"{m:.0f}" for m in row["round_medians"])
        print(
            f"{row['size']:>6}B {row['path']:<22} {row['median_us']:>9.0f} "
            f"{row['p95_us']:>8.0f} {spread:<36}"
        )
    print()
    for i in range(0, len(rows), 2):
        ours, base = rows[i], rows[i + 1]
        median_ratio = base["median_us"] / ours["median_us"]
        p95_ratio = base["p95_us"] / ours["p95_us"]
        print(
            f"{ours['size']}-byte payload: baseline/ours  median x{median_ratio:.2f}, "
            f"p95 x{p95_ratio:.2f}"
        )
    wire_ms = {size: (size + 4) * 10 / BAUD * 1000 for size in PAYLOAD_SIZES}
    print(
        "for scale, the same frames on a real 9600 baud line: "
        + ", ".join(f"{size} B = {ms:.0f} ms" for size, ms in wire_ms.items())
    )


if __name__ == "__main__":
    main()
