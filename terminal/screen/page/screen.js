// Holder screen (docs/screen.md): renders the terminal's state, sent as server-sent events.
// All text goes in with textContent; the page never builds markup from data.
"use strict";
(() => {
  const UI = {
    zh: {
      lang: "English", langCode: "en", large: "大字", voice: "语音", assist: "需要帮助",
      call: "呼叫工作人员", cancel: "取消呼叫", complaint: "投诉与建议", phone: "电话",
      options: "选项", offline: "终端连接中断，请咨询工作人员", qr: "投诉网址二维码",
      hello: (n) => `${n}，您好`,
    },
    en: {
      lang: "中文", langCode: "zh-CN", large: "Large text", voice: "Voice", assist: "I need help",
      call: "Call staff", cancel: "Cancel call", complaint: "Complaints and suggestions",
      phone: "Phone", options: "Options", offline: "Terminal disconnected - please ask the staff",
      qr: "QR code of the complaint web address",
      hello: (n) => `Hello, ${n}`,
    },
  };
  const ICONS = { accepted: "#i-ok", refused: "#i-no", error: "#i-error" };
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  // Figures for tests and bench/screen.py: when each outcome reached the screen.
  const probe = (window.__onecard = { renders: [], spoken: [], state: null });
  let state = null;
  let lastSpoken = "";
  let lastDecided = 0;
  let offlineTimer = 0;

  function post(path, data) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data || {}),
    }).catch(() => undefined);
  }

  function show(el, on) { el.hidden = !on; }

  function render(s) {
    const lang = s.prefs.lang === "en" ? "en" : "zh";
    const ui = UI[lang];
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    body.className = `phase-${s.phase}` + (s.prefs.large ? " large" : "");
    body.dataset.seq = String(s.seq);
    const panel = $("panel");
    let title, detail, icon, outcome = "none";
    if (s.phase === "result" && s.result) {
      outcome = s.result.outcome;
      title = s.result.title[lang];
      detail = s.result.detail[lang];
      icon = ICONS[outcome] || "#i-error";
    } else if (s.phase === "busy" && s.busy) {
      title = s.busy[lang];
      detail = "";
      icon = "#i-busy";
    } else {
      title = s.prompt[lang];
      detail = s.prompt_detail[lang];
      icon = "#i-card";
    }
    panel.dataset.outcome = outcome;
    $("icon").firstElementChild.setAttribute("href", icon);
    $("title").textContent = title;
    $("detail").textContent = detail;
    show($("detail"), Boolean(detail));
    const holder = s.phase === "result" && s.result && s.result.holder;
    $("holder").textContent = holder ? ui.hello(holder) : "";
    show($("holder"), Boolean(holder));

    const call = s.call;
    $("call-banner").textContent = call ? call.text[lang] : "";
    show($("call-banner"), Boolean(call));
    $("assist-banner").textContent = s.assist_text ? s.assist_text[lang] : "";
    show($("assist-banner"), Boolean(s.assist_text));

    const langBtn = $("btn-lang");
    langBtn.textContent = ui.lang;
    langBtn.lang = ui.langCode;
    $("btn-large").textContent = ui.large;
    $("btn-large").setAttribute("aria-pressed", String(s.prefs.large));
    $("btn-voice").textContent = ui.voice;
    $("btn-voice").setAttribute("aria-pressed", String(s.prefs.voice));
    $("btn-assist").textContent = ui.assist;
    $("btn-assist").setAttribute("aria-pressed", String(s.assist));
    const waiting = call && call.state === "waiting";
    $("btn-call").textContent = waiting ? ui.cancel : ui.call;
    $("buttons").setAttribute("aria-label", ui.options);

    const c = s.complaint;
    show($("complaint"), Boolean(c.phone || c.url));
    $("complaint-heading").textContent = ui.complaint;
    $("complaint-phone-label").textContent = ui.phone;
    $("complaint-phone").textContent = c.phone;
    $("complaint-phone").href = c.phone ? `tel:${c.phone}` : "#";
    show($("complaint-phone-line"), Boolean(c.phone));
    $("complaint-url").textContent = c.url;
    const qr = $("complaint-qr");
    if (c.url && !qr.getAttribute("src")) qr.src = "/complaint.svg";
    qr.alt = ui.qr;
    show(qr, Boolean(c.url));

    if (s.phase === "result" && s.result && s.result.decided_at !== lastDecided) {
      lastDecided = s.result.decided_at;
      const decided = s.result.decided_at * 1000;
      const seq = s.seq;
      // The next animation frame is the one that paints this state.
      requestAnimationFrame(() => {
        const at = performance.timeOrigin + performance.now();
        probe.renders.push({ seq, decided_at: decided, rendered_at: at, ms: at - decided });
        if (probe.renders.length > 1000) probe.renders.shift();
      });
    }
    // Speech starts after this state's frame, so it never delays the words on screen.
    requestAnimationFrame(() => setTimeout(() => speak(s, lang), 0));
  }

  function speak(s, lang) {
    // Say each outcome once, the busy text and the prompt only in assistance mode, and a
    // staff call's progress.
    const key = [s.phase, s.result ? s.result.decided_at : "", s.call ? s.call.state : "", s.assist].join("|");
    const wanted = s.prefs.voice && s.voice && s.voice[lang] &&
      (s.phase === "result" || s.assist || s.call);
    if (!wanted || key === lastSpoken) { lastSpoken = key; return; }
    lastSpoken = key;
    const audio = $("audio");
    // Release the previous clip's media pipeline before the next: switching src alone lets
    // a never-reloaded kiosk page's renderer grow with every outcome.
    audio.pause();
    audio.removeAttribute("src");
    audio.load();
    audio.src = s.voice[lang];
    probe.spoken.push(s.voice[lang]);
    if (probe.spoken.length > 100) probe.spoken.shift();
    const playing = audio.play();
    if (playing) playing.catch(() => undefined); // autoplay refused: the words are on screen
  }

  function connect() {
    const source = new EventSource("/events");
    source.onmessage = (event) => {
      clearTimeout(offlineTimer);
      show($("offline"), false);
      state = JSON.parse(event.data);
      probe.state = state;
      render(state);
    };
    source.onerror = () => {
      clearTimeout(offlineTimer);
      // A restart of the runtime takes a second or two; say so only when it lasts.
      offlineTimer = setTimeout(() => {
        const ui = UI[state && state.prefs.lang === "en" ? "en" : "zh"];
        $("offline").textContent = ui.offline;
        show($("offline"), true);
      }, 3000);
    };
  }

  $("btn-lang").addEventListener("click", () => {
    if (state) post("/api/prefs", { lang: state.prefs.lang === "en" ? "zh" : "en" });
  });
  $("btn-large").addEventListener("click", () => {
    if (state) post("/api/prefs", { large: !state.prefs.large });
  });
  $("btn-voice").addEventListener("click", () => {
    if (state) post("/api/prefs", { voice: !state.prefs.voice });
  });
  $("btn-assist").addEventListener("click", () => {
    if (state) post("/api/assist", { on: !state.assist });
  });
  $("btn-call").addEventListener("click", () => {
    const waiting = state && state.call && state.call.state === "waiting";
    post(waiting ? "/api/call/cancel" : "/api/call");
  });
  connect();
})();
