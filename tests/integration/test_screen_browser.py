"""The holder screen in a real browser: Debian's headless Chromium, driven by Playwright,
shows the right message for each outcome after a card tap (pcscd + vpcd) or a scan (pty
scanner), in both layouts at once; axe-core finds no serious violation; screenshots are
left in artifacts/screens under pytest's temporary directory (or $ONECARD_ARTIFACTS)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_runtime_gate import code_for, world  # noqa: F401  (the gate's world fixture)
from test_runtime_gate import write_config as gate_config

from firmware_sim.profile import load_profile
from firmware_sim.scanner import PtyScanner
from firmware_sim.ssc_applet import build_card
from onecard.browser import new_page
from onecard.runtime import build_runtime
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime

pytestmark = [pytest.mark.integration, pytest.mark.browser]

COMPLAINT_URL = "https://12345.cq.gov.cn/complaint"


def write_config(setup: dict, scanner_port: str) -> Path:
    """The gate test's terminal.toml with a holder screen on a free port."""
    path = gate_config(setup, scanner_port)
    path.write_text(
        path.read_text()
        + f"""
[screen]
port = 0
result_seconds = 60
complaint_phone = "12345"
complaint_url = "{COMPLAINT_URL}"
"""
    )
    return path


@pytest.fixture
def gate(world: dict) -> Iterator[tuple[TerminalRuntime, PtyScanner]]:  # noqa: F811
    scanner = PtyScanner()
    runtime = build_runtime(
        load_config(write_config(world, scanner.port)), outputs=RecordingOutputs()
    )
    runtime.start_sources()
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        yield runtime, scanner
    finally:
        runtime.request_stop()
        thread.join(timeout=15)
        runtime.shutdown()
        scanner.close()


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} - {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def wait_title(page, text: str, timeout_ms: int = 15_000) -> None:
    page.wait_for_function(
        "t => document.getElementById('title').textContent === t", arg=text, timeout=timeout_ms
    )


def test_each_outcome_on_screen(world: dict, gate, chromium, artifacts: Path, insert_card) -> None:  # noqa: F811
    runtime, scanner = gate
    url = runtime.screen_server.url
    pages = {layout: new_page(chromium, layout) for layout in ("kiosk", "validator")}
    problems: list[str] = []
    try:
        for page in pages.values():
            page.goto(url)
            wait_title(page, "请刷社保卡或扫电子社保卡")

        def check(step: str, title: str, outcome: str) -> None:
            for layout, page in pages.items():
                wait_title(page, title)
                assert page.get_attribute("#panel", "data-outcome") == outcome, (step, layout)
                # Never colour alone: an icon and words name the outcome too.
                icon = page.get_attribute("#icon use", "href")
                assert icon == {"accepted": "#i-ok", "refused": "#i-no", "error": "#i-error",
                                "none": "#i-card"}[outcome], (step, icon)  # fmt: skip
                page.screenshot(path=str(artifacts / f"{step}-{layout}.png"))
                problems.extend(f"{step}/{layout}: {v}" for v in serious_violations(page))

        check("idle", "请刷社保卡或扫电子社保卡", "none")
        size = pages["kiosk"].evaluate(
            "parseFloat(getComputedStyle(document.getElementById('title')).fontSize)"
        )
        assert size >= 48, f"main message {size}px at 1920x1080"
        # The complaint channel: phone, address and a QR code of the address.
        kiosk = pages["kiosk"]
        assert kiosk.text_content("#complaint-phone") == "12345"
        assert kiosk.text_content("#complaint-url") == COMPLAINT_URL
        assert kiosk.evaluate("document.getElementById('complaint-qr').naturalWidth") > 0

        cards = world["cards"]["cards"]
        outcomes = 0

        def tap(name: str) -> None:
            nonlocal outcomes
            card = insert_card(card=build_card(load_profile(cards[name]["file"])), slot=0)
            outcomes += 1
            assert runtime.wait_for_outcomes(outcomes, timeout=30)
            card.remove()

        def scan(text: str) -> None:
            nonlocal outcomes
            assert scanner.scan(text)
            outcomes += 1
            assert runtime.wait_for_outcomes(outcomes, timeout=30)

        tap("genuine-cq-2.0")
        check("card-accepted", "请通行", "accepted")
        tap("genuine-cq-2.0")
        check("card-passback", "已通行，请勿重复刷卡", "refused")
        tap("genuine-sc-3.0")
        check("card-region", "此地区的卡不适用", "refused")
        code = code_for(world)
        scan(code)
        check("code-accepted", "请通行", "accepted")
        scan(code)
        check("code-replayed", "此码已使用", "refused")
        scan("NOT A SOCIAL SECURITY CODE")
        check("code-garbage", "不是电子社保卡二维码", "refused")

        # English, switched by the holder.
        kiosk.click("#btn-lang")
        wait_title(kiosk, "Not an e-card code")
        assert kiosk.evaluate("document.documentElement.lang") == "en"
        kiosk.screenshot(path=str(artifacts / "english-kiosk.png"))

        # Large print, high contrast.
        kiosk.click("#btn-large")
        kiosk.wait_for_function("document.body.classList.contains('large')")
        big = kiosk.evaluate(
            "parseFloat(getComputedStyle(document.getElementById('title')).fontSize)"
        )
        assert big > size
        kiosk.screenshot(path=str(artifacts / "large-print-kiosk.png"))
        problems.extend(f"large/kiosk: {v}" for v in serious_violations(kiosk))
        pages["validator"].wait_for_function("document.body.classList.contains('large')")
        pages["validator"].screenshot(path=str(artifacts / "large-print-validator.png"))
        problems.extend(f"large/validator: {v}" for v in serious_violations(pages["validator"]))
    finally:
        for page in pages.values():
            page.context.close()
    assert not problems, "\n".join(problems)


def test_screen_renders_within_a_frame_of_the_decision(gate, chromium) -> None:
    """The page's own probe: decision-to-render is recorded for every outcome (the figure of
    bench/screen.py); here only that it is recorded and positive, never a timing limit."""
    runtime, scanner = gate
    page = new_page(chromium, "kiosk")
    try:
        page.goto(runtime.screen_server.url)
        wait_title(page, "请刷社保卡或扫电子社保卡")
        for n in range(1, 4):
            assert scanner.scan(f"GARBAGE-{n}-{time.time()}")
            assert runtime.wait_for_outcomes(n, timeout=30)
            page.wait_for_function("n => window.__onecard.renders.length >= n", arg=n)
        renders = page.evaluate("window.__onecard.renders")
        assert len(renders) == 3
        assert all(r["ms"] > 0 for r in renders), renders
    finally:
        page.context.close()
