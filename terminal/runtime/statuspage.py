"""The operator's view of the runtime on 127.0.0.1: ``/`` (a status page), ``/health``
(JSON), ``/metrics`` (Prometheus text) and ``POST /calls/<id>/ack``.

:class:`RuntimeStatus` is the in-process record the loop updates (thread-safe);
:class:`StatusServer` serves it from a daemon thread. Nothing personal is exposed: counts by
profile, decision and reason, the last transaction time, device states, the sync backlog,
the versions of the documents in force, staff calls by number and time, and the last
warnings and errors with identifiers masked (:mod:`terminal.runtime.recent_errors`).

The page (``GET /``) is ``page/status.html`` with ``status.css`` and ``status.js`` inlined
(package data): one self-contained answer, nothing fetched from elsewhere, and a
Content-Security-Policy that lets only that style and that script run (by their hashes). It
polls ``/health`` every second and renders it with ``textContent`` only. It is the
operator's page, not the holder's screen (that one is served on its own port).

``POST /calls/<id>/ack`` (a JSON body, ``{}``) acknowledges a staff call: 200
``{"acknowledged": true}``, or 404 ``{"status": "error", "error": "no_waiting_call",
"reason": ..., "acknowledged": false}``. A web page open in the same browser must not be
able to press that button for the operator: the server is a
:class:`~terminal.loopback.LoopbackServer`, whose guard refuses a foreign ``Host``
(``bad_host``), a foreign ``Origin`` (``foreign_origin``), a body that is not
``application/json`` (``json_required``) or larger than 4 KiB (``body_too_large``), in the
loopback servers' one error shape (:mod:`terminal.loopback.vocabulary`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from terminal.loopback.answers import Answer, Request, Routes, json_answer
from terminal.loopback.server import LoopbackServer
from terminal.loopback.static import InlinedPage, StaticFile, content_type, inline_page, read_files
from terminal.loopback.vocabulary import BAD_REQUEST, ErrorKind, Refused
from terminal.runtime.links import Links
from terminal.runtime.recent_errors import RecentErrors, mask_identifiers

log = logging.getLogger(__name__)

RECENT_ERRORS_SHOWN = 20
NO_WAITING_CALL = ErrorKind("no_waiting_call", 404)
"""``POST /calls/<id>/ack`` for a call that is not waiting (unknown, or acknowledged)."""


def _no_assistance() -> dict[str, Any]:
    return {"mode": False, "calls": []}


class RuntimeStatus:
    """Counters and states, updated by the loop and read by the status server.

    The callables are set by whoever owns the thing they report on: ``unacked`` (journal
    entries the back office does not hold yet), ``versions`` (document name -> version),
    ``assistance`` (``{"mode": bool, "calls": [{"id", "at", "state"}]}``, state
    ``"waiting"`` or ``"acknowledged"``), ``acknowledge_call`` (True when a waiting call was
    acknowledged), ``events_unsent`` (terminal events not sent yet). ``recent_errors`` is the
    log handler whose records the page lists; ``screen_url`` the holder screen's address.
    ``links`` holds the device and service links (:mod:`terminal.runtime.links`: up or
    down, since when, reconnections); ``workers`` lists the background workers
    (:meth:`terminal.runtime.supervisor.Supervisor.snapshot`: name, state, restarts, last
    error).
    """

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
        self.recent_errors: RecentErrors | None = None
        self.assistance: Callable[[], dict[str, Any]] = _no_assistance
        self.acknowledge_call: Callable[[int], bool] = lambda call_id: False
        self.events_unsent: Callable[[], int | None] = lambda: None
        self.screen_url: str | None = None
        self.links: Links | None = None
        self.workers: Callable[[], list[dict[str, Any]]] = list
        self.venue: Callable[[], dict[str, Any] | None] = lambda: None
        """A venue gate's state (:meth:`terminal.venue.gate.VenueGate.status`: its library
        system link, its occupancy)."""

    def count(self, decision: str, reason: str, at: float) -> None:
        """Count one transaction with its decision and reason, done at wall time ``at``."""
        with self._lock:
            key = (decision, reason)
            self._counts[key] = self._counts.get(key, 0) + 1
            self.last_transaction = at

    def set_reader(self, reader: str, state: str | None) -> None:
        """Record a reader's state (``None``: the reader is gone)."""
        with self._lock:
            if state is None:
                self.readers.pop(reader, None)
            else:
                self.readers[reader] = state

    def set_scanner(self, source: str, state: str) -> None:
        """Record a scanner's or camera's state."""
        with self._lock:
            self.scanners[source] = state

    def snapshot(self) -> dict[str, Any]:
        """Everything ``/health`` answers. A reporting callable that fails gives its neutral
        value and names itself in ``status`` instead of failing the whole answer."""
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
        problems: list[str] = []
        # A status page must answer even when the journal, the document store or the
        # holder screen does not.
        data["journal_unacked"] = _ask("journal", self.unacked, None, problems)
        data["documents"] = _ask("documents", self.versions, {}, problems)
        data["events_unsent"] = _ask("events", self.events_unsent, None, problems)
        data["assistance"] = _ask("assistance", self._assistance, _no_assistance(), problems)
        data["recent_errors"] = _ask("recent errors", self._recent_errors, [], problems)
        data["screen_url"] = self.screen_url
        data["links"] = _ask("links", self._links, [], problems)
        data["workers"] = _ask("workers", self._workers, [], problems)
        data["venue"] = _ask("venue", self.venue, None, problems)
        if problems:
            data["status"] = "; ".join(problems)
        return data

    def _assistance(self) -> dict[str, Any]:
        answer = self.assistance()
        if not isinstance(answer, dict):
            raise TypeError(f"assistance() gave {type(answer).__name__}, not a dict")
        return {**answer, "calls": list(answer.get("calls") or [])}

    def _workers(self) -> list[dict[str, Any]]:
        # An exception's text may quote what the worker was handling: masked like the log.
        return [
            {**w, "last_error": mask_identifiers(str(w["last_error"]))}
            if w.get("last_error")
            else dict(w)
            for w in self.workers()
        ]

    def _links(self) -> list[dict[str, Any]]:
        return self.links.snapshot() if self.links is not None else []

    def _recent_errors(self) -> list[dict[str, Any]]:
        if self.recent_errors is None:
            return []
        return self.recent_errors.snapshot(RECENT_ERRORS_SHOWN)

    def metrics(self) -> str:
        """Prometheus text exposition (version 0.0.4) of :meth:`snapshot`."""
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
            "# HELP onecard_events_unsent Terminal events not sent to the back office yet.",
            "# TYPE onecard_events_unsent gauge",
            f"onecard_events_unsent {snap['events_unsent'] or 0}",
            "# HELP onecard_staff_calls_waiting Staff calls from the holder not acknowledged yet.",
            "# TYPE onecard_staff_calls_waiting gauge",
            f"onecard_staff_calls_waiting {_waiting(snap['assistance'])}",
            "# HELP onecard_document_version Version of each published document in force.",
            "# TYPE onecard_document_version gauge",
        ]
        for name, version in sorted(snap["documents"].items()):
            lines.append(f'onecard_document_version{{document="{_label(name)}"}} {version}')
        lines += _link_metrics(snap["links"]) + _worker_metrics(snap["workers"])
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, text: str, samples: list[tuple[str, object]]) -> list[str]:
    """One metric family: its HELP and TYPE lines, then ``name{labels} value`` per sample."""
    lines = [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
    return lines + [f"{name}{{{labels}}} {value}" for labels, value in samples]


def _link_metrics(links: list[dict[str, Any]]) -> list[str]:
    """Each link: up (1) or not, since when, how often it came back."""
    named = [(f'link="{_label(link["name"])}"', link) for link in links]
    return [
        *_family(
            "onecard_link_up",
            "gauge",
            "1 while the link (pcsc, psam, reader, scanner, backoffice) is up.",
            [(labels, _up(link["state"])) for labels, link in named],
        ),
        *_family(
            "onecard_link_since_timestamp_seconds",
            "gauge",
            "Wall time of the link's last change.",
            [(labels, link["since"]) for labels, link in named],
        ),
        *_family(
            "onecard_link_reconnects_total",
            "counter",
            "Times the link came back after going down.",
            [(labels, link["reconnects"]) for labels, link in named],
        ),
    ]


def _worker_metrics(workers: list[dict[str, Any]]) -> list[str]:
    """Each background worker: its state (1 on the current one), restarts, last error."""
    named = [(f'worker="{_label(worker["name"])}"', worker) for worker in workers]
    return [
        *_family(
            "onecard_worker_state",
            "gauge",
            "The background worker's state (1 on the current one).",
            [(f'{labels},state="{_label(w["state"])}"', 1) for labels, w in named],
        ),
        *_family(
            "onecard_worker_restarts_total",
            "counter",
            "Times the supervisor restarted the worker.",
            [(labels, w["restarts"]) for labels, w in named],
        ),
        *_family(
            "onecard_worker_last_error_timestamp_seconds",
            "gauge",
            "Wall time of the worker's last failure, the error (masked) as a label.",
            [
                (
                    f'{labels},error="{_label(str(w["last_error"])[:200])}"',
                    w.get("last_error_at") or 0,
                )
                for labels, w in named
                if w.get("last_error")
            ],
        ),
    ]


def _up(state: object) -> int:
    return 1 if state == "up" else 0


def _ask(name: str, call: Callable[[], Any], fallback: Any, problems: list[str]) -> Any:
    """``call()``, or ``fallback`` with the failure added to ``problems``."""
    try:
        return call()
    except Exception as exc:
        # Not logged above DEBUG: /health is polled every second and would flood the log
        # (and the page's own error list) with one failure.
        log.debug("status: %s failed", name, exc_info=True)
        problems.append(mask_identifiers(f"{name}: {exc}"))
        return fallback


def _waiting(assistance: dict[str, Any]) -> int:
    calls = assistance.get("calls") or []
    return sum(1 for call in calls if isinstance(call, dict) and call.get("state") == "waiting")


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class StatusServer:
    """Serves a :class:`RuntimeStatus` on ``127.0.0.1:port`` (0: a free port, see
    :attr:`port`) until :meth:`close`."""

    def __init__(self, status: RuntimeStatus, port: int) -> None:
        self.status = status
        page = _load_page()
        routes = Routes()
        routes.add("/", "GET", StaticFile(page.html, content_type("status.html")))
        routes.add("/health", "GET", self._health)
        routes.add("/metrics", "GET", self._metrics)
        routes.add_pattern(r"/calls/([^/]*)/ack", "POST", self._acknowledge, json=True)
        self._http = LoopbackServer(
            routes,
            title="status page",
            server_version="onecard-status",
            port=port,
            # Only the page's own style and script run, and it talks to this server only:
            # markup that got into the data anyway could neither load nor run anything.
            policy=(
                f"default-src 'none'; style-src {page.style_hash}; "
                f"script-src {page.script_hash}; connect-src 'self'; img-src 'none'; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            ),
        )
        self.port: int = self._http.port

    def close(self) -> None:
        """Stop serving and wait for the serving thread."""
        self._http.close()

    # Live values, answered ``Cache-Control: no-store``: a cached copy would show the
    # operator a past state as the present.

    def _health(self, request: Request) -> Answer:
        return json_answer(200, self.status.snapshot())

    def _metrics(self, request: Request) -> Answer:
        body = self.status.metrics().encode()
        return Answer(200, body, "text/plain; version=0.0.4")

    def _acknowledge(self, request: Request) -> Answer:
        (text,) = request.params
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise Refused(BAD_REQUEST, "the call must be a number")
        # A failure of the screen's side is logged and answered internal_error by the
        # server, which goes on serving.
        if not self.status.acknowledge_call(int(text)):
            raise Refused(NO_WAITING_CALL, "no such call is waiting", acknowledged=False)
        log.info("staff call %s acknowledged by the operator", text)
        return json_answer(200, {"acknowledged": True})


def _load_page() -> InlinedPage:
    """The operator page from package data, its style and script inlined."""
    files = read_files("terminal.runtime", "page", ("status.html", "status.css", "status.js"))
    return inline_page(
        files["status.html"],
        ("status.css", files["status.css"]),
        ("status.js", files["status.js"]),
    )
