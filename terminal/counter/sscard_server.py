"""The counter service's Unix socket for ``libonecard_sscard.so`` (docs/his-integration.md).

:class:`SscardServer` listens on a Unix stream socket (default ``/run/onecard/sscard.sock``)
and serves one request per connection (:mod:`terminal.counter.sscard_protocol`) from a
thread of its own, with at most :data:`MAX_CONNECTIONS` at once. Before reading anything it
asks the kernel who connected (``SO_PEERCRED``): only root, the user the service runs as and
the configured ``[counter] sscard_users`` are served; anyone else is answered
``-11 not_allowed`` - the holder record is personal data, and the socket file's mode (0666,
so that the refusal is an answer, not a silent ``EACCES``) is not the check.

Every connection is bounded in time (:data:`REQUEST_TIMEOUT` to send the request line) and
size (:data:`~terminal.counter.sscard_protocol.MAX_REQUEST`); a malformed request is a typed
refusal (``-14 bad_request: ...``), never a crash. Requests are logged by function, code
and uid only: never the answer's text, which holds the holder's name and ID number.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from terminal import ldt33
from terminal.counter import sscard_protocol as proto
from terminal.counter.sscard_protocol import Encoding, SscardRequest, SscardRequestError
from terminal.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/onecard/sscard.sock"
REQUEST_TIMEOUT = 5.0
"""Seconds a client has to send its request line after connecting."""
SEND_TIMEOUT = 5.0
"""Seconds an answer may wait for a client that does not read."""
MAX_CONNECTIONS = 16
"""Connections served at once; one more is answered ``busy`` at once."""
POLL = 0.5
"""Seconds between the accept loop's looks at the stop flag (and ``tick``)."""
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(raw: bytes) -> tuple[int, int, int]:
    """(pid, uid, gid) from the bytes of ``getsockopt(SO_PEERCRED)``. Pure."""
    if len(raw) != _PEERCRED.size:
        raise ValueError("SO_PEERCRED answer of the wrong size")
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


def default_uids(users: Iterable[str]) -> frozenset[int]:
    """Who may call: root, the user this service runs as, and ``users`` (names or uids)."""
    return frozenset({0, os.getuid()}) | resolve_users(users)


def resolve_users(users: Iterable[str]) -> frozenset[int]:
    """Uids of ``users`` (names or numbers); :class:`ConfigError` naming an unknown one."""
    uids: set[int] = set()
    for user in users:
        if user.isdigit():
            uids.add(int(user))
            continue
        try:
            uids.add(pwd.getpwnam(user).pw_uid)
        except KeyError:
            raise ConfigError(f"[counter] sscard_users: no such user {user!r}") from None
    return frozenset(uids)


class SscardServer:
    """Serves ``handle(request) -> (code, text)`` on the Unix socket at ``path`` from a
    daemon thread; listening before the constructor returns. Only peers whose uid is in
    ``allowed_uids`` are served (:func:`default_uids`: root, this process's user and the
    configured ones); ``tick`` is called about every :data:`POLL` seconds (the desk
    forgets the records of cards that left)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        handle: Callable[[SscardRequest], tuple[int, str]],
        *,
        allowed_uids: Iterable[int] = (),
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._handle = handle
        self._tick = tick
        self.allowed_uids = frozenset(allowed_uids)
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._sock = _listen(self.path)
        self._inode = os.stat(self.path).st_ino
        self._thread = threading.Thread(target=self._serve, name="sscard-server", daemon=True)
        self._thread.start()
        log.info("sscard: LD/T 33 library socket at %s", self.path)

    def close(self) -> None:
        """Stop accepting, wait for the accept loop, remove the socket file (if still ours)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(POLL * 4)
        self._sock.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()

    def __enter__(self) -> SscardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- serving ---------------------------------------------------------------------------

    def _serve(self) -> None:
        self._sock.settimeout(POLL)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                conn = None
            except OSError:
                if self._stop.is_set():
                    return
                log.exception("sscard: accept failed")
                self._stop.wait(POLL)
                continue
            if conn is not None:
                if self._slots.acquire(blocking=False):
                    threading.Thread(
                        target=self._connection, args=(conn,), name="sscard-conn", daemon=True
                    ).start()
                else:
                    _answer(conn, ldt33.NO_ANSWER, "busy: too many library calls at once")
                    conn.close()
            if self._tick is not None:
                try:
                    self._tick()
                except Exception:
                    log.exception("sscard: tick failed")

    def _connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._one(conn)
        except OSError as exc:  # the client went away; nothing to answer
            log.debug("sscard: connection ended: %s", exc)
        except Exception:
            log.exception("sscard: connection failed")
        finally:
            self._slots.release()

    def _one(self, conn: socket.socket) -> None:
        _, uid, _ = peer_credentials(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        if uid not in self.allowed_uids:
            log.warning("sscard: refused a call from uid %d (not in [counter] sscard_users)", uid)
            _answer(conn, ldt33.READER_CONNECTION, f"not_allowed: uid {uid} may not use the reader")
            return
        conn.settimeout(REQUEST_TIMEOUT)
        encoding = Encoding.GBK
        try:
            request = proto.parse_request(_read_line(conn))
        except SscardRequestError as error:
            log.info("sscard: bad request from uid %d: %s", uid, error.reason)
            _answer(conn, proto.BAD_PARAMETER, f"bad_request: {error.reason}", encoding)
            return
        except TimeoutError:
            _answer(conn, proto.BAD_PARAMETER, "bad_request: no request line in time", encoding)
            return
        code, text = self._handle(request)
        log.info("sscard: %s from uid %d: %d", request.function.value, uid, code)
        conn.settimeout(SEND_TIMEOUT)
        _answer(conn, code, text, request.encoding)


def _read_line(conn: socket.socket) -> bytes:
    """Bytes up to and including the first LF; at most MAX_REQUEST + 1 read (a longer line
    is refused by the parser without reading on)."""
    data = b""
    while b"\n" not in data and len(data) <= proto.MAX_REQUEST:
        chunk = conn.recv(proto.MAX_REQUEST + 1 - len(data))
        if not chunk:
            break
        data += chunk
    line, sep, _ = data.partition(b"\n")
    if not sep:
        if len(data) > proto.MAX_REQUEST:
            raise SscardRequestError(f"request longer than {proto.MAX_REQUEST} bytes")
        raise SscardRequestError("the request line must end in LF")
    return line + sep


def _answer(conn: socket.socket, code: int, text: str, encoding: Encoding = Encoding.GBK) -> None:
    try:
        conn.sendall(proto.format_answer(code, text, encoding))
    except OSError as exc:
        log.debug("sscard: answer not delivered: %s", exc)


def _listen(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``: a stale socket file (nobody listening) is
    replaced; a live one - another counter service - or any other file there is a
    :class:`ConfigError`, never removed."""
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot make the sscard socket's directory: {exc}") from None
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"{path}: exists and is not a socket; not replaced")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise ConfigError(f"{path}: cannot check the existing socket: {exc}") from None
            path.unlink(missing_ok=True)  # stale: left by a service that died
        else:
            raise ConfigError(f"{path}: another counter service is listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # The peer-credential check is the gate; the mode lets a refused caller hear why.
        os.chmod(path, 0o666)
        sock.listen(MAX_CONNECTIONS)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{path}: cannot listen for the sscard library: {exc}") from None
    return sock
