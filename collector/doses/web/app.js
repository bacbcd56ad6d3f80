// magsleep phone page: log a dose, lights out or lights on with one tap. No build step, no dependencies.
"use strict";
(function () {
  const API = "/api/v1";
  const store = window.localStorage;
  const $ = (id) => document.getElementById(id);
  const els = {
    tokenBox: $("token-box"), token: $("token"), saveToken: $("save-token"),
    form: $("dose-form"), person: $("person"), formSel: $("form"), amount: $("amount"),
    note: $("note"), took: $("took"), status: $("status"), pendingBox: $("pending-box"),
    pendingText: $("pending-text"), retry: $("retry"), discard: $("discard"), recent: $("recent"),
    lightsTime: $("lights-time"), lightsOut: $("lights-out"), lightsOn: $("lights-on"),
    lightsPendingBox: $("lights-pending-box"), lightsPendingText: $("lights-pending-text"),
    lightsRetry: $("lights-retry"), lightsDiscard: $("lights-discard"), lightsList: $("lights-list"),
    who: $("who"), recentWho: $("recent-who"), tonight: $("tonight"), tonightText: $("tonight-text"),
    tonightDeviation: $("tonight-deviation"), lastDeviation: $("last-deviation"),
    morning: $("morning"), morningText: $("morning-text"), morningTable: $("morning-table"),
  };
  const EVENT_NAMES = { lights_out: "Lights out", lights_on: "Lights on" };
  // The server refuses times more than 10 minutes ahead of its clock (like the CLI).
  const CLOCK_TOLERANCE_MS = 10 * 60 * 1000;
  let skewMs = 0;  // this phone's clock minus the server's, from the last answer's Date header
  // Undo needs no confirmation this long after an entry was recorded; later it asks first.
  const UNDO_FREE_MS = 2 * 60 * 1000;
  // Dark theme when the system asks for it, and in the local evening and night.
  const DARK_FROM_HOUR = 20, DARK_UNTIL_HOUR = 7;

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);  // available without a secure context, unlike randomUUID
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function mg(x) { return (Math.round(x * 10) / 10).toString(); }

  function headers(json) {
    const h = {};
    const t = store.getItem("magsleep.token");
    if (t) h["Authorization"] = "Bearer " + t;
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  class ApiError extends Error {
    constructor(status, message, detail) {
      super(message); this.status = status; this.detail = detail || [];
    }
  }

  async function call(method, path, body, what) {
    let resp;
    try {
      resp = await fetch(API + path, {
        method, headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, `No connection to the magsleep server. The ${what || "dose"} is kept here; tap Retry.`);
    }
    const served = Date.parse(resp.headers.get("Date") || "");
    if (!Number.isNaN(served)) skewMs = Date.now() - served;
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (resp.status === 401) {
      els.tokenBox.hidden = false;
      throw new ApiError(401, "The server needs a valid API token: paste it above.");
    }
    if (!resp.ok) {
      const msg = data && data.error ? data.error : `server answered ${resp.status}`;
      throw new ApiError(resp.status, msg, data && data.detail);
    }
    return data;
  }

  // A 422 saying the time is in the future: the page sent its own clock, so the clocks disagree.
  function clockRefused(e, field) {
    return e.status === 422 && e.detail.some((d) => d.field === field && /in the future/.test(d.reason));
  }

  function clocksText() {
    const min = Math.max(1, Math.round(Math.abs(skewMs) / 60000));
    const phone = new Date();
    const server = new Date(phone.getTime() - skewMs);
    const side = skewMs >= 0 ? "ahead of" : "behind";
    return `The clocks disagree: this phone is ${min} min ${side} the magsleep server ` +
      `(phone ${hm(phone)}, server ${hm(server)}).`;
  }

  function keptText(what) {
    return `${clocksText()} The ${what} is kept here; set the right time on the phone or the ` +
      "server, then tap Retry.";
  }

  function setStatus(kind, text, warnings) {
    els.status.className = kind;
    els.status.textContent = text;
    for (const w of warnings || []) {
      const s = document.createElement("span");
      s.className = "warn";
      s.textContent = "⚠ " + w;
      els.status.appendChild(s);
    }
  }

  function remember() {
    store.setItem("magsleep.person", els.person.value);
    store.setItem("magsleep.form", els.formSel.value);
    store.setItem("magsleep.amount", els.amount.value);
  }

  function pending() {
    try { return JSON.parse(store.getItem("magsleep.pending") || "null"); } catch (e) { return null; }
  }

  function showPending() {
    const p = pending();
    els.pendingBox.hidden = !p;
    if (p) {
      const when = new Date(p.taken_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      els.pendingText.textContent =
        `Not saved yet: ${mg(p.amount_mg)} mg ${p.form} for ${p.person} at ${when}.`;
    }
  }

  async function send(body) {
    store.setItem("magsleep.pending", JSON.stringify(body));  // kept until the server has it
    els.took.disabled = true; els.retry.disabled = true;
    try {
      const res = await call("POST", "/doses", body);
      store.removeItem("magsleep.pending");
      const d = res.dose;
      setStatus("ok", `Logged ${mg(d.amount_mg)} mg ${d.form} (${mg(d.elemental_mg)} mg elemental).`,
                res.warnings);
      await afterDoses();
    } catch (e) {
      if (clockRefused(e, "taken_at")) {
        setStatus("err", "Not logged yet. " + keptText("dose"));  // kept for Retry
      } else {
        if (e.status === 422 || e.status === 409) {
          store.removeItem("magsleep.pending");  // the server said no: fix the entry, not retry
        }
        setStatus("err", "Not logged: " + e.message);
      }
    } finally {
      els.took.disabled = false; els.retry.disabled = false;
      showPending();
    }
  }

  // One list entry: what (with when beneath) and an Undo button that DELETEs `path` and reloads.
  // Within UNDO_FREE_MS of `recordedAt` (server time) Undo acts at once; later it asks first.
  function fillEntry(li, whatText, whenText, path, doneText, reload, recordedAt) {
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = whatText;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = whenText;
    what.appendChild(when);
    const undo = document.createElement("button");
    undo.type = "button";
    undo.className = "undo";
    undo.textContent = "Undo";
    undo.addEventListener("click", async () => {
      const age = Date.now() - skewMs - Date.parse(recordedAt);
      if (age > UNDO_FREE_MS) {
        const min = Math.round(age / 60000);
        if (!window.confirm(`${whatText}: recorded ${min} min ago. Remove it?`)) return;
      }
      undo.disabled = true;
      try {
        await call("DELETE", path);
        setStatus("ok", doneText);
        await reload();
      } catch (e) {
        setStatus("err", "Could not undo: " + e.message);
        undo.disabled = false;
      }
    });
    li.append(what, undo);
  }

  function renderRecent(doses) {
    els.recent.replaceChildren();
    if (!doses.length) {
      const li = document.createElement("li");
      li.textContent = "No doses yet.";
      els.recent.appendChild(li);
      return;
    }
    for (const d of doses) {
      const li = document.createElement("li");
      li.dataset.id = d.id;
      const when = new Date(d.taken_at).toLocaleString([], {
        weekday: "short", hour: "2-digit", minute: "2-digit" }) +
        ` · ${mg(d.elemental_mg)} mg Mg` + (d.note ? ` · ${d.note}` : "");
      fillEntry(li, `${mg(d.amount_mg)} mg ${d.form} · ${d.person}`, when, `/doses/${d.id}`,
                `Removed ${mg(d.amount_mg)} mg ${d.form}.`, afterDoses, d.recorded_at);
      els.recent.appendChild(li);
    }
  }

  async function loadRecent() {
    if (!els.person.value) return;
    els.recentWho.textContent = "of " + els.person.value;
    const res = await call("GET", `/doses?limit=10&person=${encodeURIComponent(els.person.value)}`);
    renderRecent(res.doses);
  }

  // A dose logged or undone changes the list and may make (or mend) a deviation from the plan.
  async function afterDoses() {
    await loadRecent();
    await loadPlan();
  }

  // -- tonight's plan and last night's numbers -----------------------------------------------

  function who() { return encodeURIComponent(els.person.value); }

  function showDeviation(el, text) {
    el.hidden = !text;
    el.textContent = text || "";
  }

  async function loadPlan() {
    if (!els.person.value) return;
    let p;
    try {
      p = await call("GET", `/plan/today?person=${who()}`);
    } catch (e) {
      els.tonight.hidden = false;
      els.tonightText.textContent = "Tonight's plan is not available: " + e.message;
      return;
    }
    els.tonight.hidden = false;
    els.tonight.className = "card " + (p.tonight ? p.tonight.planned : "none");
    els.tonightText.textContent = p.text;
    const t = p.tonight, l = p.last_night;
    showDeviation(els.tonightDeviation, t && t.deviation ? `Deviation tonight: ${t.deviation}.` : "");
    showDeviation(els.lastDeviation,
                  l && l.deviation ? `Deviation last night (${nightLabel(l.night)}): ${l.deviation}.` : "");
  }

  function minutes(v) {
    const total = Math.round(v);
    return total >= 60 ? `${Math.floor(total / 60)} h ${total % 60} min` : `${total} min`;
  }

  function metricText(m, v) {
    if (m.unit === "min") return minutes(v);
    if (m.unit === "%") return `${Math.round(v)}%`;
    return `${Math.round(v)} ${m.unit}`;
  }

  function diffText(m, d) {
    const sign = d > 0 ? "+" : d < 0 ? "−" : "±";
    const a = Math.abs(d);
    if (m.unit === "min") return sign + minutes(a);
    if (m.unit === "%") return `${sign}${Math.round(a)} pts`;
    return `${sign}${Math.round(a)} ${m.unit}`;
  }

  async function loadMorning() {
    if (!els.person.value) return;
    const body = els.morningTable.tBodies[0];
    body.replaceChildren();
    let c;
    try {
      c = await call("GET", `/nights/last?person=${who()}`);
    } catch (e) {
      els.morning.hidden = false;
      els.morningText.textContent = "Last night is not available: " + e.message;
      return;
    }
    els.morning.hidden = false;
    els.morning.classList.toggle("provisional", c.provisional);
    els.morningText.textContent = c.text +
      (c.night && c.baseline_nights ? ` · usual = median of your ${c.baseline_nights} nights before` : "");
    for (const m of c.metrics) {
      if (m.value === null) continue;
      const tr = document.createElement("tr");
      tr.dataset.metric = m.name;
      const cells = [m.label, metricText(m, m.value),
                     m.baseline === null ? "" : "usual " + metricText(m, m.baseline), ""];
      for (const text of cells) {
        const td = document.createElement(tr.children.length ? "td" : "th");
        td.textContent = text;
        tr.appendChild(td);
      }
      if (m.baseline !== null) {
        const d = m.value - m.baseline;
        const good = m.better === "higher" ? d > 0 : d < 0;
        const last = tr.lastChild;
        last.textContent = diffText(m, d);
        last.className = d === 0 ? "same" : good ? "better" : "worse";
      }
      body.appendChild(tr);
    }
  }

  function applyTheme() {
    const h = new Date().getHours();
    const night = h >= DARK_FROM_HOUR || h < DARK_UNTIL_HOUR;
    const prefers = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    document.documentElement.classList.toggle("dark", Boolean(night || prefers));
  }

  // -- lights out / lights on ---------------------------------------------------------------

  // 24-hour HH:MM, as the CLI and the server's messages write times
  function hm(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }

  function localDate(d) {
    const p = (x) => String(x).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  }

  function nightLabel(night) {
    const [y, m, d] = night.split("-").map(Number);
    return new Date(y, m - 1, d).toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" });
  }

  // The time field: empty means now; HH:MM is the most recent such time (23:40 typed after
  // midnight means last evening), like `magsleep night lights-out --at`.
  function lightsAt() {
    const now = new Date();
    const v = els.lightsTime.value;
    if (!v) return now;
    const [h, m] = v.split(":").map(Number);
    const at = new Date(now.getFullYear(), now.getMonth(), now.getDate(), h, m);
    if (at.getTime() > now.getTime() + 5 * 60 * 1000) at.setDate(at.getDate() - 1);
    return at;
  }

  function pendingLights() {
    try { return JSON.parse(store.getItem("magsleep.pendingLights") || "null"); } catch (e) { return null; }
  }

  function showPendingLights() {
    const p = pendingLights();
    els.lightsPendingBox.hidden = !p;
    if (p) {
      els.lightsPendingText.textContent =
        `Not saved yet: ${EVENT_NAMES[p.event].toLowerCase()} for ${p.person} at ${hm(p.at)}.`;
    }
  }

  async function sendLights(body) {
    store.setItem("magsleep.pendingLights", JSON.stringify(body));  // kept until the server has it
    const buttons = [els.lightsOut, els.lightsOn, els.lightsRetry];
    for (const b of buttons) b.disabled = true;
    try {
      const l = await call("POST", "/lights", body, EVENT_NAMES[body.event].toLowerCase());
      store.removeItem("magsleep.pendingLights");
      els.lightsTime.value = "";
      setStatus("ok", `${EVENT_NAMES[l.event]} at ${hm(l.at)} (night of ${nightLabel(l.night)}).`);
      await loadLights();
    } catch (e) {
      if (clockRefused(e, "at")) {
        setStatus("err", "Not saved yet. " + keptText(EVENT_NAMES[body.event].toLowerCase()));
        return;  // kept for Retry (finally still runs)
      }
      if (e.status >= 400 && e.status < 500 && e.status !== 401 && e.status !== 408 && e.status !== 429) {
        store.removeItem("magsleep.pendingLights");  // the server said no: fix it, not retry
      }
      setStatus("err", "Not saved: " + e.message);
    } finally {
      for (const b of buttons) b.disabled = false;
      showPendingLights();
    }
  }

  function recordLights(event) {
    if (pendingLights()) {
      setStatus("err", "An earlier lights out/on is not saved yet: tap Retry or Discard first.");
      return;
    }
    if (!els.person.value) { setStatus("err", "Pick the person first."); return; }
    store.setItem("magsleep.person", els.person.value);
    sendLights({ person: els.person.value, event, at: lightsAt().toISOString(), source: "web" });
  }

  function renderLights(lights) {
    els.lightsList.replaceChildren();
    if (!lights.length) {
      const li = document.createElement("li");
      li.textContent = "Nothing recorded for last night or tonight.";
      els.lightsList.appendChild(li);
      return;
    }
    for (const l of lights) {
      const li = document.createElement("li");
      li.dataset.night = l.night;
      li.dataset.event = l.event;
      fillEntry(li, `${EVENT_NAMES[l.event]} ${hm(l.at)}`, `night of ${nightLabel(l.night)} · ${l.person}`,
                `/lights/${l.night}/${l.event}?person=${encodeURIComponent(l.person)}`,
                `Removed ${EVENT_NAMES[l.event].toLowerCase()} ${hm(l.at)}.`, loadLights, l.recorded_at);
      els.lightsList.appendChild(li);
    }
  }

  async function loadLights() {
    if (!els.person.value) return;
    const since = new Date();
    since.setDate(since.getDate() - 1);  // last night and tonight
    const res = await call("GET", `/lights?person=${encodeURIComponent(els.person.value)}` +
                                  `&since=${localDate(since)}`);
    renderLights(res.lights);
  }

  function fill(select, values, chosen) {
    select.replaceChildren();
    for (const v of values) {
      const o = document.createElement("option");
      o.value = v; o.textContent = v;
      select.appendChild(o);
    }
    if (chosen && values.includes(chosen)) select.value = chosen;
  }

  async function init() {
    showPending();
    showPendingLights();
    try {
      const p = await call("GET", "/persons");
      fill(els.person, p.persons.map((x) => x.name), store.getItem("magsleep.person"));
      els.who.hidden = p.persons.length < 2;  // one person: nothing to pick
      fill(els.formSel, p.forms, store.getItem("magsleep.form") || p.default_form);
      els.amount.value = store.getItem("magsleep.amount") || "";
      els.tokenBox.hidden = true;
      await Promise.all([loadRecent(), loadLights(), loadPlan(), loadMorning()]);
      if (Math.abs(skewMs) > CLOCK_TOLERANCE_MS) {
        setStatus("err", clocksText() + " A dose logged now would be refused: set the right " +
                  "time first.");
      } else if (!els.status.textContent) setStatus("", "");
    } catch (e) {
      setStatus("err", e.message);
    }
  }

  els.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const amount = parseFloat(els.amount.value);
    if (!(amount > 0)) { setStatus("err", "Enter the amount in mg (more than 0)."); return; }
    if (pending()) {
      setStatus("err", "An earlier dose is not saved yet: tap Retry or Discard first.");
      return;
    }
    remember();
    const body = {
      id: uuid4(), person: els.person.value, form: els.formSel.value, amount_mg: amount,
      taken_at: new Date().toISOString(), note: els.note.value, source: "web",
    };
    els.note.value = "";
    send(body);
  });
  els.retry.addEventListener("click", () => { const p = pending(); if (p) send(p); });
  els.discard.addEventListener("click", () => {
    store.removeItem("magsleep.pending"); showPending(); setStatus("", "");
  });
  els.lightsOut.addEventListener("click", () => recordLights("lights_out"));
  els.lightsOn.addEventListener("click", () => recordLights("lights_on"));
  els.lightsRetry.addEventListener("click", () => { const p = pendingLights(); if (p) sendLights(p); });
  els.lightsDiscard.addEventListener("click", () => {
    store.removeItem("magsleep.pendingLights"); showPendingLights(); setStatus("", "");
  });
  els.person.addEventListener("change", () => {
    store.setItem("magsleep.person", els.person.value);  // remembered, like the other choices
    Promise.all([loadRecent(), loadLights(), loadPlan(), loadMorning()])
      .catch((e) => setStatus("err", e.message));
  });
  els.saveToken.addEventListener("click", () => {
    const t = els.token.value.trim();
    if (!t) return;
    store.setItem("magsleep.token", t);
    els.token.value = "";
    init();
  });

  applyTheme();
  setInterval(applyTheme, 5 * 60 * 1000);
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
  }
  init();
})();
