"""``onecard purse``: the read-only e-purse session on fake cards, and the command line."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from helpers.fake_epurse import OK, FakeEPurse, TableCard, log_record, public_info, real_fci, sw
from hypothesis import given
from hypothesis import strategies as st

from drivers import inprocess
from onecard import cli, exitcodes
from terminal.devices.reader import CardChannel, ReaderInfo
from terminal.errors import NoTransitApplicationError, OneCardError, TransitRecordError
from terminal.iso7816.apdu import ResponseAPDU
from terminal.transit import PurseReadSession, TripRecord, read_purse
from terminal.transit.commands import PURCHASE_LOG_CAPACITY, TRIP_RECORDS_CAPACITY
from terminal.transit.purse import END_CAPACITY, END_EMPTY, transaction_type_name, yuan
from terminal.transit.session import CardStep

WHEN = dt.datetime(2026, 3, 2, 8, 15, 0)
INFO = public_info()


def trip(n: int, amount: int = 200, balance: int = 800) -> bytes:
    return TripRecord(
        transaction_type=0x09,
        terminal_number=bytes.fromhex("310100000001"),
        industry=2,
        line=71,
        station=n,
        operator=3,
        amount=amount,
        balance_after=balance,
        when=WHEN + dt.timedelta(minutes=n),
        city_code=b"\x31\x00",
        acquirer_id=bytes(8),
    ).to_bytes()


def purse_card(**options) -> FakeEPurse:
    log = [
        log_record(2, 200, WHEN, kind=0x09),
        log_record(1, 100, WHEN - dt.timedelta(days=1), kind=0x06),
        log_record(0, 5000, WHEN - dt.timedelta(days=2), kind=0x02),
    ]
    return FakeEPurse(4700, log=log, trips=[trip(2), trip(1)], counter=3, **options)


def test_read_purse_decodes_everything() -> None:
    card = purse_card()
    reading = read_purse(CardChannel(card))
    assert reading.public_info == INFO and reading.balance == 4700
    assert [n.number for n in reading.purchase_log] == [1, 2, 3]
    assert [n.record.counter for n in reading.purchase_log] == [2, 1, 0]
    assert [n.record.station for n in reading.trips] == [2, 1]
    assert reading.purchase_log_end == END_EMPTY and reading.trips_end == END_EMPTY
    # SELECT, GET BALANCE, 3 + 1 log records, 2 + 1 trip records.
    assert reading.apdu_count == 9 and reading.odd_records == ()
    data = reading.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["app_serial"] == "31000000000000004321" and data["city_code"] == "2900"
    assert data["issuer_code"] == "0290" and data["industry_code"] == "0001"
    assert (data["app_type"], data["app_version"], data["card_type"]) == ("02", "01", "01")
    assert (data["start_date"], data["expiry_date"]) == ("2020-01-01", "2040-12-31")
    assert (data["balance_fen"], data["balance_yuan"]) == (4700, "47.00")
    names = [entry["type_name"] for entry in data["purchase_log"]]
    assert names == ["composite purchase", "purchase", "02"]
    first = data["purchase_log"][0]
    assert first["amount_yuan"] == "2.00" and first["terminal"] == "310100000001"
    assert first["when"] == "2026-03-02T08:15:00" and first["overdraft_fen"] == 0
    assert data["trips"][0]["line"] == 71 and data["trips"][0]["balance_after_yuan"] == "8.00"
    assert data["apdu_count"] == 9


def test_without_9f0c_one_apdu_more_and_bit_31_dropped() -> None:
    reading = read_purse(CardChannel(purse_card(fci_public_info=False, bit31=True)))
    assert reading.public_info == INFO and reading.apdu_count == 10
    assert reading.balance == 4700 and reading.to_json()["balance_yuan"] == "47.00"


def test_records_end_at_6a83_too() -> None:
    reading = read_purse(CardChannel(purse_card(empty_records=False)))
    assert reading.purchase_log_end == "6A83" and reading.trips_end == "6A83"
    assert len(reading.purchase_log) == 3 and reading.apdu_count == 9


def test_an_empty_purse() -> None:
    reading = read_purse(CardChannel(FakeEPurse(0)))
    assert reading.purchase_log == () and reading.trips == ()
    assert reading.apdu_count == 4


def test_full_files_are_read_up_to_their_capacity_only() -> None:
    log = [log_record(30 - n, 100, WHEN) for n in range(PURCHASE_LOG_CAPACITY + 5)]
    trips = [trip(n) for n in range(TRIP_RECORDS_CAPACITY + 5)]
    reading = read_purse(CardChannel(FakeEPurse(100, log=log, trips=trips)))
    assert len(reading.purchase_log) == PURCHASE_LOG_CAPACITY
    assert len(reading.trips) == TRIP_RECORDS_CAPACITY
    assert reading.purchase_log_end == END_CAPACITY == reading.trips_end
    assert reading.apdu_count == 2 + PURCHASE_LOG_CAPACITY + TRIP_RECORDS_CAPACITY


def test_an_odd_record_is_kept_and_the_read_goes_on() -> None:
    card = purse_card()
    card.log.insert(1, b"\x00\x05" + bytes(14) + b"\x20\x26\x13\x45" + bytes(3))  # month 13
    card.trips.insert(0, b"\x01" * 47)  # short
    reading = read_purse(CardChannel(card))
    assert len(reading.purchase_log) == 3 and [n.number for n in reading.purchase_log] == [1, 3, 4]
    odd = [(o.file, o.number) for o in reading.odd_records]
    assert odd == [("0x18", 2), ("0x1E", 1)]
    assert "0x18 date" in reading.odd_records[0].reason
    assert reading.to_json()["odd_records"][1]["raw"] == "01" * 47
    assert len(reading.trips) == 2


def test_a_card_without_trip_records() -> None:
    card = purse_card()
    original = card._read_record

    def no_1e(apdu: bytes) -> bytes:
        return sw(0x6A82) if apdu[3] >> 3 == 0x1E else original(apdu)

    card._read_record = no_1e  # type: ignore[method-assign]
    reading = read_purse(CardChannel(card))
    assert reading.trips == () and reading.trips_end == "6A82"
    assert len(reading.purchase_log) == 3


def test_no_epurse_and_bad_answers_are_typed_errors() -> None:
    with pytest.raises(NoTransitApplicationError):
        read_purse(CardChannel(TableCard({"00A4040008A00000063201010500": sw(0x6A82)})))
    card = TableCard(
        {"00A4040008A00000063201010500": real_fci(INFO.to_bytes()) + OK, "805C000204": OK}
    )
    with pytest.raises(TransitRecordError, match="GET BALANCE answered 0 bytes"):
        read_purse(CardChannel(card))


def test_the_session_is_sans_io() -> None:
    session = PurseReadSession()
    step = session.next_step()
    assert isinstance(step, CardStep) and step.name == "SELECT"
    session.receive(ResponseAPDU(real_fci(INFO.to_bytes()), 0x9000))
    assert session.next_step().command.to_bytes().hex().upper() == "805C000204"


def test_names_and_money() -> None:
    assert transaction_type_name(6) == "purchase" and transaction_type_name(9).startswith("comp")
    assert transaction_type_name(0x02) == "02"
    assert yuan(5) == "0.05" and yuan(123456) == "1234.56" and yuan(-150) == "-1.50"


answers = st.one_of(
    st.binary(max_size=60).map(lambda b: b + OK),
    st.sampled_from([OK, bytes(23) + OK, bytes(48) + OK, sw(0x6A83), sw(0x6A82), sw(0x6F00)]),
    st.just(real_fci(INFO.to_bytes()) + OK),
    st.just(real_fci(None) + OK),
    st.just(INFO.to_bytes() + OK),
    st.just(bytes.fromhex("80000064") + OK),
    st.just(log_record(1, 100, WHEN) + OK),
)


@given(st.lists(answers, max_size=26))
def test_any_answers_give_a_reading_or_a_typed_error(script: list[bytes]) -> None:
    class Scripted(TableCard):
        def transmit_raw(self, apdu: bytes) -> bytes:
            return script.pop(0) if script else sw(0x6A83)

    with contextlib.suppress(OneCardError):
        reading = read_purse(CardChannel(Scripted({})))
        assert 0 <= reading.balance < 2**31
        assert reading.apdu_count <= 2 + 1 + PURCHASE_LOG_CAPACITY + TRIP_RECORDS_CAPACITY
        json.dumps(reading.to_json())


# --- the command line -----------------------------------------------------------------------


class Backend:
    def __init__(self, card) -> None:
        self.card = card

    def readers(self) -> list[ReaderInfo]:
        return [ReaderInfo("Fake Reader 00", True, self.card.atr)]

    def connect(self, reader: str):
        return self.card


def run_cli(monkeypatch, capsys, card, *args: str) -> tuple[int, str, str]:
    inprocess.plug(Backend(card))
    code = cli.main(["purse", "--backend", "inprocess", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json(monkeypatch, capsys) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, purse_card(fci_public_info=False), "--json")
    data = json.loads(out)
    assert code == 0 and data["apdu_count"] == 10 and data["balance_fen"] == 4700
    assert len(data["purchase_log"]) == 3


def test_cli_text(monkeypatch, capsys) -> None:
    code, out, _ = run_cli(
        monkeypatch, capsys, purse_card(bit31=True), "--reader", "Fake Reader 00"
    )
    assert code == 0
    assert "balance: 47.00 yuan (4700 fen)" in out
    assert "composite purchase 2.00 yuan, counter 2" in out
    assert "APDUs: 9" in out


def test_cli_card_without_epurse_exits_16(monkeypatch, capsys) -> None:
    card = TableCard({"00A4040008A00000063201010500": sw(0x6A82)})
    code, out, _ = run_cli(monkeypatch, capsys, card, "--json")
    assert code == 16 == exitcodes.EXIT_CODES[NoTransitApplicationError]
    data = json.loads(out)
    assert data["error"] == "no_transit_application" and data["sw"] == "6A82"
    assert "6A82" in data["reason"] and set(data) == {"error", "reason", "sw"}
    code, _, err = run_cli(monkeypatch, capsys, card)
    assert code == 16 and "no_transit_application" in err
    assert "16 no T-Union e-purse" in exitcodes.EXIT_HELP


def test_cli_malformed_answer_exits_8(monkeypatch, capsys) -> None:
    card = TableCard({"00A4040008A00000063201010500": b"\x84\x01\x00" + OK})
    code, out, _ = run_cli(monkeypatch, capsys, card, "--json")
    assert code == 8 and json.loads(out)["error"] == "bad_transit_record"
