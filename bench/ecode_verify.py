"""Electronic-card code verification timings: native SM2 against pure SM2 (and P-256), with
an in-memory and an on-disk replay cache.

Run: .venv/bin/python bench/ecode_verify.py [rounds] [codes per round] [dir for the file]
Prints the median per-verify time over ``rounds`` rounds (each round verifies fresh, valid
codes, so every verify also records its code in the replay cache) and the ratio to pure
SM2 with the same cache. Target: native SM2 verify <= 1 ms median.
The on-disk cache is SQLite WAL with synchronous=FULL: one fsync per accepted code, so
its cost depends on the disk under the directory given (default: the temporary directory).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time

from firmware_sim.ecode_issuing import issue_code, issuer_entry, make_issuer_key
from terminal.crypto.signing import (
    BACKEND_ENV,
    Algorithm,
    generate_private_key,
    native_sm2_usable,
    public_key_bytes,
    sm2_backend,
)
from terminal.ecode.replay import ReplayCache
from terminal.ecode.trustlist import parse_trust_list, sign_trust_list
from terminal.ecode.verify import CodeVerdict, CodeVerifier
from terminal.host.clock import FixedClock

NOW = 1_795_000_000


def _world(alg: Algorithm) -> tuple[object, list[str]]:
    t = dt.datetime.fromtimestamp(NOW, dt.UTC)
    root = generate_private_key(alg)
    key, key_id = make_issuer_key(alg)
    entry = issuer_entry(key, alg, t - dt.timedelta(days=1), t + dt.timedelta(days=1))
    trust = parse_trust_list(sign_trust_list([entry], 1, root, alg, t), public_key_bytes(root), alg)
    return trust, [key, key_id]  # type: ignore[list-item]


def _median_ms(alg: Algorithm, cache_kind: str, rounds: int, count: int, where: str) -> float:
    trust, (key, key_id) = _world(alg)
    clock = FixedClock(NOW)
    per_round = []
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        for r in range(rounds):
            path = os.path.join(tmp, f"replay-{r}.sqlite")
            cache = (
                ReplayCache.in_memory(clock) if cache_kind == "memory" else ReplayCache(path, clock)
            )
            verifier = CodeVerifier(trust, cache, clock)  # type: ignore[arg-type]
            codes = [
                issue_code(key, key_id, alg, "500101", "D2143569X", "3", NOW)  # type: ignore[arg-type]
                for _ in range(count)
            ]
            start = time.perf_counter()
            for text in codes:
                verdict = verifier.verify(text).verdict
                if verdict is not CodeVerdict.VALID:  # a bench of refusals measures nothing
                    raise SystemExit(f"unexpected verdict {verdict}")
            per_round.append((time.perf_counter() - start) / count)
            cache.close()
    return statistics.median(per_round) * 1e3


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    where = sys.argv[3] if len(sys.argv) > 3 else tempfile.gettempdir()
    configs: list[tuple[str, Algorithm, str]] = [("pure", Algorithm.SM2, "pure")]
    if native_sm2_usable():
        configs.append(("native", Algorithm.SM2, "native"))
    configs.append(("p256", Algorithm.ECDSA_P256, "pure"))

    results: dict[tuple[str, str], float] = {}
    saved = os.environ.get(BACKEND_ENV)
    try:
        for name, alg, backend in configs:
            os.environ[BACKEND_ENV] = backend
            assert alg is not Algorithm.SM2 or sm2_backend() == backend
            for cache_kind in ("memory", "disk"):
                results[(name, cache_kind)] = _median_ms(alg, cache_kind, rounds, count, where)
    finally:
        if saved is None:
            os.environ.pop(BACKEND_ENV, None)
        else:
            os.environ[BACKEND_ENV] = saved

    print(f"e-code verify, median of {rounds} rounds x {count} fresh codes (disk in {where})")
    print(f"{'signature':<12}{'cache':<8}{'ms/verify':>11}{'verifies/s':>12}{'x pure SM2':>12}")
    for (name, cache_kind), ms in results.items():
        ratio = results[("pure", cache_kind)] / ms
        print(f"{name:<12}{cache_kind:<8}{ms:>11.3f}{1e3 / ms:>12.0f}{ratio:>12.1f}")
    if not native_sm2_usable():
        print("native SM2 not available (pip install tongsuopy)")
    elif results[("native", "memory")] > 1.0:
        print("native SM2 verify is above the 1 ms target")


if __name__ == "__main__":
    main()
