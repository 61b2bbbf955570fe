"""The counter's socket for libonecard_sscard.so, and the library itself against it: peer
credentials checked, bad requests refused with their code, bounded time-outs, the caller's
encoding, several threads at once. The desk behind the socket is a recording fake here
(tests/integration/test_sscard_library.py runs the real one on pcscd)."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminal import ldt33
from terminal.counter import sscard_protocol as proto
from terminal.counter.sscard_protocol import Function, SscardRequest
from terminal.counter.sscard_server import (
    SscardServer,
    default_uids,
    peer_credentials,
    resolve_users,
)
from terminal.errors import ConfigError

REPO = Path(__file__).resolve().parents[4]
RECORD = "500100|500101199001011234|D2143569X|50010000D156000005100000010000000A|张三丰|86|3.00|"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library built from native/sscard with -Werror, into a temporary directory."""
    out = tmp_path_factory.mktemp("sscard")
    subprocess.run(
        ["make", "-s", "-C", str(REPO / "native" / "sscard"), f"OUT={out}"],
        check=True,
        capture_output=True,
    )
    return out / "libonecard_sscard.so"


def load(library: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library))
    for name in ("iReadCardBas", "iReadCardBas_HSM_Step1", "iVerifyPIN", "iChangePIN"):
        getattr(lib, name).argtypes = [ctypes.c_int, ctypes.c_char_p]
        getattr(lib, name).restype = ctypes.c_long
    lib.iReadCardBas_HSM_Step2.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.iReadCardBas_HSM_Step2.restype = ctypes.c_long
    for name in ("iGetReaderInfo", "iGetVersion"):
        getattr(lib, name).argtypes = [ctypes.c_char_p]
        getattr(lib, name).restype = ctypes.c_long
    lib.iSSCardInit.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.iSSCardInit.restype = ctypes.c_long
    return lib


class FakeDesk:
    def __init__(self) -> None:
        self.requests: list[SscardRequest] = []

    def serve(self, request: SscardRequest) -> tuple[int, str]:
        self.requests.append(request)
        if request.function is Function.READ:
            return (0, RECORD) if request.itype == 1 else (ldt33.NO_CARD, "no_card: none")
        if request.function is Function.VERIFY_PIN:
            return ldt33.PIN_WRONG, "2"
        if request.function is Function.HSM2:
            return 0, request.key
        return 0, "onecard-sscard/1|T|R:card|"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, FakeDesk]]:
    desk = FakeDesk()
    path = tmp_path / "run" / "sscard.sock"
    with SscardServer(path, desk.serve, allowed_uids=default_uids(())):
        yield path, desk
    assert not path.exists()  # removed on close


def ask(path: Path, line: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_one_request_one_answer(served: tuple[Path, FakeDesk]) -> None:
    path, desk = served
    assert ask(path, b"SSCARD/1 UTF-8 READ 1\n") == b"0 " + RECORD.encode() + b"\n"
    assert ask(path, b"SSCARD/1 GBK READ 1\n") == b"0 " + RECORD.encode("gbk") + b"\n"
    assert ask(path, b"SSCARD/1 GBK READ 2\n") == b"-2 no_card: none\n"
    assert [r.itype for r in desk.requests] == [1, 1, 2]


@pytest.mark.parametrize(
    "line",
    [b"SSCARD/1 GBK READ 9\n", b"hello\n", b"\xff\xfe\n", b"x" * 1000, b"SSCARD/1 GBK READ 1"],
)
def test_bad_requests_get_a_typed_refusal(served: tuple[Path, FakeDesk], line: bytes) -> None:
    path, desk = served
    answer = proto.parse_answer(
        ask(path, line) if line.endswith(b"\n") or len(line) > 300 else _half_closed(path, line)
    )
    assert answer.code == proto.BAD_PARAMETER and answer.text.startswith(b"bad_request: ")
    assert desk.requests == []
    assert ask(path, b"SSCARD/1 GBK PING\n").startswith(b"0 ")  # still serving


def _half_closed(path: Path, line: bytes) -> bytes:
    """Send ``line`` without its LF and shut the writing side: the server must answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(4096)


def test_a_caller_of_another_uid_is_refused(tmp_path: Path) -> None:
    desk = FakeDesk()
    someone_else = os.getuid() + 4242
    with SscardServer(tmp_path / "s.sock", desk.serve, allowed_uids={someone_else}):
        answer = proto.parse_answer(ask(tmp_path / "s.sock", b"SSCARD/1 GBK READ 1\n"))
    assert answer.code == ldt33.READER_CONNECTION and answer.text.startswith(b"not_allowed")
    assert desk.requests == []


def test_peer_credentials_and_users() -> None:
    import struct

    assert peer_credentials(struct.pack("3i", 10, 1000, 100)) == (10, 1000, 100)
    with pytest.raises(ValueError):
        peer_credentials(b"\0" * 4)
    assert resolve_users(["root", "1234"]) == {0, 1234}
    with pytest.raises(ConfigError, match="no such user"):
        resolve_users(["no-such-user-onecard"])
    assert {0, os.getuid()} <= default_uids(())


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with (
        SscardServer(path, FakeDesk().serve, allowed_uids={os.getuid()}),
        pytest.raises(ConfigError, match="another counter service"),
    ):
        SscardServer(path, FakeDesk().serve)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a service that died
    with SscardServer(path, FakeDesk().serve, allowed_uids={os.getuid()}):
        assert ask(path, b"SSCARD/1 GBK PING\n").startswith(b"0 ")
    other = tmp_path / "plain"
    other.write_text("operator's file")
    with pytest.raises(ConfigError, match="not a socket"):
        SscardServer(other, FakeDesk().serve)
    assert other.read_text() == "operator's file"


# --- the C library against the socket -------------------------------------------------------


def test_library_reads_in_gbk_and_utf8(
    library: Path, served: tuple[Path, FakeDesk], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = served
    monkeypatch.setenv("ONECARD_SSCARD_SOCKET", str(path))
    monkeypatch.delenv("ONECARD_SSCARD_ENCODING", raising=False)
    lib = load(library)
    assert lib.iSSCardInit(None, 0) == 0
    out = ctypes.create_string_buffer(1024)
    assert lib.iReadCardBas(1, out) == 0
    assert out.value == RECORD.encode("gbk")
    monkeypatch.setenv("ONECARD_SSCARD_ENCODING", "UTF-8")
    assert lib.iReadCardBas(1, out) == 0 and out.value == RECORD.encode()
    assert lib.iSSCardInit(None, 1) == 0  # GBK chosen by the init call wins over the env
    assert lib.iReadCardBas(1, out) == 0 and out.value == RECORD.encode("gbk")
    assert lib.iReadCardBas(2, out) == ldt33.NO_CARD and out.value == b"no_card: none"
    assert lib.iVerifyPIN(3, out) == ldt33.PIN_WRONG and out.value == b"2"
    key = b"0011223344556677|" + b"AB" * 16
    assert lib.iReadCardBas_HSM_Step2(key, out) == 0 and out.value == key
    assert lib.iGetReaderInfo(out) == 0 and out.value.startswith(b"onecard-sscard/1|")
    assert lib.iGetVersion(out) == 0 and out.value.startswith(b"onecard-sscard ")
    lib.iSSCardInit(None, 0)


def test_library_refuses_bad_parameters_without_asking(
    library: Path, served: tuple[Path, FakeDesk], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, desk = served
    monkeypatch.setenv("ONECARD_SSCARD_SOCKET", str(path))
    lib = load(library)
    out = ctypes.create_string_buffer(1024)
    for itype in (0, 5, -1):
        assert lib.iReadCardBas(itype, out) == proto.BAD_PARAMETER
    assert lib.iReadCardBas(1, None) == proto.BAD_PARAMETER
    assert lib.iReadCardBas_HSM_Step2(b"has space", out) == proto.BAD_PARAMETER
    assert lib.iReadCardBas_HSM_Step2(b"A" * 200, out) == proto.BAD_PARAMETER
    assert lib.iSSCardInit(None, 7) == proto.BAD_PARAMETER
    assert lib.iSSCardInit(b"/" + b"x" * 200, 0) == proto.BAD_PARAMETER
    assert desk.requests == []


def test_library_without_a_service_says_reader_connection(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONECARD_SSCARD_SOCKET", str(tmp_path / "nobody.sock"))
    lib = load(library)
    out = ctypes.create_string_buffer(1024)
    started = time.monotonic()
    assert lib.iReadCardBas(3, out) == ldt33.READER_CONNECTION
    assert lib.iVerifyPIN(1, out) == ldt33.READER_CONNECTION
    assert time.monotonic() - started < 1.0
    assert out.value.startswith(b"reader_connection")


def _listener(path: Path, behave) -> Iterator[None]:
    """A socket at ``path`` whose one connection ``behave(conn)`` handles."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(4)
    done = threading.Event()

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            behave(conn)
            done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(10)
        sock.close()


def test_library_times_out_on_a_service_that_hangs(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "hung.sock"
    monkeypatch.setenv("ONECARD_SSCARD_SOCKET", str(path))
    monkeypatch.setenv("ONECARD_SSCARD_TIMEOUT_MS", "300")
    lib = load(library)
    out = ctypes.create_string_buffer(1024)
    for _ in _listener(path, lambda conn: conn.recv(300)):
        started = time.monotonic()
        assert lib.iReadCardBas(1, out) == ldt33.READER_CONNECTION
        elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 3.0, elapsed
    assert b"in time" in out.value


@pytest.mark.parametrize(
    "answer", [b"OK everything\n", b"0 " + b"x" * 1100 + b"\n", b"-2", b"+0 x\n"]
)
def test_library_refuses_a_malformed_answer(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: bytes
) -> None:
    path = tmp_path / "odd.sock"
    monkeypatch.setenv("ONECARD_SSCARD_SOCKET", str(path))
    lib = load(library)
    out = ctypes.create_string_buffer(2048)

    def behave(conn: socket.socket) -> None:
        conn.recv(300)
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)

    for _ in _listener(path, behave):
        assert lib.iReadCardBas(1, out) == proto.BAD_ANSWER
    assert len(out.value) < 1024 and out.value.startswith(b"bad_answer")


def test_library_is_safe_from_many_threads(
    library: Path, served: tuple[Path, FakeDesk], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, desk = served
    monkeypatch.setenv("ONECARD_SSCARD_SOCKET", str(path))
    monkeypatch.setenv("ONECARD_SSCARD_ENCODING", "UTF-8")
    lib = load(library)
    failures: list[object] = []

    def worker(itype: int) -> None:
        out = ctypes.create_string_buffer(1024)
        for _ in range(50):
            code = lib.iReadCardBas(itype, out)
            expected = (0, RECORD.encode()) if itype == 1 else (-2, b"no_card: none")
            if (code, out.value) != expected:
                failures.append((itype, code, out.value))

    threads = [threading.Thread(target=worker, args=(1 + i % 2,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(desk.requests) == 400
