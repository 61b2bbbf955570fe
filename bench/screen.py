"""Benchmark: decision-to-screen on the holder screen, through the real runtime and Chromium.

A gate runtime is built from a ``terminal.toml`` with :func:`build_runtime` (an e-code world,
a signed application list, no card readers, so no pcscd) and serves the holder screen itself
on a free port; headless Chromium (Debian's, through Playwright) shows it.

1. decision-to-screen - e-codes are submitted to the runtime one at a time (fresh codes:
   accepted; the last code again: refused as replayed; text that is no code, a code cut
   short: refused), each waited for until the pages have painted it. The page records, per
   outcome, the wall time the hub was told (``decided_at``) and the wall time of the
   animation frame that paints it; figures are median and p95 of paint - decided, and of
   paint - submit (scan-to-screen, the submit time taken in Python). Two pages on the
   server-sent event stream: kiosk 1920x1080 and validator 800x480.
2. baseline in the same run - a minimal page of this bench that polls ``/state`` every
   250 ms, and one every 1000 ms (a naive kiosk's refresh). The last ``--polled`` decisions
   of each round are waited for on the 250 ms poller too (the first ``--slow`` of them on
   the 1000 ms one too), each submitted at a random phase of the poller's timer: a poller
   sees one decision per tick, so these cost a poll interval each. Ratio baseline/ours of
   the medians.
3. page weight - every resource the page loads (Resource Timing ``encodedBodySize``, checked
   by fetching each URL), total and gzip size.
4. browser memory - JS heap used per page (CDP ``Performance.getMetrics``, after a garbage
   collection) and RSS/PSS of the Chromium process tree, loaded, warm and after each round.

Target: <= 100 ms median decision-to-screen. APDUs: none (codes, no card).

    .venv/bin/python bench/screen.py [--rounds 5] [--count 100] [--polled 30] [--slow 5]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.ecode_issuing import issue_code, issue_ecode_world, read_private_key
from firmware_sim.issuing import issue_world
from onecard import browser
from onecard.runtime import build_runtime
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime
from terminal.runtime.transaction import CodePresented
from terminal.wire.document import sign_document

TARGET_MS = 100.0
POLL_FAST, POLL_SLOW = 250, 1000
"""The baselines' poll intervals, ms."""
WAIT_S = 10.0
"""How long one decision may take to reach the runtime's outcome list, and each page."""

MIX = ("valid", "valid", "replay", "valid", "garbage", "valid", "valid", "replay", "valid", "cut")
"""The decisions of a round, cycled: 60 % fresh codes (accepted), 20 % the last code again
(refused: replayed), 10 % text that is no code (refused: not_our_code), 10 % a code cut
short (refused: malformed)."""

GARBAGE = "HELLO-THIS-IS-NOT-AN-E-CARD-CODE"

POLL_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>poll</title></head>
<body><h1 id="title">-</h1><script>
"use strict";
// A naive holder screen: ask /state every INTERVAL ms and show the title.
const probe = (window.__onecard = { renders: [] });
let last = 0;
setInterval(async () => {
  let s;
  try { s = await (await fetch("/state", { cache: "no-store" })).json(); } catch { return; }
  const result = s.phase === "result" ? s.result : null;
  document.getElementById("title").textContent = result ? result.title.zh : s.prompt.zh;
  if (result && result.decided_at !== last) {
    last = result.decided_at;
    const decided = last * 1000, seq = s.seq;
    requestAnimationFrame(() => {
      const at = performance.timeOrigin + performance.now();
      probe.renders.push({ seq, decided_at: decided, rendered_at: at, ms: at - decided });
    });
  }
}, INTERVAL);
</script></body></html>
"""

RENDERS_JS = "window.__onecard.renders.splice(0)"
"""Take (and clear) a page's recorded renders."""

PAINTED_JS = """([decided, timeout]) => new Promise((resolve, reject) => {
  const until = performance.now() + timeout;
  const look = () => {
    if (window.__onecard.renders.some((r) => r.decided_at === decided)) resolve(true);
    else if (performance.now() > until) reject(new Error("not painted"));
    else requestAnimationFrame(look);
  };
  look();
})"""
"""Resolves once the page has painted the decision the hub took at ``decided`` (epoch ms),
looking once a frame (one evaluation per decision: Playwright's ``wait_for_function`` leaves
native memory behind in the renderer, ~0.1 MB a call, which would blur the memory figures)."""

WEIGHT_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const rows = [{ url: nav.name, kind: "document", encoded: nav.encodedBodySize,
                  decoded: nav.decodedBodySize }];
  for (const r of performance.getEntriesByType("resource")) {
    rows.push({ url: r.name, kind: r.initiatorType, encoded: r.encodedBodySize,
                decoded: r.decodedBodySize });
  }
  return rows;
}"""


class NoReaders:
    """A card watcher with no readers: the bench presents codes, not cards."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class Screen:
    """One open page and what it recorded."""

    name: str
    layout: str
    page: Any
    interval: int = 0
    """The poll interval, ms (0: the event stream, waited for on every decision)."""
    decided: list[float] = field(default_factory=list)
    scanned: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    heap: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_config(out: Path, voice: bool) -> Path:
    """A gate terminal with an e-code world and a signed application list, no readers, the
    screen on a free port (spoken outcomes on or off), no status server."""
    issue_world(out / "world")
    issue_ecode_world(out / "ecode")
    documents = out / "documents"
    documents.mkdir()
    publisher = generate_private_key(Algorithm.SM2)
    (out / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    applist = {
        "kind": "applist",
        "version": 1,
        "services": [
            {
                "code": "museum-entry",
                "name": "Museum",
                "scope": "national",
                "valid_from": "2020-01-01",
            }
        ],
    }
    (documents / "applist.json").write_bytes(sign_document(applist, publisher, Algorithm.SM2))
    path = out / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "BENCH-SCREEN"
profile = "gate"
service = "museum-entry"

[readers]
names = []

[security]
keys = "world/keys.toml"
trust_store = "world/trust.json"
ecode_world = "ecode"

[backoffice]
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"
publication_key = "publication.pub"

[gate]
passback_minutes = 0

[status]
port = -1

[screen]
port = 0
voice = {"true" if voice else "false"}
"""
    )
    return path


class Codes:
    """Code texts for :data:`MIX`: fresh codes of the world's card, the last one again, text
    that is no code, the last code cut short. Issued one by one just before use, as codes
    expire within minutes."""

    def __init__(self, ecode_world: Path) -> None:
        manifest = json.loads((ecode_world / "manifest.json").read_text())
        self.algorithm = Algorithm(manifest["algorithm"])
        issuer = manifest["issuer"]
        self.key = read_private_key(issuer["private_key"], self.algorithm)
        self.key_id = bytes.fromhex(issuer["key_id"])
        self.card = manifest["card"]
        self.last = ""

    def fresh(self) -> str:
        card = self.card
        return issue_code(
            self.key,
            self.key_id,
            self.algorithm,
            card["region"],
            card["card_number"],
            card["category"],
            int(time.time()),
        )

    def text(self, i: int) -> str:
        """The text of the ``i``-th decision of a round."""
        kind = MIX[i % len(MIX)]
        if kind == "valid" or not self.last:
            self.last = self.fresh()
        return {"garbage": GARBAGE, "cut": self.last[:40]}.get(kind, self.last)


# --- the browser's processes -------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def chromium_pids() -> list[int]:
    """The Chromium processes this bench started: below this process (Python -> the
    Playwright driver -> Chromium), every process under a ``chromium`` executable. The
    crash reporter's handler leaves the tree (init adopts it) and is not counted."""
    tree = _children()
    found: list[int] = []
    stack = [(os.getpid(), False)]
    while stack:
        pid, inside = stack.pop()
        if not inside:
            with contextlib.suppress(OSError):
                inside = os.path.basename(os.readlink(f"/proc/{pid}/exe")).startswith("chrom")
        if inside:
            found.append(pid)
        stack.extend((child, inside) for child in tree.get(pid, []))
    return found


def _status_kb(pid: int, key: str, path: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass  # the process ended between the listing and the read
    return 0


def chromium_memory() -> tuple[int, float, float]:
    """(processes, RSS MB summed, PSS MB summed) of the Chromium process tree. RSS counts
    pages shared between the processes once per process; PSS shares them out."""
    pids = chromium_pids()
    rss = sum(_status_kb(pid, "VmRSS") for pid in pids)
    pss = sum(_status_kb(pid, "Pss", "smaps_rollup") for pid in pids)
    return len(pids), rss / 1024, pss / 1024


def js_heap_mb(page: Any) -> float:
    """JS heap used by ``page`` after a garbage collection, MB."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("HeapProfiler.collectGarbage")
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return float(metrics["JSHeapUsedSize"]) / 2**20
    finally:
        cdp.detach()


def clock_offset_ms(page: Any) -> tuple[float, float]:
    """The page's clock (timeOrigin + now) minus Python's time.time(), ms, and the bound
    of that figure (half the round trip), best of ten."""
    best = (0.0, float("inf"))
    for _ in range(10):
        before = time.time() * 1000
        at = float(page.evaluate("performance.timeOrigin + performance.now()"))
        after = time.time() * 1000
        if (after - before) / 2 < best[1]:
            best = (at - (before + after) / 2, (after - before) / 2)
    return best


# --- pages ---------------------------------------------------------------------------------


def open_poll_page(chromium: Any, base: str, interval_ms: int) -> Any:
    """The baseline page, served at ``<base>poll-<ms>.html`` by a route so that it is of the
    screen's origin (``fetch("/state")`` needs no CORS); the route is removed once loaded, so
    the polls are not intercepted."""
    page = browser.new_page(chromium, "kiosk")
    url = f"{base}poll-{interval_ms}.html"
    html = POLL_PAGE.replace("INTERVAL", str(interval_ms))
    page.route(url, lambda route: route.fulfill(content_type="text/html", body=html))
    page.goto(url)
    page.unroute_all()
    return page


def page_weight(page: Any) -> list[dict[str, Any]]:
    """The page's resources as Resource Timing reports them, each fetched again here for
    its bytes and their gzip size."""
    rows: list[dict[str, Any]] = page.evaluate(WEIGHT_JS)
    for row in rows:
        with urllib.request.urlopen(row["url"], timeout=5) as answer:
            body = answer.read()
        row["fetched"] = len(body)
        row["gzip"] = len(gzip.compress(body, 9))
    return rows


# --- the run -------------------------------------------------------------------------------


def run_round(
    runtime: TerminalRuntime,
    screens: list[Screen],
    codes: Codes,
    phases: list[int],
    rng: random.Random,
) -> Counter[str]:
    """Submit one code text per entry of ``phases``, one at a time; after each, wait for
    the outcome and for the pages to paint it. ``phases[i]`` is 0 for a decision waited for
    on the event-stream pages only, else a poll interval (ms): the decision is submitted
    after a random delay within it - so that it falls at a uniform phase of the pollers'
    timers rather than just after their last poll - and waited for on every poller of that
    interval or shorter as well. Renders are matched to decisions by the hub's
    ``decided_at``. A poller also catches some decisions it was not waited for; those are
    not counted (which of them it catches depends on its timer: they would bias it low)."""
    decisions: Counter[str] = Counter()
    submitted: list[float] = []
    decided_at: list[float] = []
    for i, phase in enumerate(phases):
        text = codes.text(i)
        if phase:
            time.sleep(rng.uniform(0, phase / 1000))
        done = len(runtime.outcomes)
        submitted.append(time.time() * 1000)
        runtime.submit(CodePresented(text, "bench"))
        if not runtime.wait_for_outcomes(done + 1, timeout=WAIT_S):
            raise SystemExit(f"the runtime gave no outcome within {WAIT_S:.0f} s")
        outcome = runtime.outcomes[done]
        decisions[f"{outcome.decision}/{outcome.reason}"] += 1
        result = runtime.screen.state.result
        if result is None:
            raise SystemExit(f"decision {i + 1} left no result on the screen")
        decided_at.append(result.decided_at * 1000)
        for screen in screens:
            if screen.interval > phase:
                continue
            try:
                screen.page.evaluate(PAINTED_JS, [decided_at[-1], WAIT_S * 1000])
            except Exception as exc:
                raise SystemExit(f"{screen.name} did not paint decision {i + 1}: {exc}") from None
    for screen in screens:
        painted = {r["decided_at"]: r["rendered_at"] for r in screen.page.evaluate(RENDERS_JS)}
        decided, scanned = [], []
        for i, phase in enumerate(phases):
            if screen.interval > phase:
                continue
            at = painted.get(decided_at[i])
            if at is None:
                raise SystemExit(f"{screen.name} has no render of decision {i + 1}")
            decided.append(at - decided_at[i])
            scanned.append(at - submitted[i])
        if decided:
            screen.decided += decided
            screen.scanned += scanned
            screen.round_medians.append(statistics.median(decided))
    return decisions


@contextlib.contextmanager
def running(config: Path) -> Iterator[TerminalRuntime]:
    """The runtime, its loop in a thread, serving the screen; stopped and closed after."""
    runtime = build_runtime(
        load_config(config), outputs=RecordingOutputs(), watcher_factory=lambda sink: NoReaders()
    )
    with runtime.running("bench-runtime"):
        yield runtime


def plan(args: argparse.Namespace) -> list[int]:
    """The phases of one round of ``--count`` decisions (see :func:`run_round`): as fast as
    they are painted, but the last ``--polled`` at a random phase of the 250 ms poller, the
    first ``--slow`` of those of the 1000 ms poller."""
    polled = [POLL_SLOW if i < args.slow else POLL_FAST for i in range(args.polled)]
    return [0] * (args.count - args.polled) + polled


def bench(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    with (
        tempfile.TemporaryDirectory(prefix="onecard-bench-screen-") as tmp,
        browser.sync_playwright() as pw,
    ):
        out = Path(tmp)
        config = write_config(out, voice=not args.no_voice)
        codes = Codes(out / "ecode")
        try:
            chromium = browser.launch(pw)
        except browser.BrowserUnavailable:
            raise
        except Exception as exc:  # Playwright's own error: the binary would not start
            raise browser.BrowserUnavailable(f"Chromium did not start: {exc}") from None
        try:
            with running(config) as runtime:
                url = runtime.screen_server.url
                screens = [
                    Screen("ours: SSE", "kiosk", browser.new_page(chromium, "kiosk")),
                    Screen("ours: SSE", "validator", browser.new_page(chromium, "validator")),
                ]
                for screen in screens:
                    screen.page.goto(url)
                    screen.page.wait_for_function("() => window.__onecard.state !== null")
                for interval in (POLL_FAST, POLL_SLOW):
                    page = open_poll_page(chromium, url, interval)
                    screens.append(Screen(f"baseline: poll {interval} ms", "kiosk", page, interval))
                weight = page_weight(screens[0].page)
                offset = clock_offset_ms(screens[0].page)
                for screen in screens:
                    screen.heap.append(js_heap_mb(screen.page))
                memory = [chromium_memory()]
                # Untimed: one decision of each kind, the last seen by every poller (first
                # paints, voice clips, caches).
                warm = [0] * (len(MIX) - 1) + [POLL_SLOW]
                run_round(runtime, screens, codes, warm, rng)
                memory.append(chromium_memory())
                for screen in screens:
                    screen.heap.append(js_heap_mb(screen.page))
                    screen.decided.clear()
                    screen.scanned.clear()
                    screen.round_medians.clear()
                phases = plan(args)
                decisions: Counter[str] = Counter()
                started = time.perf_counter()
                for _ in range(args.rounds):
                    decisions += run_round(runtime, screens, codes, phases, rng)
                    memory.append(chromium_memory())
                elapsed = time.perf_counter() - started
                for screen in screens:
                    screen.heap.append(js_heap_mb(screen.page))
                state_bytes = len(runtime.screen.state_json().encode())
                report(args, screens, decisions, weight, offset, memory, elapsed, state_bytes)
        finally:
            chromium.close()


def report(
    args: argparse.Namespace,
    screens: list[Screen],
    decisions: Counter[str],
    weight: list[dict[str, Any]],
    offset: tuple[float, float],
    memory: list[tuple[int, float, float]],
    elapsed: float,
    state_bytes: int,
) -> None:
    total = args.rounds * args.count
    print(
        f"decision-to-screen through the gate runtime and headless Chromium: {args.rounds} "
        f"rounds x {args.count} e-codes ({total} decisions, {elapsed:.0f} s); per round "
        f"{args.count - args.polled} as fast as painted, {args.polled} at a random phase of "
        f"the 250 ms poller, {args.slow} of those of the 1000 ms poller; spoken outcomes "
        f"{'off' if args.no_voice else 'on'}"
    )
    print(
        "decisions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(decisions.items()))
        + "; APDUs: none - e-codes, no card, so the APDU count is irrelevant here"
    )
    print(
        f"page clock - Python clock: {offset[0]:+.2f} ms (+-{offset[1]:.2f}); "
        "paint = the rAF after the state is applied, decided = the hub told, scan = submit"
    )
    print()
    print(
        f"{'page':24}{'layout':>10}{'n':>5}{'median ms':>11}{'p95 ms':>8}"
        f"{'scan med':>10}{'scan p95':>10}{'ratio':>7}  round medians ms"
    )
    reference = statistics.median(screens[0].round_medians)
    for screen in screens:
        median = statistics.median(screen.round_medians)
        spread = " ".join(f"{m:.1f}" for m in screen.round_medians)
        print(
            f"{screen.name:24}{screen.layout:>10}{len(screen.decided):>5}{median:>11.1f}"
            f"{percentile(screen.decided, 0.95):>8.1f}"
            f"{statistics.median(screen.scanned):>10.1f}"
            f"{percentile(screen.scanned, 0.95):>10.1f}{median / reference:>7.2f}  {spread}"
        )
    print(
        "median: median of the round medians, paint - decided; p95: over all decisions; "
        "scan: paint - submit; ratio: median / ours (kiosk)"
    )
    ours = {s.layout: statistics.median(s.round_medians) for s in screens[:2]}
    for screen in screens[2:]:
        median = statistics.median(screen.round_medians)
        print(
            f"{screen.name}: baseline/ours x{median / ours['kiosk']:.1f} (kiosk), "
            f"x{median / ours['validator']:.1f} (validator)"
        )

    print("\npage weight (kiosk page as loaded; Resource Timing encodedBodySize, fetched again)")
    print(f"{'resource':28}{'kind':>10}{'bytes':>8}{'fetched':>9}{'gzip -9':>9}")
    for row in weight:
        name = "/" + row["url"].split("/", 3)[3]
        print(f"{name:28}{row['kind']:>10}{row['encoded']:>8}{row['fetched']:>9}{row['gzip']:>9}")
    print(
        f"{'total':28}{'':>10}{sum(r['encoded'] for r in weight):>8}"
        f"{sum(r['fetched'] for r in weight):>9}{sum(r['gzip'] for r in weight):>9}"
    )
    print(
        f"then the event stream: one state of ~{state_bytes} B per change (busy + result per "
        f"decision); a 250 ms poller fetches ~{state_bytes * 240 / 1024:.0f} KB/min of "
        "state bodies, decisions or not"
    )

    print("\nbrowser memory (loaded: pages open; warm: after one decision of each kind)")
    print(f"{'page':24}{'layout':>10}{'JS heap MB loaded':>19}{'warm':>7}{'end':>7}")
    for screen in screens:
        loaded, warmed, end = screen.heap
        print(f"{screen.name:24}{screen.layout:>10}{loaded:>19.2f}{warmed:>7.2f}{end:>7.2f}")
    print("(JS heap used after a forced garbage collection, CDP Performance.getMetrics)")
    labels = ["loaded", "warm"] + [f"r{i + 1}" for i in range(len(memory) - 2)]
    rss = "  ".join(f"{k} {m[1]:.0f}" for k, m in zip(labels, memory, strict=True))
    pss = "  ".join(f"{k} {m[2]:.0f}" for k, m in zip(labels, memory, strict=True))
    print(f"Chromium processes: {memory[0][0]} loaded, {memory[-1][0]} at the end")
    print(f"RSS MB (sum): {rss}")
    print(f"PSS MB (sum): {pss}")
    print(
        f"growth from warm over {total} decisions: RSS {memory[-1][1] - memory[1][1]:+.0f} MB, "
        f"PSS {memory[-1][2] - memory[1][2]:+.0f} MB"
    )

    worst = max(ours.values())
    met = "met" if worst <= TARGET_MS else "not met"
    print(
        f"\ntarget: <= {TARGET_MS:.0f} ms median decision-to-screen: {met} "
        f"(kiosk {ours['kiosk']:.1f} ms, validator {ours['validator']:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=100, help="decisions per round")
    parser.add_argument(
        "--polled", type=int, default=30, help="of --count, shown by the pollers too"
    )
    parser.add_argument(
        "--slow", type=int, default=5, help="of --polled, shown by the 1000 ms poller too"
    )
    parser.add_argument("--seed", type=int, default=1, help="of the random submit phases")
    parser.add_argument(
        "--no-voice", action="store_true", help="[screen] voice = false (no spoken outcomes)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or not 1 <= args.slow <= args.polled <= args.count:
        parser.error("need --rounds >= 1 and 1 <= --slow <= --polled <= --count")
    try:
        bench(args)
    except browser.BrowserUnavailable as error:
        print(f"bench/screen.py: {error.reason}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
