// The service-quality index page: a table per commune and a chart of each indicator over the
// last 12 months (inline SVG drawn here), Vietnamese or English. Plain JS, no dependencies,
// talks only to this listener; every text from the API is set with textContent.
"use strict";

const I18N = {
  en: {
    title: "Service-quality index (Decision 766)", back: "Operations", period: "Month", show: "Show",
    lang_button: "Tiếng Việt",
    units: "Indicators per commune",
    units_hint: "Percent with 2 decimals; N/A when nothing counts. Click a row to chart it beside the province.",
    unit: "Unit", on_time: "On time (2.1)", points: "Points (of 20)", online: "Online (3.3)",
    online_payment: "Paid online (3.6)", electronic_result: "Electronic result (4.1)", digitised: "Digitised (4.2)",
    synced: "Synced (1.4)", avg_days: "Avg. processing (working days, 2.2)", dossiers: "Dossiers (2.1)",
    lowest: "Lowest on-time rate", lowest_hint: "Only units with at least {n} dossiers are ranked; {k} have too few.",
    charts: "Each indicator over the last 12 months",
    legend: "Province (solid line), the selected unit (dashed)", province: "Province",
    footer: "Served by the gateway; no external resources.",
    no_token: "Enter an ops token on the operations page first.", unauthorized: "The token was refused.",
    failed: "The request failed", none: "No dossier in this period.", none_ranked: "No unit has enough dossiers yet.",
  },
  vi: {
    title: "Chỉ số phục vụ người dân, doanh nghiệp (Quyết định 766)", back: "Vận hành", period: "Tháng", show: "Xem",
    lang_button: "English",
    units: "Chỉ số theo xã, phường",
    units_hint: "Tỷ lệ phần trăm, 2 chữ số thập phân; N/A khi không có hồ sơ để tính. Bấm vào một dòng để vẽ cạnh số liệu toàn tỉnh.",
    unit: "Đơn vị", on_time: "Đúng hạn (2.1)", points: "Điểm (trên 20)", online: "Trực tuyến (3.3)",
    online_payment: "Thanh toán trực tuyến (3.6)", electronic_result: "Kết quả điện tử (4.1)", digitised: "Số hóa (4.2)",
    synced: "Đồng bộ (1.4)", avg_days: "Thời gian xử lý trung bình (ngày làm việc, 2.2)", dossiers: "Số hồ sơ (2.1)",
    lowest: "Tỷ lệ đúng hạn thấp nhất", lowest_hint: "Chỉ xếp hạng đơn vị có ít nhất {n} hồ sơ; {k} đơn vị có quá ít hồ sơ.",
    charts: "Từng chỉ số trong 12 tháng gần nhất",
    legend: "Toàn tỉnh (đường liền), đơn vị đã chọn (đường đứt)", province: "Toàn tỉnh",
    footer: "Do cổng tích hợp phục vụ; không dùng tài nguyên bên ngoài.",
    no_token: "Nhập mã truy cập ở trang vận hành trước.", unauthorized: "Mã truy cập bị từ chối.",
    failed: "Yêu cầu thất bại", none: "Không có hồ sơ nào trong kỳ.", none_ranked: "Chưa đơn vị nào đủ số hồ sơ.",
  },
};

// The charted indicators: dictionary key and the figure of one row's indicators.
const CHARTED = [
  ["on_time", (i) => i.on_time.percent],
  ["online", (i) => i.online.percent],
  ["online_payment", (i) => i.online_payment.percent],
  ["electronic_result", (i) => i.electronic_result.percent],
  ["digitised", (i) => i.digitised.percent],
  ["synced", (i) => i.synced.percent],
];

let lang = localStorage.getItem("gw-lang") === "vi" ? "vi" : "en";
let data = null; // {units, province, seriesUnits, seriesProvince, lowest}
let selected = null;

const t = (k) => (I18N[lang][k] ?? I18N.en[k] ?? k);
const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

(function tokenFromFragment() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem("gw-ops-token", decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
})();
const token = () => sessionStorage.getItem("gw-ops-token") || "";

function notice(msg) { $("#notice").textContent = msg || ""; }

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token(), Accept: "application/json" }, cache: "no-store" });
  if (r.status === 401) { notice(t("unauthorized")); throw new Error("401"); }
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    notice(t("failed") + ": " + (body && body.error ? body.error.message : r.status));
    throw new Error(String(r.status));
  }
  return body;
}

const fmt = (v) => (v === null || v === undefined ? "N/A" : v.toFixed(2));
function numCell(v) { return el("td", { class: "num" + (v === null || v === undefined ? " na" : "") }, fmt(v)); }

function currentMonth() {
  // Vietnam's month (UTC+7), as the gateway counts periods.
  const d = new Date(Date.now() + 7 * 3600 * 1000);
  return d.toISOString().slice(0, 7);
}

async function load() {
  if (!token()) { notice(t("no_token")); return; }
  const p = encodeURIComponent($("#period").value || currentMonth());
  try {
    const [units, province, seriesUnits, seriesProvince, lowest] = await Promise.all([
      api(`/api/v1/indicators?period=${p}&level=unit`),
      api(`/api/v1/indicators?period=${p}&level=province`),
      api(`/api/v1/indicators/series?to=${p}&months=12&level=unit`),
      api(`/api/v1/indicators/series?to=${p}&months=12&level=province`),
      api(`/api/v1/indicators/lowest?period=${p}`),
    ]);
    notice("");
    data = { units, province, seriesUnits, seriesProvince, lowest };
    render();
  } catch (e) {
    // notice() already says why
  }
}

function row(name, i, cls) {
  const tr = el("tr", { class: cls || "" },
    el("td", {}, name), numCell(i.on_time.percent), numCell(i.on_time_points), numCell(i.online.percent),
    numCell(i.online_payment.percent), numCell(i.electronic_result.percent), numCell(i.digitised.percent),
    numCell(i.synced.percent), numCell(i.avg_processing_days), el("td", { class: "num" }, String(i.on_time.den)));
  return tr;
}

function renderTable() {
  const body = $("#units tbody");
  body.textContent = "";
  if (!data) return;
  const p = data.province.rows[0];
  if (p) body.append(row(t("province"), p, "province"));
  for (const r of data.units.rows) {
    const tr = row(r.key, r, r.key === selected ? "selected" : "");
    tr.dataset.unit = r.key;
    tr.addEventListener("click", () => { selected = selected === r.key ? null : r.key; render(); });
    body.append(tr);
  }
  if (!p && data.units.rows.length === 0) body.append(el("tr", {}, el("td", { colspan: 10, class: "na" }, t("none"))));
}

function renderLowest() {
  const list = $("#lowest");
  list.textContent = "";
  if (!data) return;
  const l = data.lowest;
  $("#lowest-hint").textContent = t("lowest_hint").replace("{n}", l.min_dossiers).replace("{k}", l.too_few.length);
  for (const u of l.units) {
    list.append(el("li", {}, `${u.key}: ${fmt(u.on_time.percent)} % (${u.on_time.num}/${u.on_time.den})`));
  }
  if (l.units.length === 0) list.append(el("li", { class: "na" }, t("none_ranked")));
}

// One line chart: 0–100 %, a point per month, N/A months left as gaps.
function chart(key, pick) {
  const months = data.seriesProvince.months;
  const w = 320, h = 170, left = 30, right = 20, top = 8, bottom = 22;
  const svg = svgEl("svg", { class: "line-chart", viewBox: `0 0 ${w} ${h}`, role: "img", "data-indicator": key });
  svg.append(svgEl("title", {}, t(key)));
  const x = (i) => left + (months.length > 1 ? (i * (w - left - right)) / (months.length - 1) : 0);
  const y = (v) => top + (1 - Math.max(0, Math.min(100, v)) / 100) * (h - top - bottom);
  for (const g of [0, 50, 100]) {
    svg.append(svgEl("line", { class: "grid", x1: left, x2: w - right, y1: y(g), y2: y(g) }));
    svg.append(svgEl("text", { class: "axis", x: left - 4, y: y(g) + 3, "text-anchor": "end" }, String(g)));
  }
  months.forEach((m, i) => {
    if (months.length <= 6 || i % 2 === (months.length - 1) % 2) {
      svg.append(svgEl("text", { class: "axis", x: x(i), y: h - 6, "text-anchor": "middle" }, m.slice(2)));
    }
  });
  const draw = (points, cls) => {
    if (!points) return;
    let path = "";
    let pen = false;
    points.forEach((pt, i) => {
      const v = pick(pt);
      if (v === null || v === undefined) { pen = false; return; }
      path += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
      const c = svgEl("circle", { class: cls, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 });
      c.append(svgEl("title", {}, `${months[i]}: ${fmt(v)} %`));
      svg.append(c);
    });
    if (path) svg.prepend(svgEl("path", { class: cls, d: path.trim() }));
  };
  const prov = data.seriesProvince.rows.find((r) => r.key === "province");
  draw(prov && prov.points, "province");
  if (selected) {
    const u = data.seriesUnits.rows.find((r) => r.key === selected);
    draw(u && u.points, "unit");
  }
  return el("div", { class: "chart" }, el("h3", {}, t(key)), svg);
}

function renderCharts() {
  const box = $("#charts");
  box.textContent = "";
  if (!data) return;
  $("#legend").textContent = t("legend") + (selected ? `: ${selected}` : "");
  for (const [key, pick] of CHARTED) box.append(chart(key, pick));
}

function render() { renderTable(); renderLowest(); renderCharts(); }

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  $("#lang").textContent = t("lang_button");
  render();
}

document.addEventListener("DOMContentLoaded", () => {
  const q = new URLSearchParams(location.search);
  if (q.get("lang") === "vi" || q.get("lang") === "en") lang = q.get("lang");
  $("#period").value = q.get("period") || currentMonth();
  $("#lang").addEventListener("click", () => {
    lang = lang === "vi" ? "en" : "vi";
    localStorage.setItem("gw-lang", lang);
    applyLanguage();
  });
  $("#period-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  applyLanguage();
  load();
});
