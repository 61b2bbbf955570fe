"""Soak: a validator and a gate through pcscd + vpcd for thousands of taps, with faults.

Both terminals run as ``onecard run`` would (``build_runtime`` from a ``terminal.toml``, in
child processes of this one: ``--child CONFIG``), synced to a real back office (SQLite, on
loopback), each with its holder screen and voice. The validator reads cards in vpcd slot 0
with its PSAM in slot 2; the gate reads slot 1 with its PSAM (the card verifier) in slot 3.
The simulated cards live here, so every debit a card commits is seen here.

A tap is what a rider does: put the card down, wait for the terminal's answer; on an
error (or no answer: the terminal was killed) try again - the card may still lie there
when the terminal comes back - until the terminal says yes (or "you have just paid /
entered": a try before this one went through); take the card away. Cards are used in turn
(least recently used first), never again within the repeat-tap or passback window.

Faults, drawn at random per tap (``--fault-rate``):

* ``kill``: kill -9 of the terminal at a random APDU of the tap (before or after the card
  answers it) or after it answered, the card left on the reader; the terminal is started
  again at once.
* ``pcscd``: pcscd restarted (by its process id) at a random APDU of a tap, from another
  thread - the tap meets it wherever it is.
* ``backoffice``: the back office server down for 2-10 s (the same port afterwards).
* ``disk``: disk full for 2-5 s. The terminals' files (journal, pending purchases,
  events, documents, replay cache) are on a 128 MiB tmpfs mounted for the soak; the fault
  fills it up to 1 MiB free with a file, then deletes it. The journal refuses below its
  reserve (32 MiB), SQLite meets ENOSPC. (Needs root for the mount; without it the fault
  is left out and the table says so.)
* ``screen``: four clients of the holder screen's event stream that connect and never
  read, for 10 s.

At the end the back office is brought back, the disk freed, both terminals given time to
upload everything, stopped, and the books checked: every tap charged (or admitted) once -
the card's debits against the journal's charges (by card token and counter), the gate's
admissions against its journal - and the back office holding exactly each journal.
Printed: taps, charged once / twice / lost (must be N / 0 / 0), admitted likewise,
recoveries (a fault's end to the terminal's next accepted tap; the back office's return to
an empty upload backlog) and the worst, RSS and thread count of each terminal at start and
end, and the voice cache.

    .venv/bin/python bench/soak.py [--taps 3000] [--seed 17] [--fault-rate 0.03]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CARD_SLOTS = {"validator": 0, "gate": 1}
PSAM_SLOTS = {"validator": 2, "gate": 3}
TERMINAL_IDS = {"validator": "SOAK-BUS", "gate": "SOAK-GATE"}
SERVICES = {"validator": "bus-ride", "gate": "museum-entry"}
FARE = 200
START_BALANCE = 1_000_000
REPEAT_SECONDS = 10.0
PASSBACK_MINUTES = 0.2
WINDOW_MARGIN = 1.0
CARDS_PER_TERMINAL = 40
ANSWER_WAIT = 20.0
MAX_TRIES = 60
"""Seconds a rider waits for an answer before taking the card away and trying again."""
START_WAIT = 60.0
TMPFS_SIZE = "128m"
DISK_LEFT = 1 << 20
FAULTS = ("kill", "pcscd", "backoffice", "disk", "screen")
DONE_REASONS = {"ok", "torn_purchase_recovered"}
ALREADY_REASONS = {"repeat_tap", "passback"}
CHARGED_REASONS = {"ok", "torn_purchase_recovered", "mac2_mismatch"}


# --- the child: one terminal ------------------------------------------------------------


def child(config_path: str) -> int:
    """Run the terminal of ``config_path``; one JSON line per outcome on stdout (with the
    card token of a journaled one), as ``onecard run`` would run it."""
    import logging

    from onecard.runtime import build_runtime
    from terminal.runtime.config import load_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from bench.runtime import NullOutputs

    runtime = build_runtime(load_config(config_path), outputs=NullOutputs())
    profile = runtime.steps.profile
    committed = profile.committed
    last: dict[str, str] = {}

    def remember(presented: Any, action: Any) -> None:
        last["token"] = presented.credential.card_token.hex()
        committed(presented, action)

    profile.committed = remember
    lock = threading.Lock()

    def report(outcome: Any) -> None:
        token = last.pop("token", None) if outcome.journaled else None
        line = {
            "event": "outcome",
            "decision": outcome.decision,
            "reason": outcome.reason,
            "amount": outcome.amount,
            "token": token,
            "at": time.time(),
        }
        with lock:
            print(json.dumps(line), flush=True)

    runtime.on_outcome = report
    runtime.install_signal_handlers()
    runtime.start_sources()
    started = {
        "event": "started",
        "status_port": runtime.status_server.port if runtime.status_server else None,
        "screen_url": runtime.screen_server.url if runtime.screen_server else None,
    }
    print(json.dumps(started), flush=True)
    return runtime.run()


# --- the parent: the world, the cards, the terminals --------------------------------------


@dataclass
class SoakCard:
    """A simulated card with its e-purse (validator) or without (gate)."""

    name: str
    card: Any
    applet: Any
    token: bytes
    last_tap: float = -1e9
    debits: list[tuple[int, int]] = field(default_factory=list)
    """(counter the debit ran under, tap number)."""
    taps: int = 0


class Terminal:
    """One terminal child process: started, killed, restarted; its outcome lines."""

    def __init__(self, name: str, config: Path, env: dict[str, str]) -> None:
        self.name = name
        self.config = config
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.status_port: int | None = None
        self.screen_url: str | None = None
        self.starts = 0
        self.stderr_tail: list[str] = []

    def start(self) -> None:
        self.lines = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=str(REPO),
        )
        self.starts += 1
        process, lines = self.process, self.lines
        threading.Thread(target=self._pump, args=(process, lines), daemon=True).start()
        threading.Thread(target=self._drain, args=(process,), daemon=True).start()
        end = time.monotonic() + START_WAIT
        while True:
            try:
                line = lines.get(timeout=max(0.1, end - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name} did not start: {self.stderr()}") from None
            if line is None:
                raise RuntimeError(f"{self.name} died at start: {self.stderr()}")
            if line.get("event") == "started":
                self.status_port = line["status_port"]
                self.screen_url = line["screen_url"]
                return

    def _pump(self, process: subprocess.Popen[str], lines: queue.Queue) -> None:
        assert process.stdout is not None
        for text in process.stdout:
            with contextlib.suppress(ValueError):
                lines.put(json.loads(text))
        lines.put(None)

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for text in process.stderr:
            self.stderr_tail = [*self.stderr_tail[-40:], text]

    def stderr(self) -> str:
        return "".join(self.stderr_tail)[-3000:]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def next_outcome(self, timeout: float) -> dict[str, Any] | None:
        """The next outcome line; None after ``timeout`` or when the child has ended."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self.lines.put(None)
                return None
            if line.get("event") == "outcome":
                return line

    def drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                line = self.lines.get_nowait()
                if line is None:
                    self.lines.put(None)
                    return

    def health(self) -> dict[str, Any] | None:
        if self.status_port is None:
            return None
        try:
            url = f"http://127.0.0.1:{self.status_port}/health"
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.loads(answer.read())
        except (OSError, ValueError):
            return None

    def usage(self) -> tuple[float, int]:
        """RSS (MiB) and thread count of the child."""
        rss, threads = 0.0, 0
        with contextlib.suppress(OSError, TypeError):
            for text in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if text.startswith("VmRSS:"):
                    rss = int(text.split()[1]) / 1024
                elif text.startswith("Threads:"):
                    threads = int(text.split()[1])
        return rss, threads


@dataclass
class Recovery:
    kind: str
    terminal: str
    since: float
    done: float | None = None
    target: int = 0
    """After a back office outage: the journal's last entry when the back office came back;
    recovered once the back office holds it (taps go on journaling meanwhile)."""


class Soak:
    """Everything the soak runs: the back office, the terminals, the cards, the faults."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = Path(tempfile.mkdtemp(prefix="onecard-soak-"))
        self.data = self.root / "data"
        self.data.mkdir()
        self.tmpfs = False
        self.voice = self.root / "voice"
        self.faults: dict[str, int] = dict.fromkeys(FAULTS, 0)
        """Faults that happened (a kill drawn for an APDU the tap never reached did not)."""
        self.kinds = [kind for kind in args.faults.split(",") if kind]
        self.last_apdus: dict[str, int] = {"validator": 8, "gate": 8}
        self.recoveries: list[Recovery] = []
        self.unexpected: list[str] = []
        self.failed_starts: list[str] = []
        self.kill_armed: dict[str, tuple[int, bool] | None] = {"validator": None, "gate": None}
        self.pcscd_armed: int | None = None
        self.tap_apdus = 0
        self.tap_number = 0
        self.current: SoakCard | None = None
        self.threads: list[threading.Thread] = []
        self.office_down = threading.Event()
        self.usage_start: dict[str, tuple[float, int]] = {}

    # --- setup ---------------------------------------------------------------------------

    def mount(self) -> None:
        if self.args.no_tmpfs or os.geteuid() != 0:
            return
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(self.data)],
            capture_output=True,
        )
        self.tmpfs = done.returncode == 0

    def unmount(self) -> None:
        if self.tmpfs:
            subprocess.run(["umount", str(self.data)], check=False)

    def setup(self) -> None:
        from backoffice.cli import format_credentials
        from backoffice.keys import new_token_key
        from backoffice.publish import generate_publication_key
        from backoffice.server import BackOffice
        from backoffice.storage import open_storage
        from firmware_sim.issuing import issue_world
        from terminal.secure.keyfile import load_key_file

        self.world = issue_world(self.data / "world")
        self.keyset = load_key_file(self.world["keys"])
        self.storage = open_storage(self.root / "backoffice.sqlite")
        self.publication_key = generate_publication_key()
        self.office = BackOffice(self.storage, self.publication_key)
        self.office.publish("applist", applist())
        self.server = self.office.serve()
        self.port = self.server.port
        self.token_key = new_token_key()
        self.terminals: dict[str, Terminal] = {}
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        names = wait_readers()
        for name in ("validator", "gate"):
            secret = os.urandom(32)
            self.storage.enrol(TERMINAL_IDS[name], secret, time.time())
            creds = self.data / f"{name}-creds.toml"
            creds.write_text(
                format_credentials(
                    TERMINAL_IDS[name],
                    secret,
                    self.server.url,
                    self.publication_key,
                    self.token_key,
                    None,
                )
            )
            creds.chmod(0o600)
            (self.data / name).mkdir()
            config = self.data / f"{name}.toml"
            config.write_text(terminal_config(name, names, self.voice))
            sync_once(name, self.data, env)
            self.terminals[name] = Terminal(name, config, env)
        self.psams = [self.insert_psam(slot) for slot in PSAM_SLOTS.values()]
        self.cards = {
            "validator": [self.validator_card(n) for n in range(CARDS_PER_TERMINAL)],
            "gate": [self.gate_card(n) for n in range(CARDS_PER_TERMINAL)],
        }

    def insert_psam(self, slot: int) -> Any:
        from drivers.pcsc import wait_for_card
        from firmware_sim.psam_applet import build_psam
        from firmware_sim.vpcd import VpcdBridge, reader_name

        bridge = VpcdBridge(build_psam(self.keyset), slot=slot)
        bridge.insert()
        reader = reader_name(slot, wait_readers())
        assert reader is not None and wait_for_card(reader, True, 30)
        return bridge

    def _card(self, name: str, number: int, purse: bool) -> SoakCard:
        import dataclasses

        from firmware_sim.profile import load_profile
        from firmware_sim.ssc_applet import build_card
        from firmware_sim.tunion_applet import add_tunion
        from terminal.privacy.cardtoken import card_token

        profile = load_profile(self.world["cards"]["genuine-cq-2.0"]["file"])
        card_number = f"S{'V' if purse else 'G'}{number:07d}"
        issuer = dataclasses.replace(profile.issuer, card_number=card_number)
        card = build_card(dataclasses.replace(profile, issuer=issuer), contactless=True)
        applet = None
        if purse:
            serial = bytes.fromhex(f"5100{number + 1:016d}")
            applet = add_tunion(card, self.keyset, balance=START_BALANCE, app_serial=serial)
        soak_card = SoakCard(name, card, applet, card_token(self.token_key, card_number))
        process = card.process

        def watched(apdu: bytes) -> bytes:
            return self.on_apdu(soak_card, process, apdu)

        card.process = watched
        return soak_card

    def validator_card(self, number: int) -> SoakCard:
        return self._card("validator", number, purse=True)

    def gate_card(self, number: int) -> SoakCard:
        return self._card("gate", number, purse=False)

    # --- the card's side: debits and APDU-timed faults -------------------------------------

    def on_apdu(self, card: SoakCard, process: Callable[[bytes], bytes], apdu: bytes) -> bytes:
        self.tap_apdus += 1
        count = self.tap_apdus
        kill = self.kill_armed.get(card.name)
        if kill is not None and kill[0] == count and kill[1]:
            self.kill_now(card.name)
        if self.pcscd_armed == count:
            self.pcscd_armed = None
            self.background(self.restart_pcscd)
        before = card.applet.counter if card.applet is not None else None
        answer = process(apdu)
        if card.applet is not None and card.applet.counter != before:
            card.debits.append((before, self.tap_number))
        if kill is not None and kill[0] == count and not kill[1]:
            self.kill_now(card.name)
        return answer

    def kill_now(self, name: str) -> None:
        self.kill_armed[name] = None
        self.faults["kill"] += 1
        terminal = self.terminals[name]
        if terminal.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(terminal.process.pid, signal.SIGKILL)

    def background(self, work: Callable[[], None]) -> None:
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        self.threads.append(thread)

    # --- faults ------------------------------------------------------------------------------

    def restart_pcscd(self) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from helpers.pcscd_service import restart_pcscd

        self.faults["pcscd"] += 1
        restart_pcscd()
        now = time.monotonic()
        self.recoveries += [Recovery("pcscd", name, now) for name in self.terminals]

    def office_outage(self) -> None:
        from backoffice.server import serve

        self.faults["backoffice"] += 1
        self.office_down.set()
        self.server.shutdown()
        time.sleep(self.rng.uniform(2, 10))  # the outage's length
        for _ in range(100):
            try:
                self.server = serve(self.office, port=self.port)
                break
            except OSError:
                time.sleep(0.1)  # the port is still held by the old socket
        self.office_down.clear()
        now = time.monotonic()
        self.recoveries += [
            Recovery("backoffice", name, now, target=self.journaled(name))
            for name in self.terminals
        ]

    def disk_full(self) -> None:
        if not self.tmpfs:
            return
        self.faults["disk"] += 1
        filler = self.data / "filler"
        free = shutil.disk_usage(self.data).free
        with contextlib.suppress(OSError), open(filler, "wb") as out:
            block = bytes(1 << 20)
            for _ in range(max(0, (free - DISK_LEFT) >> 20)):
                out.write(block)
        time.sleep(self.rng.uniform(2, 5))  # the disk stays full this long
        filler.unlink(missing_ok=True)
        now = time.monotonic()
        self.recoveries += [Recovery("disk", name, now) for name in self.terminals]

    def stalled_screens(self, name: str) -> None:
        url = self.terminals[name].screen_url
        if not url:
            return
        self.faults["screen"] += 1
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        stalled = []
        for _ in range(4):
            with contextlib.suppress(OSError):
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
                conn.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                stalled.append(conn)  # and never read
        self.recoveries.append(Recovery("screen", name, time.monotonic()))
        time.sleep(10)  # the clients stay stalled this long
        for conn in stalled:
            conn.close()

    def draw_fault(self, name: str, card: SoakCard) -> None:
        """Maybe arm or start a fault for the tap about to be made at ``name``."""
        if self.rng.random() >= self.args.fault_rate:
            return
        kind = self.rng.choice(self.kinds)
        # At an APDU the tap reaches: its count is about that of the terminal's last tap.
        apdus = max(1, self.last_apdus[name])
        if kind == "kill":
            if self.rng.random() < 0.25:
                self.kill_armed[name] = (10**6, False)  # after the answer: see tap()
            else:
                self.kill_armed[name] = (self.rng.randint(1, apdus), self.rng.random() < 0.5)
        elif kind == "pcscd":
            self.pcscd_armed = self.rng.randint(1, apdus)
        elif kind == "backoffice" and not self.office_down.is_set():
            self.background(self.office_outage)
        elif kind == "disk":
            self.background(self.disk_full)
        elif kind == "screen":
            self.background(lambda: self.stalled_screens(name))

    # --- taps --------------------------------------------------------------------------------

    def pick(self, name: str) -> SoakCard:
        window = REPEAT_SECONDS if name == "validator" else PASSBACK_MINUTES * 60
        card = min(self.cards[name], key=lambda c: c.last_tap)
        wait = card.last_tap + window + WINDOW_MARGIN - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # the rider comes back after the window, not before
        return card

    def tap(self, name: str) -> None:
        from firmware_sim.vpcd import VpcdBridge

        terminal = self.terminals[name]
        card = self.pick(name)
        self.tap_number += 1
        card.taps += 1
        self.draw_fault(name, card)
        self.tap_apdus = 0
        slot = CARD_SLOTS[name]
        bridge = VpcdBridge(card.card, slot=slot)
        tries = 0
        done = False
        starts = terminal.starts
        while not done:
            if tries >= MAX_TRIES:
                self.unexpected.append(f"{name} {card.token.hex()[:8]}: gave up")
                break
            terminal.drain()
            if not terminal.alive():
                self.restart(terminal)
            insert(bridge)
            tries += 1
            while True:
                outcome = terminal.next_outcome(ANSWER_WAIT)
                if outcome is None and not terminal.alive():
                    # Killed: it comes back and finds the card where the rider left it.
                    self.restart(terminal)
                    continue
                if outcome is None:
                    break  # no answer: take the card away and try again
                if outcome["token"] not in (None, card.token.hex()):
                    continue  # a card of an earlier tap, read again: not this tap's answer
                reason = outcome["reason"]
                if outcome["decision"] == "accept" and reason in DONE_REASONS | {"pay_later"}:
                    done = True
                elif reason in ALREADY_REASONS:
                    if tries == 1 and terminal.starts == starts and not self.recent_fault():
                        self.unexpected.append(f"{name} {card.token.hex()[:8]}: {reason}")
                    done = True
                elif outcome["decision"] == "accept":
                    done = True
                break
            if done:
                self.accepted(name)
                if self.kill_armed.get(name) == (10**6, False):
                    # Killed after the answer, the card left on the reader: the terminal
                    # comes back, reads it again and must neither charge nor admit it.
                    self.kill_now(name)
                    terminal.kill9()
                    self.restart(terminal)
                    outcome = terminal.next_outcome(ANSWER_WAIT)
                    if outcome is not None and outcome["reason"] not in ALREADY_REASONS:
                        self.unexpected.append(f"{name} after restart: {outcome['reason']}")
            bridge.remove()
            wait_removed(slot)
        self.kill_armed[name] = None
        if tries == 1:
            self.last_apdus[name] = self.tap_apdus
        card.last_tap = time.monotonic()

    def recent_fault(self) -> bool:
        return any(r.done is None for r in self.recoveries) or self.pcscd_armed is not None

    def restart(self, terminal: Terminal) -> None:
        """Start it again, as systemd would: again after a failed start (the PSAM's reader
        not there yet while pcscd restarts, say)."""
        terminal.kill9()
        started = time.monotonic()
        for attempt in range(10):
            try:
                terminal.start()
                break
            except RuntimeError as exc:
                self.failed_starts.append(str(exc).splitlines()[-1][:200])
                if attempt == 9:
                    raise
                wait_readers()
        self.recoveries.append(Recovery("kill", terminal.name, started))

    def accepted(self, name: str) -> None:
        now = time.monotonic()
        for recovery in self.recoveries:
            if (
                recovery.terminal == name
                and recovery.done is None
                and recovery.kind != "backoffice"
            ):
                recovery.done = now

    def journaled(self, name: str) -> int:
        """The sequence number of the terminal's last journal entry (read from its file)."""
        import sqlite3

        from terminal.errors import OneCardError
        from terminal.journal.store import Journal

        try:
            with Journal.open_read_only(self.data / name / "journal.db") as journal:
                return journal.stats().last_seq
        except (OneCardError, sqlite3.Error):  # a disk-full moment: what it holds so far
            return max(self.storage.acked_up_to(TERMINAL_IDS[name]), 1)

    def check_backlog(self) -> None:
        waiting = [r for r in self.recoveries if r.kind == "backoffice" and r.done is None]
        for recovery in waiting:
            if self.storage.acked_up_to(TERMINAL_IDS[recovery.terminal]) >= recovery.target:
                recovery.done = time.monotonic()

    # --- the run -----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.mount()
        try:
            self.setup()
            for terminal in self.terminals.values():
                terminal.start()
            started = time.monotonic()
            for number in range(self.args.taps):
                name = "validator" if number % 2 == 0 else "gate"
                self.tap(name)
                if number < 2:
                    self.usage_start[name] = self.terminals[name].usage()
                self.check_backlog()
            elapsed = time.monotonic() - started
            return self.finish(elapsed)
        finally:
            for terminal in getattr(self, "terminals", {}).values():
                terminal.stop()
            for bridge in getattr(self, "psams", []):
                bridge.remove()
            if hasattr(self, "server"):
                self.server.shutdown()
            self.unmount()
            shutil.rmtree(self.root, ignore_errors=True)

    def finish(self, elapsed: float) -> dict[str, Any]:
        for thread in self.threads:
            thread.join(timeout=60)
        usage_end = {name: t.usage() for name, t in self.terminals.items()}
        end = time.monotonic() + 180
        while time.monotonic() < end:
            self.check_backlog()
            healths = [t.health() for t in self.terminals.values()]
            if all(h is not None and h.get("journal_unacked") == 0 for h in healths):
                break
            time.sleep(0.5)  # waiting on another process's upload: polled, no event here
        workers = {
            name: (t.health() or {}).get("workers", []) for name, t in self.terminals.items()
        }
        links = {name: (t.health() or {}).get("links", []) for name, t in self.terminals.items()}
        for terminal in self.terminals.values():
            terminal.stop()
        return self.books(elapsed, usage_end, workers, links)

    def books(
        self,
        elapsed: float,
        usage_end: dict[str, tuple[float, int]],
        workers: dict[str, list[dict[str, Any]]],
        links: dict[str, list[dict[str, Any]]],
    ) -> dict[str, Any]:
        from terminal.journal.store import Journal

        journals: dict[str, list[Any]] = {}
        for name in self.terminals:
            path = self.data / name / "journal.db"
            with Journal.open_read_only(path) as journal:
                assert journal.verify().ok, f"{name}: journal chain broken"
                journals[name] = list(journal.entries())
        result: dict[str, Any] = {"elapsed": elapsed}
        # Validator: every tap debited once, every debit journaled once.
        charges: dict[tuple[str, int], int] = {}
        for entry in journals["validator"]:
            if entry.reason in CHARGED_REASONS and entry.amount:
                key = (entry.card_token, int(entry.extra["counter"]))
                charges[key] = charges.get(key, 0) + 1
        once = twice = lost = 0
        for card in self.cards["validator"]:
            by_tap: dict[int, int] = {}
            for _, tap in card.debits:
                by_tap[tap] = by_tap.get(tap, 0) + 1
            twice += sum(1 for n in by_tap.values() if n > 1)
            for counter, _ in card.debits:
                times = charges.pop((card.token.hex(), counter), 0)
                if times == 0:
                    lost += 1
                elif times > 1:
                    twice += 1
                else:
                    once += 1
            lost += max(0, card.taps - len(by_tap))
            balance = START_BALANCE - FARE * len(card.debits)
            if card.applet.balance != balance:
                self.unexpected.append(f"balance of {card.token.hex()[:8]} off")
        twice += sum(charges.values())  # journaled charges no card made
        result["validator"] = {
            "taps": sum(c.taps for c in self.cards["validator"]),
            "once": once,
            "twice": twice,
            "lost": lost,
        }
        # Gate: every tap admitted once.
        admitted: dict[str, int] = {}
        for entry in journals["gate"]:
            if entry.decision == "accept":
                admitted[entry.card_token] = admitted.get(entry.card_token, 0) + 1
        g_once = g_twice = g_lost = 0
        for card in self.cards["gate"]:
            n = admitted.pop(card.token.hex(), 0)
            g_once += min(n, card.taps)
            g_twice += max(0, n - card.taps)
            g_lost += max(0, card.taps - n)
        result["gate"] = {
            "taps": sum(c.taps for c in self.cards["gate"]),
            "once": g_once,
            "twice": g_twice + sum(admitted.values()),
            "lost": g_lost,
        }
        # The back office holds exactly each journal.
        same = {}
        for name, entries in journals.items():
            stored = self.storage.entries(TERMINAL_IDS[name], 0, len(entries) + 10)
            same[name] = [(s["seq"], s["hash"]) for s in stored] == [
                (e.seq, e.hash) for e in entries
            ]
        result["backoffice_equals_journal"] = same
        result["journal_entries"] = {name: len(entries) for name, entries in journals.items()}
        result["faults"] = dict(self.faults)
        result["recoveries"] = self.recoveries
        result["usage"] = {
            name: (self.usage_start.get(name, (0.0, 0)), usage_end[name]) for name in self.terminals
        }
        result["starts"] = {name: t.starts for name, t in self.terminals.items()}
        result["failed_starts"] = self.failed_starts
        result["workers"] = workers
        result["links"] = links
        result["voice"] = voice_cache(self.voice)
        result["unexpected"] = self.unexpected
        result["tmpfs"] = self.tmpfs
        return result


def insert(bridge: Any) -> None:
    """Put the card down; while pcscd restarts vpcd does not listen: try again."""
    for _ in range(300):
        try:
            bridge.insert()
            return
        except ConnectionError:
            wait_readers()
    raise RuntimeError("vpcd never took the card")


def wait_removed(slot: int) -> None:
    """Until pcscd sees the slot empty (through a pcscd restart, if one is under way)."""
    from drivers.pcsc import wait_for_card
    from firmware_sim.vpcd import reader_name
    from terminal.errors import ReaderError

    for _ in range(10):
        reader = reader_name(slot, wait_readers())
        try:
            if reader is not None and wait_for_card(reader, present=False, timeout=10):
                return
        except ReaderError:
            continue  # pcscd went away meanwhile: ask the new one


def wait_readers() -> list[str]:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.pcscd_service import start_pcscd, wait_for_service

    try:
        return wait_for_service()
    except RuntimeError:
        start_pcscd()
        return wait_for_service()


def applist() -> dict[str, Any]:
    return {
        "services": [
            {
                "code": SERVICES["validator"],
                "name": "Bus line 1",
                "scope": "sichuan-chongqing",
                "fare": FARE,
                "valid_from": "2020-01-01",
            },
            {
                "code": SERVICES["gate"],
                "name": "Museum",
                "scope": "chongqing",
                "valid_from": "2020-01-01",
            },
        ]
    }


def terminal_config(name: str, readers: list[str], voice: Path) -> str:
    from firmware_sim.vpcd import reader_name

    card_reader = reader_name(CARD_SLOTS[name], readers)
    psam_reader = reader_name(PSAM_SLOTS[name], readers)
    return f"""
[terminal]
id = "{TERMINAL_IDS[name]}"
profile = "{name}"
service = "{SERVICES[name]}"

[readers]
names = ["{card_reader}"]
psam = "{psam_reader}"

[security]
trust_store = "world/trust.json"

[backoffice]
credentials = "{name}-creds.toml"
journal = "{name}/journal.db"
documents = "{name}/documents"
replay_cache = "{name}/replay.db"
sync_interval = 5

[validator]
repeat_seconds = {REPEAT_SECONDS}

[gate]
passback_minutes = {PASSBACK_MINUTES}

[status]
port = 0

[screen]
port = 0
voice_dir = "{voice}"
"""


def sync_once(name: str, data: Path, env: dict[str, str]) -> None:
    """The documents before the first tap (the runtime downloads in the background)."""
    subprocess.run(
        [
            *(sys.executable, "-m", "onecard.cli", "sync", "--once"),
            *("--credentials", str(data / f"{name}-creds.toml")),
            *("--journal", str(data / name / "journal.db")),
            *("--documents", str(data / name / "documents")),
        ],
        capture_output=True,
        env=env,
        cwd=str(REPO),
        timeout=120,
        check=False,
    )


def voice_cache(directory: Path) -> tuple[int, int]:
    files = [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


# --- the table -------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    v, g = result["validator"], result["gate"]
    rows = [
        ("taps (validator + gate)", f"{v['taps']} + {g['taps']} in {result['elapsed']:.0f} s"),
        ("validator charged once / twice / lost", f"{v['once']} / {v['twice']} / {v['lost']}"),
        ("gate admitted once / twice / lost", f"{g['once']} / {g['twice']} / {g['lost']}"),
        ("back office = journal", str(result["backoffice_equals_journal"])),
        ("journal entries", str(result["journal_entries"])),
        ("faults", ", ".join(f"{k} {n}" for k, n in result["faults"].items())),
        ("terminal starts (1 + restarts)", str(result["starts"])),
        ("failed starts (started again)", str(len(result["failed_starts"]))),
    ]
    recoveries = result["recoveries"]
    done = [r for r in recoveries if r.done is not None]
    rows.append(("recoveries", f"{len(done)} of {len(recoveries)}"))
    for kind in FAULTS:
        times = [r.done - r.since for r in done if r.kind == kind]
        if times:
            rows.append((f"  worst recovery after {kind}", f"{max(times):.2f} s ({len(times)})"))
    if done:
        worst = max(done, key=lambda r: r.done - r.since)
        rows.append(("worst recovery", f"{worst.done - worst.since:.2f} s ({worst.kind})"))
    for name, (start, end) in result["usage"].items():
        rows.append(
            (
                f"{name} RSS / threads start -> end",
                f"{start[0]:.1f} MiB / {start[1]} -> {end[0]:.1f} MiB / {end[1]}",
            )
        )
    files, size = result["voice"]
    rows.append(("voice cache", f"{files} files, {size / 1024:.0f} KiB"))
    for name, workers in result["workers"].items():
        shown = ", ".join(f"{w['name']} {w['state']} r{w['restarts']}" for w in workers)
        rows.append((f"{name} workers", shown))
    for name, links in result["links"].items():
        shown = ", ".join(
            f"{k['name']} {k['state']} x{k['reconnects']}"
            + (f" ({k['reason']})" if k["state"] != "up" else "")
            for k in links
        )
        rows.append((f"{name} links", shown))
    rows.append(("disk-full fault", "tmpfs" if result["tmpfs"] else "left out (no tmpfs)"))
    rows.append(("unexpected", "; ".join(result["unexpected"][:10]) or "none"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--taps", type=int, default=3000, help="taps in all (both terminals)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--fault-rate", type=float, default=0.03, help="faults per tap")
    parser.add_argument("--no-tmpfs", action="store_true", help="no disk-full fault")
    parser.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"the kinds of fault drawn, comma-separated (default {','.join(FAULTS)})",
    )
    parser.add_argument("--child", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.faults.split(",")) - set(FAULTS) - {""}
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    if args.child:
        return child(args.child)
    result = Soak(args).run()
    print_table(result)
    v, g = result["validator"], result["gate"]
    ok = v["twice"] == v["lost"] == g["twice"] == g["lost"] == 0
    return 0 if ok and all(result["backoffice_equals_journal"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
