"""``/health`` (JSON) and ``/metrics`` (Prometheus text) on 127.0.0.1 for the operator.

:class:`RuntimeStatus` is the in-process record the loop updates (thread-safe);
:class:`StatusServer` serves it from a daemon thread. Nothing personal is exposed: counts by
profile, decision and reason, the last transaction time, device states, the journal's
unacknowledged count and the versions of the documents in force.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class RuntimeStatus:
    """Counters and states, updated by the loop and read by the status server."""

    def __init__(self, profile: str, terminal_id: str) -> None:
        self.profile = profile
        self.terminal_id = terminal_id
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self.last_transaction: float | None = None
        self.readers: dict[str, str] = {}
        self.scanners: dict[str, str] = {}
        self.pcsc = "unknown"
        self.unacked: Callable[[], int | None] = lambda: None
        self.versions: Callable[[], dict[str, int]] = dict

    def count(self, decision: str, reason: str, at: float) -> None:
        with self._lock:
            key = (decision, reason)
            self._counts[key] = self._counts.get(key, 0) + 1
            self.last_transaction = at

    def set_reader(self, reader: str, state: str | None) -> None:
        with self._lock:
            if state is None:
                self.readers.pop(reader, None)
            else:
                self.readers[reader] = state

    def set_scanner(self, source: str, state: str) -> None:
        with self._lock:
            self.scanners[source] = state

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            items = sorted(self._counts.items())
            counts = [{"decision": d, "reason": r, "count": n} for (d, r), n in items]
            data: dict[str, Any] = {
                "status": "ok",
                "terminal_id": self.terminal_id,
                "profile": self.profile,
                "transactions": counts,
                "last_transaction": self.last_transaction,
                "pcsc": self.pcsc,
                "readers": dict(self.readers),
                "scanners": dict(self.scanners),
            }
        try:
            data["journal_unacked"] = self.unacked()
        except Exception as exc:  # a status page must answer even when the journal does not
            data["journal_unacked"] = None
            data["status"] = f"journal: {exc}"
        data["documents"] = self.versions()
        return data

    def metrics(self) -> str:
        snap = self.snapshot()
        profile = _label(self.profile)
        lines = [
            "# HELP onecard_transactions_total Transactions by profile, decision and reason.",
            "# TYPE onecard_transactions_total counter",
        ]
        for row in snap["transactions"]:
            lines.append(
                f'onecard_transactions_total{{profile="{profile}",decision="{_label(row["decision"])}",'
                f'reason="{_label(row["reason"])}"}} {row["count"]}'
            )
        lines += [
            "# HELP onecard_last_transaction_timestamp_seconds Wall time of the last one.",
            "# TYPE onecard_last_transaction_timestamp_seconds gauge",
            f"onecard_last_transaction_timestamp_seconds {snap['last_transaction'] or 0}",
            "# HELP onecard_pcsc_up 1 while the PC/SC service answers.",
            "# TYPE onecard_pcsc_up gauge",
            f"onecard_pcsc_up {1 if snap['pcsc'] == 'up' else 0}",
            "# HELP onecard_reader_card_present 1 while a card is in the reader.",
            "# TYPE onecard_reader_card_present gauge",
        ]
        for reader, state in sorted(snap["readers"].items()):
            present = 1 if state == "card" else 0
            lines.append(f'onecard_reader_card_present{{reader="{_label(reader)}"}} {present}')
        lines += [
            "# HELP onecard_scanner_up 1 while the scanner is connected.",
            "# TYPE onecard_scanner_up gauge",
        ]
        for source, state in sorted(snap["scanners"].items()):
            up = 1 if state == "connected" else 0
            lines.append(f'onecard_scanner_up{{scanner="{_label(source)}"}} {up}')
        lines += [
            "# HELP onecard_journal_unacked Journal entries the back office does not hold yet.",
            "# TYPE onecard_journal_unacked gauge",
            f"onecard_journal_unacked {snap['journal_unacked'] or 0}",
            "# HELP onecard_document_version Version of each published document in force.",
            "# TYPE onecard_document_version gauge",
        ]
        for name, version in sorted(snap["documents"].items()):
            lines.append(f'onecard_document_version{{document="{_label(name)}"}} {version}')
        return "\n".join(lines) + "\n"


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class StatusServer:
    """Serves a :class:`RuntimeStatus` on ``127.0.0.1:port`` (0: a free port, see
    :attr:`port`) until :meth:`close`."""

    def __init__(self, status: RuntimeStatus, port: int) -> None:
        def handler_factory(*args: Any) -> BaseHTTPRequestHandler:
            return _Handler(status, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler_factory)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="onecard-status", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    def __init__(self, status: RuntimeStatus, *args: Any) -> None:
        self.status = status
        super().__init__(*args)

    def do_GET(self) -> None:
        if self.path == "/health":
            body = json.dumps(self.status.snapshot(), ensure_ascii=False).encode()
            self._send(200, "application/json", body)
        elif self.path == "/metrics":
            self._send(200, "text/plain; version=0.0.4", self.status.metrics().encode())
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status %s", format % args)
