"""SM2 sign/verify timings: native back-end (Tongsuo via tongsuopy) against pure Python.

Run: .venv/bin/python bench/sm2.py [rounds] [iterations]
Prints the median per-operation time over ``rounds`` rounds of ``iterations`` calls.
Targets: native verify <= 0.5 ms, pure verify <= 3 ms.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from terminal.crypto import sm2, sm2_native


def _median_ms(fn: Callable[[], object], rounds: int, iterations: int) -> float:
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        per_round.append((time.perf_counter() - start) / iterations)
    return statistics.median(per_round) * 1e3


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    start = time.perf_counter()
    sm2._get_g_table()  # the lazily built fixed-base table, a one-off per process
    table_ms = (time.perf_counter() - start) * 1e3
    key = sm2.generate_private_key()
    pub = key.public_key()
    msg = b"onecard QR credential payload " * 4
    sig = sm2.sign(key, msg, public_key=pub)

    rows: list[tuple[str, float, float]] = []
    pure_v = _median_ms(lambda: sm2.verify(pub, msg, sig), rounds, iterations)
    pure_s = _median_ms(lambda: sm2.sign(key, msg, public_key=pub), rounds, iterations)
    rows.append(("pure", pure_v, pure_s))
    if sm2_native.available():
        assert sm2_native.verify(pub, msg, sig)
        nat_v = _median_ms(lambda: sm2_native.verify(pub, msg, sig), rounds, iterations)
        nat_s = _median_ms(lambda: sm2_native.sign(key, msg, public_key=pub), rounds, iterations)
        rows.append(("native", nat_v, nat_s))

    print(f"SM2 median of {rounds} rounds x {iterations} (G table built in {table_ms:.1f} ms)")
    print(f"{'back-end':<10}{'verify ms':>12}{'sign ms':>12}{'verify x':>12}{'sign x':>10}")
    for name, v, s in rows:
        print(f"{name:<10}{v:>12.3f}{s:>12.3f}{pure_v / v:>12.1f}{pure_s / s:>10.1f}")
    if len(rows) == 1:
        print("native    not available (pip install tongsuopy)")


if __name__ == "__main__":
    main()
