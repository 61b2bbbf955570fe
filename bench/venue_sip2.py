"""The library gate's ILS lookup on the loopback, against pysip2's SIP2 server
(tests/helpers/sip2_ils.py): median and p95 of ``IlsClient.patron_standing`` on the kept
connection, and SIP2 messages per lookup counted at the server (1 after the first login),
beside a baseline in the same run: a new connection and a login per lookup (93 + 23).

Run: .venv/bin/python bench/venue_sip2.py [LOOKUPS]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers.sip2_ils import INSTITUTION, PASSWORD, USER, Patron, TestIls  # noqa: E402

from terminal.venue.ils import IlsClient, IlsSettings  # noqa: E402

PATRON = "A00000001"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(ils: TestIls, lookups: int, kept: bool) -> tuple[list[float], int]:
    """Lookup times in ms and the SIP2 messages the server received for them."""
    settings = IlsSettings(
        host="127.0.0.1",
        port=ils.port,
        user=USER,
        password=PASSWORD,
        institution=INSTITUTION,
        sc_status=False,
    )
    times: list[float] = []
    client = IlsClient(settings)
    if kept:
        client.connect()  # the gate logs in at start-up
    before = ils.counters.messages
    for _ in range(lookups):
        if not kept:
            client = IlsClient(settings)
        started = time.perf_counter()
        standing = client.patron_standing(PATRON)
        times.append((time.perf_counter() - started) * 1000)
        if not kept:
            client.close()
        assert standing.valid_patron
    client.close()
    return times, ils.counters.messages - before


def main() -> None:
    lookups = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with TestIls({PATRON: Patron()}) as ils:
        run(ils, 20, kept=True)  # warm both sides up
        kept, kept_messages = run(ils, lookups, kept=True)
        fresh, fresh_messages = run(ils, lookups, kept=False)
    rows = [
        ("kept connection (1 login)", kept, kept_messages),
        ("login per lookup (93 + 23)", fresh, fresh_messages),
    ]
    print(f"patron_standing on the loopback against pysip2, {lookups} lookups")
    print(f"{'mode':<30} {'median ms':>10} {'p95 ms':>8} {'msgs/lookup':>12}")
    for name, samples, messages in rows:
        print(
            f"{name:<30} {statistics.median(samples):>10.3f} "
            f"{percentile(samples, 0.95):>8.3f} {messages / lookups:>12.2f}"
        )
    ratio_median = statistics.median(fresh) / statistics.median(kept)
    ratio_p95 = percentile(fresh, 0.95) / percentile(kept, 0.95)
    print(f"login per lookup / kept: median x{ratio_median:.1f}, p95 x{ratio_p95:.1f}")


if __name__ == "__main__":
    main()
