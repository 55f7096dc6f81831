// The gateway's ops dashboard: plain JS, no dependencies, talks only to this listener.
// Every text it shows from the API is set with textContent (never parsed as HTML).
"use strict";

const POLL_MS = 3000;
const HISTORY_POINTS = 200; // 200 polls of 3 s = 10 minutes

const I18N = {
  en: {
    title: "Gateway operations", token: "Ops token", use_token: "Use token", lang_button: "Tiếng Việt",
    flows: "Flows per route", flows_hint: "Rates over the last poll, backlog and failures over the last minutes.",
    route: "Route", adapter: "Adapter", in_rate: "In /min", out_rate: "Delivered /min", fail_rate: "Failures /min",
    backlog: "Backlog", retry_backlog: "Retrying", age: "Age", dead: "Dead letters", history: "Last 10 minutes",
    recent_dl: "Recent dead letters", when: "When", key: "Dossier code", reason: "Reason", attempts: "Attempts",
    replay: "Replay", replayed_ok: "Replayed: it is queued again.", trail: "Dossier trail", search: "Search",
    search_placeholder: "Dossier code", footer: "Served by the gateway; no external resources.",
    no_token: "Enter an ops token to start.", unauthorized: "The token was refused.",
    forbidden: "Replaying needs an operator token.", failed: "The request failed",
    signed_in: "Signed in as", ready: "ready", not_ready: "NOT READY", instance: "instance",
    nothing: "Nothing recorded for this code.", no_dead_letters: "No open dead letters.",
    current_state: "Now", status: "HTTP", latency: "latency", digest: "digest", attempt: "attempt",
    version: "version", legend: "backlog (line), failures (red)",
    r_delivered: "delivered", r_retry: "retry", r_dead_lettered: "dead-lettered", r_superseded: "superseded",
    e_attempt: "attempt", e_outcome: "outcome", e_in_doubt: "in doubt", viewer: "viewer", operator: "operator",
    circuit: "Circuit", c_closed: "closed", c_half_open: "probing", c_open: "open (deferring)",
    indicators_page: "Service-quality index",
    signing: "Signing requests pending per service",
    signing_hint: "Requests waiting for an official's confirmation, and every state not yet finished.",
    sig_service: "Signer service", sig_pending: "Pending", sig_waiting: "Waiting for the official",
    sig_oldest: "Oldest since", sig_states: "By state", no_signing: "No signing request pending.",
  },
  vi: {
    title: "Vận hành cổng tích hợp", token: "Mã truy cập", use_token: "Dùng mã", lang_button: "English",
    flows: "Luồng dữ liệu theo tuyến", flows_hint: "Tốc độ theo lần cập nhật gần nhất; tồn đọng và lỗi trong vài phút qua.",
    route: "Tuyến", adapter: "Bộ kết nối", in_rate: "Nhận /phút", out_rate: "Đã chuyển /phút", fail_rate: "Lỗi /phút",
    backlog: "Tồn đọng", retry_backlog: "Đang thử lại", age: "Thời gian chờ", dead: "Thông điệp lỗi", history: "10 phút gần nhất",
    recent_dl: "Thông điệp lỗi gần đây", when: "Thời điểm", key: "Mã hồ sơ", reason: "Lý do", attempts: "Số lần thử",
    replay: "Gửi lại", replayed_ok: "Đã gửi lại: thông điệp đã vào hàng đợi.", trail: "Hành trình hồ sơ", search: "Tìm",
    search_placeholder: "Mã hồ sơ", footer: "Do cổng tích hợp phục vụ; không dùng tài nguyên bên ngoài.",
    no_token: "Nhập mã truy cập để bắt đầu.", unauthorized: "Mã truy cập bị từ chối.",
    forbidden: "Cần mã của người vận hành để gửi lại.", failed: "Yêu cầu thất bại",
    signed_in: "Đăng nhập với", ready: "sẵn sàng", not_ready: "CHƯA SẴN SÀNG", instance: "máy chủ",
    nothing: "Không có bản ghi nào cho mã này.", no_dead_letters: "Không có thông điệp lỗi đang mở.",
    current_state: "Hiện tại", status: "HTTP", latency: "độ trễ", digest: "mã băm", attempt: "lần thử",
    version: "phiên bản", legend: "tồn đọng (đường), lỗi (đỏ)",
    r_delivered: "đã chuyển", r_retry: "thử lại", r_dead_lettered: "vào hàng lỗi", r_superseded: "bị thay thế",
    e_attempt: "lần gửi", e_outcome: "kết quả", e_in_doubt: "chưa rõ đã gửi", viewer: "người xem", operator: "người vận hành",
    circuit: "Ngắt mạch", c_closed: "bình thường", c_half_open: "đang thử lại", c_open: "đang ngắt (hoãn gửi)",
    indicators_page: "Chỉ số phục vụ (766)",
    signing: "Yêu cầu ký số đang chờ theo dịch vụ",
    signing_hint: "Các yêu cầu đang chờ cán bộ xác nhận, và mọi trạng thái chưa kết thúc.",
    sig_service: "Dịch vụ ký số", sig_pending: "Đang xử lý", sig_waiting: "Chờ cán bộ xác nhận",
    sig_oldest: "Cũ nhất từ", sig_states: "Theo trạng thái", no_signing: "Không có yêu cầu ký số đang chờ.",
  },
};

// The agency subscriptions' panel (its texts kept apart from the table above).
Object.assign(I18N.en, {
  subs: "Agency subscriptions", sub: "Subscription", agency: "Agency", delivery: "Delivery", sub_state: "State",
  subs_hint: "Push: delivered and retried on this instance, lag of the oldest undelivered event. Pull: how far the agency's cursor is behind the feed.",
  delivered: "Delivered", retried: "Retried", lag: "Lag", behind: "Cursor behind", enabled: "enabled", disabled: "disabled",
  enable: "Enable", replay_day: "Replay last 24 h", enabled_ok: "Enabled for every instance.",
  replay_started: "Replay started", no_subs: "No agency subscription.",
});
Object.assign(I18N.vi, {
  subs: "Đăng ký nhận dữ liệu của cơ quan", sub: "Đăng ký", agency: "Cơ quan", delivery: "Hình thức", sub_state: "Trạng thái",
  subs_hint: "Đẩy: số đã chuyển và thử lại trên máy chủ này, độ trễ của sự kiện cũ nhất chưa chuyển. Kéo: con trỏ của cơ quan còn cách đầu nguồn bao nhiêu.",
  delivered: "Đã chuyển", retried: "Thử lại", lag: "Độ trễ", behind: "Con trỏ còn thiếu", enabled: "đang bật", disabled: "đã tắt",
  enable: "Bật lại", replay_day: "Gửi lại 24 giờ qua", enabled_ok: "Đã bật lại cho mọi máy chủ.",
  replay_started: "Đã bắt đầu gửi lại", no_subs: "Không có đăng ký nào.",
});

let lang = localStorage.getItem("gw-lang") === "vi" ? "vi" : "en";
let lastSubscriptions = [];
const flowHistory = new Map(); // route -> [{t, inn, out, fail, backlog}]
let lastRoutes = null;
let lastDeadLetters = [];
let lastTrail = null;
let lastStatus = null;
let lastSigning = [];
let pollTimer = null;

const t = (k) => (I18N[lang][k] ?? I18N.en[k] ?? k);
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function token() { return sessionStorage.getItem("gw-ops-token") || ""; }
// A link with the token in its fragment (`/#token=…`, as `gateway demo` prints): keep the
// token for this tab and clear the address bar. Fragments never reach the server.
(function tokenFromFragment() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem("gw-ops-token", decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
})();

let noticeIsError = false;
let noticeKey = null; // a dictionary key, re-translated when the language changes
// Errors stay until a request succeeds again; information stays until replaced.
function notice(msg, isError = true, key = null) {
  const n = $("#notice");
  n.textContent = msg || ""; n.className = "notice" + (isError ? "" : " info");
  noticeIsError = !!msg && isError; noticeKey = key;
}
function noticeT(key, isError = true) { notice(t(key), isError, key); }
function clearErrorNotice() { if (noticeIsError) notice(""); }

async function api(path, opts) {
  const r = await fetch(path, {
    ...(opts || {}),
    headers: { Authorization: "Bearer " + token(), Accept: "application/json" },
    cache: "no-store",
  });
  if (r.status === 401) { noticeT("unauthorized"); throw new Error("401"); }
  if (r.status === 403) { noticeT("forbidden"); throw new Error("403"); }
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const m = body && body.error ? body.error.message : r.status;
    notice(t("failed") + ": " + m);
    throw new Error(String(m));
  }
  return body;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-placeholder]")) e.placeholder = t(e.dataset.i18nPlaceholder);
  $("#lang").textContent = t("lang_button");
  if (noticeKey) $("#notice").textContent = t(noticeKey);
  renderStatus(); renderFlows(); renderDeadLetters(); renderTrail(); renderSubscriptions(); renderSigning();
}

function fmtTime(ms) {
  const d = new Date(ms);
  return d.toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", { hour12: false });
}

function fmtRate(v) { return v === null ? "–" : (v < 10 ? v.toFixed(1) : Math.round(v).toString()); }

function fmtAge(s) {
  if (s === undefined || s === null) return "–";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function resultLabel(r) { return I18N[lang]["r_" + r] ? t("r_" + r) : r; }

// ---- polling ----

function parseAges(text) {
  const ages = {};
  const re = /^gateway_message_age_seconds\{route="([^"]*)"[^}]*\}\s+([0-9.eE+-]+)$/gm;
  let m;
  while ((m = re.exec(text)) !== null) ages[m[1]] = parseFloat(m[2]);
  return ages;
}

async function poll() {
  if (!token()) { noticeT("no_token"); return; }
  try {
    const [status, routes, dls, metrics] = await Promise.all([
      api("/api/v1/status"),
      api("/api/v1/routes"),
      api("/api/v1/dead-letters?state=open&limit=50"),
      fetch("/metrics", { cache: "no-store" }).then((r) => r.text()).catch(() => ""),
    ]);
    clearErrorNotice();
    lastStatus = status;
    const ages = parseAges(metrics);
    const now = Date.now();
    for (const r of routes.routes) {
      const o = r.counts.outcomes || {};
      const h = flowHistory.get(r.name) || [];
      h.push({
        t: now,
        inn: r.counts.messages_in,
        out: o.delivered || 0,
        fail: (o.dead_lettered || 0) + (o.retried || 0),
        backlog: r.queue.ready + r.queue.unacked + (r.queue.delayed || 0),
      });
      while (h.length > HISTORY_POINTS) h.shift();
      flowHistory.set(r.name, h);
      r.age = ages[r.name];
    }
    lastRoutes = routes.routes;
    lastDeadLetters = dls.dead_letters.slice().reverse(); // newest first
    // The signing view is optional (a gateway without [signers] answers an empty list).
    lastSigning = await api("/api/v1/signing/pending").then((s) => s.services).catch(() => []);
    renderStatus(); renderFlows(); renderDeadLetters(); renderSigning();
    pollSubscriptions();
  } catch (e) {
    // notice() already says why
  }
}

function startPolling() {
  if (pollTimer) clearInterval(pollTimer);
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}

// ---- rendering ----

function renderStatus() {
  const s = lastStatus;
  const box = $("#status");
  box.textContent = "";
  if (!s) return;
  box.append(
    el("span", { class: s.ready ? "ok" : "bad" }, s.ready ? t("ready") : t("not_ready")),
    ` · ${t("instance")} ${s.instance} · ${s.broker.kind}/${s.store.kind} · ${t("signed_in")} ${s.caller.name} (${t(s.caller.role)})`,
  );
}

function rate(h, field) {
  if (h.length < 2) return null;
  const a = h[h.length - 2], b = h[h.length - 1];
  const dt = (b.t - a.t) / 60000;
  return dt > 0 ? Math.max(0, (b[field] - a[field]) / dt) : null;
}

function spark(h) {
  const w = 160, hgt = 28;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", hgt); svg.setAttribute("class", "spark");
  if (h.length < 2) return svg;
  const fails = h.map((p, i) => (i === 0 ? 0 : Math.max(0, p.fail - h[i - 1].fail)));
  const max = Math.max(1, ...h.map((p) => p.backlog), ...fails);
  // Newest at the right edge; the width is the whole history window.
  const x = (i) => w - ((h.length - 1 - i) / (HISTORY_POINTS - 1)) * w;
  const y = (v) => hgt - 1 - (v / max) * (hgt - 2);
  const line = document.createElementNS(svg.namespaceURI, "polyline");
  line.setAttribute("points", h.map((p, i) => `${x(i).toFixed(1)},${y(p.backlog).toFixed(1)}`).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#1a5fb4"); line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  fails.forEach((f, i) => {
    if (f <= 0) return;
    const r = document.createElementNS(svg.namespaceURI, "rect");
    r.setAttribute("x", x(i).toFixed(1)); r.setAttribute("y", y(f).toFixed(1));
    r.setAttribute("width", "2"); r.setAttribute("height", (hgt - 1 - y(f)).toFixed(1)); r.setAttribute("fill", "#c5221f");
    svg.append(r);
  });
  const title = document.createElementNS(svg.namespaceURI, "title");
  title.textContent = t("legend");
  svg.append(title);
  return svg;
}

function renderFlows() {
  const body = $("#flows tbody");
  body.textContent = "";
  for (const r of lastRoutes || []) {
    const h = flowHistory.get(r.name) || [];
    const fr = rate(h, "fail");
    const backlog = r.queue.ready + r.queue.unacked;
    body.append(el("tr", { "data-route": r.name },
      el("td", {}, r.name),
      el("td", {}, r.adapter),
      el("td", { class: { open: "bad", half_open: "warn" }[r.circuit] || "ok" }, t("c_" + r.circuit)),
      el("td", { class: "num" }, fmtRate(rate(h, "inn"))),
      el("td", { class: "num" }, fmtRate(rate(h, "out"))),
      el("td", { class: "num" + (fr ? " bad" : "") }, fmtRate(fr)),
      el("td", { class: "num" }, backlog),
      el("td", { class: "num" + (r.queue.delayed ? " warn" : "") }, r.queue.delayed ?? "–"),
      el("td", { class: "num" }, fmtAge(r.age)),
      el("td", { class: "num" + (r.dead_letters_open ? " bad" : "") }, r.dead_letters_open + (r.dead_letters_open_capped ? "+" : "")),
      el("td", {}, spark(h)),
    ));
  }
}

function renderSigning() {
  const body = $("#signing tbody");
  body.textContent = "";
  if (!lastSigning.length) {
    body.append(el("tr", {}, el("td", { colspan: 5, class: "hint" }, t("no_signing"))));
    return;
  }
  for (const s of lastSigning) {
    const states = Object.entries(s.states || {}).map(([k, n]) => `${k} ${n}`).join(" · ");
    body.append(el("tr", { "data-service": s.service },
      el("td", {}, s.service),
      el("td", { class: "num" }, s.pending),
      el("td", { class: "num" }, s.waiting_for_official),
      el("td", {}, fmtTime(Date.parse(s.oldest_created))),
      el("td", { class: "states" }, states),
    ));
  }
}

async function replay(id, button) {
  button.disabled = true;
  try {
    await api(`/api/v1/dead-letters/${encodeURIComponent(id)}/replay`, { method: "POST" });
    noticeT("replayed_ok", false);
    poll();
    if (lastTrail) search(lastTrail.key);
  } catch (e) {
    button.disabled = false;
  }
}

function renderDeadLetters() {
  const body = $("#dead-letters tbody");
  body.textContent = "";
  if (!lastDeadLetters.length) {
    body.append(el("tr", {}, el("td", { colspan: 6, class: "hint" }, t("no_dead_letters"))));
    return;
  }
  const operator = lastStatus && lastStatus.caller.role === "operator";
  for (const d of lastDeadLetters) {
    const btn = el("button", { class: "replay", "data-id": d.id, "data-key": d.key }, t("replay"));
    btn.addEventListener("click", () => replay(d.id, btn));
    if (!operator) btn.disabled = true;
    const key = el("a", { href: "#", class: "key" }, d.key);
    key.addEventListener("click", (ev) => { ev.preventDefault(); $("#search-input").value = d.key; search(d.key); });
    body.append(el("tr", { "data-id": d.id },
      el("td", {}, fmtTime(d.dead_at_ms)),
      el("td", {}, d.route),
      el("td", {}, key),
      el("td", { class: "reason" }, d.reason),
      el("td", { class: "num" }, d.attempts),
      el("td", {}, btn),
    ));
  }
}

async function search(code) {
  code = (code || "").trim();
  if (!code) return;
  try {
    lastTrail = await api(`/api/v1/dossiers/${encodeURIComponent(code)}/trail`);
    renderTrail();
  } catch (e) { /* notice says why */ }
}

function renderTrail() {
  const list = $("#trail");
  const badges = $("#trail-routes");
  list.textContent = ""; badges.textContent = "";
  const tr = lastTrail;
  if (!tr) return;
  if (!tr.events.length) { list.append(el("li", { class: "hint" }, t("nothing"))); return; }
  for (const [route, s] of Object.entries(tr.routes)) {
    badges.append(el("span", { class: "badge " + (s.outcome === "delivered" ? "ok" : s.outcome === "dead_lettered" ? "bad" : ""), "data-route": route, "data-outcome": s.outcome },
      `${t("current_state")} · ${route}: ${resultLabel(s.outcome)}` + (s.version !== null ? ` (${t("version")} ${s.version})` : "")));
  }
  for (const e of tr.events) {
    const parts = [];
    if (e.status !== null) parts.push(`${t("status")} ${e.status}`);
    if (e.attempt !== null) parts.push(`${t("attempt")} ${e.attempt}`);
    if (e.latency_ms !== null) parts.push(`${t("latency")} ${e.latency_ms} ms`);
    if (e.version !== null) parts.push(`${t("version")} ${e.version}`);
    if (e.reason) parts.push(e.reason);
    const li = el("li", { class: `${e.event} ${e.result}`, "data-event": e.event, "data-result": e.result },
      el("strong", {}, `${resultLabel(e.result)}`), ` — ${t("e_" + e.event)} · ${e.route}`,
      el("div", { class: "meta" }, `${fmtTime(e.at_ms)} · ${parts.join(" · ")}`),
      e.digest ? el("div", { class: "meta" }, `${t("digest")} `, el("code", {}, e.digest)) : null,
    );
    list.append(li);
  }
}

// ---- agency subscriptions ----

async function pollSubscriptions() {
  try {
    lastSubscriptions = (await api("/api/v1/subscriptions")).subscriptions;
    renderSubscriptions();
  } catch (e) { /* notice says why */ }
}

async function subscriptionAction(name, action, button) {
  button.disabled = true;
  try {
    const path = `/api/v1/subscriptions/${encodeURIComponent(name)}/${action}`;
    if (action === "enable") {
      await api(path, { method: "POST" });
      noticeT("enabled_ok", false);
    } else {
      const since = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
      const r = await fetch(path, {
        method: "POST", cache: "no-store", body: JSON.stringify({ since }),
        headers: { Authorization: "Bearer " + token(), "Content-Type": "application/json", Accept: "application/json" },
      });
      const body = await r.json();
      if (r.ok) notice(`${t("replay_started")}: ${body.found}`, false);
      else notice(t("failed") + ": " + (body.error ? body.error.message : r.status));
    }
    pollSubscriptions();
  } catch (e) {
    button.disabled = false;
  }
}

function renderSubscriptions() {
  const body = $("#subscriptions tbody");
  if (!body) return;
  body.textContent = "";
  if (!lastSubscriptions.length) {
    body.append(el("tr", {}, el("td", { colspan: 9, class: "hint" }, t("no_subs"))));
    return;
  }
  const operator = lastStatus && lastStatus.caller.role === "operator";
  for (const s of lastSubscriptions) {
    const live = s.live || {};
    const push = s.delivery === "push";
    const action = el("span", {});
    if (push && operator) {
      const btn = s.disabled
        ? el("button", { class: "enable", "data-sub": s.name }, t("enable"))
        : el("button", { class: "replay", "data-sub": s.name }, t("replay_day"));
      btn.addEventListener("click", () => subscriptionAction(s.name, s.disabled ? "enable" : "replay", btn));
      action.append(btn);
    }
    body.append(el("tr", { "data-subscription": s.name },
      el("td", {}, s.name),
      el("td", {}, s.agency),
      el("td", {}, s.delivery),
      el("td", { class: s.disabled ? "bad" : "ok", title: s.disabled ? s.disabled.reason : "" },
        s.disabled ? `${t("disabled")} (${s.disabled.reason})` : t("enabled")),
      el("td", { class: "num" }, push ? (live.delivered ?? "–") : (live.entries_served ?? "–")),
      el("td", { class: "num" + (live.retried ? " warn" : "") }, push ? (live.retried ?? "–") : "–"),
      el("td", { class: "num" }, fmtAge(live.lag_seconds)),
      el("td", { class: "num" + (live.cursor_behind ? " warn" : "") }, push ? "–" : (live.cursor_behind ?? "–")),
      el("td", {}, action),
    ));
  }
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  $("#token").value = token();
  $("#save-token").addEventListener("click", () => {
    sessionStorage.setItem("gw-ops-token", $("#token").value.trim());
    startPolling();
  });
  $("#lang").addEventListener("click", () => {
    lang = lang === "en" ? "vi" : "en";
    localStorage.setItem("gw-lang", lang);
    applyLanguage();
  });
  $("#search").addEventListener("submit", (ev) => { ev.preventDefault(); search($("#search-input").value); });
  applyLanguage();
  if (token()) startPolling(); else noticeT("no_token");
});
