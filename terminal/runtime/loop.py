"""The event loop: one queue, one credential at a time, until told to stop.

Card events come from a :class:`drivers.pcsc.CardWatcher` (its own thread; it survives a
pcscd restart by itself), scans from each scanner's reader thread (a serial scanner
reconnects by itself after an unplug); all of them go into one queue, and the loop thread
takes them one by one and runs each credential to completion with
:class:`terminal.runtime.transaction.TransactionSteps`. A stop request (SIGTERM, SIGINT,
:meth:`TerminalRuntime.request_stop`) is seen between transactions: the current one
finishes, then the loop closes everything and returns.

:func:`build_runtime` is the composition root of ``onecard run``: it turns a
:class:`~terminal.runtime.config.RuntimeConfig` into ready objects. Tests and the demo may
build a :class:`TerminalRuntime` from ready objects instead, with no back office.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminal.clock import Clock, SystemClock
from terminal.errors import ConfigError, OneCardError
from terminal.reader import (
    CardInserted,
    CardRemoved,
    ReaderAdded,
    ReaderRemoved,
    ServiceLost,
    ServiceRestored,
)
from terminal.runtime.config import RuntimeConfig
from terminal.runtime.status import RuntimeStatus, StatusServer
from terminal.runtime.transaction import (
    CardPresented,
    CodePresented,
    TerminalContext,
    TransactionOutcome,
    TransactionSteps,
)
from terminal.scanner import ScanEvent

log = logging.getLogger(__name__)

POLL = 0.25
"""Seconds a blocked thread waits before looking at the stop flag again."""


class _Stop:
    """Queued to wake the loop when a stop is requested."""


@dataclass
class ReaderFilter:
    """Which readers hold holders' cards: ``names`` (empty: all) minus the PSAM slot."""

    names: tuple[str, ...] = ()
    psam: str = ""

    def wanted(self, reader: str) -> bool:
        if self.psam and reader == self.psam:
            return False
        return not self.names or reader in self.names


@dataclass
class TerminalRuntime:
    """The running terminal: the steps, the event sources, the status page.

    ``watcher_factory(sink)`` returns a started-on-``start()`` watcher (default: PC/SC's
    :class:`drivers.pcsc.CardWatcher`; None in ``sources`` means no card readers).
    ``closers`` run at shutdown, in reverse order (journal, secure module, uploader...).
    """

    steps: TransactionSteps
    status: RuntimeStatus
    watcher_factory: Callable[[Callable[[Any], None]], Any] | None = None
    scanners: list[Any] = field(default_factory=list)
    readers: ReaderFilter = field(default_factory=ReaderFilter)
    status_port: int | None = None
    clock: Clock = field(default_factory=SystemClock)
    closers: list[Callable[[], None]] = field(default_factory=list)
    background: list[Callable[[threading.Event], None]] = field(default_factory=list)
    """Functions run in their own threads until the stop event is set (document downloads)."""
    screen: Any = None
    """The holder screen's :class:`terminal.screen.hub.ScreenHub` (also among the outputs),
    told when a credential arrives so the holder sees the terminal is working."""
    screen_port: int | None = None
    """Serve the holder screen on 127.0.0.1 at this port (0: a free one; None: not served)."""
    voice_clips: Any = None
    """The :class:`terminal.screen.clips.ClipIndex` the screen server hands clips from."""

    def __post_init__(self) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self.outcomes: list[TransactionOutcome] = []
        self.status_server: StatusServer | None = None
        self.screen_server: Any = None
        self._threads: list[threading.Thread] = []
        self._watcher: Any = None
        self._started = False

    # --- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current transaction, then stop (safe from a signal handler)."""
        self._stop.set()
        self._queue.put(_Stop())

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def submit(self, event: object) -> None:
        """Queue an event (a reader event, a :class:`ScanEvent`, or a presentation)."""
        self._queue.put(event)

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT request a stop (main thread only, as Python requires)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop())

    def wait_for_outcomes(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` transactions have completed (tests, demos)."""
        with self._done:
            return self._done.wait_for(lambda: len(self.outcomes) >= count, timeout)

    # --- running ---------------------------------------------------------------------------

    def start_sources(self) -> None:
        """Start the status server, the watcher, the scanner threads and the background
        work, once. :meth:`run` calls it; callers may call it first (to learn the status
        port before the loop runs)."""
        if self._started:
            return
        self._started = True
        if self.status.recent_errors is None:
            from terminal.runtime.recent_errors import RecentErrors

            self.status.recent_errors = RecentErrors()
            self.status.recent_errors.install()
        if self.screen is not None and self.screen_port is not None and self.screen_port >= 0:
            from terminal.screen.server import ScreenServer

            self.screen_server = ScreenServer(self.screen, self.screen_port, clips=self.voice_clips)
            self.status.screen_url = self.screen_server.url
            self.status.assistance = self.screen.assistance
            self.status.acknowledge_call = self.screen.acknowledge_call
            log.info("holder screen at %s", self.screen_server.url)
        if self.status_port is not None and self.status_port >= 0 and self.status_server is None:
            self.status_server = StatusServer(self.status, self.status_port)
        if self.watcher_factory is not None:
            self._watcher = self.watcher_factory(self.submit)
            self._watcher.start()
        for scanner in self.scanners:
            self._spawn(f"scanner-{scanner.source}", self._scan_loop, scanner)
        for work in self.background:
            self._spawn(getattr(work, "__name__", "background"), work, self._stop)

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def run(self, once_for: float | None = None) -> int:
        """Run until stopped (or for ``once_for`` seconds); returns the exit status 0."""
        timer: threading.Timer | None = None
        if once_for is not None:
            timer = threading.Timer(once_for, self.request_stop)
            timer.daemon = True
            timer.start()
        try:
            self.start_sources()
            while not self._stop.is_set():
                try:
                    event = self._queue.get(timeout=POLL)
                except queue.Empty:
                    continue
                if isinstance(event, _Stop):
                    break
                self.handle(event)
        finally:
            if timer is not None:
                timer.cancel()
            self.shutdown()
        return 0

    def handle(self, event: object) -> TransactionOutcome | None:
        """One event: device state changes update the status; a card or a code runs a
        transaction to completion."""
        presentation: CardPresented | CodePresented | None = None
        if isinstance(event, CardInserted):
            if not self.readers.wanted(event.reader):
                return None
            self.status.set_reader(event.reader, "card")
            presentation = CardPresented(event.reader, event.atr)
        elif isinstance(event, ScanEvent):
            presentation = CodePresented(event.text.rstrip("\r\n"), event.source)
        elif isinstance(event, CardPresented | CodePresented):
            presentation = event
        elif isinstance(event, CardRemoved):
            if self.readers.wanted(event.reader):
                self.status.set_reader(event.reader, "empty")
        elif isinstance(event, ReaderAdded):
            if self.readers.wanted(event.reader):
                self.status.set_reader(event.reader, "empty")
            self.status.pcsc = "up"
        elif isinstance(event, ReaderRemoved):
            self.status.set_reader(event.reader, None)
        elif isinstance(event, ServiceLost):
            log.warning("PC/SC service lost: %s (the watcher reconnects)", event.reason)
            self.status.pcsc = "down"
        elif isinstance(event, ServiceRestored):
            log.info("PC/SC service restored")
            self.status.pcsc = "up"
        if presentation is None:
            return None
        if self.screen is not None:
            self.screen.presenting("code" if isinstance(presentation, CodePresented) else "card")
        try:
            outcome = self.steps.run(presentation)
        except Exception:
            # A bug in one transaction must not stop the terminal (article 22): log it with
            # its traceback, count it, and take the next credential.
            log.exception("transaction failed unexpectedly; the terminal carries on")
            outcome = TransactionOutcome(
                kind="code" if isinstance(presentation, CodePresented) else "card",
                decision="error",
                reason="internal_error",
                detail="the terminal could not complete this transaction",
            )
        log.info(
            "transaction %s %s %s (%d APDUs, %.0f ms)",
            outcome.kind,
            outcome.decision,
            outcome.reason,
            outcome.apdu_count,
            outcome.total_ms,
        )
        self.status.count(outcome.decision, outcome.reason, self.clock.now())
        with self._done:
            self.outcomes.append(outcome)
            self._done.notify_all()
        return outcome

    def _scan_loop(self, scanner: Any) -> None:
        while not self._stop.is_set():
            try:
                event = scanner.read(timeout=POLL)
            except OneCardError as error:  # the driver reconnects; keep asking
                log.warning("scanner %s: %s", scanner.source, error.reason)
                self._stop.wait(POLL)
                continue
            if event is not None:
                self._queue.put(event)
            elif getattr(scanner, "exhausted", False):
                return  # a video file has ended

    def shutdown(self) -> None:
        """Stop the sources and close everything (idempotent)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        for scanner in self.scanners:
            try:
                scanner.close()
            except OneCardError:
                log.debug("scanner close failed", exc_info=True)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self.status_server is not None:
            self.status_server.close()
            self.status_server = None
        if self.screen_server is not None:
            self.screen_server.close()
            self.screen_server = None
        if self.status.recent_errors is not None:
            self.status.recent_errors.remove()
        while self.closers:
            closer = self.closers.pop()
            try:
                closer()
            except Exception:  # one failing close must not leave the rest open
                log.exception("closing failed")


# --- composition root -----------------------------------------------------------------------


def _hex_file(path: str, what: str) -> bytes:
    try:
        return bytes.fromhex(Path(path).read_text().strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None


def _ecode_manifest(world: str) -> dict[str, Any]:
    path = Path(world) / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not an e-code world ({exc})") from None
    return manifest


def build_runtime(
    config: RuntimeConfig,
    *,
    outputs: Any | None = None,
    clock: Clock | None = None,
    watcher_factory: Callable[[Callable[[Any], None]], Any] | None = None,
) -> TerminalRuntime:
    """Everything ``terminal.toml`` describes, opened and wired. Raises
    :class:`ConfigError` (or the typed error of the part that failed to open)."""
    import drivers
    from terminal.journal.store import Journal

    clock = clock or SystemClock()
    closers: list[Callable[[], None]] = []
    background: list[Callable[[threading.Event], None]] = []
    sec, bo = config.security, config.backoffice
    try:
        credentials = None
        if bo.credentials:
            from terminal.sync.auth import load_credentials

            credentials = load_credentials(bo.credentials)
            if credentials.terminal_id != config.terminal.id:
                raise ConfigError(
                    f"credentials are for terminal {credentials.terminal_id!r}, "
                    f"[terminal] id is {config.terminal.id!r}"
                )
        manifest = _ecode_manifest(sec.ecode_world) if sec.ecode_world else None

        if sec.token_key:
            token_key = _hex_file(sec.token_key, "token key")
        elif credentials is not None:
            token_key = credentials.token_key
        elif manifest is not None:
            token_key = _hex_file(manifest["token_key"], "token key")
        else:
            raise ConfigError(
                "no card token key: set [backoffice] credentials or [security] token_key"
            )

        store = None
        Path(bo.documents).mkdir(parents=True, exist_ok=True)
        if credentials is not None:
            from terminal.sync.cli import open_document_store

            store = open_document_store(credentials, Path(bo.documents))
        elif bo.publication_key:
            from terminal.ecode.trustlist import trust_list_from_body
            from terminal.sync.downloads import DocumentStore

            store = DocumentStore(
                bo.documents,
                _hex_file(bo.publication_key, "publication key"),
                bo.publication_algorithm,
                trust_list_parser=trust_list_from_body,
            )
        else:
            log.warning("no credentials and no publication key: no application list")

        journal = Journal.open(bo.journal, config.terminal.id, clock)
        closers.append(journal.close)

        backend = drivers.reader_backend(config.readers.backend)
        module: Any = None
        if config.readers.psam:
            from terminal.secure.psam import PsamSecureModule

            module = PsamSecureModule.open(backend, config.readers.psam)
            closers.append(module.close)
        elif sec.keys:
            from terminal.secure.software import SoftwareSecureModule

            module = SoftwareSecureModule.from_file(sec.keys)
            closers.append(module.close)
        trust_store = None
        if sec.trust_store:
            from terminal.clock import today
            from terminal.pki.truststore import load_trust_store

            trust_store = load_trust_store(sec.trust_store, today(clock))

        verifier = _open_verifier(config, clock, token_key, manifest, store)
        if verifier is not None:
            closers.append(verifier.replay_cache.close)

        context = TerminalContext(
            service=config.terminal.service,
            token_key=token_key,
            journal=journal,
            clock=clock,
            applist=(lambda: store.application_list) if store is not None else (lambda: None),
            hotlist=_hotlist_source(store),
            reader_backend=backend,
            secure_module=module,
            trust_store=trust_store,
            code_verifier=verifier,
            accept_unverified=sec.accept_unverified,
        )

        if outputs is None:
            outputs = _open_outputs(config)
            closers.append(outputs.close)
        status = RuntimeStatus(config.profile, config.terminal.id)
        status.unacked = lambda: journal.stats().unacked
        if store is not None:
            status.versions = store.current_versions

        from terminal.sync.events import EventOutbox

        events = EventOutbox.open(bo.events, config.terminal.id, clock)
        closers.append(events.close)
        status.events_unsent = events.unsent
        wake_sender: list[Callable[[], None]] = []
        screen, clips = _open_screen(config, clock, events, wake_sender, closers)
        if screen is not None:
            from terminal.outputs import MultiOutputs

            outputs = MultiOutputs(outputs, screen)

        from terminal.runtime.profiles import build_profile

        profile = build_profile(config, clock, backend, closers)
        if screen is not None and hasattr(profile, "before_pin"):
            profile.before_pin = lambda: screen.presenting("pin")
        steps = TransactionSteps(context, profile, outputs)

        if credentials is not None and store is not None:
            background.append(
                _sync_work(
                    journal, events, wake_sender, credentials, store, clock, bo.sync_interval
                )
            )

        scanners: list[Any] = []
        if config.scanner.serial:
            port = config.scanner.serial
            scanners.append(
                drivers.scanner_backend(
                    "serial",
                    port=port,
                    baudrate=config.scanner.baudrate,
                    on_state=lambda state: status.set_scanner(port, str(state)),
                )
            )
            status.set_scanner(port, "connected" if scanners[-1].connected else "gone")
        if config.scanner.camera:
            cam = config.scanner.camera
            source: int | str = int(cam) if cam.isdigit() else cam
            scanners.append(drivers.scanner_backend("camera", source=source))
            status.set_scanner(cam, "connected")

        if watcher_factory is None and config.readers.backend == "pcsc":
            from drivers.pcsc import CardWatcher

            watcher_factory = CardWatcher
        return TerminalRuntime(
            steps=steps,
            status=status,
            watcher_factory=watcher_factory,
            scanners=scanners,
            readers=ReaderFilter(config.readers.names, config.readers.psam),
            status_port=config.status.port,
            clock=clock,
            closers=closers,
            background=background,
            screen=screen,
            screen_port=config.screen.port if screen is not None else None,
            voice_clips=clips,
        )
    except BaseException:
        for closer in reversed(closers):
            try:
                closer()
            except Exception:
                log.debug("close after a failed start", exc_info=True)
        raise


def _hotlist_source(store: Any) -> Callable[[], Any]:
    if store is not None:
        return lambda: store.hotlist
    from terminal.hotlist import HotList

    empty = HotList.empty()
    return lambda: empty


def _open_verifier(
    config: RuntimeConfig,
    clock: Clock,
    token_key: bytes,
    manifest: dict[str, Any] | None,
    store: Any,
) -> Any:
    """The e-code verifier: an e-code world, a trust list file, or the downloaded trust
    list; None when none is configured (codes are then refused)."""
    from terminal.crypto.signing import Algorithm
    from terminal.ecode.replay import ReplayCache
    from terminal.ecode.trustlist import load_trust_list, trust_list_from_body
    from terminal.ecode.verify import CodeVerifier

    sec = config.security
    trust_list = None
    if manifest is not None:
        root = _hex_file(manifest["root"]["public_key"], "e-code root key")
        trust_list = load_trust_list(manifest["trust_list"], root, Algorithm(manifest["algorithm"]))
    elif sec.trust_list:
        root = _hex_file(sec.root_key, "e-code root key")
        trust_list = load_trust_list(sec.trust_list, root, Algorithm(sec.root_algorithm))
    elif store is not None and store.trust_list is not None:
        # The downloaded trust list was verified by the document store at load.
        trust_list = trust_list_from_body(store.trust_list)
    if trust_list is None:
        return None
    replay_path = Path(config.backoffice.replay_cache)
    replay_path.parent.mkdir(parents=True, exist_ok=True)
    cache = ReplayCache(replay_path, clock, sec.skew_seconds)
    return CodeVerifier(trust_list, cache, clock, sec.skew_seconds, token_key=token_key)


def _open_outputs(config: RuntimeConfig) -> Any:
    try:
        if config.outputs.kind == "serial":
            from drivers.relay_board import SerialRelayBoard

            return SerialRelayBoard(config.outputs.serial)
        from terminal.outputs import ConsoleOutputs

        return ConsoleOutputs()
    except ImportError as exc:
        raise ConfigError(f"outputs {config.outputs.kind!r} not available: {exc}") from None


def _open_screen(
    config: RuntimeConfig,
    clock: Clock,
    events: Any,
    wake_sender: list[Callable[[], None]],
    closers: list[Callable[[], None]],
) -> tuple[Any, Any]:
    """The holder screen's hub and voice clips as ``[screen]`` says; (None, None) when the
    screen is off. A terminal without espeak-ng shows the screen without sound. Staff
    calls go to the ``events`` outbox, then ``wake_sender`` (the event sender, once the
    back office link runs) so the back office hears at once."""
    sc = config.screen
    if sc.port < 0:
        return None, None
    from terminal.screen.hub import ScreenHub
    from terminal.screen.model import Prefs, ScreenSettings

    settings = ScreenSettings(
        profile=config.profile,
        contactless=config.profile in ("gate", "validator"),
        contact=config.profile == "counter",
        code=bool(config.scanner.serial or config.scanner.camera),
        defaults=Prefs(lang=sc.lang, large=sc.large_print, voice=sc.voice),
        result_seconds=sc.result_seconds,
        assist_factor=sc.assist_factor,
        reset_seconds=sc.reset_seconds,
        assist_idle_seconds=sc.assist_idle_seconds,
        show_holder=sc.show_holder == "masked_name",
        complaint_phone=sc.complaint_phone,
        complaint_url=sc.complaint_url,
    )
    clips = None
    from terminal.screen.clips import ClipIndex
    from terminal.screen.voice import VoiceCatalog

    catalog = VoiceCatalog(
        Path(sc.voice_dir), {"zh": sc.voice_zh, "en": sc.voice_en}, speed=sc.voice_speed
    )
    if catalog.available():
        clips = ClipIndex(catalog)
        closers.append(clips.close)
    else:
        log.warning("espeak-ng or its voices are missing: the holder screen has no sound")

    def record(kind: str, detail: dict[str, object]) -> None:
        events.add(kind, detail)
        for wake in wake_sender:
            wake()

    hub = ScreenHub(
        settings,
        clock,
        on_event=record,
        voice_url=clips.url if clips is not None else None,
    )
    closers.append(hub.close)
    return hub, clips


def _sync_work(
    journal: Any,
    events: Any,
    wake_sender: list[Callable[[], None]],
    credentials: Any,
    store: Any,
    clock: Clock,
    interval: float,
) -> Callable[[threading.Event], None]:
    """The back office link: the uploader's and the event sender's own threads (they retry
    with back-off through outages) and periodic document downloads, until the stop event."""

    def sync(stop: threading.Event) -> None:
        from terminal.sync.downloads import Downloader
        from terminal.sync.events import EventSender
        from terminal.sync.uploader import IngestClient, Uploader

        uploader = Uploader(journal, credentials, clock)
        sender = EventSender(events, credentials, clock)
        wake_sender.append(sender.notify)
        client = IngestClient(credentials, clock)
        downloader = Downloader(store, client.fetch, clock)
        uploader.start()
        sender.start()
        try:
            while not stop.is_set():
                try:
                    downloader.run_once()
                except OneCardError as error:  # an outage: the next round tries again
                    log.warning("document download failed: %s", error.reason)
                stop.wait(interval)
        finally:
            wake_sender.clear()
            uploader.stop()
            sender.stop()
            client.close()

    return sync
