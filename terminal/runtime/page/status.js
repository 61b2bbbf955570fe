"use strict";
(function () {
  var REFRESH_MS = 1000;
  var TIMEOUT_MS = 3000;
  var STATES = {
    up: ["good", "正常"], down: ["bad", "不可用"], unknown: ["", "未知"],
    card: ["good", "有卡"], empty: ["good", "无卡"], connected: ["good", "已连接"],
    gone: ["bad", "已断开"], waiting: ["warn", "等待中"], acknowledged: ["good", "已确认"],
    WARNING: ["warn", "警告"], ERROR: ["bad", "错误"], CRITICAL: ["bad", "严重"],
    running: ["good", "运行中"], restarting: ["bad", "重启中"], finished: ["", "已结束"],
    stopped: ["", "已停止"]
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
    part("links", s.links, function (e) {
      rows(e, (s.links || []).map(function (l) {
        return [String(l.name), state(l.state), node("span", time(l.since), "nowrap"),
          String(l.reconnects)];
      }), 4, "No links reported · 无连接");
    });
    part("workers", s.workers, function (e) {
      rows(e, (s.workers || []).map(function (w) {
        return [String(w.name), state(w.state), String(w.restarts),
          w.last_error ? String(w.last_error) : "—"];
      }), 4, "No background workers · 无后台任务");
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
