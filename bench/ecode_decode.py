"""Benchmark: electronic-card QR decoding, our pipeline (zxing-cpp) vs OpenCV's QRCodeDetector.

(a) Decode rate on a generated set of phone-screen camera frames (``firmware_sim.qr_frames``)
    in four distortion levels - clean, rotation/perspective, blur, glare - showing real codes
    from the issuing tools (SM2-signed, 159-178 characters, QR version 7 at M: what the
    terminal meets). A frame counts when the decoder returns exactly the code's text.
(b) Decode throughput (frames per second) on one core at 640x480 and 1280x720, median over
    several rounds, both decoders on the same frames, interleaved.

    .venv/bin/python bench/ecode_decode.py [--per-level 50] [--rounds 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from drivers.camera import decode_image
from firmware_sim.ecode_issuing import issue_code, issue_ecode_world, read_private_key
from firmware_sim.qr_frames import LEVELS, make_distorted_set, qr_version
from terminal.crypto.signing import Algorithm
from terminal.ssc.cardnumber import check_character


def opencv_decode(detector: cv2.QRCodeDetector) -> Callable[[np.ndarray], list[str]]:
    def decode(img: np.ndarray) -> list[str]:
        try:
            text, _points, _straight = detector.detectAndDecode(img)
        except cv2.error:
            return []
        return [text] if text else []

    return decode


def ours_decode(img: np.ndarray) -> list[str]:
    return decode_image(img)


def issued_codes(count: int, seed: int) -> list[str]:
    """Real e-codes from the issuing tools (SM2, card numbers, some with a scope): the texts
    the terminal actually meets, at their real length and QR version."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        world = issue_ecode_world(Path(tmp) / "world")
        algorithm = Algorithm(world["algorithm"])
        issuer = world["issuer"]
        key = read_private_key(issuer["private_key"], algorithm)
        codes = []
        for _ in range(count):
            body = f"{rng.choice('ABCDEFGH')}{rng.randrange(10**7):07d}"
            codes.append(
                issue_code(
                    key,
                    bytes.fromhex(issuer["key_id"]),
                    algorithm,
                    rng.choice(["500103", "510104", "500101"]),
                    body + check_character(body),
                    rng.choice("1234"),
                    int(time.time()) + rng.randrange(1000),
                    scope=rng.choice([None, "MUSEUM", "BUS"]),
                )
            )
    return codes


def decode_rates(per_level: int, seed: int) -> None:
    texts = issued_codes(25, seed)
    versions = sorted({qr_version(t) for t in texts})
    lengths = [len(t) for t in texts]
    started = time.perf_counter()
    frames = make_distorted_set(texts, per_level=per_level, seed=seed)
    print(
        f"(a) decode rate: {len(frames)} frames 640x480, {len(texts)} texts of "
        f"{min(lengths)}-{max(lengths)} chars, QR version {versions} at M "
        f"(generated in {time.perf_counter() - started:.1f} s)"
    )
    opencv = opencv_decode(cv2.QRCodeDetector())
    ok: dict[str, list[int]] = {level: [0, 0, 0] for level in LEVELS}
    for level, text, img in frames:
        ok[level][0] += ours_decode(img) == [text]
        ok[level][1] += text in opencv(img)
        ok[level][2] += 1
    print(f"{'level':<22}{'frames':>7}{'zxing-cpp':>11}{'OpenCV':>9}{'ratio':>8}")
    for level, (ours, base, n) in ok.items():
        ratio = f"{ours / base:.2f}x" if base else "inf"
        print(f"{level:<22}{n:>7}{ours / n:>10.0%} {base / n:>8.0%}{ratio:>8}")
    ours = sum(v[0] for v in ok.values())
    base = sum(v[1] for v in ok.values())
    n = sum(v[2] for v in ok.values())
    ratio = f"{ours / base:.2f}x" if base else "inf"
    print(f"{'overall':<22}{n:>7}{ours / n:>10.0%} {base / n:>8.0%}{ratio:>8}")
    print(f"  decoded frames: zxing-cpp {ours}, OpenCV {base} (target ratio >= 1.5x)")


def throughput(rounds: int, seed: int, frames_per_round: int = 20) -> None:
    cv2.setNumThreads(1)
    texts = issued_codes(5, seed)
    detector = cv2.QRCodeDetector()
    opencv = opencv_decode(detector)
    print(
        f"\n(b) throughput, one core (cv2.setNumThreads(1)), median of {rounds} rounds "
        f"x {frames_per_round} frames (half clean, half rotated/tilted)"
    )
    print(f"{'size':<11}{'zxing-cpp fps':>15}{'OpenCV fps':>12}{'ratio':>8}")
    for size in ((640, 480), (1280, 720)):
        half = frames_per_round // 2
        frames = [
            img
            for _, _, img in make_distorted_set(
                texts,
                levels=("clean", "rotation_perspective"),
                per_level=half,
                seed=seed,
                size=size,
            )
        ]
        fps: dict[str, list[float]] = {"ours": [], "opencv": []}
        for _ in range(rounds):
            # Interleaved, so machine noise hits both alike.
            for name, decode in (("ours", ours_decode), ("opencv", opencv)):
                started = time.perf_counter()
                for img in frames:
                    decode(img)
                fps[name].append(len(frames) / (time.perf_counter() - started))
        ours, base = statistics.median(fps["ours"]), statistics.median(fps["opencv"])
        label = f"{size[0]}x{size[1]}"
        print(f"{label:<11}{ours:>15.1f}{base:>12.1f}{ours / base:>7.2f}x")
    print("  target: zxing-cpp >= 30 fps at 640x480")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-level", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    decode_rates(args.per_level, args.seed)
    throughput(args.rounds, args.seed)


if __name__ == "__main__":
    main()
