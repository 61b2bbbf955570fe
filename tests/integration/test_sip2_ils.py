"""The ILS link (terminal/venue/ils.py) over real TCP against pysip2's SIP2 server
(tests/helpers/sip2_ils.py): one login per connection, one request per tap, every failure
typed and within the deadline, and back again when the ILS is."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.sip2_ils import INSTITUTION, PASSWORD, USER, Patron, TestIls, free_port
from helpers.waiting import wait_for

from terminal.venue.ils import (
    IlsAnswerError,
    IlsClient,
    IlsConnectionLostError,
    IlsError,
    IlsLoginError,
    IlsSettings,
    IlsTimeoutError,
    IlsUnavailableError,
)
from terminal.venue.sip2 import PatronFlag, PatronPolicy, patron_identifier

TIMEOUT = 0.5
SLACK = 0.4
"""What a failure may take beyond the tap's deadline: scheduling, not waiting."""

PATRONS = {
    "A00000001": Patron(fines="0.00", screen=("欢迎，张三",)),
    "A00000002": Patron(flags=frozenset({"too_many_items_overdue"}), fines="3.50"),
    "A00000003": Patron(flags=frozenset({"card_reported_lost"})),
}


def settings(port: int, **overrides: Any) -> IlsSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "user": USER,
        "password": PASSWORD,
        "institution": INSTITUTION,
        "timeout_seconds": TIMEOUT,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        **overrides,
    }
    return IlsSettings(**values)


@pytest.fixture
def ils() -> Iterator[TestIls]:
    with TestIls(PATRONS) as server:
        yield server


@pytest.fixture
def client(ils: TestIls) -> Iterator[IlsClient]:
    link = IlsClient(settings(ils.port))
    yield link
    link.close()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result = call()
    except IlsError as error:
        result = error
    return result, time.monotonic() - started


def comes_back(client: IlsClient, patron: str = "A00000001") -> bool:
    """Whether a lookup succeeds again within a bounded wait (past the back-off)."""

    def works() -> bool:
        try:
            client.patron_standing(patron)
        except IlsUnavailableError:
            return False
        return True

    return wait_for(works, seconds=10)


# --- the normal path ----------------------------------------------------------------------


def test_one_login_then_one_request_per_lookup(ils: TestIls, client: IlsClient) -> None:
    for _ in range(20):
        client.patron_standing("A00000001")
    assert ils.counters.logins == 1
    assert ils.counters.sc_status == 1
    assert ils.counters.patron_requests == 20
    assert ils.counters.messages == 22
    assert client.requests == 20 and client.reconnects == 0 and client.up


def test_a_valid_patron(client: IlsClient) -> None:
    standing = client.patron_standing("A00000001")
    assert standing.valid_patron is True
    assert standing.flags == frozenset()
    assert str(standing.fee_amount) == "0.00" and standing.currency == "CNY"
    assert standing.screen_message == "欢迎，***"  # the name masked
    assert "张三" not in repr(standing)
    decision = PatronPolicy().decide(standing)
    assert decision.admit and decision.reason == "patron_ok"


def test_a_patron_with_overdue_items_is_refused_with_the_message(client: IlsClient) -> None:
    standing = client.patron_standing("A00000002")
    assert standing.flags == frozenset({PatronFlag.too_many_items_overdue})
    decision = PatronPolicy().decide(standing)
    assert not decision.admit
    assert decision.reason == "patron_blocked:too_many_items_overdue"
    assert decision.message == "有逾期未还图书，请先归还"


def test_an_unknown_holder_is_not_a_patron(client: IlsClient) -> None:
    standing = client.patron_standing("B99999999")
    assert standing.valid_patron is False
    decision = PatronPolicy().decide(standing)
    assert decision.reason == "not_a_patron" and decision.admit  # admitted to read


def test_patron_information_instead(ils: TestIls) -> None:
    link = IlsClient(settings(ils.port, request="patron_information", sc_status=False))
    try:
        standing = link.patron_standing("A00000003")
    finally:
        link.close()
    assert standing.flags == frozenset({PatronFlag.card_reported_lost})
    assert PatronPolicy().decide(standing).message == "借书证已挂失，请到服务台"
    assert ils.counters.sc_status == 0 and ils.counters.patron_requests == 1


def test_gbk_with_a_chinese_screen_message() -> None:
    patrons = {"A00000009": Patron(screen=("请于三日内归还《红楼梦》亅",), name="李四")}
    with TestIls(patrons, charset="gbk") as ils:
        link = IlsClient(settings(ils.port, charset="gbk", location="一楼大厅"))
        try:
            standing = link.patron_standing("A00000009")
        finally:
            link.close()
    assert standing.screen_message == "请于三日内归还《红楼梦》亅"


def test_the_token_is_what_the_ils_receives(ils: TestIls, client: IlsClient) -> None:
    key = bytes(range(32))
    token = patron_identifier("token", card_number="A00000001", token_key=key)
    ils.patrons[token] = Patron()
    assert client.patron_standing(token).valid_patron is True
    assert ils.counters.patron_ids == [token]


def test_lookups_from_many_threads_share_one_connection(ils: TestIls, client: IlsClient) -> None:
    errors: list[BaseException] = []

    def taps() -> None:
        try:
            for _ in range(10):
                assert client.patron_standing("A00000001").valid_patron
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=taps) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert ils.counters.patron_requests == 40 and ils.counters.logins == 1


# --- failures -----------------------------------------------------------------------------


def test_a_refused_login() -> None:
    with TestIls(PATRONS, password="other") as ils:
        link = IlsClient(settings(ils.port))
        with pytest.raises(IlsLoginError):
            link.patron_standing("A00000001")
        assert not link.up and link.last_error is not None
        assert ils.counters.failed_logins == 1 and ils.counters.patron_requests == 0
        link.close()


def test_nothing_listening_fails_fast() -> None:
    link = IlsClient(settings(free_port()))
    error, took = timed(lambda: link.patron_standing("A00000001"))
    assert isinstance(error, IlsUnavailableError) and took < SLACK
    again, took = timed(lambda: link.patron_standing("A00000001"))
    assert isinstance(again, IlsUnavailableError) and "retrying in" in again.reason
    assert again.retry_in is not None and took < 0.05


def test_ils_stopped_then_restarted(ils: TestIls, client: IlsClient) -> None:
    client.patron_standing("A00000001")
    ils.stop()
    error, took = timed(lambda: client.patron_standing("A00000001"))
    assert isinstance(error, IlsUnavailableError) and took < SLACK
    assert not client.up
    error, took = timed(lambda: client.patron_standing("A00000001"))
    assert isinstance(error, IlsUnavailableError) and took < SLACK
    ils.start()
    assert comes_back(client)
    assert client.up and client.reconnects == 1
    assert ils.counters.logins == 2


def test_a_restart_while_idle_costs_no_tap(ils: TestIls, client: IlsClient) -> None:
    client.patron_standing("A00000001")
    ils.stop()
    ils.start()
    # The kept connection is dead; the lookup connects again within its own deadline.
    assert client.patron_standing("A00000001").valid_patron is True
    assert client.reconnects == 1 and client.failures == 0


@pytest.mark.parametrize("kind", ["delay", "never"])
def test_a_slow_or_silent_ils_times_out_within_the_deadline(
    ils: TestIls, client: IlsClient, kind: str
) -> None:
    client.patron_standing("A00000001")
    ils.fault(kind, delay=TIMEOUT * 3)
    error, took = timed(lambda: client.patron_standing("A00000001"))
    assert isinstance(error, IlsTimeoutError), error
    assert TIMEOUT * 0.9 <= took < TIMEOUT + SLACK
    assert not client.up
    assert comes_back(client)
    assert client.reconnects == 1


def test_the_ils_closes_mid_answer(ils: TestIls, client: IlsClient) -> None:
    client.patron_standing("A00000001")
    ils.fault("close_mid_answer")
    error, took = timed(lambda: client.patron_standing("A00000001"))
    assert isinstance(error, IlsConnectionLostError) and "mid-answer" in error.reason
    assert took < SLACK
    assert comes_back(client)
    assert client.reconnects == 1


@pytest.mark.parametrize(("kind", "code"), [("bad_checksum", "sip2_checksum"), ("garbage", "")])
def test_a_bad_answer_is_typed(ils: TestIls, client: IlsClient, kind: str, code: str) -> None:
    client.patron_standing("A00000001")
    ils.fault(kind)
    error, took = timed(lambda: client.patron_standing("A00000001"))
    assert isinstance(error, IlsAnswerError), error
    assert error.sip2_code.startswith(code) and error.sip2_code
    assert took < SLACK and not client.up
    assert comes_back(client)
    assert client.status().last_error is not None


def test_the_back_off_doubles_and_the_status_says_so() -> None:
    link = IlsClient(settings(free_port(), backoff_initial_seconds=0.05, backoff_max_seconds=0.1))
    for _ in range(3):
        with pytest.raises(IlsUnavailableError):
            link.patron_standing("A00000001")
        assert wait_for(lambda: link.status().retry_in is None, seconds=5)
    status = link.status()
    assert not status.up and status.failures == 3 and status.requests == 0
    assert status.last_error is not None and status.last_error.startswith("ils_unavailable")
    link.close()
    with pytest.raises(IlsUnavailableError, match="closed"):
        link.patron_standing("A00000001")
