"""Benchmark: tap-to-decision time of the terminal runtime, per service profile, through the
real stack (pcscd + vpcd, the simulated card and PSAM, the journal on disk).

For each profile the runtime is built from a ``terminal.toml`` with :func:`build_runtime`
exactly as ``onecard run`` builds it, and a card sits in vpcd slot 0:

* gate - a Chongqing 2.0 card, internal authentication with the software secure module;
* validator - the same card with the T-Union e-purse, the fare debited through the PSAM in
  slot 2 (which also authenticates the card), ``[transit] identify = "card"`` (the default):
  the social security side read and verified first, then the e-purse - 7 card APDUs a tap;
* validator-field - the same validator in the field setting of docs/transit.md "Rides"
  (``identify = "purse"``, ``journey_record = true``, ``city_code = "6900"``): the card known
  by its e-purse, the ride decided from the journey record 0x1A - 5 card APDUs a tap (SELECT,
  READ RECORD 0x1A, INITIALIZE, UPDATE CAPP 0x1A, DEBIT); its ratio is to the validator row,
  so the table shows the card APDUs per tap before and after in the same run;
* counter - a Sichuan 3.0 card: read, external + internal authentication, PKI (SM2
  signature), the PIN from a pad that answers at once (PIN entry excluded, VERIFY included).

Tap-to-decision is the time of one transaction from the card event to the holder being
told (connect, read, verify, decide, act, journal append with its fsync, tell): median and
p95 over ``--rounds`` transactions, with the card APDUs of each. Sustained taps per minute per
reader come from the running event loop: insert, pcscd notices, the transaction runs, remove,
pcscd notices - ``--taps`` times. Baselines in the same run: the gate and the validator with
the per-tag read (``ReadMode.PER_TAG``, what a card refusing the multi-record read
costs: the steps' read-mode memo answers PER_TAG for every card while the baseline runs),
the counter with the pure-Python SM2 back-end. Targets: gate <= 20 ms, validator
<= 30 ms, counter <= 25 ms (median); a field validator tap <= 5 card APDUs. Every row must
end in ``accept/ok``: one that does not is flagged and the bench exits 1.

The holder screen is off (``[screen] port = -1``): the runtime's default would put the
screen hub among the outputs, render voice clips with espeak-ng in the background during
the measurement, and bind 127.0.0.1:9180 in the taps-per-minute run. bench/rail.py measures
a gate with the screen and voice on.

    .venv/bin/python bench/runtime.py [--rounds 50] [--taps 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.pcsc import establish_context, list_readers, release_context, wait_for_card
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import add_tunion
from firmware_sim.vpcd import VpcdBridge, reader_name
from onecard.runtime import build_runtime
from terminal.crypto.signing import (
    BACKEND_ENV,
    Algorithm,
    generate_private_key,
    public_key_bytes,
    sm2_backend,
)
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime
from terminal.runtime.transaction import CardPresented
from terminal.secure.keyfile import load_key_file
from terminal.ssc.session import ReadMode, ReadModeMemo
from terminal.wire.document import sign_document

CARD_SLOT, PSAM_SLOT = 0, 2
TARGETS_MS = {"gate": 20.0, "validator": 30.0, "counter": 25.0}
TARGETS_MS["validator-field"] = TARGETS_MS["validator"]
TARGET_APDUS = {"validator": 8}
"""The validator's APDU target is the purchase's (docs/transit.md); the table shows the
whole tap (read + authenticate + purchase) and the purchase alone."""
TARGET_TAP_APDUS = {"validator-field": 5}
"""A field validator's whole tap (docs/transit.md "Rides": 5 card APDUs)."""
SERVICES = {"gate": "museum-entry", "validator": "bus-ride", "counter": "hospital-registration"}
CARDS = {"gate": "genuine-cq-2.0", "validator": "genuine-cq-2.0", "counter": "genuine-sc-3.0"}
CONTACTLESS = {"gate", "validator"}
PIN = "123456"
EXPECTED = "accept/ok"
"""The decision every row must end in (the card is genuine, the purse full, no window)."""
FIELD_TRANSIT = """
[transit]
identify = "purse"
journey_record = true
city_code = "6900"
"""
VARIANTS = {
    "validator-field": ("validator", FIELD_TRANSIT),
}
"""Benched terminals that are another setting of a profile: name -> (profile, toml)."""
COMPARED_TO = {"validator-field": "validator"}
"""Rows whose ratio is to another terminal's first row (before -> after in the same run)."""


class NullOutputs:
    """No display, no lamp: the bench measures the terminal, not a console."""

    def open_gate(self) -> None:
        pass

    def indicate(self, outcome: object) -> None:
        pass

    def show(self, message: object) -> None:
        pass

    def close(self) -> None:
        pass


class InstantPad:
    """A PIN pad whose holder types at infinite speed."""

    def read_pin(self, prompt: str) -> str:
        return PIN


class CountingPurchase:
    """The transit purchase module, remembering the card APDUs of the last purchase."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.last_apdus = 0

    def purchase(self, *args: Any, **kwargs: Any) -> Any:
        result = self._module.purchase(*args, **kwargs)
        self.last_apdus = result.apdu_count
        return result

    def ride(self, *args: Any, **kwargs: Any) -> Any:
        plan, result = self._module.ride(*args, **kwargs)
        self.last_apdus = result.apdu_count
        return plan, result

    def recover(self, *args: Any, **kwargs: Any) -> Any:
        return self._module.recover(*args, **kwargs)


@dataclass
class Row:
    profile: str
    flow: str
    median: float
    p95: float
    apdus: int
    purchase_apdus: int | None
    taps_per_minute: float | None
    decisions: str


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_world(out: Path) -> dict[str, Any]:
    """Keys (with purchase masters), trust store, cards, and a signed application list
    carrying the three services."""
    world = issue_world(out / "world")
    documents = out / "documents"
    documents.mkdir()
    publisher = generate_private_key(Algorithm.SM2)
    (out / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    (out / "token.key").write_text(os.urandom(16).hex() + "\n")
    services = [
        {"code": code, "name": code, "scope": "national", "valid_from": "2020-01-01"}
        for code in SERVICES.values()
    ]
    services[1]["fare"] = 1  # the validator's fare: one fen, so the purse lasts
    # A validator known by the e-purse (identify = "purse") presents T-Union credentials.
    services[1]["cards"] = ["ssc", "tunion"]
    applist = {"kind": "applist", "version": 1, "services": services}
    (documents / "applist.json").write_bytes(sign_document(applist, publisher, Algorithm.SM2))
    return world


def write_config(out: Path, name: str, card_reader: str, psam_reader: str) -> Path:
    """``name``: a profile, or a :data:`VARIANTS` entry (another setting of a profile)."""
    profile, extra = VARIANTS.get(name, (name, ""))
    security = 'keys = "world/keys.toml"' if profile != "validator" else ""
    psam = f'psam = "{psam_reader}"' if profile == "validator" else ""
    path = out / f"{name}.toml"
    path.write_text(
        f"""
[terminal]
id = "BENCH-{name.upper()}"
profile = "{profile}"
service = "{SERVICES[profile]}"

[readers]
names = ["{card_reader}"]
{psam}

[security]
{security}
trust_store = "world/trust.json"
token_key = "token.key"

[backoffice]
journal = "{name}-journal.db"
documents = "documents"
replay_cache = "replay.db"
publication_key = "publication.pub"

[gate]
passback_minutes = 0

[validator]
repeat_seconds = 0

[counter]
api_port = 0
pinpad = "script"
pins = ["{PIN}"]

[status]
port = -1

[screen]
port = -1
{extra}"""
    )
    return path


class PerTagMemo:
    """A read-mode memo that knows one mode: per tag, for every card; it learns nothing."""

    def mode_for(self, historical: bytes) -> ReadMode:
        return ReadMode.PER_TAG

    def learn(self, historical: bytes, mode: ReadMode) -> None:
        pass


@contextlib.contextmanager
def per_tag_reads(runtime: TerminalRuntime) -> Iterator[None]:
    """Card reads tag by tag with a SELECT (the slowest read mode) while inside.

    The steps hand ``verify_card`` the mode their memo (:class:`ReadModeMemo`) gives for the
    card's kind; the memo is swapped for one that always says PER_TAG - and learns nothing,
    so the runtime's own memo is not taught PER_TAG by the baseline."""
    steps = runtime.steps
    original = steps.read_modes
    if not isinstance(original, ReadModeMemo):
        raise SystemExit(f"the steps' read-mode memo is a {type(original)}: baseline not set")
    steps.read_modes = PerTagMemo()
    try:
        yield
    finally:
        steps.read_modes = original


@contextlib.contextmanager
def pure_sm2() -> Iterator[None]:
    """The pure-Python SM2 back-end while inside (it is chosen per call from the env)."""
    before = os.environ.get(BACKEND_ENV)
    os.environ[BACKEND_ENV] = "pure"
    try:
        yield
    finally:
        if before is None:
            del os.environ[BACKEND_ENV]
        else:
            os.environ[BACKEND_ENV] = before


def latency(
    runtime: TerminalRuntime,
    reader: str,
    atr: bytes,
    rounds: int,
    purchases: CountingPurchase | None,
) -> tuple[float, float, int, int | None, str]:
    """Median and p95 ms of ``runtime.handle`` for a card already in ``reader``."""
    presented = CardPresented(reader, atr)
    runtime.handle(presented)  # warm-up: imports, first connection
    times: list[float] = []
    apdus: set[int] = set()
    purchase_apdus: set[int] = set()
    decisions: set[str] = set()
    for _ in range(rounds):
        start = time.perf_counter()
        outcome = runtime.handle(presented)
        times.append((time.perf_counter() - start) * 1000.0)
        assert outcome is not None
        decisions.add(f"{outcome.decision}/{outcome.reason}")
        apdus.add(outcome.apdu_count)
        if purchases is not None:
            purchase_apdus.add(purchases.last_apdus)
    return (
        statistics.median(times),
        percentile(times, 0.95),
        max(apdus),
        max(purchase_apdus) if purchase_apdus else None,
        ",".join(sorted(decisions)),
    )


def sustained(runtime: TerminalRuntime, bridge: VpcdBridge, reader: str, taps: int) -> float:
    """Taps per minute through the running loop: insert, transaction, remove, each waited
    for as pcscd reports it."""
    thread = threading.Thread(target=runtime.run, daemon=True)
    runtime.start_sources()
    thread.start()
    done = len(runtime.outcomes)
    start = time.perf_counter()
    for _ in range(taps):
        bridge.insert()
        if not runtime.wait_for_outcomes(done + 1, timeout=30):
            raise SystemExit("the runtime did not complete a tap within 30 s")
        done += 1
        bridge.remove()
        if not wait_for_card(reader, present=False):
            raise SystemExit("pcscd did not report the removal")
    elapsed = time.perf_counter() - start
    runtime.request_stop()
    thread.join(timeout=15)
    return taps * 60.0 / elapsed


def bench_profile(
    name: str,
    out: Path,
    world: dict[str, Any],
    readers: tuple[str, str],
    args: argparse.Namespace,
) -> list[Row]:
    card_reader, psam_reader = readers
    profile = VARIANTS.get(name, (name, ""))[0]
    keyset = load_key_file(world["keys"])
    # Gates and bus validators take the card contactless (T=1); a counter takes it in the
    # contact slot (T=0), where the PIN is entered.
    card = build_card(
        load_profile(world["cards"][CARDS[profile]]["file"]),
        contactless=profile in CONTACTLESS,
    )
    if profile == "validator":
        add_tunion(card, keyset, balance=10**9)
    bridges: list[tuple[VpcdBridge, str]] = [(VpcdBridge(card, CARD_SLOT), card_reader)]
    if profile == "validator":
        bridges.append((VpcdBridge(build_psam(keyset), PSAM_SLOT), psam_reader))
    for bridge, reader in bridges:
        bridge.insert()
        if not wait_for_card(reader, present=True):
            raise SystemExit(f"pcscd did not see the card in {reader}")
    card_bridge = bridges[0][0]
    runtime = build_runtime(
        load_config(write_config(out, name, card_reader, psam_reader)), outputs=NullOutputs()
    )
    purchases: CountingPurchase | None = None
    if profile == "validator":
        purchases = CountingPurchase(runtime.steps.profile._purchase)
        runtime.steps.profile._purchase = purchases
    if profile == "counter":
        runtime.steps.profile._pinpad = InstantPad()
    rows: list[Row] = []
    try:
        atr = card.atr
        flow = {
            "gate": "card, multi-record read",
            "validator": "identify=card: SSC + purchase",
            "validator-field": "identify=purse + 0x1A ride",
            "counter": f"read + auth, SM2 {sm2_backend()}",
        }[name]
        measured = latency(runtime, card_reader, atr, args.rounds, purchases)
        rows.append(Row(name, flow, *measured[:4], None, measured[4]))
        # The field validator reads no social security side: no read mode to compare; its
        # reference is the validator row (identify = "card").
        if name != "validator-field":
            baseline_context: Any = pure_sm2() if profile == "counter" else per_tag_reads(runtime)
            baseline_flow = (
                "baseline: SM2 pure" if profile == "counter" else "baseline: PER_TAG read"
            )
            with baseline_context:
                measured = latency(runtime, card_reader, atr, args.rounds, purchases)
            rows.append(Row(name, baseline_flow, *measured[:4], None, measured[4]))
        card_bridge.remove()
        if not wait_for_card(card_reader, present=False):
            raise SystemExit("pcscd did not report the removal")
        rows[0].taps_per_minute = sustained(runtime, card_bridge, card_reader, args.taps)
    finally:
        runtime.shutdown()
        for bridge, _reader in bridges:
            if bridge.inserted:
                bridge.remove()
        for _bridge, reader in bridges:
            wait_for_card(reader, present=False, timeout=5)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="transactions per latency run")
    parser.add_argument("--taps", type=int, default=20, help="taps for the taps-per-minute run")
    parser.add_argument(
        "--profiles",
        default="gate,validator,validator-field,counter",
        help="gate, validator, validator-field (the validator's field setting), counter",
    )
    args = parser.parse_args()

    context = establish_context()
    try:
        names = list_readers(context)
    finally:
        release_context(context)
    card_reader, psam_reader = reader_name(CARD_SLOT, names), reader_name(PSAM_SLOT, names)
    if card_reader is None or psam_reader is None:
        raise SystemExit(f"no vpcd readers for slots {CARD_SLOT}/{PSAM_SLOT} in {names}")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="onecard-bench-") as tmp:
        out = Path(tmp)
        world = write_world(out)
        for name in args.profiles.split(","):
            rows += bench_profile(name, out, world, (card_reader, psam_reader), args)

    print(
        f"tap-to-decision through pcscd + vpcd, {args.rounds} transactions per row, "
        f"{args.taps} taps for taps/min (one reader, {card_reader!r})"
    )
    header = (
        f"{'profile':15} {'flow':30} {'median ms':>9} {'p95 ms':>7} {'APDUs':>5} "
        f"{'purch.':>6} {'taps/min':>8} {'ratio':>6} {'target':>18}  decisions"
    )
    print(header)
    reference: dict[str, Row] = {}
    unexpected: list[Row] = []
    for row in rows:
        reference.setdefault(row.profile, row)
        ref = reference.get(COMPARED_TO.get(row.profile, row.profile), reference[row.profile])
        ratio = row.median / ref.median
        target = ""
        if not row.flow.startswith("baseline"):
            ok = row.median <= TARGETS_MS[row.profile]
            target = f"<={TARGETS_MS[row.profile]:.0f}ms {'ok' if ok else 'MISS'}"
            if row.profile in TARGET_APDUS and row.purchase_apdus is not None:
                ok_apdus = row.purchase_apdus <= TARGET_APDUS[row.profile]
                target += f", APDU {'ok' if ok_apdus else 'MISS'}"
            if row.profile in TARGET_TAP_APDUS:
                ok_apdus = row.apdus <= TARGET_TAP_APDUS[row.profile]
                target += f", tap {'ok' if ok_apdus else 'MISS'}"
        purchase = "" if row.purchase_apdus is None else str(row.purchase_apdus)
        taps = "" if row.taps_per_minute is None else f"{row.taps_per_minute:.0f}"
        decisions = row.decisions
        if decisions != EXPECTED:
            unexpected.append(row)
            decisions += f"  UNEXPECTED (want {EXPECTED})"
        print(
            f"{row.profile:15} {row.flow:30} {row.median:9.2f} {row.p95:7.2f} {row.apdus:5d} "
            f"{purchase:>6} {taps:>8} {ratio:6.2f} {target:>18}  {decisions}"
        )
    before, after = reference.get("validator"), reference.get("validator-field")
    if before is not None and after is not None:
        print(
            f"validator card APDUs per tap: identify=card {before.apdus} -> identify=purse + "
            f"journey record {after.apdus}; median {before.median:.2f} -> {after.median:.2f} ms "
            f"(ratio of the medians {after.median / before.median:.2f})"
        )
    if unexpected:
        raise SystemExit(
            f"{len(unexpected)} row(s) did not end in {EXPECTED}: "
            + "; ".join(f"{r.profile} {r.flow}: {r.decisions}" for r in unexpected)
        )


if __name__ == "__main__":
    main()
