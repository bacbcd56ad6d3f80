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
  };
  const EVENT_NAMES = { lights_out: "Lights out", lights_on: "Lights on" };
  // The server refuses times more than 10 minutes ahead of its clock (like the CLI).
  const CLOCK_TOLERANCE_MS = 10 * 60 * 1000;
  let skewMs = 0;  // this phone's clock minus the server's, from the last answer's Date header

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
      await loadRecent();
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
  function fillEntry(li, whatText, whenText, path, doneText, reload) {
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
                `Removed ${mg(d.amount_mg)} mg ${d.form}.`, loadRecent);
      els.recent.appendChild(li);
    }
  }

  async function loadRecent() {
    const res = await call("GET", "/doses?limit=10");
    renderRecent(res.doses);
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
                `Removed ${EVENT_NAMES[l.event].toLowerCase()} ${hm(l.at)}.`, loadLights);
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
      fill(els.formSel, p.forms, store.getItem("magsleep.form") || p.default_form);
      els.amount.value = store.getItem("magsleep.amount") || "";
      els.tokenBox.hidden = true;
      await loadRecent();
      await loadLights();
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
    loadLights().catch((e) => setStatus("err", e.message));
  });
  els.saveToken.addEventListener("click", () => {
    const t = els.token.value.trim();
    if (!t) return;
    store.setItem("magsleep.token", t);
    els.token.value = "";
    init();
  });

  init();
})();
