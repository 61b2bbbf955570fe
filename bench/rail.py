"""Benchmark: rail entry and exit gates and the bus validator, through the real stack (pcscd +
vpcd, the simulated card and PSAM, the journal on disk with its fsync), card APDUs per tap.

Each terminal is built from a ``terminal.toml`` with :func:`onecard.runtime.build_runtime`, as
``onecard run`` builds it; the card (a Chongqing 2.0 card with a T-Union e-purse and its 0x1A
journey record) sits in vpcd slot 0, the PSAM in slot 2. Rows, each a median and p95 over
``--rounds`` taps:

* rail entry / rail exit (a 7 km ride, then back): SELECT (0x15 in the FCI), READ RECORD 0x1A,
  INITIALIZE, UPDATE CAPP 0x1A (+ 0x1E at the exit), DEBIT; baseline in the same run: the
  same flow with a separate READ RECORD of the trip log 0x1E before the purchase.
* bus validator, the field setting (``identify = "purse"``, journey record on) against the
  setting before this change (the social security side read and verified first, then the
  e-purse): card APDUs per tap, before and after.

Targets: entry <= 5 APDUs, exit <= 6, <= 20 ms median per tap; a bus tap <= 5 APDUs.

    .venv/bin/python bench/rail.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime import NullOutputs, percentile

from drivers.pcsc import establish_context, list_readers, release_context, wait_for_card
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import add_tunion
from firmware_sim.vpcd import VpcdBridge, reader_name
from onecard.runtime import build_runtime
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.runtime.config import load_config
from terminal.runtime.transaction import CardPresented
from terminal.secure.keyfile import load_key_file
from terminal.transit.commands import read_trip_record
from terminal.wire.document import sign_document

CARD_SLOT, PSAM_SLOT = 0, 2
FARES = {
    "kind": "fares",
    "version": 1,
    "network": "rail",
    "stations": [
        {"code": "0101", "name": "Xiaoshizi", "line": "01"},
        {"code": "0105", "name": "Lianglukou", "line": "01"},
    ],
    "pricing": "distance",
    "distances": [["0101", "0105", 7.0]],
    "bands": [[6, 200], [11, 300], [None, 500]],
    "categories": {"adult": 100, "elderly": 0},
    "max_minutes": 240,
    "overtime_fen": 400,
    "same_station_minutes": 20,
    "same_station_fen": 200,
    "reentry_minutes": 10,
}


class TripLogFirst:
    """The baseline: the ride module, with a READ RECORD of the trip log 0x1E sent first
    (what a terminal that looks for the last ride in the log would do)."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def ride(self, card: Any, *args: Any, **kwargs: Any) -> Any:
        card.transmit(read_trip_record(1))
        return self._module.ride(card, *args, **kwargs)

    def recover(self, *args: Any, **kwargs: Any) -> Any:
        return self._module.recover(*args, **kwargs)


@dataclass
class Row:
    flow: str
    median: float
    p95: float
    apdus: int
    decisions: str


def write_config(out: Path, name: str, card_reader: str, psam_reader: str, extra: str) -> Path:
    profile = name.split("-")[0] if name.startswith(("rail", "inspector")) else "validator"
    service = "metro" if profile == "rail" else "bus-ride"
    path = out / f"{name}.toml"
    path.write_text(
        f"""
[terminal]
id = "BENCH-{name.upper()}"
profile = "{profile}"
service = "{service}"

[readers]
names = ["{card_reader}"]
psam = "{psam_reader}"

[security]
trust_store = "world/trust.json"
token_key = "token.key"

[backoffice]
journal = "{name}-journal.db"
documents = "documents"
replay_cache = "replay.db"
publication_key = "publication.pub"

[validator]
repeat_seconds = 0

[status]
port = -1
{extra}
"""
    )
    return path


def write_world(out: Path) -> dict[str, Any]:
    world = issue_world(out / "world")
    documents = out / "documents"
    documents.mkdir()
    publisher = generate_private_key(Algorithm.SM2)
    (out / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    (out / "token.key").write_text(os.urandom(16).hex() + "\n")
    services = [
        {
            "code": code,
            "name": code,
            "scope": "national",
            "valid_from": "2020-01-01",
            "cards": ["ssc", "tunion"],
            "fare": fare,
        }
        for code, fare in (("metro", 0), ("bus-ride", 1))
    ]
    applist = {"kind": "applist", "version": 1, "services": services}
    (documents / "applist.json").write_bytes(sign_document(applist, publisher, Algorithm.SM2))
    (documents / "fares.json").write_bytes(sign_document(FARES, publisher, Algorithm.SM2))
    return world


def taps(runtimes: list[Any], reader: str, atr: bytes, rounds: int) -> list[Row]:
    """``rounds`` passes through ``runtimes`` in turn (entry, exit, entry, ...): a row each."""
    presented = CardPresented(reader, atr)
    for runtime in runtimes:  # warm-up: imports, first connection
        runtime.handle(presented)
    times: list[list[float]] = [[] for _ in runtimes]
    apdus: list[set[int]] = [set() for _ in runtimes]
    decisions: list[set[str]] = [set() for _ in runtimes]
    for _ in range(rounds):
        for n, runtime in enumerate(runtimes):
            start = time.perf_counter()
            outcome = runtime.handle(presented)
            times[n].append((time.perf_counter() - start) * 1000.0)
            assert outcome is not None
            apdus[n].add(outcome.apdu_count)
            decisions[n].add(f"{outcome.decision}/{outcome.reason}")
    return [
        Row("", statistics.median(t), percentile(t, 0.95), max(a), ",".join(sorted(d)))
        for t, a, d in zip(times, apdus, decisions, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="taps per row")
    args = parser.parse_args()
    context = establish_context()
    try:
        names = list_readers(context)
    finally:
        release_context(context)
    card_reader, psam_reader = reader_name(CARD_SLOT, names), reader_name(PSAM_SLOT, names)
    with tempfile.TemporaryDirectory(prefix="onecard-bench-rail-") as tmp:
        out = Path(tmp)
        world = write_world(out)
        keyset = load_key_file(world["keys"])
        card = build_card(load_profile(world["cards"]["genuine-cq-2.0"]["file"]), contactless=True)
        add_tunion(card, keyset, balance=10**9)
        bridges = [
            (VpcdBridge(card, CARD_SLOT), card_reader),
            (VpcdBridge(build_psam(keyset), PSAM_SLOT), psam_reader),
        ]
        for bridge, reader in bridges:
            bridge.insert()
            if not wait_for_card(reader, present=True):
                raise SystemExit(f"pcscd did not see the card in {reader}")
        field = '[transit]\nidentify = "purse"\njourney_record = true\ncity_code = "6900"\n'
        configs = {
            "rail-entry": field + '[rail]\nstation = "0101"\nrole = "entry"\nrepeat_seconds = 0\n',
            "rail-exit": field + '[rail]\nstation = "0105"\nrole = "exit"\nrepeat_seconds = 0\n',
            "bus": field,
            "bus-before": "",
        }
        runtimes = {
            name: build_runtime(
                load_config(write_config(out, name, card_reader, psam_reader, extra)),
                outputs=NullOutputs(),
            )
            for name, extra in configs.items()
        }
        rows: list[Row] = []
        try:
            entry, exit_ = runtimes["rail-entry"], runtimes["rail-exit"]
            ours = taps([entry, exit_], card_reader, card.atr, args.rounds)
            for runtime in (entry, exit_):
                runtime.steps.profile._purchase = TripLogFirst(runtime.steps.profile._purchase)
            base = taps([entry, exit_], card_reader, card.atr, args.rounds)
            for row, flow in zip(
                (*ours, *base),
                (
                    "rail entry",
                    "rail exit (7 km, 3.00)",
                    "baseline: entry + READ 0x1E",
                    "baseline: exit + READ 0x1E",
                ),
                strict=True,
            ):
                row.flow = flow
                rows.append(row)
            after = taps([runtimes["bus"]], card_reader, card.atr, args.rounds)[0]
            before = taps([runtimes["bus-before"]], card_reader, card.atr, args.rounds)[0]
            after.flow = "bus tap: e-purse + 0x1A (field setting)"
            before.flow = "bus tap before: SSC verify + e-purse"
            rows += [after, before]
        finally:
            for runtime in runtimes.values():
                runtime.shutdown()
            for bridge, reader in bridges:
                if bridge.inserted:
                    bridge.remove()
                wait_for_card(reader, present=False, timeout=5)
    print(
        f"through pcscd + vpcd, journal fsync included, {args.rounds} taps per row "
        "(median of the row's taps)"
    )
    print(f"{'flow':42} {'median ms':>9} {'p95 ms':>7} {'APDUs':>5} {'ratio':>6}  decisions")
    pairs = {2: 0, 3: 1, 5: 4}
    for n, row in enumerate(rows):
        ratio = rows[n].median / rows[pairs[n]].median if n in pairs else 1.0
        print(
            f"{row.flow:42} {row.median:9.2f} {row.p95:7.2f} {row.apdus:5d} {ratio:6.2f}"
            f"  {row.decisions}"
        )
    print(
        f"targets: entry <= 5 APDUs ({rows[0].apdus}), exit <= 6 ({rows[1].apdus}), "
        f"bus <= 5 ({rows[4].apdus}, before {rows[5].apdus}), <= 20 ms median "
        f"({rows[0].median:.1f} / {rows[1].median:.1f})"
    )


if __name__ == "__main__":
    main()
