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

Targets: entry <= 5 APDUs, exit <= 6, <= 20 ms median per tap; a bus tap <= 5 APDUs. These
rows run with the holder screen off (``[screen] port = -1``); the runtime's default would
put the screen hub among the outputs and render voice clips in the background.

Then the sustained rate, "a gate keeps up with 60 taps a minute with the screen and voice
on": an entry gate (``repeat_seconds = 0``; after the first tap every tap is a free re-entry
at the same station, accepted ``ok`` as the entry is) running its event loop
(``TerminalRuntime.run``), the card inserted and removed through vpcd ``--rate-taps`` times,
each step waited for as pcscd reports it. Screen and voice on (``[screen] port = 0``,
``voice = true``, a cold voice directory per run) against the baseline in the same run, the
screen off (``port = -1``), the two alternated ``--rate-runs`` times each: median taps per
minute, the median card-to-decision time of the taps (the transactions' own timings) and
their ratios. With the screen on, a holder page follows it as the kiosk's browser does: it
reads the server-sent events and fetches every state's voice clip (zh) from
``/voice/<clip>``; the table counts the states it received, the clips it got (WAV) and the
clips in the voice directory afterwards, so a screen or voice that did not work shows as
zeros.

    .venv/bin/python bench/rail.py [--rounds 40] [--rate-taps 30] [--rate-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
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
from terminal.runtime.loop import TerminalRuntime
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


FIELD = '[transit]\nidentify = "purse"\njourney_record = true\ncity_code = "6900"\n'
ENTRY_GATE = '[rail]\nstation = "0101"\nrole = "entry"\nrepeat_seconds = 0\n'
SCREEN_OFF = "[screen]\nport = -1\n"
RATE_TARGET = 60.0
"""Taps a minute a gate must keep up with, the screen and voice on."""
RATE_DECISIONS = {"accept/ok"}
"""Entries and free re-entries are both accepted with reason ``ok`` (the ride kind is the
holder message's)."""


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


class HolderPage:
    """The kiosk's browser on the holder screen, minus the pixels and the loudspeaker: it
    follows ``/events`` (one ``data:`` line per state) and fetches each state's voice clip in
    ``lang`` once (the page keeps decoded clips), as ``screen.js`` does with voice on."""

    def __init__(self, origin: str, lang: str = "zh") -> None:
        self.origin = origin.rstrip("/")
        host, port = self.origin.removeprefix("http://").rsplit(":", 1)
        self._address = (host, int(port))
        self.lang = lang
        self.states = 0
        self.results = 0
        self.voiced = 0
        """States that named a clip in ``lang``."""
        self.clips: dict[str, int] = {}
        """Clip url -> WAV bytes fetched."""
        self.clip_errors: list[str] = []
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="bench-page", daemon=True)
        self._thread.start()
        if not self._connected.wait(5):
            raise SystemExit(f"the holder page could not open {self.origin}/events")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the page is no more than a moment behind (its last clip fetched)."""
        end = time.monotonic() + timeout
        seen = -1
        while time.monotonic() < end and seen != self.states:
            seen = self.states
            time.sleep(0.5)

    def _follow(self) -> None:
        host, port = self._address
        with socket.create_connection(self._address, timeout=5) as sock:
            sock.sendall(
                f"GET /events HTTP/1.0\r\nHost: {host}:{port}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            self._connected.set()
            sock.settimeout(0.2)
            buffer = b""
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.startswith(b"data:"):
                        self._state(json.loads(line[5:].strip()))

    def _state(self, state: dict[str, Any]) -> None:
        self.states += 1
        if state.get("phase") == "result":
            self.results += 1
        url = (state.get("voice") or {}).get(self.lang)
        if not url:
            return
        self.voiced += 1
        if url in self.clips:
            return
        try:
            with urllib.request.urlopen(self.origin + url, timeout=10) as answer:
                body = answer.read()
        except OSError as error:
            self.clip_errors.append(f"{url}: {error}")
            return
        if body[:4] != b"RIFF" or body[8:12] != b"WAVE":
            self.clip_errors.append(f"{url}: not a WAV ({len(body)} bytes)")
            return
        self.clips[url] = len(body)


@dataclass
class RateRun:
    screen: bool
    taps_per_minute: float
    tap_ms: float
    """Median card-to-decision time of the run's taps (the transactions' own timings)."""
    decisions: str
    states: int = 0
    clips_fetched: int = 0
    clips_in_dir: int = 0
    clip_errors: int = 0


def sustained(
    runtime: TerminalRuntime, bridge: VpcdBridge, reader: str, count: int, voice_dir: Path | None
) -> RateRun:
    """``count`` taps through the running loop: insert, the transaction, remove, each
    waited for as pcscd reports it. The card must be out when called."""
    runtime.start_sources()
    page = None
    if runtime.screen_server is not None:
        page = HolderPage(runtime.screen_server.url)
    thread = threading.Thread(target=runtime.run, name="bench-gate", daemon=True)
    thread.start()
    done = runtime.completed
    try:
        start = time.perf_counter()
        for _ in range(count):
            bridge.insert()
            if not runtime.wait_for_outcomes(done + 1, timeout=30):
                raise SystemExit("the gate did not complete a tap within 30 s")
            done += 1
            bridge.remove()
            if not wait_for_card(reader, present=False):
                raise SystemExit("pcscd did not report the removal")
        elapsed = time.perf_counter() - start
        outcomes = list(runtime.outcomes[-count:])
        if page is not None:
            page.settle()
    finally:
        runtime.request_stop()
        thread.join(timeout=15)  # run() shuts the runtime down as it ends
        if page is not None:
            page.close()
    run = RateRun(
        screen=page is not None,
        taps_per_minute=count * 60.0 / elapsed,
        tap_ms=statistics.median(o.total_ms for o in outcomes),
        decisions=",".join(sorted({f"{o.decision}/{o.reason}" for o in outcomes})),
    )
    if page is not None:
        run.states = page.states
        run.clips_fetched = len(page.clips)
        run.clip_errors = len(page.clip_errors)
        for error in page.clip_errors[:3]:
            print(f"holder page: {error}", file=sys.stderr)
    if voice_dir is not None and voice_dir.is_dir():
        run.clips_in_dir = sum(1 for _ in voice_dir.glob("*.wav"))
    return run


def rate_runs(
    out: Path,
    readers: tuple[str, str],
    bridge: VpcdBridge,
    count: int,
    runs: int,
) -> list[RateRun]:
    """The entry gate's sustained rate, screen off and screen + voice on, alternated
    ``runs`` times each; each run a runtime of its own (as ``onecard run`` starts one)."""
    card_reader, psam_reader = readers
    results: list[RateRun] = []
    for n in range(runs):
        for screen in (False, True):
            name = f"rail-rate-{'screen' if screen else 'dark'}-{n}"
            voice_dir = out / f"{name}-voice" if screen else None
            if voice_dir is not None:
                shutil.rmtree(voice_dir, ignore_errors=True)
            screen_toml = (
                f'[screen]\nport = 0\nvoice = true\nvoice_dir = "{voice_dir}"\n'
                if screen
                else SCREEN_OFF
            )
            runtime = build_runtime(
                load_config(
                    write_config(
                        out, name, card_reader, psam_reader, FIELD + ENTRY_GATE + screen_toml
                    )
                ),
                outputs=NullOutputs(),
            )
            if screen and (runtime.screen is None or runtime.voice_clips is None):
                runtime.shutdown()
                raise SystemExit(
                    "the gate has no holder screen or no voice (espeak-ng and its voices "
                    "installed? scripts/setup.sh installs them)"
                )
            try:
                results.append(sustained(runtime, bridge, card_reader, count, voice_dir))
            finally:
                runtime.shutdown()
    return results


def print_rate(results: list[RateRun], count: int, runs: int) -> None:
    on = [r for r in results if r.screen]
    off = [r for r in results if not r.screen]
    print(
        f"\nsustained rate, rail entry gate through its event loop, {count} taps a run "
        f"(insert, decision, remove, each as pcscd reports it), {runs} runs each, alternated"
    )
    print(
        f"{'setting':34} {'taps/min':>8} {'runs':>17} {'tap ms':>7} {'ratio':>6} "
        f"{'states':>6} {'clips got':>9} {'in dir':>6}  decisions"
    )
    base_rate = statistics.median(r.taps_per_minute for r in off)
    base_ms = statistics.median(r.tap_ms for r in off)
    for label, group in (
        ("screen + voice on", on),
        ("baseline: screen off", off),
    ):
        rate = statistics.median(r.taps_per_minute for r in group)
        tap_ms = statistics.median(r.tap_ms for r in group)
        each = "/".join(f"{r.taps_per_minute:.0f}" for r in group)
        decisions = ",".join(sorted({d for r in group for d in r.decisions.split(",")}))
        states = "/".join(str(r.states) for r in group) if group is on else ""
        got = "/".join(str(r.clips_fetched) for r in group) if group is on else ""
        in_dir = "/".join(str(r.clips_in_dir) for r in group) if group is on else ""
        print(
            f"{label:34} {rate:8.1f} {each:>17} {tap_ms:7.2f} {rate / base_rate:6.2f} "
            f"{states:>6} {got:>9} {in_dir:>6}  {decisions}"
        )
    rate_on = statistics.median(r.taps_per_minute for r in on)
    ms_on = statistics.median(r.tap_ms for r in on)
    errors = sum(r.clip_errors for r in on)
    working = all(r.states > 0 and r.clips_fetched > 0 and r.clips_in_dir > 0 for r in on)
    odd = {d for r in results for d in r.decisions.split(",")} - RATE_DECISIONS
    print(
        f"a gate keeps up with {RATE_TARGET:.0f} taps a minute with the screen and voice on: "
        f"{'yes' if rate_on >= RATE_TARGET else 'NO'} ({rate_on:.1f}/min, screen off "
        f"{base_rate:.1f}/min, ratio {rate_on / base_rate:.2f}); tap-to-decision "
        f"{ms_on:.2f} ms against {base_ms:.2f} ms (ratio {ms_on / base_ms:.2f}); screen and "
        f"voice {'working' if working and not errors else 'NOT WORKING'}"
        f"{f' ({errors} clip errors)' if errors else ''}"
        f"{f'; unexpected decisions {sorted(odd)}' if odd else ''}"
    )


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
    parser.add_argument("--rate-taps", type=int, default=30, help="taps per sustained-rate run")
    parser.add_argument(
        "--rate-runs", type=int, default=3, help="sustained-rate runs per setting (screen on, off)"
    )
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
        configs = {
            "rail-entry": FIELD + ENTRY_GATE,
            "rail-exit": FIELD + '[rail]\nstation = "0105"\nrole = "exit"\nrepeat_seconds = 0\n',
            "bus": FIELD,
            "bus-before": "",
        }
        configs = {name: extra + SCREEN_OFF for name, extra in configs.items()}
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
            card_bridge = bridges[0][0]
            card_bridge.remove()
            if not wait_for_card(card_reader, present=False):
                raise SystemExit("pcscd did not report the removal")
            rate = rate_runs(
                out, (card_reader, psam_reader), card_bridge, args.rate_taps, args.rate_runs
            )
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
    print_rate(rate, args.rate_taps, args.rate_runs)


if __name__ == "__main__":
    main()
