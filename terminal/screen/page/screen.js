// Holder screen (docs/screen.md): renders the terminal's state, sent as server-sent events.
// All text goes in with textContent; the page never builds markup from data.
"use strict";
(() => {
  const UI = {
    zh: {
      lang: "English", langCode: "en", large: "大字", voice: "语音", assist: "需要帮助",
      call: "呼叫工作人员", cancel: "取消呼叫", complaint: "投诉与建议", phone: "电话",
      options: "选项", qr: "投诉网址二维码", wait: "请稍候",
      reconnecting: "正在连接终端…", reconnectingLong: "正在连接终端… 如需帮助，请咨询工作人员",
      hello: (n) => `${n}，您好`,
    },
    en: {
      lang: "中文", langCode: "zh-CN", large: "Large text", voice: "Voice", assist: "I need help",
      call: "Call staff", cancel: "Cancel call", complaint: "Complaints and suggestions",
      phone: "Phone", options: "Options", qr: "QR code of the complaint web address",
      wait: "Please wait", reconnecting: "Connecting to the terminal…",
      reconnectingLong: "Connecting to the terminal… If you need help, please ask the staff",
      hello: (n) => `Hello, ${n}`,
    },
  };
  const ICONS = { accepted: "#i-ok", refused: "#i-no", error: "#i-error" };
  const $ = (id) => document.getElementById(id);
  const body = document.body;
  // Figures for tests and the benches: when each outcome reached the screen, which clips
  // were asked for and how many started to play, how often the stream was opened.
  const probe = (window.__onecard = { renders: [], spoken: [], played: 0, connects: 0, state: null });
  let state = null;
  let lastSpoken = "";
  let lastDecided = 0;

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
      if (s.result.notice) detail = detail ? `${detail} · ${s.result.notice[lang]}` : s.result.notice[lang];
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
    const concession = s.phase === "result" && s.result && s.result.concession;
    $("concession").textContent = concession ? concession[lang] : "";
    show($("concession"), Boolean(concession));
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

  // --- voice -------------------------------------------------------------------------------
  // One AudioContext for the page's life, one decoded buffer per clip (the last few kept,
  // for the fixed prompts that recur: said again, neither fetched nor decoded again), one
  // short-lived source node per utterance. Everything is per page, bounded or released, so
  // a kiosk page that is never reloaded stays the same size however many outcomes it says
  // (a balance is a new clip each time).
  const MAX_CLIPS = 8;
  const CLIP_RATE = 22050;
  const clips = new Map(); // url -> Promise<AudioBuffer>, oldest use first
  let audio = null;
  let playing = null;
  let pending = ""; // the clip the screen wants said now

  function context() {
    if (!audio) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return null;
      // At the clips' own rate (espeak-ng's 22.05 kHz) a decoded clip is half the size it
      // would be at the device's 48 kHz; the browser resamples the one output stream.
      try {
        audio = new Context({ sampleRate: CLIP_RATE });
      } catch (e) {
        audio = new Context();
      }
    }
    // Suspended until the first touch where the browser does not allow autoplay.
    if (audio.state === "suspended") audio.resume().catch(() => undefined);
    return audio;
  }

  function clip(ctx, url) {
    let decoded = clips.get(url);
    if (decoded) {
      clips.delete(url); // to the end: most recently used
    } else {
      decoded = fetch(url, { cache: "no-store" })
        .then((answer) => {
          if (!answer.ok) throw new Error(`clip ${answer.status}`);
          return answer.arrayBuffer();
        })
        .then((data) => ctx.decodeAudioData(data));
      decoded.catch(() => clips.delete(url)); // asked again next time
    }
    clips.set(url, decoded);
    while (clips.size > MAX_CLIPS) clips.delete(clips.keys().next().value);
    return decoded;
  }

  function hush() {
    pending = "";
    if (!playing) return;
    try { playing.stop(); } catch (e) { /* not started yet */ }
    playing.disconnect();
    playing = null;
  }

  // A concession card gets its own tone before the words: two rising notes, unlike any
  // outcome's single beep, so a driver knows to look at the rider (article 21).
  const CHIME_S = 0.36;
  function chime(ctx) {
    const start = ctx.currentTime;
    [[660, 0], [880, 0.18]].forEach(([freq, at]) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.25, start + at);
      gain.gain.exponentialRampToValueAtTime(0.001, start + at + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.onended = () => { osc.disconnect(); gain.disconnect(); };
      osc.start(start + at);
      osc.stop(start + at + 0.17);
    });
    probe.chimes = (probe.chimes || 0) + 1;
  }

  function play(url, delay = 0) {
    hush();
    const ctx = context();
    if (!ctx) return;
    pending = url;
    clip(ctx, url).then((buffer) => {
      if (pending !== url) return; // a newer outcome came while this one loaded
      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(ctx.destination);
      source.onended = () => {
        source.disconnect();
        if (playing === source) playing = null;
      };
      playing = source;
      source.start(delay ? ctx.currentTime + delay : 0);
      probe.played += 1;
    }, () => undefined); // no clip: the words are on screen
  }

  function speak(s, lang) {
    // Say each outcome once, the busy text and the prompt only in assistance mode, and a
    // staff call's progress.
    const key = [s.phase, s.result ? s.result.decided_at : "", s.call ? s.call.state : "", s.assist].join("|");
    const wanted = s.prefs.voice && s.voice && s.voice[lang] &&
      (s.phase === "result" || s.assist || s.call);
    if (!wanted || key === lastSpoken) { lastSpoken = key; return; }
    lastSpoken = key;
    probe.spoken.push(s.voice[lang]);
    if (probe.spoken.length > 100) probe.spoken.shift();
    const concession = s.phase === "result" && s.result && s.result.concession;
    const ctx = concession ? context() : null;
    if (ctx) chime(ctx);
    play(s.voice[lang], ctx ? CHIME_S : 0);
  }

  // Where autoplay needs a gesture, the first touch lets the voice speak.
  document.addEventListener("pointerdown", () => context(), { once: true, capture: true });

  // --- the stream ------------------------------------------------------------------------
  // EventSource gives up for good when an answer is not a stream (a 503, a runtime that is
  // restarting) and otherwise retries at a fixed pace; the page does it itself instead:
  // after 1 s, then twice as long each time up to 30 s, each wait between half and all of
  // that (so that pages cut off together do not come back together).
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const NOTICE_MS = 3000; // a restart takes a second or two: no notice for that
  const HELP_MS = 30000; // then, gently, where to get help
  let source = null;
  let attempts = 0;
  let lostAt = 0;
  let noticeTimer = 0;

  function retryDelay() {
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** attempts);
    attempts = Math.min(attempts + 1, 8);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function notice() {
    const ui = UI[state && state.prefs.lang === "en" ? "en" : "zh"];
    const long = performance.now() - lostAt >= HELP_MS;
    $("reconnecting").textContent = long ? ui.reconnectingLong : ui.reconnecting;
    show($("reconnecting"), true);
    // What was on screen may be stale (an outcome for the last holder): say "please wait"
    // rather than show it, and say it calmly - the terminal is only reconnecting.
    body.classList.add("reconnecting");
    $("panel").dataset.outcome = "none";
    $("icon").firstElementChild.setAttribute("href", "#i-busy");
    $("title").textContent = ui.wait;
    show($("detail"), false);
    show($("holder"), false);
    hush();
    noticeTimer = long ? 0 : setTimeout(notice, HELP_MS - (performance.now() - lostAt));
  }

  function connected() {
    clearTimeout(noticeTimer);
    noticeTimer = 0;
    lostAt = 0;
    attempts = 0; // the stream works: the next loss starts over at 1 s
    body.classList.remove("reconnecting");
    show($("reconnecting"), false);
  }

  function lost() {
    if (source) {
      source.onmessage = source.onerror = null;
      source.close();
      source = null;
    }
    if (!lostAt) {
      lostAt = performance.now();
      noticeTimer = setTimeout(notice, NOTICE_MS);
    }
    setTimeout(connect, retryDelay());
  }

  function connect() {
    probe.connects += 1;
    source = new EventSource("/events");
    source.onmessage = (event) => {
      connected();
      state = JSON.parse(event.data);
      probe.state = state;
      render(state);
    };
    source.onerror = lost;
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
