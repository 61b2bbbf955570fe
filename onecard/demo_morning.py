"""``onecard demo``, part two: a scripted morning at a museum gate, a library, a museum with
real-name reservations, on a bus, at a hospital, on the metro.

Everything is real but the cards, the back office's operators and the library's system: an
embedded back office (HTTP on loopback, SQLite) publishes the application list, the hotlist
and the museum's reservations, receives the journals and counts the museum's visitors from
the gates' events; the runtimes (gates, validators, counter, rail gates) built from
``terminal.toml`` files run their event loops over pcscd + vpcd readers and a pty scanner;
simulated cards are put into the vpcd slots one after another. The library gate asks a
small SIP2 library system (pysip2's ACS on 127.0.0.1, :class:`DemoLibrary`) when pysip2 is
installed (``make demo`` installs it with the test extra); without it the scene says it is
skipped. A composition root, like the CLI.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import (
    generate_publication_key,
    hotlist_entry_for_card,
    reservations_body,
)
from backoffice.server import BackOffice
from backoffice.storage import open_storage
from backoffice.venue import day_of
from drivers.pcsc import establish_context, list_readers, release_context, wait_for_card
from firmware_sim.ecode_issuing import issue_code, issue_ecode_world, read_private_key
from firmware_sim.issuing import card_keys, issue_world
from firmware_sim.profile import CardProfile, load_profile
from firmware_sim.psam_applet import build_psam
from firmware_sim.scanner import PtyScanner
from firmware_sim.ssc_applet import build_card
from firmware_sim.tunion_applet import add_tunion
from firmware_sim.vpcd import VpcdBridge, reader_name
from onecard.runtime import build_runtime, documents_for, open_document_store
from terminal.crypto.signing import Algorithm
from terminal.errors import PcscUnavailableError
from terminal.host.clock import CST, SystemClock
from terminal.journal.store import Journal
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime
from terminal.secure.keyfile import KeySet, TransitKeyName, generate_key_set, load_key_file
from terminal.ssc.cardnumber import check_character
from terminal.sync.auth import load_credentials
from terminal.sync.client import BackOfficeClient
from terminal.sync.downloads import Downloader
from terminal.sync.events import EventOutbox, EventSender
from terminal.sync.uploader import Uploader
from terminal.wire.canonical import parse_json

APPLIST = {
    "services": [
        {
            "code": "museum-entry",
            "name": "Chongqing museums (Sichuan-Chongqing list)",
            "scope": "sichuan-chongqing",
            "fare": 0,
            "valid_from": "2025-01-01",
        },
        {
            "code": "library-entry",
            "name": "Chongqing Library",
            "scope": "sichuan-chongqing",
            "fare": 0,
            "valid_from": "2025-01-01",
        },
        {
            "code": "bus-fare",
            "name": "City buses",
            "scope": "sichuan-chongqing",
            "fare": 200,
            "category_fares": {"2": 100, "4": 0},
            "valid_from": "2025-01-01",
        },
        {
            "code": "metro",
            "name": "Rail transit",
            "scope": "national",
            "fare": 0,
            "cards": ["ssc", "tunion"],
            "valid_from": "2025-01-01",
        },
        {
            "code": "bus-transfer",
            "name": "City buses (transfer from the metro)",
            "scope": "national",
            "fare": 200,
            "category_fares": {"2": 100, "4": 0},
            "cards": ["ssc", "tunion"],
            "transfers": [{"after": ["rail"], "within_minutes": 90, "discount_fen": 100}],
            "rides_per_day": {"4": 4},
            "valid_from": "2025-01-01",
        },
        {
            "code": "hospital-registration",
            "name": "Hospital registration",
            "scope": "national",
            "fare": 0,
            "valid_from": "2025-01-01",
        },
    ]
}

TERMINALS = {
    "GATE-01": ("gate", "museum-entry", 0),
    "LIB-01": ("gate", "library-entry", 0),
    "MUS-01": ("gate", "museum-entry", 0),
    "BUS-01": ("validator", "bus-fare", 1),
    "DESK-01": ("counter", "hospital-registration", 3),
    "RAIL-IN": ("rail", "metro", 0),
    "RAIL-OUT": ("rail", "metro", 3),
    "BUS-02": ("validator", "bus-transfer", 1),
    "INSPECT-01": ("inspector", "bus-transfer", 0),
}
FARES = {
    "network": "rail",
    "stations": [
        {"code": "0101", "name": "Xiaoshizi", "line": "01"},
        {"code": "0105", "name": "Lianglukou", "line": "01"},
        {"code": "0203", "name": "Yangjiaping", "line": "02"},
    ],
    "pricing": "distance",
    "distances": [["0101", "0105", 7.0], ["0101", "0203", 14.0], ["0105", "0203", 9.0]],
    "bands": [[6, 200], [11, 300], [17, 400], [None, 500]],
    "categories": {"adult": 100, "student": 50, "elderly": 0},
    "max_minutes": 240,
    "overtime_fen": 400,
    "same_station_minutes": 20,
    "same_station_fen": 200,
    "reentry_minutes": 10,
}
FIELD_TRANSIT = """
[transit]
identify = "purse"
journey_record = true
card_types = { "04" = "4" }
city_code = "6900"
low_balance_fen = 1500
"""
RAIL_SECTIONS = {
    "RAIL-IN": FIELD_TRANSIT + '[rail]\nstation = "0101"\nrole = "entry"\n',
    "RAIL-OUT": FIELD_TRANSIT + '[rail]\nstation = "0105"\nrole = "exit"\n',
    "BUS-02": FIELD_TRANSIT,
    "INSPECT-01": FIELD_TRANSIT + '[inspector]\nmode = "bus"\nminutes = 60\n',
}
PSAM_SLOT = 2
VENUE_GATES = ("LIB-01", "MUS-01")
"""The venue scenes' gates: each its own ``[venue]`` table, no scanner."""
MUSEUM = "museum-1"
MUSEUM_MAXIMUM = 2
"""The museum's maximum as the back office sets it (``venue set-max``): it overrides the
gate's configured one (MUSEUM_SECTION), so the demo fills the museum with two visitors."""
MUSEUM_SECTION = f"""
[venue]
kind = "museum"
id = "{MUSEUM}"
maximum = 300
occupancy_poll_seconds = 0.2
stale_seconds = 5
"""


def library_section(port: int) -> str:
    """The library gate's ``[venue]``: the demo library system's SIP2 server."""
    return f"""
[venue]
kind = "library"
id = "cq-library"

[venue.ils]
host = "127.0.0.1"
port = {port}
user = "{DemoLibrary.USER}"
password = "{DemoLibrary.PASSWORD}"
institution = "{DemoLibrary.INSTITUTION}"
timeout_seconds = 1.0
fallback = "admit"
"""


@dataclass
class Row:
    place: str
    credential: str
    decision: str
    reason: str
    fare: str
    apdus: str
    ms: str


def variant(
    sample: CardProfile, keyset: KeySet, serial: int, **issuer_changes: object
) -> CardProfile:
    """A genuine card like ``sample`` with its own card number and serial (and any issuer
    data changed), its keys diversified from the issuer's masters as a real card's are."""
    body = f"{sample.issuer.card_number[0]}{serial:07d}"
    card_id = sample.issuer.card_id[:16] + f"{serial:08X}" + sample.issuer.card_id[24:]
    issuer = dataclasses.replace(
        sample.issuer, card_id=card_id, card_number=body + check_character(body), **issuer_changes
    )
    card = dataclasses.replace(
        sample.card,
        historical=sample.card.historical[:9] + bytes.fromhex(f"{serial:08X}"),
        uid=bytes.fromhex(f"{serial:08X}"),
    )
    profile = dataclasses.replace(sample, issuer=issuer, card=card, pki=None)
    return dataclasses.replace(profile, keys=card_keys(profile, keyset))


class DemoLibrary:
    """The library system of the demo's library gate: pysip2's SIP2 server (the ACS side)
    on 127.0.0.1, serving Login, SC Status and Patron Status from ``patrons`` (card number
    -> the set patron status flags, :class:`terminal.venue.sip2.PatronFlag` names), with a
    login required as a real ACS does. :meth:`stop` takes it down: the listener and every
    connection close, so the gate's next request is refused (its fallback applies).

    pysip2 is a test extra: :meth:`missing` says why the demo cannot have its library.
    ``SIP2Server.start()`` never closes its listener, so the listener is made with the
    public ``listen()`` and its connections handed to the server's per-connection loop
    (``_handle_connection``: pysip2 0.1's name, checked by :meth:`missing`)."""

    USER = "gate01"
    PASSWORD = "secret"
    INSTITUTION = "CQLIB"

    @staticmethod
    def missing() -> str:
        """Why there can be no demo library here, or "" when there can."""
        try:
            from pysip2 import SIP2Server
        except ImportError:
            return "pysip2 not installed (pip install -e '.[test]')"
        if not hasattr(SIP2Server, "_handle_connection"):
            return "this pysip2 has no SIP2Server._handle_connection"
        return ""

    def __init__(self, patrons: dict[str, frozenset[str]]) -> None:
        import anyio
        from anyio.abc import SocketAttribute
        from anyio.from_thread import start_blocking_portal
        from pysip2 import (
            LOGIN,
            PATRON_STATUS,
            SC_STATUS,
            LoginResponse,
            PatronStatusResponse,
            SIP2Server,
        )

        from terminal.venue.sip2 import PatronFlag

        order = sorted(PatronFlag, key=lambda flag: flag.value)
        server = SIP2Server(
            encoding="utf-8",
            institution_id=self.INSTITUTION,
            library_name="重庆图书馆",
            login_required=True,
        )

        @server.route(LOGIN)
        async def login(req, ctx):  # type: ignore[no-untyped-def]
            ok = req.login_user_id == self.USER and req.login_password == self.PASSWORD
            return LoginResponse(ok="1" if ok else "0")

        @server.route(SC_STATUS)
        async def sc_status(req, ctx):  # type: ignore[no-untyped-def]
            return ctx.server.build_acs_status(req)

        @server.route(PATRON_STATUS)
        async def patron_status(req, ctx):  # type: ignore[no-untyped-def]
            flags = patrons.get(req.patron_identifier)
            return PatronStatusResponse(
                patron_status="".join(
                    "Y" if flags and flag.name in flags else " " for flag in order
                ),
                language=req.language,
                transaction_date=ctx.now_18(),
                institution_id=req.institution_id,
                patron_identifier=req.patron_identifier,
                personal_name="读者" if flags is not None else "",
                valid_patron="Y" if flags is not None else "N",
            )

        @contextlib.asynccontextmanager
        async def serving():  # type: ignore[no-untyped-def]
            listener = await server.listen("127.0.0.1", 0)
            async with listener, anyio.create_task_group() as tasks:
                tasks.start_soon(listener.serve, server._handle_connection)
                try:
                    yield listener.extra(SocketAttribute.local_port)
                finally:
                    tasks.cancel_scope.cancel()

        self._portal_cm = start_blocking_portal()
        portal = self._portal_cm.__enter__()
        self._serving: contextlib.AbstractContextManager[int] | None = (
            portal.wrap_async_context_manager(serving())
        )
        self.port: int = self._serving.__enter__()

    def stop(self) -> None:
        """The library system goes down: no listener, every connection closed."""
        if self._serving is not None:
            serving, self._serving = self._serving, None
            serving.__exit__(None, None, None)

    def close(self) -> None:
        self.stop()
        self._portal_cm.__exit__(None, None, None)


def with_purchase_keys(keyset: KeySet) -> KeySet:
    """The SSSE master keys plus e-purse purchase masters: one PSAM for both."""
    extra = generate_key_set(keyset.terminal_number, purchase=True)
    purchase = {k: v for k, v in extra.keys.items() if k[1] is TransitKeyName.PURCHASE}
    return KeySet(keyset.terminal_number, {**keyset.keys, **purchase})


def config_text(terminal_id: str, profile: str, service: str, reader: str, psam: str,
                scanner: str, world: Path, keys: Path, tmp: Path) -> str:  # fmt: skip
    return f"""
[terminal]
id = "{terminal_id}"
profile = "{profile}"
service = "{service}"

[readers]
names = ["{reader}"]
psam = "{psam}"

[scanner]
serial = "{scanner}"

[security]
keys = "{keys}"
trust_store = "{world / "trust.json"}"
ecode_world = "{world.parent / "ecode"}"

[backoffice]
credentials = "{tmp / f"{terminal_id}.toml"}"
journal = "{tmp / f"{terminal_id}-journal.db"}"
documents = "{tmp / f"{terminal_id}-documents"}"
replay_cache = "{tmp / f"{terminal_id}-replay.db"}"

[counter]
api_port = 0
sscard_socket = "{tmp / f"{terminal_id}-sscard.sock"}"
pinpad = "script"
pins = ["123456", "000000"]

[status]
port = 0

[screen]
port = 0
result_seconds = 60
show_holder = "{"masked_name" if profile == "counter" else "none"}"
complaint_phone = "12345"
complaint_url = "https://12345.cq.gov.cn/"
"""


@contextlib.contextmanager
def running(config: Path, outputs: object | None = None) -> Iterator[TerminalRuntime]:
    with build_runtime(load_config(config), outputs=outputs).running("demo-runtime") as runtime:
        yield runtime


def run_morning(out: Callable[[str], None], screens: Path | None = None) -> int:
    """The scripted morning; with ``screens``, screenshots of the holder screens go there."""
    context = establish_context()
    try:
        names = list_readers(context)
    finally:
        release_context(context)
    slots = {slot: reader_name(slot, names) for slot in range(4)}
    if None in slots.values():
        raise PcscUnavailableError("vpcd slots 0-3 are not registered (run `make setup`)")

    with tempfile.TemporaryDirectory(prefix="onecard-morning-") as tmp_name:
        tmp = Path(tmp_name)
        world = issue_world(tmp / "world")
        ecode = issue_ecode_world(tmp / "ecode")
        keyset = with_purchase_keys(load_key_file(world["keys"]))
        from terminal.secure.keyfile import write_key_file

        keys_file = tmp / "keys.toml"
        write_key_file(keyset, keys_file)

        # The embedded back office: application list, hotlist, enrolled terminals.
        token_key = new_token_key()
        publication = generate_publication_key()
        storage = open_storage(tmp / "backoffice.sqlite")
        office = BackOffice(storage, publication)
        server = office.serve()
        rows: list[Row] = []
        library: DemoLibrary | None = None
        try:
            office.publish("applist", APPLIST)
            office.publish("fares", FARES)
            trust = parse_json(Path(ecode["trust_list"]).read_bytes())
            office.publish(
                "trustlist",
                {k: v for k, v in trust.items() if k not in ("signature", "kind", "version")},
            )
            cq = load_profile(world["cards"]["genuine-cq-2.0"]["file"])
            hotlisted = variant(cq, keyset, 7001)
            expired = variant(
                cq, keyset, 7002,
                issue_date=cq.issuer.issue_date.replace(year=2010),
                expiry_date=cq.issuer.expiry_date.replace(year=2020),
            )  # fmt: skip
            poor, torn = variant(cq, keyset, 7003), variant(cq, keyset, 7004)
            storage.hotlist_change(
                hotlist_entry_for_card(token_key, hotlisted.issuer.card_number), True
            )
            # The venues: the museum's reservations for today and its maximum, set at the
            # back office; the library's system (its patrons by card number).
            museum_cards = [holder_variant(cq, keyset, 7201 + n) for n in range(4)]
            library_cards = [variant(cq, keyset, 7301 + n) for n in range(4)]
            today = dt.datetime.now(CST).date().isoformat()
            museum_slots = [
                {
                    "id": "today",
                    "start": f"{today}T00:00:00+08:00",
                    "end": f"{today}T23:59:59+08:00",
                }
            ]
            # The second visitor has no reservation; the first, third and fourth have one.
            booked = "".join(f"{museum_cards[n].holder.ssn},today\n" for n in (0, 2, 3))
            office.publish(
                "reservations", reservations_body(MUSEUM, museum_slots, booked, token_key)
            )
            storage.set_venue_maximum(MUSEUM, MUSEUM_MAXIMUM, time.time())
            skipped = DemoLibrary.missing()
            if not skipped:
                patron, overdue, _unknown, reader = library_cards
                library = DemoLibrary(
                    {
                        patron.issuer.card_number: frozenset(),
                        overdue.issuer.card_number: frozenset({"too_many_items_overdue"}),
                        reader.issuer.card_number: frozenset(),
                    }
                )
            venue_sections = {
                "MUS-01": MUSEUM_SECTION,
                "LIB-01": library_section(library.port) if library is not None else "",
            }
            scanner = PtyScanner(tmp)
            for terminal_id, (profile, service, slot) in TERMINALS.items():
                secret = os.urandom(32)
                storage.enrol(terminal_id, secret, time.time())
                creds = tmp / f"{terminal_id}.toml"
                creds.write_text(
                    format_credentials(
                        terminal_id, secret, server.url, publication, token_key, None
                    )
                )
                creds.chmod(0o600)
                (tmp / f"{terminal_id}-documents").mkdir()
                scans = profile in ("gate", "validator") and terminal_id not in (
                    "BUS-02",
                    *VENUE_GATES,
                )
                (tmp / f"{terminal_id}.terminal.toml").write_text(
                    config_text(
                        terminal_id, profile, service, slots[slot], slots[PSAM_SLOT],
                        scanner.port if scans else "", world_dir(world), keys_file,
                        tmp,
                    ) + RAIL_SECTIONS.get(terminal_id, "")
                    + venue_sections.get(terminal_id, "")
                )  # fmt: skip
                # The terminal's first sync: the lists it needs before its first passenger.
                credentials = load_credentials(creds)
                store = open_document_store(credentials, tmp / f"{terminal_id}-documents")
                client = BackOfficeClient(credentials, SystemClock())
                wanted = documents_for(load_config(tmp / f"{terminal_id}.terminal.toml"))
                Downloader(store, client.fetch, SystemClock(), documents=wanted).run_once()
                client.close()

            psam = VpcdBridge(build_psam(keyset), slot=PSAM_SLOT)
            psam.insert()
            wait_for_card(slots[PSAM_SLOT])
            shots = Screenshots(screens, out)
            heard: list[str] = []
            try:
                rows += gate_morning(tmp, slots, world, ecode, scanner, hotlisted, expired, shots)
                rows += library_morning(tmp, slots, library, skipped, library_cards, heard, shots)
                rows += museum_morning(tmp, slots, storage, museum_cards, heard, shots)
                rows += bus_morning(tmp, slots, world, ecode, scanner, keyset, cq, poor, torn)
                rows += counter_morning(tmp, slots, world, shots)
                rows += rail_morning(tmp, slots, keyset, cq, shots)
            finally:
                psam.remove()
                scanner.close()

            out(
                "A morning at a museum gate, a library, a museum with reservations, on a bus, "
                "at a hospital counter and on the metro:\n"
            )
            header = (
                f"{'place':<9} {'credential':<34} {'decision':<8} {'reason':<38} "
                f"{'fare':>6} {'APDUs':>5} {'ms':>6}"
            )
            out(header)
            out("-" * len(header))
            for r in rows:
                out(
                    f"{r.place:<9} {r.credential:<34} {r.decision:<8} {r.reason:<38} "
                    f"{r.fare:>6} {r.apdus:>5} {r.ms:>6}"
                )
            if heard:
                out("\nWhat the venue gates told the holders:\n")
                for line in heard:
                    out(line)
            shots.report()
            return report_backoffice(out, tmp, storage, server.url)
        finally:
            if library is not None:
                library.close()
            server.shutdown()
            storage.close()


def world_dir(world: dict) -> Path:
    return Path(world["keys"]).parent


def present(
    runtime: TerminalRuntime, slot: int, reader: str, card: object, count: int,
    before_wait: Callable[[VpcdBridge], None] | None = None,
) -> object:  # fmt: skip
    bridge = VpcdBridge(card, slot=slot)
    if before_wait is not None:
        before_wait(bridge)
    bridge.insert()
    try:
        if not runtime.wait_for_outcomes(count, timeout=30):
            raise TimeoutError(f"no decision for the card in {reader}")
        return runtime.outcomes[count - 1]
    finally:
        bridge.remove()
        wait_for_card(reader, present=False, timeout=10)


def scan(runtime: TerminalRuntime, scanner: PtyScanner, text: str, count: int) -> object:
    scanner.scan(text)
    if not runtime.wait_for_outcomes(count, timeout=30):
        raise TimeoutError("no decision for the scanned code")
    return runtime.outcomes[count - 1]


def row(place: str, credential: str, outcome: object) -> Row:
    fare = getattr(outcome, "amount", None)
    total_ms = sum(getattr(outcome, "timings", {}).values())
    reason = outcome.reason
    why = re.search(r"\(([a-z_]+)\)$", outcome.detail or "")
    if reason == "not_authentic" and why:
        reason = f"{reason}: {why.group(1)}"  # the card verdict: forged, cloned, replayed...
    return Row(
        place,
        credential,
        outcome.decision,
        reason,
        f"{fare / 100:.2f}" if fare else "-",
        str(outcome.apdu_count or "-"),
        f"{total_ms:.1f}",
    )


def ecode_text(ecode: dict) -> str:
    algorithm = Algorithm(ecode["algorithm"])
    issuer = ecode["issuer"]
    card = ecode["card"]
    return issue_code(
        read_private_key(issuer["private_key"], algorithm),
        bytes.fromhex(issuer["key_id"]),
        algorithm,
        card["region"],
        card["card_number"],
        card["category"],
        int(time.time()),
    )


class Screenshots:
    """The holder screens as a holder saw them: one PNG per layout after each transaction
    (nothing when ``out_dir`` is None or the machine has no Chromium)."""

    def __init__(self, out_dir: Path | None, out: Callable[[str], None]) -> None:
        self.out_dir = out_dir
        self.out = out
        self.camera: object | None = None
        self.files: list[Path] = []
        self.missing = ""

    @contextlib.contextmanager
    def watching(self, runtime: TerminalRuntime) -> Iterator[None]:
        if self.out_dir is None or runtime.screen_server is None:
            yield
            return
        from onecard.browser import BrowserUnavailable
        from onecard.screenshots import ScreenCamera

        try:
            self.camera = ScreenCamera(runtime.screen_server.url, self.out_dir)
        except BrowserUnavailable as error:
            self.missing = error.reason
            yield
            return
        try:
            yield
        finally:
            self.files += self.camera.files
            self.camera.close()
            self.camera = None

    def take(self, runtime: TerminalRuntime, name: str) -> None:
        if self.camera is not None:
            self.camera.capture(name, runtime.screen.state.seq)

    def report(self) -> None:
        if self.missing:
            self.out(f"\nHolder screens: no screenshots ({self.missing}).")
        elif self.files:
            self.out(
                f"\nHolder screens: {len(self.files)} screenshots (1920x1080 kiosk, 800x480 "
                f"validator) in {self.out_dir}/"
            )


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def call_staff(runtime: TerminalRuntime, shots: Screenshots) -> None:
    """A holder presses "call staff" on the screen; the operator acknowledges on the
    status page - both through their pages, as people would."""
    import urllib.request

    if shots.camera is None:
        call = runtime.screen.call_staff()
    else:
        shots.camera.page("kiosk").click("#btn-call")
        deadline = time.monotonic() + 10
        while runtime.screen.state.call is None and time.monotonic() < deadline:
            time.sleep(0.02)
        call = runtime.screen.state.call.id
    shots.take(runtime, "gate-staff-called")
    port = runtime.status_server.port
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/calls/{call}/ack",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
    shots.take(runtime, "gate-staff-on-the-way")


def gate_morning(tmp, slots, world, ecode, scanner, hotlisted, expired, shots) -> list[Row]:
    cards = world["cards"]
    story = [
        ("valid Chongqing card", load_profile(cards["genuine-cq-2.0"]["file"])),
        ("Sichuan card (mutual recognition)", load_profile(cards["genuine-sc-3.0"]["file"])),
        ("hotlisted card", hotlisted),
        ("forged card", load_profile(cards["forged-cq-2.0"]["file"])),
        ("cloned card", load_profile(cards["cloned-sc-3.0"]["file"])),
        ("expired card", expired),
    ]
    rows = []
    reader = slots[0]
    with running(tmp / "GATE-01.terminal.toml") as runtime, shots.watching(runtime):
        shots.take(runtime, "gate-0-waiting")
        for n, (label, profile) in enumerate(story, start=1):
            # Gates read the card contactless, as they do in the field.
            outcome = present(runtime, 0, reader, build_card(profile, contactless=True), n)
            rows.append(row("gate", label, outcome))
            shots.take(runtime, f"gate-{n}-{slug(label)}")
        code = ecode_text(ecode)
        rows.append(row("gate", "e-code", scan(runtime, scanner, code, len(story) + 1)))
        shots.take(runtime, f"gate-{len(story) + 1}-e-code")
        rows.append(row("gate", "same e-code again", scan(runtime, scanner, code, len(story) + 2)))
        shots.take(runtime, f"gate-{len(story) + 2}-same-e-code-again")
        call_staff(runtime, shots)
    return rows


def bus_morning(tmp, slots, world, ecode, scanner, keyset, cq, poor, torn) -> list[Row]:
    reader = slots[1]
    rows = []

    def with_purse(profile: CardProfile, balance: int, serial: str):
        card = build_card(profile, contactless=True)  # a bus validator's tap
        applet = add_tunion(card, keyset, balance=balance, app_serial=bytes.fromhex(serial))
        return card, applet

    with running(tmp / "BUS-01.terminal.toml") as runtime:
        card, _ = with_purse(cq, 5000, "50000000000000000101")
        rows.append(row("bus", "valid card, fare debited", present(runtime, 1, reader, card, 1)))
        card, _ = with_purse(poor, 100, "50000000000000000102")
        rows.append(
            row("bus", "card with too little balance", present(runtime, 1, reader, card, 2))
        )
        card, applet = with_purse(torn, 5000, "50000000000000000103")

        def tear(bridge: VpcdBridge) -> None:
            applet.after_debit = bridge.remove

        rows.append(
            row("bus", "card pulled after the debit", present(runtime, 1, reader, card, 3, tear))
        )
        applet.after_debit = None
        rows.append(row("bus", "same card tapped again", present(runtime, 1, reader, card, 4)))
        rows.append(row("bus", "e-code (pay later)", scan(runtime, scanner, ecode_text(ecode), 5)))
    return rows


def holder_variant(sample: CardProfile, keyset: KeySet, serial: int) -> CardProfile:
    """:func:`variant` with a (made up) identity number of its own in EF06: what a museum's
    real-name reservation is made with."""
    profile = variant(sample, keyset, serial)
    ssn = f"50010319850101{serial % 1000:03d}X"
    return dataclasses.replace(profile, holder=dataclasses.replace(profile.holder, ssn=ssn))


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def told(runtime: TerminalRuntime, place: str, label: str) -> str:
    """What the holder screen says (Chinese) after the last tap, for the demo's notes."""
    said = runtime.screen.state.spoken("zh") if runtime.screen is not None else ""
    return f"  {place:<8} {label}: {said or '-'}"


def library_morning(tmp, slots, library, skipped, profiles, heard, shots) -> list[Row]:
    """A library gate asking the library system (SIP2) about each holder: a patron in good
    standing, a patron with overdue books (refused with the library's message), a holder
    the library does not know (admitted to read), then, the library system down, another
    patron (the configured fallback admits; the first patron would meet the gate's
    anti-passback)."""
    if library is None:
        heard.append(f"  library  scene skipped: {skipped}")
        return [Row("library", "scene skipped", "-", skipped.split(" (")[0][:38], "-", "-", "-")]
    reader = slots[0]
    patron, overdue, unknown, later = (build_card(p, contactless=True) for p in profiles)
    story = [
        ("library patron", patron),
        ("patron with overdue books", overdue),
        ("card unknown to the library", unknown),
        ("patron, library system down", later),
    ]
    rows = []
    with running(tmp / "LIB-01.terminal.toml") as runtime, shots.watching(runtime):
        for n, (label, card) in enumerate(story, start=1):
            if n == len(story):
                library.stop()
            rows.append(row("library", label, present(runtime, 0, reader, card, n)))
            heard.append(told(runtime, "library", label))
            shots.take(runtime, f"library-{n}-{slug(label)}")
    return rows


def museum_morning(tmp, slots, storage, profiles, heard, shots) -> list[Row]:
    """A museum's entry gate: real-name reservations (the identity number read from the
    card, matched by its keyed token), and the venue full at the maximum the back office
    set, counted by the back office from the gate's ``venue_entry`` events."""
    reader = slots[0]
    cards = [build_card(p, contactless=True) for p in profiles]
    story = [
        "visitor with a reservation",
        "visitor without a reservation",
        "second visitor with a reservation",
        f"third reservation, museum full {MUSEUM_MAXIMUM}/{MUSEUM_MAXIMUM}",
    ]
    rows = []

    def gate_maximum(runtime: TerminalRuntime) -> object:
        occupancy = runtime.status.venue()["occupancy"]
        return occupancy and occupancy["maximum"]

    def counted() -> int:
        return storage.venue_occupancy(MUSEUM, day_of(time.time()), "MUS-01")[0]

    with running(tmp / "MUS-01.terminal.toml") as runtime, shots.watching(runtime):
        # The gate is told the back office's maximum by its occupancy poll.
        wait_until(
            lambda: gate_maximum(runtime) == MUSEUM_MAXIMUM, 15, "no maximum from the back office"
        )
        for n, (label, card) in enumerate(zip(story, cards, strict=True), start=1):
            if n == len(story):
                # The back office has counted both visitors from the gate's events.
                wait_until(lambda: counted() == MUSEUM_MAXIMUM, 15, "visitors not counted")
            rows.append(row("museum", label, present(runtime, 0, reader, card, n)))
            heard.append(told(runtime, "museum", label))
            shots.take(runtime, f"museum-{n}-{slug(label)}")
    return rows


def counter_morning(tmp, slots, world, shots) -> list[Row]:
    reader = slots[3]
    cards = world["cards"]
    rows = []
    with running(tmp / "DESK-01.terminal.toml") as runtime, shots.watching(runtime):
        card = build_card(load_profile(cards["genuine-sc-3.0"]["file"]))
        rows.append(row("hospital", "3.0 card, right PIN", present(runtime, 3, reader, card, 1)))
        shots.take(runtime, "counter-1-right-pin")
        card = build_card(load_profile(cards["genuine-cq-2.0"]["file"]))
        rows.append(row("hospital", "2.0 card, wrong PIN", present(runtime, 3, reader, card, 2)))
        shots.take(runtime, "counter-2-wrong-pin")
    return rows


def rail_morning(tmp, slots, keyset, cq, shots) -> list[Row]:
    """A rail journey: entry, exit with the distance fare, a bus with the transfer discount,
    an elderly card named aloud, an exit without entry, an inspector's check."""
    from firmware_sim.profile import sample_public_info

    rows = []

    def with_purse(profile: CardProfile, balance: int, serial: str, card_type: int = 0x01):
        card = build_card(profile, contactless=True)
        info = dataclasses.replace(sample_public_info(bytes.fromhex(serial)), card_type=card_type)
        return card, add_tunion(card, keyset, balance=balance, public_info=info)

    rider_profile, elder_profile, dodger_profile = (
        variant(cq, keyset, 7101),
        variant(cq, keyset, 7102),
        variant(cq, keyset, 7103),
    )
    rider, _ = with_purse(rider_profile, 1500, "50000000000000000201")
    elder, _ = with_purse(elder_profile, 5000, "50000000000000000202", card_type=0x04)
    dodger, _ = with_purse(dodger_profile, 5000, "50000000000000000203")
    with (
        running(tmp / "RAIL-IN.terminal.toml") as entry,
        running(tmp / "RAIL-OUT.terminal.toml") as exit_,
        running(tmp / "BUS-02.terminal.toml") as bus,
        shots.watching(bus),
    ):
        rows.append(row("metro", "entry at Xiaoshizi", present(entry, 0, slots[0], rider, 1)))
        rows.append(
            row("metro", "exit at Lianglukou (7 km)", present(exit_, 3, slots[3], rider, 1))
        )
        rows.append(
            row("bus", "bus after the metro (transfer)", present(bus, 1, slots[1], rider, 1))
        )
        shots.take(bus, "bus-1-transfer-low-balance")
        outcome = present(bus, 1, slots[1], elder, 2)
        said = bus.screen.state.spoken("zh") if bus.screen is not None else ""
        named = "named aloud" if said.startswith("老年卡") else "not named"
        rows.append(row("bus", f"elderly card ({named})", outcome))
        shots.take(bus, "bus-2-elderly-named")
        rows.append(row("metro", "exit without entry", present(exit_, 3, slots[3], dodger, 2)))
    with running(tmp / "INSPECT-01.terminal.toml") as inspector:
        rows.append(
            row("inspect", "rider who paid the bus", present(inspector, 0, slots[0], rider, 1))
        )
        rows.append(row("inspect", "card with no ride", present(inspector, 0, slots[0], dodger, 2)))
    return rows


def report_backoffice(out: Callable[[str], None], tmp: Path, storage, url: str) -> int:
    out("\nThe back office after the terminals' last sync:\n")
    clock = SystemClock()
    failures = 0
    for terminal_id in TERMINALS:
        credentials = load_credentials(tmp / f"{terminal_id}.toml")
        with Journal.open(tmp / f"{terminal_id}-journal.db", terminal_id, clock) as journal:
            Uploader(journal, credentials, clock).run_once()
            journaled = journal.stats().last_seq
            chain = journal.verify()
        with EventOutbox.open(
            tmp / f"{terminal_id}-journal-events.db", terminal_id, clock
        ) as outbox:
            EventSender(outbox, credentials, clock).run_once()
            raised = outbox.last_id
        stored = len(storage.entries(terminal_id, 0, 100000))
        events = storage.events(terminal_id)
        ok = stored == journaled and chain.ok and len(events) == raised
        failures += not ok
        kinds = ", ".join(e["kind"] for e in reversed(events))
        out(
            f"  {terminal_id:<8} journal {journaled:>3} transactions (chain "
            f"{'intact' if chain.ok else 'BROKEN'}), back office {stored:>3} "
            f"{'- all received' if ok else '- MISMATCH'}" + (f"; events: {kinds}" if kinds else "")
        )
    return 1 if failures else 0
