"""The counter profile end to end: a contact 3.0 card through pcscd + vpcd, read and
verified with the software secure module, the holder's PIN from a scripted pad, the holder
record served to the hospital system over HTTP - and never journaled."""

from __future__ import annotations

import io
import json
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from helpers.pcscd_service import wait_for_service

from firmware_sim.issuing import issue_world
from firmware_sim.profile import load_profile
from firmware_sim.ssc_applet import build_card
from firmware_sim.vpcd import reader_name
from onecard.runtime import build_runtime
from terminal.crypto.signing import Algorithm, generate_private_key, public_key_bytes
from terminal.journal.store import Journal
from terminal.outputs import RecordingOutputs
from terminal.runtime.config import load_config
from terminal.runtime.loop import TerminalRuntime
from terminal.runtime.transaction import TransactionOutcome
from terminal.wire.document import sign_document

pytestmark = pytest.mark.integration

TERMINAL_ID = "COUNTER-0001"
SERVICE = "hospital-registration"
CARD = "genuine-sc-3.0"
RIGHT_PIN = "123456"  # the sample profiles' PIN
WRONG_PIN = "654321"
APPLIST = {
    "kind": "applist",
    "version": 1,
    "services": [
        {
            "code": SERVICE,
            "name": "Registration",
            "scope": "national",
            "valid_from": "2020-01-01",
        }
    ],
}


class ScriptedPad:
    """A PIN pad that types the PINs it was given, in turn, and counts the prompts."""

    def __init__(self, pins: list[str]) -> None:
        self.pins = list(pins)
        self.asked = 0

    def read_pin(self, prompt: str) -> str:
        self.asked += 1
        return self.pins.pop(0)


def write_config(
    tmp: Path,
    *,
    terminal_id: str = TERMINAL_ID,
    pins: Sequence[str] = (RIGHT_PIN,),
    require_pin: bool = True,
    counter: str = 'sscard_socket = "sscard.sock"',
    more: str = "",
) -> Path:
    """The counter's ``terminal.toml`` in ``tmp`` (beside the :func:`world`'s files), for the
    card reader in vpcd slot 0; ``counter`` adds lines to ``[counter]``, ``more`` sections."""
    names = wait_for_service()
    reader = reader_name(0, names)
    assert reader is not None, names
    path = tmp / "terminal.toml"
    path.write_text(
        f"""
[terminal]
id = "{terminal_id}"
profile = "counter"
service = "{SERVICE}"

[readers]
names = ["{reader}"]

[security]
keys = "world/keys.toml"
trust_store = "world/trust.json"
token_key = "token.key"

[backoffice]
journal = "journal.db"
documents = "documents"
replay_cache = "replay.db"
publication_key = "publication.pub"

[counter]
api_port = 0
pinpad = "script"
pins = {json.dumps(list(pins))}
require_pin = {"true" if require_pin else "false"}
{counter}

[status]
port = -1
{more}"""
    )
    return path


@pytest.fixture
def world(tmp_path: Path) -> dict:
    return make_world(tmp_path)


def make_world(tmp_path: Path) -> dict:
    """The files :func:`write_config` names: issued cards and keys, a token key, a signed
    application list offering the service."""
    cards = issue_world(tmp_path / "world")
    documents = tmp_path / "documents"
    documents.mkdir()
    publisher = generate_private_key(Algorithm.SM2)
    (tmp_path / "publication.pub").write_text(public_key_bytes(publisher).hex() + "\n")
    (tmp_path / "token.key").write_text(bytes(range(16)).hex() + "\n")
    (documents / "applist.json").write_bytes(sign_document(APPLIST, publisher, Algorithm.SM2))
    return {"tmp": tmp_path, "cards": cards}


@pytest.fixture
def counter(world: dict, pcscd: list[str]) -> Iterator[tuple[TerminalRuntime, ScriptedPad, int]]:
    """A running counter runtime whose pad types a wrong PIN, then the right one."""
    runtime = build_runtime(load_config(write_config(world["tmp"])), outputs=RecordingOutputs())
    pad = ScriptedPad([WRONG_PIN, RIGHT_PIN])
    runtime.steps.profile._pinpad = pad
    port = runtime.steps.profile._api.port
    runtime.start_sources()
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        yield runtime, pad, port
        runtime.request_stop()
        thread.join(timeout=15)
        assert not thread.is_alive()
    finally:
        runtime.shutdown()


def http(
    port: int, token: str, path: str, method: str = "GET", host: str | None = None
) -> tuple[int, bytes]:
    """A request as the hospital system sends it, with ``token`` as its bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host is not None:
        headers["Host"] = host
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_counter_end_to_end(world: dict, insert_card, counter) -> None:
    runtime, pad, port = counter
    # Made at the first start, beside the journal, for the operator alone.
    token_file = world["tmp"] / "counter-api.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    profile = load_profile(world["cards"]["cards"][CARD]["file"])
    name, ssn = profile.holder.name, profile.holder.ssn

    def tap(count: int) -> TransactionOutcome:
        inserted = insert_card(card=build_card(profile), slot=0)
        assert runtime.wait_for_outcomes(count, timeout=30), runtime.outcomes
        inserted.remove()
        return runtime.outcomes[count - 1]

    # A wrong PIN: refused, journaled, and the hospital system gets nothing.
    wrong = tap(1)
    assert wrong.decision == "refuse" and wrong.reason == "pin_wrong", wrong
    assert wrong.journaled and pad.asked == 1
    status, body = http(port, token, "/v1/card")
    assert status == 404 and json.loads(body)["status"] == "empty"
    status, body = http(port, token, "/v1/card/ireadcardbas")
    assert status == 404 and body.decode() == "-2"

    # The right PIN: the card is genuine, the holder record is handed over.
    right = tap(2)
    assert right.accepted and right.reason == "ok" and right.journaled, right
    assert pad.asked == 2
    status, body = http(port, token, "/v1/card")
    assert status == 200
    record = json.loads(body)
    assert record["status"] == "ok" and record["verdict"] == "genuine", record
    text = json.dumps(record, ensure_ascii=False)
    assert name in text and ssn in text
    status, body = http(port, token, "/v1/card/ireadcardbas")
    fields = body.decode().split("|")
    assert status == 200 and fields[1] == ssn and fields[4] == name, fields
    assert fields[2] == profile.issuer.card_number
    # Only the hospital system, holding the token, on this machine's own name.
    for bad in ("", "wrong-" + "x" * 40):
        for method in ("GET", "DELETE"):
            status, body = http(port, bad, "/v1/card", method)
            assert status == 401 and json.loads(body)["error"] == "unauthorized", body
    status, body = http(port, token, "/v1/card", host="evil.example")
    assert status == 403 and json.loads(body)["error"] == "bad_host", body
    assert http(port, token, "/v1/card")[0] == 200  # nothing above took the record
    # The hospital system takes it: forgotten.
    assert http(port, token, "/v1/card", "DELETE")[0] == 204
    assert http(port, token, "/v1/card")[0] == 404

    # The journal knows the transactions, not the holder.
    with Journal.open(world["tmp"] / "journal.db", TERMINAL_ID) as journal:
        exported = io.StringIO()
        assert journal.export(exported) == 2
        assert journal.verify().ok
    export = exported.getvalue()
    assert [json.loads(line)["reason"] for line in export.splitlines()] == ["pin_wrong", "ok"]
    # (The PINs are not checked here: six digits may turn up by chance in a hex hash.)
    for personal in (name, ssn, ssn[6:14], profile.issuer.card_number):
        assert personal not in export, personal
    assert json.dumps(name)[1:-1] not in export  # not even \\u-escaped
