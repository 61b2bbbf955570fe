"""IlsClient (terminal/venue/ils.py) against a scripted ACS on a socket pair: what pysip2's
server does not do on demand - a 96 resend request, two answers to one request, an answer
of another sequence number - and the sequence digit wrapping 9 -> 0."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from terminal.venue.ils import IlsAnswerError, IlsClient, IlsSettings
from terminal.venue.sip2 import Sip2Framer, checksum, patron_status_field

Script = Callable[[bytes, int], list[bytes]]
"""(request without CR, its sequence digit) -> the frames to send back."""


def sealed(body: bytes, sequence: int | None) -> bytes:
    prefix = body + (b"AY%dAZ" % sequence if sequence is not None else b"AZ")
    return prefix + checksum(prefix).encode() + b"\r"


def patron(sequence: int) -> bytes:
    body = b"24" + patron_status_field(set()).encode() + b"00020261206    093005AOL|AAx|AE|BLY|"
    return sealed(body, sequence)


class ScriptedAcs:
    """Answers each request with what ``script`` says; records the requests."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.ours, self.theirs = socket.socketpair()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def connect(self, address: tuple[str, int], timeout: float) -> socket.socket:
        return self.ours

    def _serve(self) -> None:
        framer = Sip2Framer()
        try:
            while data := self.theirs.recv(4096):
                for message in framer.feed(data):
                    self.requests.append(message)
                    sequence = int(message[-7:-6])
                    for frame in self.script(message, sequence):
                        self.theirs.sendall(frame)
        except OSError:
            return  # the client dropped the connection: the end of this ACS

    def close(self) -> None:
        self.theirs.close()
        self.thread.join(timeout=5)


def standard(message: bytes, sequence: int) -> list[bytes]:
    if message.startswith(b"93"):
        return [sealed(b"941", sequence)]
    return [patron(sequence)]


Make = Callable[[Script], tuple[IlsClient, "ScriptedAcs"]]


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[tuple[IlsClient, ScriptedAcs]] = []

    def build(script: Script) -> tuple[IlsClient, ScriptedAcs]:
        acs = ScriptedAcs(script)
        settings = IlsSettings(
            host="ils", port=6001, user="u", password="p", timeout_seconds=2, sc_status=False
        )
        client = IlsClient(settings, connect=acs.connect)
        made.append((client, acs))
        return client, acs

    yield build
    for client, acs in made:
        client.close()
        acs.close()


def test_the_sequence_digit_cycles_over_every_message(make: Make) -> None:
    client, acs = make(standard)
    for _ in range(12):
        assert client.patron_standing("x").valid_patron
    digits = [int(message[-7:-6]) for message in acs.requests]
    assert digits == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]  # the login took 0


def test_a_resend_request_gets_the_message_once_more(make: Make) -> None:
    asked: list[int] = []

    def once(message: bytes, sequence: int) -> list[bytes]:
        if message.startswith(b"23") and not asked:
            asked.append(sequence)
            return [sealed(b"96", None)]
        return standard(message, sequence)

    client, acs = make(once)
    assert client.patron_standing("x").valid_patron
    assert acs.requests[1] == acs.requests[2]  # the same bytes, the same digit


def test_resend_requested_twice_is_a_bad_answer(make: Make) -> None:
    def always(message: bytes, sequence: int) -> list[bytes]:
        return standard(message, sequence) if message.startswith(b"93") else [sealed(b"96", None)]

    client, _ = make(always)
    with pytest.raises(IlsAnswerError) as caught:
        client.patron_standing("x")
    assert caught.value.sip2_code == "sip2_resend"
    assert not client.up


def test_two_answers_to_one_request(make: Make) -> None:
    def twice(message: bytes, sequence: int) -> list[bytes]:
        answers = standard(message, sequence)
        return answers if message.startswith(b"93") else [answers[0] + answers[0]]

    client, _ = make(twice)
    with pytest.raises(IlsAnswerError, match="more than one answer"):
        client.patron_standing("x")


def test_an_answer_of_another_sequence_number(make: Make) -> None:
    def stale(message: bytes, sequence: int) -> list[bytes]:
        if message.startswith(b"93"):
            return standard(message, sequence)
        return [patron((sequence + 9) % 10)]

    client, _ = make(stale)
    with pytest.raises(IlsAnswerError) as caught:
        client.patron_standing("x")
    assert caught.value.sip2_code == "sip2_sequence"


def test_an_endless_answer_is_cut_at_the_framer_limit(make: Make) -> None:
    def endless(message: bytes, sequence: int) -> list[bytes]:
        if message.startswith(b"93"):
            return standard(message, sequence)
        return [b"24" + b" " * 20_000]

    client, _ = make(endless)
    with pytest.raises(IlsAnswerError) as caught:
        client.patron_standing("x")
    assert caught.value.sip2_code == "sip2_malformed"
