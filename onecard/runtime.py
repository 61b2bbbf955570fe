"""``onecard run``'s composition root: everything ``terminal.toml`` describes, opened and
wired into a :class:`terminal.runtime.loop.TerminalRuntime`.

The one place that turns names in the configuration into concrete parts: the reader and
scanner back-ends through the ``drivers`` registry, the relay board, the secure module, the
profile with its PSAM and pending-purchase store, the document store, the back office link.

Two things happen here at start for "never charge twice" (docs/runtime.md, "Exactly once
across restarts"): the profile's repeat-tap or passback window is rebuilt from the journal,
and the validator is given a look into the journal for a pending purchase it already holds.
Every link that heals itself (the PSAM, the scanners, the back office) reports to the
status page's :class:`~terminal.runtime.links.Links`, and every background worker (the back
office link's three, the holder screen's timer) is handed to the runtime's supervisor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminal.ecode.world import EcodeWorld, load_world
from terminal.errors import ConfigError
from terminal.host.clock import Clock, SystemClock
from terminal.runtime.config import RuntimeConfig
from terminal.runtime.links import Links
from terminal.runtime.loop import ReaderFilter, TerminalRuntime
from terminal.runtime.profiles import (
    JOURNAL_SLACK,
    CounterProfile,
    GateProfile,
    InspectorProfile,
    RailGateProfile,
    ValidatorProfile,
    charge_in_journal,
)
from terminal.runtime.recent import restore_from_journal
from terminal.runtime.statuspage import RuntimeStatus
from terminal.runtime.supervisor import Worker
from terminal.runtime.transaction import TerminalContext, TransactionSteps
from terminal.sync.link import BackOfficeLink

if TYPE_CHECKING:
    from terminal.sync.auth import TerminalCredentials
    from terminal.sync.downloads import DocumentStore

log = logging.getLogger(__name__)


def _hex_file(path: str, what: str) -> bytes:
    """A one-line hex key file, read by the strict operator-file reader."""
    from terminal.ecode.world import read_hex_key_file

    return read_hex_key_file(path, what)


def open_document_store(credentials: TerminalCredentials, directory: Path) -> DocumentStore:
    """The terminal's verified documents, checked against the credentials' publication key;
    trust lists must also parse as e-code trust lists before they are kept."""
    from terminal.ecode.trustlist import trust_list_from_body
    from terminal.sync.downloads import DocumentStore

    return DocumentStore(
        directory,
        credentials.publication_key,
        credentials.publication_algorithm,
        trust_list_parser=trust_list_from_body,
    )


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
    background: list[Worker] = []
    links = Links(clock)
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
        world = load_world(sec.ecode_world) if sec.ecode_world else None

        if sec.token_key:
            token_key = _hex_file(sec.token_key, "token key")
        elif credentials is not None:
            token_key = credentials.token_key
        elif world is not None and world.token_key is not None:
            token_key = _hex_file(str(world.token_key), "token key")
        else:
            raise ConfigError(
                "no card token key: set [backoffice] credentials or [security] token_key"
            )

        store = None
        Path(bo.documents).mkdir(parents=True, exist_ok=True)
        if credentials is not None:
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
        psam: Any = None
        if config.readers.psam:
            # One PSAM module for both of its jobs (the card's internal authentication, the
            # purchase's MAC1 and MAC2): one connection, reopened when pcscd or the PSAM
            # comes back.
            psam = module = open_psam(backend, config.readers.psam, clock, links)
            closers.append(module.close)
        elif sec.keys:
            from terminal.secure.software import SoftwareSecureModule

            module = SoftwareSecureModule.from_file(sec.keys)
            closers.append(module.close)
        trust_store = None
        if sec.trust_store:
            from terminal.host.clock import today
            from terminal.pki.truststore import load_trust_store

            trust_store = load_trust_store(sec.trust_store, today(clock))

        verifier = _open_verifier(config, clock, token_key, world, store)
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
        status.links = links
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
            background.append(Worker("screen-timer", screen.run_timer, screen.close))
        if screen is not None:
            from terminal.outputs import MultiOutputs

            outputs = MultiOutputs(outputs, screen)

        desks: list[Any] = []
        venue = None
        if config.venue is not None:
            venue = open_venue_gate(
                config, clock, token_key, store, events, wake_sender, links, journal, closers
            )
            status.venue = venue.status
        profile = build_profile(
            config,
            clock,
            backend,
            closers,
            psam=psam,
            journal=journal,
            sscard=desks,
            documents=store,
            venue=venue,
        )
        if screen is not None and hasattr(profile, "before_pin"):
            profile.before_pin = lambda: screen.presenting("pin")
        steps = transaction_steps(context, profile, outputs, desks[0] if desks else None)

        if credentials is not None and store is not None:
            link = BackOfficeLink(
                journal,
                events,
                wake_sender,
                credentials,
                store,
                clock,
                bo.sync_interval,
                on_state=links.reporter("backoffice"),
                heartbeat=status.snapshot,
                heartbeat_interval=bo.heartbeat_seconds,
                documents=documents_for(config),
            )
            closers.append(link.close)
            background.extend(Worker(name, work) for name, work in link.workers())
            if venue is not None and venue.occupancy is not None:
                background.append(
                    Worker("venue-occupancy", occupancy_poller(venue, link.client, links))
                )

        scanners: list[Any] = []
        if config.scanner.serial:
            port = config.scanner.serial

            def scanner_state(state: object, port: str = port) -> None:
                status.set_scanner(port, str(state))
                links.report(f"scanner {port}", str(state) == "connected", str(state))

            scanners.append(
                drivers.scanner_backend(
                    "serial", port=port, baudrate=config.scanner.baudrate, on_state=scanner_state
                )
            )
            scanner_state("connected" if scanners[-1].connected else "gone")
        if config.scanner.camera:
            cam = config.scanner.camera
            source: int | str = int(cam) if cam.isdigit() else cam

            def camera_state(state: str, cam: str = cam) -> None:
                status.set_scanner(cam, state)
                links.report(f"camera {cam}", state == "connected", state)

            scanners.append(drivers.scanner_backend("camera", source=source, on_state=camera_state))
            camera_state("connected")

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
    world: EcodeWorld | None,
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
    if world is not None:
        root = _hex_file(str(world.root_public_key), "e-code root key")
        trust_list = load_trust_list(str(world.trust_list), root, world.algorithm)
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
    import drivers

    kind = config.outputs.kind
    try:
        if kind == "serial":
            return drivers.outputs_backend(kind, config.outputs.serial)
        return drivers.outputs_backend(kind)
    except ImportError as exc:
        raise ConfigError(f"outputs {kind!r} not available: {exc}") from None


class WakingOutbox:
    """The event outbox, waking the event sender after each event: what a holder's staff
    call or a venue's passage is told to the back office at once, not at the next round."""

    def __init__(self, outbox: Any, wake: list[Callable[[], None]]) -> None:
        self._outbox = outbox
        self._wake = wake

    def add(self, kind: str, detail: Any = None) -> Any:
        event = self._outbox.add(kind, detail)
        for wake in list(self._wake):
            wake()
        return event


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
        contactless=config.profile in ("gate", "validator", "rail", "inspector"),
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

    hub = ScreenHub(
        settings,
        clock,
        on_event=WakingOutbox(events, wake_sender).add,
        voice_url=clips.url if clips is not None else None,
        timer=False,  # the runtime's supervisor runs its timer
    )
    closers.append(hub.close)
    return hub, clips


class _ScriptedPinPad:
    """PINs from the configuration, in turn (demos only: a real counter has a pad)."""

    def __init__(self, pins: tuple[str, ...]) -> None:
        self._pins = list(pins)

    def read_pin(self, prompt: str) -> str:
        from terminal.devices.pinpad import PinEntryCancelled

        if not self._pins:
            raise PinEntryCancelled("the scripted PIN pad has no more PINs")
        return self._pins.pop(0)


def open_psam(backend: Any, reader: str, clock: Clock, links: Links | None = None) -> Any:
    """The PSAM in ``reader``, reconnecting by itself, its link reported to ``links``. A
    PC/SC service not up yet is no reason not to start: the PSAM connects on first use; a
    reader without a PSAM is (:class:`~terminal.errors.NoSecureModuleError`)."""
    from terminal.secure.psam import PsamSecureModule

    report = links.reporter("psam") if links is not None else None
    psam = PsamSecureModule.open(backend, reader, clock=clock, on_state=report, when_ready=True)
    if report is not None and psam.up:
        report(True, "open")
    return psam


def documents_for(config: Any) -> tuple[str, ...]:
    """The documents a terminal downloads: every terminal the hotlist, the trust list and
    the application list; a rail gate its fare table, a museum its reservations, a scenic
    area's gate its passes."""
    from terminal.sync.downloads import DEFAULT_DOCUMENTS

    extra = {"museum": ("reservations",), "scenic": ("passes",)}
    if config.profile == "rail":
        return (*DEFAULT_DOCUMENTS, "fares")
    if config.venue is not None:
        return (*DEFAULT_DOCUMENTS, *extra.get(config.venue.kind, ()))
    return DEFAULT_DOCUMENTS


def open_venue_gate(
    config: Any,
    clock: Clock,
    token_key: bytes,
    store: Any,
    events: Any,
    wake_sender: list[Callable[[], None]],
    links: Any,
    journal: Any,
    closers: list[Any],
) -> Any:
    """The :class:`terminal.venue.gate.VenueGate` of ``[venue]`` (docs/venues.md): the ILS
    link of a library (its state a link of the status page), the documents of a museum or
    scenic area from the store, the occupancy counted through the events, the reservations
    used and passes counted today rebuilt from the journal once, at start, then counted as
    they are admitted (no journal scan on a tap)."""
    import datetime as dt

    from terminal.host.clock import CST
    from terminal.venue.gate import VenueGate

    settings = config.venue
    ils = None
    if settings.kind == "library" and settings.ils is not None and settings.role != "exit":
        from terminal.venue.ils import IlsClient

        ils = IlsClient(settings.ils)
        closers.append(ils.close)
    occupancy = None
    if settings.occupancy_maximum is not None or settings.role == "exit":
        occupancy = settings.new_occupancy(clock, gate=config.terminal.id)

    def today_start(day: dt.date) -> float:
        return dt.datetime.combine(day, dt.time(), CST).timestamp()

    gate = VenueGate(
        settings,
        clock=clock,
        ils=ils,
        reservations=lambda: getattr(store, "reservations", None),
        passes=lambda: getattr(store, "passes", None),
        occupancy=occupancy,
        token_key=token_key,
        outbox=WakingOutbox(events, wake_sender),
        ils_link=links.reporter("ils") if ils is not None else None,
    )
    now = dt.datetime.fromtimestamp(clock.now(), CST)
    gate.restore(journal.since(today_start(now.date())), now)
    return gate


def occupancy_poller(venue: Any, client: Any, links: Any) -> Callable[[threading.Event], None]:
    """The worker that asks the back office for the venue's occupancy every
    ``occupancy_poll_seconds``; a failed poll leaves the gate counting on its own."""
    from terminal.errors import OneCardError
    from terminal.venue.occupancy import fetch_occupancy

    occupancy = venue.occupancy
    interval = venue.settings.occupancy_poll_seconds

    def poll(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                occupancy.apply(fetch_occupancy(client, occupancy.venue))
            except OneCardError as error:
                log.info("occupancy poll failed (counting locally): %s", error.reason)
            stop.wait(interval)

    return poll


def _ride_profile(
    config: Any, clock: Clock, psam: Any, pending: Any, journaled: Any, documents: Any
) -> Any:
    """A bus validator or a rail gate: the same payment path, another site
    (docs/transit.md "Rides")."""
    from terminal.transit.journey_record import Station
    from terminal.transit.ride import RideSite

    transit = config.transit
    service_code = config.terminal.service

    def service() -> Any:
        applist = documents.application_list if documents is not None else None
        return applist.get(service_code) if applist is not None else None

    def fares() -> Any:
        return getattr(documents, "fare_table", None) if documents is not None else None

    common = {
        "city_code": bytes.fromhex(transit.city_code),
        "operator": bytes.fromhex(transit.operator),
        "record_id": transit.journey_record_id,
    }
    if config.profile == "rail":
        station = Station.parse(config.rail.station)
        site = RideSite(
            mode="rail", role=config.rail.role, station=station, line=station.line, **common
        )
        repeat = config.rail.repeat_seconds
        cls: Any = RailGateProfile
    else:
        site = RideSite(mode="bus", journey_record=transit.journey_record, **common)
        repeat = config.validator.repeat_seconds
        cls = ValidatorProfile
    return cls(
        clock,
        repeat,
        psam,
        pending=pending,
        journaled=journaled,
        site=site,
        service=service,
        reads_ssc=transit.identify == "card",
        card_types=transit.card_types,
        low_balance_fen=transit.low_balance_fen,
        fares=fares,
        block_hotlisted=transit.block_hotlisted,
        block_key_version=transit.block_key_version,
    )


def build_profile(
    config: Any,
    clock: Clock,
    backend: Any,
    closers: list[Any],
    *,
    psam: Any = None,
    journal: Any = None,
    sscard: list[Any] | None = None,
    documents: Any = None,
    venue: Any = None,
) -> Any:
    """The profile ``config`` (a :class:`~terminal.runtime.config.RuntimeConfig`) names,
    with its devices opened (the validator's PSAM: ``psam`` if given); what must be closed
    at shutdown is added to ``closers``. With ``journal`` the profile's repeat-tap or
    passback window is rebuilt from it, and the validator finds there a pending purchase
    the journal already holds. A counter serving the LD/T 33 library adds its
    :class:`~terminal.counter.sscard_desk.CounterDesk` to ``sscard``: the transactions
    must then run through :func:`transaction_steps` with it."""
    profile = config.profile
    if profile == "gate":
        gate = GateProfile(clock, config.gate.passback_minutes, venue)
        _restore_window(gate, journal)
        return gate
    if profile in ("validator", "rail"):
        if not config.readers.psam:
            raise ConfigError(f"{profile} profile needs [readers] psam (the purchase PSAM)")
        from terminal.transit.pending import PendingPurchases

        if psam is None:
            psam = open_psam(backend, config.readers.psam, clock)
            closers.append(psam.close)
        # Beside the journal: the two must survive together.
        journal_path = Path(config.backoffice.journal)
        pending = PendingPurchases(journal_path.with_name(journal_path.stem + "-pending.db"))
        closers.append(pending.close)
        journaled = None
        if journal is not None:

            def journaled(purchase: Any) -> bool:
                since = purchase.when.timestamp() - JOURNAL_SLACK
                return charge_in_journal(journal.since(since), purchase)

        validator = _ride_profile(config, clock, psam, pending, journaled, documents)
        _restore_window(validator, journal)
        return validator
    if profile == "inspector":
        from terminal.transit.inspection import InspectionRules

        section = config.inspector
        rules = InspectionRules(section.mode, section.minutes, section.line, section.terminals)
        return InspectorProfile(
            clock, rules, config.transit.journey_record_id, config.transit.card_types
        )
    if profile == "counter":
        from terminal.devices.pinpad import ConsolePinPad

        pinpad: Any
        if config.counter.pinpad == "script":
            pinpad = _ScriptedPinPad(config.counter.pins)
        else:
            pinpad = ConsolePinPad()
        from terminal.counter.api import CounterApi

        api = CounterApi(
            host="127.0.0.1", port=config.counter.api_port, token_file=counter_token_file(config)
        )
        closers.append(api.shutdown)
        desk = open_sscard(config, backend, pinpad, closers)
        if desk is None:
            return CounterProfile(pinpad, api, config.counter.require_pin)
        from terminal.counter.sscard_desk import HandOff

        if sscard is not None:
            sscard.append(desk)
        # The record goes to the loopback API and to the LD/T 33 library's desk alike.
        return CounterProfile(pinpad, HandOff(api, desk.tracker), config.counter.require_pin)
    raise ConfigError(f"unknown profile {profile!r}")


def transaction_steps(context: Any, profile: Any, outputs: Any, desk: Any = None) -> Any:
    """The runtime's transaction steps; with a counter's LD/T 33 ``desk`` they tell it when
    each card transaction starts and ends, under its card lock."""
    if desk is None:
        return TransactionSteps(context, profile, outputs)
    from terminal.counter.sscard_desk import WatchedSteps

    return WatchedSteps(context, profile, outputs, tracker=desk.tracker, card_lock=desk.card_lock)


def open_sscard(config: Any, backend: Any, pinpad: Any, closers: list[Any]) -> Any:
    """The counter's service for ``libonecard_sscard.so`` (``[counter] sscard_socket``):
    its desk, serving on the socket; None when the socket is turned off (empty), or when
    the default socket's directory cannot be made (not root, no systemd RuntimeDirectory):
    the counter still runs, with the HTTP hand-off only. A socket the operator named that
    cannot be served stops the start."""
    import threading

    from terminal.counter.sscard_desk import CardTracker, CounterDesk
    from terminal.counter.sscard_server import DEFAULT_SOCKET, SscardServer, default_uids

    counter = config.counter
    if not counter.sscard_socket:
        return None
    filt = ReaderFilter(config.readers.names, config.readers.psam)
    desk = CounterDesk(
        backend,
        pinpad,
        tracker=CardTracker(),
        card_lock=threading.Lock(),
        wanted=filt.wanted,
        wait=counter.sscard_wait_seconds,
        terminal_id=config.terminal.id,
    )
    try:
        server = SscardServer(
            counter.sscard_socket,
            desk.serve,
            allowed_uids=default_uids(counter.sscard_users),
            tick=desk.purge,
        )
    except ConfigError as error:
        if counter.sscard_socket != DEFAULT_SOCKET or "another counter" in error.reason:
            raise
        log.warning("sscard library not served: %s", error.reason)
        return None
    closers.append(desk.close)
    closers.append(server.close)
    return desk


def counter_token_file(config: Any) -> Path:
    """The counter API's token file: ``[counter] token_file``, or ``counter-api.token``
    beside the journal (a durable, operator-only directory already)."""
    if config.counter.token_file:
        return Path(config.counter.token_file)
    return Path(config.backoffice.journal).with_name("counter-api.token")


def _restore_window(profile: Any, journal: Any) -> None:
    if journal is None:
        return
    count = restore_from_journal(profile.recent, journal)
    log.info("%s window rebuilt from the journal: %d card(s) in it", profile.name, count)
