"""The desk behind the library: the record of the card in the reader now (waiting for its
transaction, never another card's), PINs from the pad, the HSM steps, and every failure as
its LD/T 33 code. Cards are simulated in-process; the pcscd path is in
tests/integration/test_sscard_library.py."""

from __future__ import annotations

import threading
import time

import pytest

from drivers import inprocess
from drivers.inprocess import InProcessBackend
from firmware_sim.profile import load_profile, sample_profile_path
from firmware_sim.ssc_applet import build_card
from terminal import ldt33
from terminal.counter import sscard_protocol as proto
from terminal.counter.sscard_desk import CardTracker, CounterDesk, HandOff, pick_card
from terminal.counter.sscard_protocol import Encoding, Function, SscardRequest
from terminal.devices.pinpad import PinEntryCancelled
from terminal.devices.reader import ReaderInfo
from terminal.runtime.transaction import TransactionOutcome
from terminal.ssc.reading import read_card

READER = "Counter Reader 0"
CONTACTLESS_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


class Pad:
    def __init__(self, *pins: str) -> None:
        self.pins = list(pins)

    def read_pin(self, prompt: str) -> str:
        if not self.pins:
            raise PinEntryCancelled("nothing typed")
        return self.pins.pop(0)


class AtrBackend(InProcessBackend):
    """The in-process readers with the ATR of their card, as PC/SC lists them."""

    def readers(self) -> list[ReaderInfo]:
        infos = []
        for info in super().readers():
            connection = self.connect(info.name)
            infos.append(ReaderInfo(info.name, True, connection.atr))
            connection.close()
        return infos


def desk_for(pad: Pad | None = None, wait: float = 0.5) -> CounterDesk:
    return CounterDesk(
        AtrBackend(),
        pad or Pad(),
        tracker=CardTracker(),
        card_lock=threading.Lock(),
        wait=wait,
        terminal_id="COUNTER-0001",
    )


def insert(profile: str = "chongqing-2.0") -> None:
    inprocess.insert(READER, build_card(load_profile(sample_profile_path(profile))))


def outcome(decision: str, reason: str) -> TransactionOutcome:
    return TransactionOutcome(kind="card", decision=decision, reason=reason, detail="")


def request(function: Function, itype: int | None = 1, key: str = "") -> SscardRequest:
    return SscardRequest(function, Encoding.UTF8, itype=itype, key=key)


def test_pick_card_by_itype() -> None:
    contact = ReaderInfo("A", True, bytes.fromhex("3B6D000000814A444686605199000001AC"))
    contactless = ReaderInfo("B", True, CONTACTLESS_ATR)
    empty = ReaderInfo("C", False, None)
    readers = [empty, contactless, contact]
    assert pick_card(readers, 1) is contact
    assert pick_card(readers, 2) is contactless
    assert pick_card(readers, 3) is contact
    assert pick_card(readers, 4) is contactless
    with pytest.raises(Exception) as caught:
        pick_card([empty, contact], 2)
    assert caught.value.code == "no_card"
    with pytest.raises(Exception) as caught:
        pick_card([], 1)
    assert caught.value.code == "no_reader"


def test_read_answers_the_published_record_of_the_card_in_the_reader() -> None:
    insert()
    desk = desk_for()
    reading = read_card(InProcessBackend(), READER)
    desk.tracker.started(READER, reading.atr)
    desk.tracker.publish(reading)
    desk.tracker.finished(READER, outcome("accept", "ok"))
    code, text = desk.serve(request(Function.READ, 3))
    assert code == 0 and text == reading.to_ireadcardbas(reveal=True)
    assert desk.serve(request(Function.READ, 2))[0] == ldt33.NO_CARD
    inprocess.clear()
    inprocess.insert(READER + "x", build_card(load_profile(sample_profile_path("chongqing-2.0"))))
    code, _ = desk.serve(request(Function.READ, 1))
    assert code == ldt33.NO_ANSWER  # a card nobody's transaction has read yet: waited, busy


def test_read_waits_for_the_running_transaction_and_takes_its_ending() -> None:
    insert()
    desk = desk_for(wait=5.0)
    reading = read_card(InProcessBackend(), READER)
    desk.tracker.started(READER, reading.atr)

    def finish() -> None:
        time.sleep(0.2)
        desk.tracker.finished(READER, outcome("refuse", "pin_wrong"))

    threading.Thread(target=finish).start()
    started = time.monotonic()
    assert desk.serve(request(Function.READ, 1)) == (ldt33.PIN_WRONG, "pin_wrong")
    assert 0.15 < time.monotonic() - started < 3


def test_record_of_another_card_or_a_card_gone_is_not_answered() -> None:
    insert()
    desk = desk_for(wait=0.2)
    reading = read_card(InProcessBackend(), READER)
    desk.tracker.started(READER, b"\x3b\x00other")
    desk.tracker.publish(reading)
    desk.tracker.finished(READER, outcome("accept", "ok"))
    # The record in the tracker is for this card (the reading's ATR): answered...
    assert desk.serve(request(Function.READ, 1))[0] == 0
    # ...until the reader is found empty: forgotten, and the next card waits for its own.
    inprocess.clear()
    desk.purge()
    insert()
    assert desk.serve(request(Function.READ, 1))[0] == ldt33.NO_ANSWER


def test_refused_transactions_answer_their_codes() -> None:
    insert()
    desk = desk_for()
    atr = read_card(InProcessBackend(), READER).atr
    for reason, code in [("not_ssc", -1), ("pin_blocked", -52), ("card_removed", -4)]:
        desk.tracker.started(READER, atr)
        decision = "error" if reason == "card_removed" else "refuse"
        desk.tracker.finished(READER, outcome(decision, reason))
        assert desk.serve(request(Function.READ, 1)) == (code, reason)


def test_pin_from_the_pad_tries_left_then_blocked() -> None:
    insert()
    pad = Pad("000000", "123456", "000000", "000000", "000000", "123456")
    desk = desk_for(pad)
    assert desk.serve(request(Function.VERIFY_PIN)) == (ldt33.PIN_WRONG, "2")
    assert desk.serve(request(Function.VERIFY_PIN)) == (0, "")
    assert desk.serve(request(Function.VERIFY_PIN)) == (ldt33.PIN_WRONG, "2")
    assert desk.serve(request(Function.VERIFY_PIN)) == (ldt33.PIN_WRONG, "1")
    assert desk.serve(request(Function.VERIFY_PIN))[0] == ldt33.PIN_BLOCKED
    assert desk.serve(request(Function.VERIFY_PIN))[0] == ldt33.PIN_BLOCKED  # even the right one
    assert pad.pins == []
    code, text = desk.serve(request(Function.VERIFY_PIN))
    assert code == proto.PIN_NOT_ENTERED and text.startswith("pin_cancelled")


def test_change_pin_asks_old_new_and_new_again() -> None:
    insert()
    pad = Pad("123456", "2468", "1357")
    desk = desk_for(pad)
    assert desk.serve(request(Function.CHANGE_PIN))[0] == proto.PIN_NOT_ENTERED  # not confirmed
    pad.pins = ["123456", "2468", "2468", "2468"]
    assert desk.serve(request(Function.CHANGE_PIN)) == (0, "")
    assert desk.serve(request(Function.VERIFY_PIN)) == (0, "")  # the new PIN works
    pad.pins = ["12ab"]
    assert desk.serve(request(Function.VERIFY_PIN))[0] == proto.PIN_NOT_ENTERED


def test_pin_on_a_card_without_the_application_is_wrong_card() -> None:
    insert("tunion-plain")
    desk = desk_for(Pad("123456"))
    assert desk.serve(request(Function.VERIFY_PIN))[0] == ldt33.WRONG_CARD_TYPE


def test_pin_waits_for_the_card_lock_and_gives_up_in_time() -> None:
    insert()
    desk = desk_for(Pad("123456"), wait=0.2)
    with desk.card_lock:
        code, text = desk.serve(request(Function.VERIFY_PIN))
    assert code == ldt33.NO_ANSWER and text.startswith("busy")


def test_hsm_steps_on_a_card_before_3_0() -> None:
    insert()
    desk = desk_for()
    reading = read_card(InProcessBackend(), READER)
    code, text = desk.serve(request(Function.HSM1, 1))
    fields = text.split("|")
    assert code == 0 and len(fields) == 10 and fields[-1] == ""
    assert fields[0] == reading.ssc.issuer.region and fields[3] == reading.ssc.issuer.card_id
    assert fields[4:8] == ["", "", "", ""] and fields[8] == "0" * 12
    code, text = desk.serve(request(Function.HSM2, None, key="ignored"))
    assert code == 0 and text == reading.to_ireadcardbas(reveal=True)
    # Step2 without Step1: refused.
    assert desk.serve(request(Function.HSM2, None))[0] == proto.BAD_PARAMETER


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from firmware_sim.issuing import issue_world

    out = tmp_path_factory.mktemp("world")
    return issue_world(out)


def hsm_answer(world: dict, step1: str) -> str:
    """What the hospital's HSM computes from Step1's output (here: the world's keys)."""
    from terminal.crypto.symmetric import SymmetricAlgorithm
    from terminal.secure.software import SoftwareSecureModule
    from terminal.ssc.auth import KeyName

    region, historical, algorithm, _, ip, ir, ep, er, _, _ = step1.split("|")
    module = SoftwareSecureModule.from_file(world["keys"])
    alg = SymmetricAlgorithm(int(algorithm))
    hist = bytes.fromhex(historical)
    internal = module.cryptogram(
        KeyName.IRK, alg, region, hist, bytes.fromhex(ip), bytes.fromhex(ir)
    )
    external = module.cryptogram(
        KeyName.RKSSSE, alg, region, hist, bytes.fromhex(ep), bytes.fromhex(er)
    )
    return f"{internal.hex().upper()}|{external.hex().upper()}{er}"


def test_hsm_steps_on_a_3_0_card(world: dict) -> None:
    card = load_profile(world["cards"]["genuine-sc-3.0"]["file"])
    inprocess.insert(READER, build_card(card))
    desk = desk_for()
    code, step1 = desk.serve(request(Function.HSM1, 3))
    fields = step1.split("|")
    assert code == 0 and all(len(f) == 16 for f in fields[4:8]), fields
    code, text = desk.serve(request(Function.HSM2, None, key=hsm_answer(world, step1)))
    assert code == 0, text
    out = text.split("|")
    assert out[1] == card.holder.ssn and out[4] == card.holder.name
    assert out[2] == card.issuer.card_number and out[9] == "0" * 12
    # A wrong key format, and an HSM whose expected answer is not the card's.
    desk.serve(request(Function.HSM1, 3))
    assert desk.serve(request(Function.HSM2, None, key="nothex"))[0] == proto.BAD_PARAMETER
    desk.serve(request(Function.HSM1, 3))
    code, _ = desk.serve(request(Function.HSM2, None, key="00" * 8 + "|" + "00" * 16))
    assert code == ldt33.INTERNAL_AUTH_FAILED
    # The right internal answer with a wrong external cryptogram: the card's own refusal.
    _, step1 = desk.serve(request(Function.HSM1, 3))
    key = hsm_answer(world, step1)
    code, _ = desk.serve(request(Function.HSM2, None, key=key[:17] + "00" * 8 + key[33:]))
    assert -0x6400 < code < -0x6300, code  # 63Cx: the card's tries left


def test_handoff_publishes_to_both() -> None:
    class Api:
        port = 1

        def __init__(self) -> None:
            self.got: list[object] = []

        def publish(self, reading: object, error: object, verdict: object) -> int:
            self.got.append(reading)
            return 7

    insert()
    tracker = CardTracker()
    api = Api()
    handoff = HandOff(api, tracker)
    reading = read_card(InProcessBackend(), READER)
    tracker.started(READER, reading.atr)
    assert handoff.publish(reading, None, "genuine") == 7 and api.got == [reading]
    tracker.finished(READER, outcome("accept", "ok"))
    result = tracker.result_for(READER, reading.atr, 0)
    assert result is not None and result.reading is reading and handoff.port == 1


def test_an_unexpected_failure_is_an_answer_not_a_crash() -> None:
    desk = desk_for()

    def broken() -> list[ReaderInfo]:
        raise RuntimeError("bug")

    desk.readers = broken  # type: ignore[method-assign]
    assert desk.serve(request(Function.READ, 1))[0] == ldt33.READER_CONNECTION
