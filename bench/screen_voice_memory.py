"""Benchmark: does the holder page's renderer level off over hundreds of spoken decisions?

The holder screen is served alone - a :class:`~terminal.screen.hub.ScreenHub` with voice
clips (espeak-ng) and a :class:`~terminal.screen.server.ScreenServer` on a free loopback
port, no runtime, no card reader - and headless Chromium (Debian's) shows it. Each
decision is an accepted fare with a balance no other decision has, so every one is a new
clip, as on a bus validator; the next decision comes once the page has started to play the
clip (or after ``--pace`` seconds when it does not) and ``--hold`` seconds more (0: the clip
is cut short by the next, the most clips per minute; 5: each is heard to its end).

Every ``--every`` decisions it prints the page's JS heap (CDP ``Runtime.getHeapUsage``
after ``HeapProfiler.collectGarbage``), the RSS and PSS of Chromium's renderer processes
and the PSS of the page's own (the largest), then the growth per 100 decisions over the
first and the second half of the run: a page that levels off grows in the first half
(caches filling) and not in the second.

Two drivers. ``pipe`` (the default) speaks CDP to Chromium over ``--remote-debugging-pipe``
and enables no domain but ``Page``: the renderer is as a kiosk's is. ``playwright`` drives
it as the browser tests do; Playwright enables CDP ``Network``, whose agent keeps a copy of
every response body in the renderer (about one clip's size per clip fetched, up to its
buffer cap), which the figures then show as growth of the page's own.

    .venv/bin/python bench/screen_voice_memory.py [--decisions 600] [--every 50]
        [--driver pipe|playwright] [--only voice|baseline]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onecard import browser
from terminal.host.clock import SystemClock
from terminal.outputs import Outcome, message_for
from terminal.screen.clips import ClipIndex
from terminal.screen.hub import ScreenHub
from terminal.screen.model import ScreenSettings
from terminal.screen.server import ScreenServer
from terminal.screen.voice import VoiceCatalog

PLAYED_JS = """(() => {
  // Clips that started to play: an <audio> element's 'playing' (seen here, capturing,
  // since media events do not bubble), or the page's own count when it plays otherwise.
  window.__played = 0;
  document.addEventListener("playing", () => { window.__played += 1; }, true);
})()"""

WAIT_JS = """(([count, timeout]) => new Promise((resolve) => {
  const until = performance.now() + timeout;
  const look = () => {
    const probe = window.__onecard || {};
    const played = Math.max(window.__played || 0, probe.played || 0);
    if (played >= count || performance.now() > until) resolve(played);
    else setTimeout(look, 20);
  };
  look();
}))"""
"""Resolves with the number of clips played once it reaches ``count`` (or at ``timeout``
ms): one evaluation per decision."""

READY_JS = """(() => new Promise((resolve) => {
  const look = () => (window.__onecard && window.__onecard.state ? resolve(true)
                                                                : setTimeout(look, 20));
  look();
}))()"""


@dataclass
class Sample:
    decisions: int
    heap_mb: float
    rss_mb: float
    pss_mb: float
    page_pss_mb: float
    """PSS of the largest renderer: the page's (the others are spares, about:blank)."""


FOREGROUND = (
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
)
"""A kiosk's page is in front: without these a headless page nobody looks at has its
timers throttled (to once a minute after five) and its renderer's memory purged, which
neither the pace nor the figures of this bench may depend on. Playwright passes them too."""


class PipeChromium:
    """Chromium with ``--remote-debugging-pipe``: CDP requests on its fd 3, answers and
    events on its fd 4, each a JSON text ended by NUL."""

    def __init__(self, user_data: Path) -> None:
        to_chromium, self._out = os.pipe()
        self._in, from_chromium = os.pipe()

        def plug() -> None:  # in the child, before exec
            os.dup2(to_chromium, 3)
            os.dup2(from_chromium, 4)

        # preexec_fn: the reader thread starts after the child is made.
        self._proc = subprocess.Popen(
            [
                browser.find_chromium(),
                "--headless",
                "--remote-debugging-pipe",
                f"--user-data-dir={user_data}",
                *browser.CHROMIUM_ARGS,
                *FOREGROUND,
                "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=plug,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chromium)
        os.close(from_chromium)
        self._next = 0
        self._lock = threading.Lock()
        self._answers: dict[int, concurrent.futures.Future[dict[str, Any]]] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, method: str, params: dict[str, Any] | None = None, session: str = "") -> Any:
        with self._lock:
            self._next += 1
            number = self._next
            answer: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
            self._answers[number] = answer
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        reply = answer.result(timeout=120)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._in, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for text in messages:
                message = json.loads(text)
                if "id" in message:
                    with self._lock:
                        answer = self._answers.pop(message["id"])
                    answer.set_result(message)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        self._proc.wait(timeout=10)
        os.close(self._out)


class PipePage:
    """The one page, over :class:`PipeChromium`."""

    def __init__(self, chromium: PipeChromium, url: str) -> None:
        self.chromium = chromium
        # The tab Chromium opened with about:blank: one page, one renderer of its own.
        targets = chromium.send("Target.getTargets")["targetInfos"]
        target = next(t["targetId"] for t in targets if t["type"] == "page")
        self.session = chromium.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        width, height = browser.LAYOUTS["validator"]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.enable")
        self.send("Page.bringToFront")
        self.send("Emulation.setFocusEmulationEnabled", {"enabled": True})
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": PLAYED_JS})
        self.send("Page.navigate", {"url": url})
        self.evaluate(READY_JS)

    def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.chromium.send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        return result["result"].get("value")

    def heap_mb(self) -> float:
        self.send("HeapProfiler.collectGarbage")
        return float(self.send("Runtime.getHeapUsage")["usedSize"]) / 2**20

    def renderer_pids(self) -> list[int]:
        processes = self.chromium.send("SystemInfo.getProcessInfo")["processInfo"]
        return [int(p["id"]) for p in processes if p["type"] == "renderer"]


class PlaywrightPage:
    """The one page, through Playwright (as the browser tests drive it)."""

    def __init__(self, chromium: Any, url: str) -> None:
        self.chromium = chromium
        self.page = browser.new_page(chromium, "validator")
        self.page.add_init_script(PLAYED_JS)
        self.page.goto(url)
        self.evaluate(READY_JS)

    def evaluate(self, expression: str) -> Any:
        return self.page.evaluate(expression)

    def heap_mb(self) -> float:
        cdp = self.page.context.new_cdp_session(self.page)
        try:
            cdp.send("HeapProfiler.collectGarbage")
            return float(cdp.send("Runtime.getHeapUsage")["usedSize"]) / 2**20
        finally:
            cdp.detach()

    def renderer_pids(self) -> list[int]:
        cdp = self.chromium.new_browser_cdp_session()
        try:
            processes = cdp.send("SystemInfo.getProcessInfo")["processInfo"]
        finally:
            cdp.detach()
        return [int(p["id"]) for p in processes if p["type"] == "renderer"]


@contextlib.contextmanager
def open_page(driver: str, url: str, tmp: Path) -> Iterator[Any]:
    if driver == "pipe":
        chromium = PipeChromium(tmp / "chromium")
        try:
            yield PipePage(chromium, url)
        finally:
            chromium.close()
        return
    with browser.sync_playwright() as pw:
        launched = browser.launch(pw)
        try:
            yield PlaywrightPage(launched, url)
        finally:
            launched.close()


def balance_message(i: int) -> Any:
    """Decision ``i``: a 2.00 yuan fare, a balance no other decision has."""
    return message_for(Outcome.ACCEPTED, "ok", fare=200, balance=100_000 - 7 * i)


def prerender(settings: ScreenSettings, clips: ClipIndex, count: int) -> None:
    """Render the clips of ``count`` decisions beforehand (the texts a hub of its own says
    for them), so that the run measures the page, not espeak-ng."""
    hub = ScreenHub(settings, SystemClock())
    items = []
    try:
        for i in range(count):
            hub.show(balance_message(i))
            state = hub.state
            items += [(lang, state.spoken(lang)) for lang in ("zh", "en")]
    finally:
        hub.close()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: clips.catalog.render(*item), items))


def _kb(pid: int, key: str, path: str) -> float:
    with contextlib.suppress(OSError):  # a spare renderer that ended
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    return 0.0


def sample(page: Any, decisions: int) -> Sample:
    """The page's heap after a collection, and RSS/PSS of every renderer (the page's, and
    the spare ones Chromium keeps, which hardly change)."""
    heap = page.heap_mb()
    pids = page.renderer_pids()
    rss = sum(_kb(pid, "VmRSS", "status") for pid in pids) / 1024
    pss = [_kb(pid, "Pss", "smaps_rollup") / 1024 for pid in pids]
    return Sample(decisions, heap, rss, sum(pss), max(pss, default=0.0))


def per_100(first: Sample, last: Sample, value: str) -> float:
    span = last.decisions - first.decisions
    return (getattr(last, value) - getattr(first, value)) * 100 / span if span else 0.0


def row(s: Sample) -> str:
    return (
        f"{s.decisions:>10}{s.heap_mb:>12.1f}{s.rss_mb:>18.0f}{s.pss_mb:>9.0f}"
        f"{s.page_pss_mb:>17.0f}"
    )


@dataclass
class Run:
    """One run's samples and what it says of itself."""

    voice: bool
    samples: list[Sample]
    elapsed: float
    played: int
    missed: int


def measure(args: argparse.Namespace, voice: bool) -> Run:
    """``args.decisions`` decisions shown on a fresh page, with clips or without."""
    with tempfile.TemporaryDirectory(prefix="onecard-bench-voice-") as tmp:
        clips = None
        if voice:
            # Room for every clip of the run: the page is measured, not the cache.
            catalog = VoiceCatalog(Path(tmp) / "voice", max_clips=2 * args.decisions + 100)
            catalog.check()
            clips = ClipIndex(catalog)
        settings = ScreenSettings(profile="validator", result_seconds=60.0)
        if clips is not None:
            started = time.monotonic()
            prerender(settings, clips, args.decisions)
            print(f"{2 * args.decisions} clips rendered in {time.monotonic() - started:.0f} s")
        hub = ScreenHub(settings, SystemClock(), voice_url=clips.url if clips is not None else None)
        server = ScreenServer(hub, clips=clips)
        try:
            with open_page(args.driver, server.url, Path(tmp)) as page:
                samples = [sample(page, 0)]
                print(f"\nvoice {'on' if voice else 'off'}")
                print(
                    f"{'decisions':>10}{'JS heap MB':>12}{'renderers RSS MB':>18}{'PSS MB':>9}"
                    f"{'page PSS MB':>17}"
                )
                print(row(samples[0]))
                played = missed = 0
                started = time.monotonic()
                for i in range(args.decisions):
                    hub.show(balance_message(i))
                    wait = f"{WAIT_JS}([{played + 1}, {args.pace * 1000}])"
                    if clips is None:
                        wait = f"new Promise((r) => setTimeout(() => r(0), {args.pace * 100}))"
                    now = int(page.evaluate(wait))
                    if clips is not None:
                        missed += now < played + 1
                        played = now
                    if args.hold:
                        page.evaluate(f"new Promise((r) => setTimeout(r, {args.hold * 1000}))")
                    if (i + 1) % args.every == 0:
                        samples.append(sample(page, i + 1))
                        print(row(samples[-1]))
                elapsed = time.monotonic() - started
        finally:
            server.close()
            hub.close()
            if clips is not None:
                clips.close()
    return Run(voice, samples, elapsed, played, missed)


FIGURES = (
    ("JS heap", "heap_mb"),
    ("renderers RSS", "rss_mb"),
    ("renderers PSS", "pss_mb"),
    ("page PSS", "page_pss_mb"),
)


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    """Growth per 100 decisions over each half of each run, voice beside the baseline."""
    for run in runs:
        print(
            f"\nvoice {'on' if run.voice else 'off'}: {args.decisions} decisions in "
            f"{run.elapsed:.0f} s, driver {args.driver}"
            + (
                f"; {run.played} clips played ({args.hold:g} s each before the next "
                f"decision), {run.missed} not within {args.pace:g} s"
                if run.voice
                else ""
            )
        )
    print(
        f"\nMB per 100 decisions{'':>6}"
        + "".join(
            f"{'voice ' + ('on' if r.voice else 'off') + ' ' + h:>22}"
            for r in runs
            for h in ("1st half", "2nd half")
        )
    )
    for name, value in FIGURES:
        cells = ""
        for run in runs:
            half = run.samples[len(run.samples) // 2]
            cells += f"{per_100(run.samples[0], half, value):>+22.1f}"
            cells += f"{per_100(half, run.samples[-1], value):>+22.1f}"
        print(f"{name:<26}{cells}")
    print(
        f"{'page PSS at the end, MB':<26}"
        + "".join(f"{run.samples[-1].page_pss_mb:>44.0f}" for run in runs)
    )


NUMBERS = {
    # option: (type, default, help)
    "--decisions": (int, 600, "spoken decisions, each a new clip"),
    "--every": (int, 50, "measure every N decisions"),
    "--pace": (float, 5.0, "seconds to wait for a clip to start playing"),
    "--hold": (float, 0.0, "seconds a clip plays before the next decision"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for option, (kind, default, text) in NUMBERS.items():
        parser.add_argument(option, type=kind, default=default, help=f"{text} ({default})")
    parser.add_argument("--driver", choices=("pipe", "playwright"), default="pipe")
    parser.add_argument(
        "--only",
        choices=("voice", "baseline"),
        help="one run: with clips, or the baseline without (default: both, in this order)",
    )
    args = parser.parse_args()
    voices = [True, False] if args.only is None else [args.only == "voice"]
    report(args, [measure(args, voice) for voice in voices])


if __name__ == "__main__":
    main()
