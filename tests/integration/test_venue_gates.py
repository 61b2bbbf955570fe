"""Venue gates through the real stack: a library gate asking pysip2's SIP2 server about the
card's holder over TCP, a scenic area's annual passes, and a museum's reservations and
occupancy shared by two gate processes through the real back office."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.pcscd_service import wait_for_service
from helpers.sip2_ils import INSTITUTION, PASSWORD, USER, Patron, serving
from helpers.waiting import wait_for
from test_runtime_kill9_purchase import Child, told

from backoffice.cli import format_credentials
from backoffice.keys import new_token_key
from backoffice.publish import generate_publication_key, passes_body, reservations_body
from backoffice.server import BackOffice
from backoffice.storage import open_storage
from backoffice.venue import day_of
from bench.rail import NullOutputs
from drivers.pcsc import wait_for_card
from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.ssc_applet import build_card
from firmware_sim.vpcd import VpcdBridge, reader_name
from onecard.demo_morning import variant
from onecard.runtime import build_runtime
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.host.clock import SystemClock
from terminal.runtime.config import load_config
from terminal.runtime.transaction import CardPresented
from terminal.secure.keyfile import load_key_file
from terminal.wire.canonical import canonical_json
from terminal.wire.document import sign_document

pytestmark = pytest.mark.integration

SERVICES = {
    "services": [
        {"code": code, "name": code, "scope": "national", "valid_from": "2020-01-01"}
        for code in ("library-entry", "museum-entry", "scenic-entry")
    ]
}


def gate_config(
    tmp: Path, name: str, service: str, reader: str, extra: str, backoffice: str
) -> Path:
    """A gate's terminal.toml: the software secure module, the token key of ``token.key``
    unless ``backoffice`` names credentials, ``extra`` sections at the end."""
    token = "" if "credentials" in backoffice else 'token_key = "token.key"'
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[terminal]
id = "{name}"
profile = "gate"
service = "{service}"

[readers]
names = ["{reader}"]

[security]
keys = "world/keys.toml"
trust_store = "world/trust.json"
{token}

[backoffice]
journal = "{name}-journal.db"
documents = "{name}-documents"
replay_cache = "{name}-replay.db"
events = "{name}-events.db"
{backoffice}

[gate]
passback_minutes = 0

[status]
port = 0

[screen]
port = -1
{extra}
"""
    )
    return path


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    cards = issue_world(tmp_path / "world")
    keyset = load_key_file(cards["keys"])
    sample = load_profile(cards["cards"]["genuine-cq-2.0"]["file"])
    return {"cards": cards, "keyset": keyset, "sample": sample}


def card_of(world: dict[str, Any], serial: int) -> tuple[Any, Any]:
    """A genuine card of its own: card number, serial and (made up) identity number."""
    profile = variant(world["sample"], world["keyset"], serial)
    ssn = f"50010119800101{serial % 1000:03d}X"
    profile = dataclasses.replace(profile, holder=dataclasses.replace(profile.holder, ssn=ssn))
    return build_card(profile, contactless=True), profile


def local_documents(
    tmp: Path, name: str, documents: dict[str, dict], token_key: bytes | None = None
) -> str:
    """Sign ``documents`` with a new publication key into the gate's directory, write the
    card token key; the config line that trusts the key."""
    publisher = generate_private_key(Algorithm.SM2)
    (tmp / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    (tmp / "token.key").write_text((token_key or os.urandom(16)).hex() + "\n")
    folder = tmp / f"{name}-documents"
    folder.mkdir(exist_ok=True)
    for file, body in documents.items():
        (folder / file).write_bytes(sign_document(body, publisher, Algorithm.SM2))
    return 'publication_key = "publication.pub"\n'


def tap(runtime: Any, reader: str, slot: int, card: Any) -> Any:
    bridge = VpcdBridge(card, slot)
    bridge.insert()
    assert wait_for_card(reader, present=True)
    try:
        return runtime.handle(CardPresented(reader, card.atr))
    finally:
        bridge.remove()
        assert wait_for_card(reader, present=False)


def test_a_library_gate_asks_the_library_system(tmp_path: Path, world: dict, pcscd) -> None:
    reader = reader_name(0, pcscd)
    reader_ok, ok = card_of(world, 8101)
    late_card, late = card_of(world, 8102)
    stranger_card, _ = card_of(world, 8103)
    patrons = {
        ok.issuer.card_number: Patron(),
        late.issuer.card_number: Patron(flags=frozenset({"too_many_items_overdue"})),
    }
    with serving(patrons) as ils:
        applist = {"kind": "applist", "version": 1, **SERVICES}
        backoffice = local_documents(tmp_path, "LIB-01", {"applist.json": applist})
        extra = f"""
[venue]
kind = "library"
id = "lib-1"

[venue.ils]
host = "127.0.0.1"
port = {ils.port}
user = "{USER}"
password = "{PASSWORD}"
institution = "{INSTITUTION}"
timeout_seconds = 1.0
fallback = "admit"
"""
        config = gate_config(tmp_path, "LIB-01", "library-entry", reader, extra, backoffice)
        runtime = build_runtime(load_config(config), outputs=NullOutputs())
        try:
            welcome = tap(runtime, reader, 0, reader_ok)
            assert welcome.accepted and welcome.reason == "patron_ok" and welcome.gate_opened
            overdue = tap(runtime, reader, 0, late_card)
            assert (
                not overdue.accepted and overdue.reason == "patron_blocked:too_many_items_overdue"
            )
            assert not overdue.gate_opened
            reading = tap(runtime, reader, 0, stranger_card)
            assert reading.accepted and reading.reason == "not_a_patron"
            # One login, then one SIP2 request per tap on the kept connection.
            assert ils.counters.logins == 1 and ils.counters.patron_requests == 3
            ils.stop()
            down = tap(runtime, reader, 0, reader_ok)
            assert down.accepted and down.reason == "ils_unreachable"
            links = {link["name"]: link for link in runtime.status.snapshot()["links"]}
            assert links["ils"]["state"] == "down"
            entries = list(runtime.steps.context.journal.since(0))
            journaled = json.dumps([e.extra for e in entries], ensure_ascii=False)
            assert ok.issuer.card_number not in journaled and "张三" not in journaled
        finally:
            runtime.shutdown()


def test_a_scenic_gate_admits_annual_pass_holders_within_their_limits(
    tmp_path: Path, world: dict, pcscd
) -> None:
    reader = reader_name(0, pcscd)
    holder_card, holder = card_of(world, 8201)
    other_card, _ = card_of(world, 8202)
    token_key = os.urandom(16)
    csv = f"{holder.issuer.card_number},annual,2020-01-01,2099-12-31,1\n"
    passes = {"kind": "passes", "version": 1, **passes_body("mount-jinfo", csv, token_key)}
    applist = {"kind": "applist", "version": 1, **SERVICES}
    documents = {"applist.json": applist, "passes.json": passes}
    backoffice = local_documents(tmp_path, "PARK-01", documents, token_key)
    venue = '[venue]\nkind = "scenic"\nid = "mount-jinfo"\n'
    config = gate_config(tmp_path, "PARK-01", "scenic-entry", reader, venue, backoffice)
    runtime = build_runtime(load_config(config), outputs=NullOutputs())
    try:
        first = tap(runtime, reader, 0, holder_card)
        assert first.accepted and first.reason == "pass_ok"
        again = tap(runtime, reader, 0, holder_card)
        assert not again.accepted and again.reason == "pass_used_today"
        stranger = tap(runtime, reader, 0, other_card)
        assert not stranger.accepted and stranger.reason == "no_pass"
    finally:
        runtime.shutdown()


# --- a museum: reservations, and occupancy shared by two gate processes ---------------------

SLOT_DAY = "2020-01-01T00:00:00+08:00", "2099-12-31T23:59:59+08:00"


def test_a_museum_admits_reservations_up_to_its_maximum_across_two_gates(
    tmp_path: Path, world: dict, pcscd
) -> None:
    """An entry gate and an exit gate, each ``onecard run --profile gate``, count through
    the real back office: the venue is full at its maximum (2), and an exit reopens it."""
    names = wait_for_service()
    entry_reader, exit_reader = reader_name(0, names), reader_name(1, names)
    assert entry_reader and exit_reader
    cards = [card_of(world, 8300 + n) for n in range(4)]
    key, token_key = generate_publication_key(), new_token_key()
    storage = open_storage(tmp_path / "backoffice.sqlite")
    office = BackOffice(storage, key)
    office.publish("applist", SERVICES)
    slots = [{"id": "all-day", "start": SLOT_DAY[0], "end": SLOT_DAY[1]}]
    csv = "".join(f"{p.holder.ssn},all-day\n" for _card, p in cards[:3])
    reserved = office.publish("reservations", reservations_body("museum-1", slots, csv, token_key))
    storage.set_venue_maximum("museum-1", 2, time.time())
    applist = office.publish("applist", SERVICES)
    children: list[Child] = []
    try:
        with office.serve() as server:
            configs = {}
            for name, reader, role in (
                ("MUS-IN", entry_reader, "entry"),
                ("MUS-OUT", exit_reader, "exit"),
            ):
                secret = os.urandom(32)
                storage.enrol(name, secret, SystemClock().now())
                creds = tmp_path / f"{name}-creds.toml"
                creds.write_text(format_credentials(name, secret, server.url, key, token_key, None))
                creds.chmod(0o600)
                folder = tmp_path / f"{name}-documents"
                folder.mkdir()
                (folder / "applist.json").write_bytes(canonical_json(applist))
                (folder / "reservations.json").write_bytes(canonical_json(reserved))
                venue = (
                    f'[venue]\nkind = "museum"\nid = "museum-1"\nrole = "{role}"\n'
                    "maximum = 2\noccupancy_poll_seconds = 0.2\nstale_seconds = 5\n"
                )
                backoffice = f'credentials = "{creds.name}"\nsync_interval = 1\n'
                configs[name] = gate_config(
                    tmp_path, name, "museum-entry", reader, venue, backoffice
                )
            entry = Child(configs["MUS-IN"], profile="gate")
            exit_ = Child(configs["MUS-OUT"], profile="gate")
            children += [entry, exit_]
            for child in children:
                assert child.wait_for(lambda line: '"started"' in line), "".join(child.stderr)

            def present(child: Child, slot: int, reader: str, card: Any) -> str:
                bridge = VpcdBridge(card, slot)
                bridge.insert()
                try:
                    line = child.wait_for(told)
                    assert line is not None, "".join(child.stderr)[-2000:]
                    return line
                finally:
                    bridge.remove()
                    assert wait_for_card(reader, present=False)

            def occupancy() -> int:
                return storage.venue_occupancy("museum-1", day_of(time.time()), "MUS-IN")[0]

            first, second, third, stranger = cards
            assert present(entry, 0, entry_reader, first[0]).startswith("[ACCEPTED]")
            assert present(entry, 0, entry_reader, stranger[0]).startswith("[REFUSED]")
            assert present(entry, 0, entry_reader, second[0]).startswith("[ACCEPTED]")
            assert wait_for(lambda: occupancy() == 2, 10), occupancy()
            full = present(entry, 0, entry_reader, third[0])
            assert full.startswith("[REFUSED]") and "请稍候" in full, full
            assert present(exit_, 1, exit_reader, first[0]).startswith("[ACCEPTED]")
            assert wait_for(lambda: occupancy() == 1, 10), occupancy()
            # The entry gate hears of the exit through the back office, and reopens.
            assert wait_for(
                lambda: present(entry, 0, entry_reader, third[0]).startswith("[ACCEPTED]"),
                15,
                poll=0.5,
            )
    finally:
        for child in children:
            child.kill()
        storage.close()
