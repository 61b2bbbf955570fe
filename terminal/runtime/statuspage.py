"""The operator's view of the runtime on 127.0.0.1: ``/`` (a status page), ``/health``
(JSON), ``/metrics`` (Prometheus text) and ``POST /calls/<id>/ack``.

:class:`RuntimeStatus` is the in-process record the loop updates (thread-safe);
:class:`StatusServer` serves it from a daemon thread. Nothing personal is exposed: counts by
profile, decision and reason, the last transaction time, device states, the sync backlog,
the versions of the documents in force, staff calls by number and time, and the last
warnings and errors with identifiers masked (:mod:`terminal.runtime.recent_errors`).

The page (``GET /``) is self-contained (inline CSS and script, nothing fetched from
elsewhere), polls ``/health`` every second and renders it with ``textContent`` only. It is
the operator's page, not the holder's screen (that one is served on its own port).

``POST /calls/<id>/ack`` acknowledges a staff call. A web page open in the same browser
must not be able to press that button for the operator, so the request is refused (403)
when it carries an ``Origin`` other than this server's own, and needs ``Content-Type:
application/json`` (415 otherwise), which a cross-site form cannot send and a cross-site
script cannot send without a CORS preflight this server never grants.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from terminal.runtime.recent_errors import RecentErrors, mask_identifiers

log = logging.getLogger(__name__)

RECENT_ERRORS_SHOWN = 20
MAX_POST_BODY = 4 * 1024
MAX_DISCARDED_BODY = 64 * 1024
"""A refused body up to this size is read before answering 413, so the client gets the
answer instead of a connection reset; a larger one is not read at all."""
CONNECTION_TIMEOUT = 10.0
SHUTDOWN_POLL = 0.05


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
        if problems:
            data["status"] = "; ".join(problems)
        return data

    def _assistance(self) -> dict[str, Any]:
        answer = self.assistance()
        if not isinstance(answer, dict):
            raise TypeError(f"assistance() gave {type(answer).__name__}, not a dict")
        return {**answer, "calls": list(answer.get("calls") or [])}

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
        return "\n".join(lines) + "\n"


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
        def handler_factory(*args: Any) -> BaseHTTPRequestHandler:
            return _Handler(status, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler_factory)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        # A short poll: close() (at every runtime shutdown) waits up to one interval.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL},
            name="onecard-status",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and wait for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_ACK_PATH = re.compile(r"/calls/([^/]*)/ack")


class _Handler(BaseHTTPRequestHandler):
    timeout = CONNECTION_TIMEOUT

    def __init__(self, status: RuntimeStatus, *args: Any) -> None:
        self.status = status
        super().__init__(*args)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            self._send(200, "text/html; charset=utf-8", _PAGE, _PAGE_HEADERS)
        elif path == "/health":
            # default=str: a reporting callable handing over an odd value must not fail it.
            body = json.dumps(self.status.snapshot(), ensure_ascii=False, default=str)
            self._send(200, "application/json", body.encode())
        elif path == "/metrics":
            self._send(200, "text/plain; version=0.0.4", self.status.metrics().encode())
        else:
            self._send(404, "text/plain", b"not found\n")

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        match = _ACK_PATH.fullmatch(urllib.parse.urlsplit(self.path).path)
        if match is None:
            self._json(404, {"error": "not_found"})
            return
        if not self._own_origin():
            self._json(403, {"error": "foreign_origin"})
            return
        media_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            self._json(415, {"error": "json_required"})
            return
        text = match.group(1)
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            self._json(400, {"error": "bad_id"})
            return
        try:
            if body.strip():
                json.loads(body)
        except ValueError:
            self._json(400, {"error": "bad_json"})
            return
        try:
            acknowledged = bool(self.status.acknowledge_call(int(text)))
        except Exception:
            log.exception("acknowledging staff call %s failed", text)
            self._json(500, {"error": "internal_error"})
            return
        if acknowledged:
            log.info("staff call %s acknowledged by the operator", text)
            self._json(200, {"acknowledged": True})
        else:
            self._json(404, {"acknowledged": False, "error": "no_waiting_call"})

    def _read_body(self) -> bytes | None:
        """The request body, or None when it was refused (answered already)."""
        length_text = self.headers.get("Content-Length", "0").strip() or "0"
        if not (length_text.isascii() and length_text.isdigit()):
            self._json(400, {"error": "bad_length"})
            return None
        length = int(length_text)
        if length > MAX_POST_BODY:
            if length <= MAX_DISCARDED_BODY:
                self.rfile.read(length)
            self.close_connection = True
            self._json(413, {"error": "body_too_large"})
            return None
        return self.rfile.read(length) if length else b""

    def _own_origin(self) -> bool:
        """No ``Origin`` (not a browser's cross-site request) or this server's own one."""
        origin = self.headers.get("Origin")
        if origin is None:
            return True
        port = self.server.server_address[1]
        return origin.strip().lower() in (f"http://127.0.0.1:{port}", f"http://localhost:{port}")

    def _json(self, code: int, answer: dict[str, Any]) -> None:
        self._send(code, "application/json", json.dumps(answer).encode())

    def _send(
        self, code: int, kind: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        # Live values: a cached copy would show the operator a past state as the present.
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("status %s", format % args)


# --- the page -------------------------------------------------------------------------------

_PAGE_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif;
  color: #1f2937; background: #f5f6f8; }
header { padding: 10px 20px; background: #ffffff; border-bottom: 1px solid #c9ced6;
  display: flex; flex-wrap: wrap; gap: 4px 24px; align-items: baseline; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 16px; margin: 0 0 6px; }
header p { margin: 0; }
main { padding: 12px 20px; display: grid; gap: 12px;
  grid-template-columns: repeat(3, minmax(0, 1fr)); }
section { background: #ffffff; border: 1px solid #c9ced6; border-radius: 6px; padding: 10px 12px;
  min-width: 0; }
section.wide { grid-column: 1 / -1; }
section.double { grid-column: span 2; }
table + table { margin-top: 10px; }
section h2 + p, section p + table { margin-top: 0; }
.nowrap, button { white-space: nowrap; }
table { width: 100%; border-collapse: collapse; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e1e4e8;
  vertical-align: top; overflow-wrap: anywhere; }
th { background: #eef0f3; font-weight: 600; }
dl { display: grid; grid-template-columns: auto auto; gap: 2px 12px; margin: 0 0 12px; }
dt { font-weight: 600; }
dd { margin: 0; font-variant-numeric: tabular-nums; }
.zh { color: #4b5563; }
.state { display: inline-block; padding: 0 6px; border-radius: 4px; background: #eeeeee;
  color: #333333; }
.state.good { background: #e8f5e9; color: #1b5e20; }
.state.warn { background: #fff3cd; color: #8a4b00; }
.state.bad { background: #fde8e8; color: #a4161a; }
.empty { color: #4b5563; font-style: italic; }
#connection { padding: 2px 10px; border-radius: 4px; font-weight: 600; }
#connection[data-state="up"] { background: #e8f5e9; color: #1b5e20; }
#connection[data-state="down"] { background: #a4161a; color: #ffffff; }
#connection[data-state="connecting"] { background: #fff3cd; color: #8a4b00; }
tr.waiting td { background: #fff3cd; color: #8a4b00; font-weight: 600; }
button { font: inherit; padding: 2px 12px; border: 1px solid #0b57d0; border-radius: 4px;
  background: #0b57d0; color: #ffffff; cursor: pointer; }
button:disabled { background: #eeeeee; color: #333333; border-color: #8a8f98; cursor: default; }
button:focus-visible, a:focus-visible { outline: 3px solid #1f2937; outline-offset: 2px; }
a { color: #0b57d0; }
#errors td:nth-child(4) { white-space: pre-wrap; }
footer { padding: 0 20px 12px; color: #4b5563; }
"""

_PAGE_JS = r"""
"use strict";
(function () {
  var REFRESH_MS = 1000;
  var TIMEOUT_MS = 3000;
  var STATES = {
    up: ["good", "正常"], down: ["bad", "不可用"], unknown: ["", "未知"],
    card: ["good", "有卡"], empty: ["good", "无卡"], connected: ["good", "已连接"],
    gone: ["bad", "已断开"], waiting: ["warn", "等待中"], acknowledged: ["good", "已确认"],
    WARNING: ["warn", "警告"], ERROR: ["bad", "错误"], CRITICAL: ["bad", "严重"]
  };
  var rendered = {};
  var lastOk = null;

  function node(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function time(epoch) {
    if (typeof epoch !== "number" || !isFinite(epoch)) return "—";
    var d = new Date(epoch * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function state(value) {
    var text = String(value);
    var known = Object.prototype.hasOwnProperty.call(STATES, text) ? STATES[text] : null;
    var cls = known && known[0] ? "state " + known[0] : "state";
    return node("span", known ? text + " · " + known[1] : text, cls);
  }
  function number(value) { return typeof value === "number" ? String(value) : "—"; }
  function byId(id) { return document.getElementById(id); }

  // Re-render a part only when its data changed, so focus and text selection survive the
  // refresh; the focused control is found again by its data-testid when it is re-created.
  function part(id, data, draw) {
    var key = JSON.stringify(data);
    if (rendered[id] === key) return;
    rendered[id] = key;
    var focused = document.activeElement && document.activeElement.getAttribute("data-testid");
    draw(byId(id));
    if (focused) {
      var again = document.querySelector('[data-testid="' + focused.replace(/["\\]/g, "") + '"]');
      if (again && again !== document.activeElement) again.focus();
    }
  }
  function rows(table, list, columns, emptyText) {
    var body = table.tBodies[0];
    body.replaceChildren();
    if (!list.length) {
      var tr = node("tr");
      var td = node("td", emptyText, "empty");
      td.colSpan = columns;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    list.forEach(function (cells) {
      var tr = node("tr");
      cells.forEach(function (cell) {
        var td = node("td");
        if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }
  function pairs(obj) {
    return Object.keys(obj || {}).sort().map(function (k) { return [k, obj[k]]; });
  }

  function drawCalls(table, calls) {
    var body = table.tBodies[0];
    body.replaceChildren();
    if (!calls.length) {
      var tr = node("tr");
      var td = node("td", "No staff calls · 无呼叫", "empty");
      td.colSpan = 4;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    calls.forEach(function (call) {
      var id = String(call.id);
      var tr = node("tr", null, call.state === "waiting" ? "waiting" : "");
      tr.setAttribute("data-testid", "call-" + id);
      tr.appendChild(node("td", id));
      tr.appendChild(node("td", time(call.at), "nowrap"));
      var st = node("td");
      st.appendChild(state(call.state));
      tr.appendChild(st);
      var act = node("td");
      if (call.state === "waiting") {
        var b = node("button", "Acknowledge · 确认");
        b.type = "button";
        b.setAttribute("data-testid", "ack-" + id);
        b.setAttribute("aria-label", "Acknowledge call " + id + " · 确认呼叫 " + id);
        b.addEventListener("click", function () { acknowledge(call.id, b); });
        act.appendChild(b);
      }
      tr.appendChild(act);
      body.appendChild(tr);
    });
  }

  function acknowledge(id, button) {
    var note = byId("calls-note");
    button.disabled = true;
    fetch("/calls/" + encodeURIComponent(String(id)) + "/ack", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: "{}",
      cache: "no-store"
    }).then(function (r) {
      note.textContent = r.ok ? "Call " + id + " acknowledged · 已确认呼叫 " + id
        : "Call " + id + " could not be acknowledged (HTTP " + r.status + ") · 确认失败";
    }, function () {
      note.textContent = "Call " + id + " could not be acknowledged: no answer · 确认失败";
    }).then(function () { button.disabled = false; refresh(false); });
  }

  function render(s) {
    byId("terminal-id").textContent = String(s.terminal_id);
    byId("profile").textContent = String(s.profile);
    part("overall", s.status, function (e) {
      var cls = s.status === "ok" ? "state good" : "state bad";
      e.replaceChildren(node("span", String(s.status), cls));
    });
    part("pcsc", s.pcsc, function (e) { e.replaceChildren(state(s.pcsc)); });
    part("readers", s.readers, function (e) {
      rows(e, pairs(s.readers).map(function (p) { return [p[0], state(p[1])]; }), 2,
        "No readers · 无读卡器");
    });
    part("scanners", s.scanners, function (e) {
      rows(e, pairs(s.scanners).map(function (p) { return [p[0], state(p[1])]; }), 2,
        "No scanners or cameras · 无扫码器或摄像头");
    });
    part("backlog", [s.journal_unacked, s.events_unsent], function () {
      byId("journal-unacked").textContent = number(s.journal_unacked);
      byId("events-unsent").textContent = number(s.events_unsent);
    });
    part("documents", s.documents, function (e) {
      rows(e, pairs(s.documents).map(function (p) { return [p[0], String(p[1])]; }), 2,
        "No documents · 无文件");
    });
    part("transactions", [s.transactions, s.last_transaction], function (e) {
      byId("last-transaction").textContent = time(s.last_transaction);
      rows(e, (s.transactions || []).map(function (t) {
        return [String(t.decision), String(t.reason), String(t.count)];
      }), 3, "No transactions yet · 暂无交易");
    });
    part("screen", s.screen_url, function (e) {
      var url = s.screen_url;
      if (typeof url === "string" && /^https?:\/\//i.test(url)) {
        var a = node("a", url);
        a.href = url;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        e.replaceChildren(a);
      } else {
        var text = url ? String(url) : "Not configured · 未配置";
        e.replaceChildren(node("span", text, url ? "" : "empty"));
      }
    });
    var assistance = s.assistance || {};
    var calls = Array.isArray(assistance.calls) ? assistance.calls : [];
    var waiting = calls.filter(function (c) { return c && c.state === "waiting"; }).length;
    part("calls", calls, function (e) { drawCalls(e, calls); });
    byId("calls-waiting").textContent = waiting + " waiting · " + waiting + " 个等待中";
    byId("assistance-mode").textContent = assistance.mode ? "on · 开" : "off · 关";
    document.title = (waiting ? "(" + waiting + ") " : "") + "Terminal status · 终端状态";
    part("errors", s.recent_errors, function (e) {
      rows(e, (s.recent_errors || []).map(function (r) {
        return [node("span", time(r.at), "nowrap"), state(r.level), String(r.logger),
          String(r.message)];
      }), 4, "No warnings or errors · 无警告或错误");
    });
  }

  // Only a change is written: the element is a live region, and rewriting the same words
  // every second would have a screen reader repeat them.
  function connection(up) {
    var c = byId("connection");
    var was = c.getAttribute("data-state");
    if ((was === "up") === up && was !== "connecting") return;
    c.setAttribute("data-state", up ? "up" : "down");
    c.textContent = up ? "Live · 实时"
      : "Status unavailable · 状态不可用" + (lastOk ? " (last update " + time(lastOk) + ")" : "");
    document.body.setAttribute("data-stale", up ? "false" : "true");
  }

  var timer = null;
  function refresh(schedule) {
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var abort = ctrl ? setTimeout(function () { ctrl.abort(); }, TIMEOUT_MS) : null;
    fetch("/health", {cache: "no-store", signal: ctrl ? ctrl.signal : undefined})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (s) {
        render(s);
        lastOk = Date.now() / 1000;
        byId("updated").textContent = time(lastOk);
        connection(true);
      })
      .catch(function () { connection(false); })
      .then(function () {
        if (abort) clearTimeout(abort);
        if (schedule !== false) timer = setTimeout(refresh, REFRESH_MS);
      });
  }
  refresh();
})();
"""


def _zh(text: str, cls: str = "") -> str:
    """The Chinese label beside an English one, marked as Chinese for screen readers."""
    shown = f' class="{cls}"' if cls else ""
    return f'<span lang="zh-Hans"{shown}>{text}</span>'


def _table(
    ident: str, columns: list[tuple[str, str]], *, caption: str = "", heading: str = ""
) -> str:
    """An empty table the page's script fills: column headers (English, Chinese), named by
    its ``caption`` or by the ``heading`` element's id."""
    named = f' aria-labelledby="{heading}"' if heading else ""
    head = "".join(f'<th scope="col">{en} {_zh(zh)}</th>' for en, zh in columns)
    return (
        f'<table id="{ident}" data-testid="{ident}"{named}>'
        + (f"<caption>{caption}</caption>" if caption else "")
        + f"<thead><tr>{head}</tr></thead><tbody></tbody></table>"
    )


_STATE = ("State", "状态")
_TIME = ("Time", "时间")
_TABLES = {
    "calls": _table(
        "calls",
        [("Call", "编号"), _TIME, _STATE, ("Action", "操作")],
        caption=f"Calls from the holder screen {_zh('来自持卡人屏幕的呼叫')}",
    ),
    "readers": _table(
        "readers", [("Reader", "读卡器"), _STATE], caption=f"Readers {_zh('读卡器')}"
    ),
    "scanners": _table(
        "scanners",
        [("Source", "来源"), _STATE],
        caption=f"Scanners and cameras {_zh('扫码器和摄像头')}",
    ),
    "documents": _table(
        "documents", [("Document", "文件"), ("Version", "版本")], heading="h-documents"
    ),
    "transactions": _table(
        "transactions",
        [("Decision", "决定"), ("Reason", "原因"), ("Count", "次数")],
        heading="h-transactions",
    ),
    "errors": _table(
        "errors",
        [_TIME, ("Level", "级别"), ("Logger", "来源"), ("Message", "信息")],
        heading="h-errors",
    ),
}

_PAGE_BODY = f"""
<header>
  <h1>Terminal status {_zh("终端状态", "zh")}</h1>
  <p>Terminal {_zh("终端", "zh")}: <strong id="terminal-id" data-testid="terminal-id">…</strong></p>
  <p>Profile {_zh("模式", "zh")}: <strong id="profile" data-testid="profile">…</strong></p>
  <p>Health {_zh("状态", "zh")}: <span id="overall" data-testid="overall">…</span></p>
  <p id="connection" data-testid="connection" data-state="connecting" role="status">
    Connecting… · 正在连接…</p>
</header>
<main>
  <section class="double" aria-labelledby="h-calls">
    <h2 id="h-calls">Staff calls {_zh("呼叫工作人员", "zh")}</h2>
    <p><span id="calls-waiting" data-testid="calls-waiting">—</span>;
      assistance mode {_zh("辅助模式", "zh")}:
      <span id="assistance-mode" data-testid="assistance-mode">—</span></p>
    {_TABLES["calls"]}
    <p id="calls-note" data-testid="calls-note" role="status"></p>
  </section>
  <section aria-labelledby="h-devices">
    <h2 id="h-devices">Devices {_zh("设备", "zh")}</h2>
    <p>PC/SC service {_zh("读卡服务", "zh")}: <span id="pcsc" data-testid="pcsc">—</span></p>
    {_TABLES["readers"]}
    {_TABLES["scanners"]}
  </section>
  <section aria-labelledby="h-sync">
    <h2 id="h-sync">Sync backlog {_zh("待同步", "zh")}</h2>
    <dl id="backlog" data-testid="backlog">
      <dt>Journal entries not acknowledged {_zh("未确认的交易记录", "zh")}</dt>
      <dd id="journal-unacked" data-testid="journal-unacked">—</dd>
      <dt>Terminal events not sent {_zh("未发送的终端事件", "zh")}</dt>
      <dd id="events-unsent" data-testid="events-unsent">—</dd>
    </dl>
    <h2 id="h-screen">Holder screen {_zh("持卡人屏幕", "zh")}</h2>
    <p id="screen" data-testid="screen">—</p>
  </section>
  <section aria-labelledby="h-documents">
    <h2 id="h-documents">Documents in force {_zh("文件版本", "zh")}</h2>
    {_TABLES["documents"]}
  </section>
  <section aria-labelledby="h-transactions">
    <h2 id="h-transactions">Transactions {_zh("交易", "zh")}</h2>
    <p>Last transaction {_zh("最近交易", "zh")}:
      <span id="last-transaction" data-testid="last-transaction">—</span></p>
    {_TABLES["transactions"]}
  </section>
  <section class="wide" aria-labelledby="h-errors">
    <h2 id="h-errors">Recent warnings and errors {_zh("最近的警告和错误", "zh")}</h2>
    {_TABLES["errors"]}
  </section>
</main>
<footer>
  <p>Updated {_zh("更新于", "zh")}: <span id="updated" data-testid="updated">—</span></p>
</footer>
"""


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


_PAGE = (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    "<title>Terminal status · 终端状态</title>\n"
    f"<style>{_PAGE_CSS}</style>\n</head>\n<body>{_PAGE_BODY}"
    f"<script>{_PAGE_JS}</script>\n</body>\n</html>\n"
).encode()

# Only this page's own style and script run, and it talks to this server only: markup that
# got into the data anyway could neither load nor run anything.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src {_csp_hash(_PAGE_CSS)}; "
        f"script-src {_csp_hash(_PAGE_JS)}; connect-src 'self'; img-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}
