// The web dashboard: renders a saved dashboard from GET /v1/dashboards/{id}/data (one request for every
// widget), drills down when a pie slice is clicked (a filter added to every widget), refreshes itself while
// the range ends now. Everything it loads comes from the API's own origin. No build step.
"use strict";

const RANGES = ["1h", "24h", "7d", "30d", "90d", "1y", "7y"];
// How often a range is refreshed: short ranges change every few seconds, long ones hardly at all.
const REFRESH_SECONDS = { "1h": 5, "24h": 15, "7d": 60, "30d": 300, "90d": 300, "1y": 900, "7y": 900 };
// Short ranges listen to the server's live stream (GET /v1/live, Server-Sent Events) and refresh when the newest
// minutes change; polling takes over when the stream is not available. A slow poll stays on as a safety net.
const LIVE_RANGES = ["1h", "24h"];
const LIVE_SAFETY_SECONDS = 60;
const PLOT_CONFIG = { displayModeBar: false, responsive: true };
const STORE_KEY = "lakehouse.dashboard";

const state = {
  tenant: "",
  apiKey: "",
  dashboard: "overview",
  range: "24h",
  filters: [], // [{field, value}]
  sequence: 0, // answers to older requests are dropped
  timer: null,
  live: null, // AbortController of the open live stream
  liveSignature: "",
};

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function formatNumber(value, metric) {
  if (value === null || value === undefined) return "–";
  if (metric === "revenue") return value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return Number.isInteger(value) ? value.toLocaleString("en-US") : value.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

// ---- state in the URL and localStorage ------------------------------------------------------------------

function loadState() {
  const saved = JSON.parse(localStorage.getItem(STORE_KEY) || "{}");
  const params = new URLSearchParams(location.search);
  state.tenant = params.get("tenant") ?? saved.tenant ?? "";
  state.apiKey = saved.apiKey ?? "";
  state.dashboard = params.get("dashboard") ?? saved.dashboard ?? "overview";
  const range = params.get("range") ?? saved.range;
  state.range = RANGES.includes(range) ? range : "24h";
  state.filters = params.getAll("filter").map((f) => {
    const at = f.indexOf(":");
    return { field: f.slice(0, at), value: f.slice(at + 1) };
  }).filter((f) => f.field && f.value);
}

function saveState() {
  localStorage.setItem(STORE_KEY, JSON.stringify({
    tenant: state.tenant, apiKey: state.apiKey, dashboard: state.dashboard, range: state.range,
  }));
  const params = new URLSearchParams();
  if (state.tenant) params.set("tenant", state.tenant);
  params.set("dashboard", state.dashboard);
  params.set("range", state.range);
  for (const f of state.filters) params.append("filter", `${f.field}:${f.value}`);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

// ---- API ---------------------------------------------------------------------------------------------

function apiUrl(path, extra = {}) {
  const params = new URLSearchParams();
  if (state.tenant) params.set("tenant", state.tenant); // until an API key names the tenant
  for (const [key, value] of Object.entries(extra)) {
    for (const v of [].concat(value)) params.append(key, v);
  }
  const query = params.toString();
  return query ? `${path}?${query}` : path;
}

function authHeaders() {
  return state.apiKey ? { Authorization: `Bearer ${state.apiKey}` } : {};
}

async function api(path, extra = {}) {
  const response = await fetch(apiUrl(path, extra), { headers: authHeaders() });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body.error || body.detail || message;
    } catch (_) { /* not JSON */ }
    throw new Error(typeof message === "string" ? message : JSON.stringify(message));
  }
  return response;
}

function viewParams() {
  return { range: state.range, filter: state.filters.map((f) => `${f.field}:${f.value}`) };
}

// ---- controls ------------------------------------------------------------------------------------------

function renderControls() {
  $("#tenant").value = state.tenant;
  $("#api-key").value = state.apiKey;
  for (const button of document.querySelectorAll("#ranges button")) {
    button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
  }
  const chips = $("#filters");
  chips.replaceChildren(...state.filters.map((f, i) => el("span", { class: "chip", dataset: { field: f.field, value: f.value } },
    `${f.field} = ${f.value}`,
    el("button", { type: "button", "aria-label": `remove filter ${f.field} = ${f.value}`, text: "×",
      onclick: () => { state.filters.splice(i, 1); changed(); } }))));
}

async function loadDashboards() {
  const select = $("#dashboard");
  try {
    const { dashboards } = await (await api("/v1/dashboards")).json();
    select.replaceChildren(...dashboards.map((d) => el("option", { value: d.id, text: d.name })));
    if (!dashboards.some((d) => d.id === state.dashboard)) state.dashboard = "overview";
  } catch (error) {
    select.replaceChildren(el("option", { value: "overview", text: "Overview" }));
    showStatus(`Cannot list dashboards: ${error.message}`, true);
  }
  select.value = state.dashboard;
}

function changed() {
  saveState();
  renderControls();
  refresh();
  startLive();
}

function drill(field, value) {
  const existing = state.filters.find((f) => f.field === field);
  if (existing) existing.value = String(value);
  else state.filters.push({ field, value: String(value) });
  changed();
}

// ---- data and live updates -----------------------------------------------------------------------------

function showStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

async function refresh() {
  clearTimeout(state.timer);
  const sequence = ++state.sequence;
  document.body.dataset.state = "loading";
  try {
    const response = await api(`/v1/dashboards/${encodeURIComponent(state.dashboard)}/data`, viewParams());
    const data = await response.json();
    if (sequence !== state.sequence) return; // a newer request is under way
    renderWidgets(data);
    document.body.dataset.state = "ready";
    document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
    document.body.dataset.filters = state.filters.map((f) => `${f.field}:${f.value}`).join(",");
    const how = state.live ? "live (pushed by the server)" : `refreshed every ${REFRESH_SECONDS[state.range]} s`;
    showStatus(`Updated ${new Date(data.generated_at).toLocaleTimeString()} · ${how}`);
  } catch (error) {
    if (sequence !== state.sequence) return;
    document.body.dataset.state = "error";
    showStatus(error.message, true);
  }
  if (sequence === state.sequence) scheduleRefresh();
}

function scheduleRefresh() {
  clearTimeout(state.timer);
  const seconds = state.live ? LIVE_SAFETY_SECONDS : REFRESH_SECONDS[state.range];
  state.timer = setTimeout(() => {
    if (document.hidden) scheduleRefresh(); // no polling in a background tab
    else refresh();
  }, seconds * 1000);
}

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
  document.body.dataset.live = "poll";
}

// The live stream is read with fetch (EventSource cannot send the API key) and parsed as SSE: blocks of
// `event:` / `data:` lines separated by a blank line. Each `update` carries the newest minutes of events under
// the current filters; when they change, the dashboard is fetched again (one request, cached per dashboard).
async function startLive() {
  stopLive();
  if (!LIVE_RANGES.includes(state.range) || document.hidden) return;
  const controller = new AbortController();
  state.live = controller;
  state.liveSignature = "";
  try {
    const response = await fetch(apiUrl("/v1/live", { metric: "events", minutes: 15, filter: viewParams().filter }),
      { headers: authHeaders(), signal: controller.signal });
    if (!response.ok || !response.body) throw new Error(`live stream: ${response.status}`);
    document.body.dataset.live = "push";
    scheduleRefresh();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        liveEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (_) { /* aborted, or no live endpoint: polling below */ }
  if (state.live === controller) { // the stream ended by itself: poll
    state.live = null;
    document.body.dataset.live = "poll";
    scheduleRefresh();
  }
}

function liveEvent(block) {
  const lines = block.split("\n");
  const type = lines.find((l) => l.startsWith("event:"))?.slice(6).trim();
  const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
  if (type !== "update" || !data) return;
  const signature = JSON.stringify(JSON.parse(data).series);
  if (signature === state.liveSignature) return;
  const first = state.liveSignature === "";
  state.liveSignature = signature;
  if (!first) refresh();
}

// ---- widgets ---------------------------------------------------------------------------------------------

function widgetSection(widget) {
  let section = document.querySelector(`.widget[data-widget-id="${CSS.escape(widget.id)}"]`);
  if (!section || section.dataset.chart !== widget.chart) {
    section = el("section", { class: "widget", dataset: { widgetId: widget.id, chart: widget.chart } },
      el("header", {},
        el("h2", { text: widget.title }),
        el("button", { class: "csv", type: "button", text: "CSV", title: "download this widget's numbers as CSV",
          onclick: () => downloadCsv(widget.id) })),
      el("div", { class: "body" }));
  }
  $("h2", section).textContent = widget.title;
  return section;
}

function renderWidgets(data) {
  const sections = data.widgets.map((widget) => [widget, widgetSection(widget)]);
  $("#widgets").replaceChildren(...sections.map(([, section]) => section)); // in the page before Plotly sizes them
  for (const [widget, section] of sections) {
    const body = $(".body", section);
    if (widget.error) {
      if (body.dataset.plot) Plotly.purge(body.querySelector(".plot"));
      delete body.dataset.plot;
      body.replaceChildren(el("p", { class: "error", text: widget.error }));
    } else if (!widget.rows.length && widget.chart !== "number") {
      if (body.dataset.plot) Plotly.purge(body.querySelector(".plot"));
      delete body.dataset.plot;
      body.replaceChildren(el("p", { class: "meta empty", text: "No events in this range." }), meta(widget));
    } else {
      RENDER[widget.chart](body, widget);
    }
  }
}

function split(widget) {
  const { columns } = widget;
  const metrics = widget.query.metrics;
  const hasBucket = columns[0] === "bucket";
  const dims = columns.filter((c, i) => !(hasBucket && i === 0) && !metrics.includes(c));
  return { metrics, dims, hasBucket, index: (name) => columns.indexOf(name) };
}

function plotInto(body, traces, layout) {
  let div = body.dataset.plot ? body.querySelector(".plot") : null;
  if (!div) {
    div = el("div", { class: "plot" });
    body.replaceChildren(div);
    body.dataset.plot = "1";
  }
  Plotly.react(div, traces, { margin: { t: 10, r: 10, b: 40, l: 50 }, height: 300, ...layout }, PLOT_CONFIG);
  return div;
}

function extras(body, ...nodes) {
  for (const node of body.querySelectorAll(":scope > :not(.plot)")) node.remove();
  body.append(...nodes);
}

function meta(widget) {
  const tiers = (widget.sources || []).join(", ");
  return el("p", { class: "meta", text: `${tiers}${widget.granularity ? ` · per ${widget.granularity}` : ""}` });
}

function renderNumber(body, widget) {
  const row = widget.rows[0] || [];
  const items = widget.columns.map((metric, i) => el("div", { class: "number", dataset: { metric, value: String(row[i] ?? 0) } },
    el("div", { class: "value", text: formatNumber(row[i] ?? 0, metric) }),
    el("div", { class: "label", text: metric.replace("_", " ") })));
  body.replaceChildren(el("div", { class: "numbers" }, ...items), meta(widget));
}

function renderLine(body, widget, kind = "scatter") {
  const { metrics, dims, index } = split(widget);
  const series = new Map();
  for (const row of widget.rows) {
    const group = dims.map((d) => row[index(d)]).join(" · ");
    for (const metric of metrics) {
      const name = [group, metrics.length > 1 || !group ? metric : ""].filter(Boolean).join(" ");
      if (!series.has(name)) series.set(name, { name, metric, x: [], y: [] });
      const trace = series.get(name);
      trace.x.push(new Date(row[0]));
      trace.y.push(row[index(metric)]);
    }
  }
  const traces = [...series.values()].map((t) => ({ type: kind, mode: "lines+markers", name: plotText(t.name),
    x: t.x, y: t.y, marker: { size: 4 } }));
  plotInto(body, traces, { xaxis: { type: "date" }, showlegend: traces.length > 1 });
  const totals = [...series.values()].map((t) => {
    const total = t.y.reduce((a, b) => a + b, 0);
    return el("span", { class: "total", dataset: { series: t.name, metric: t.metric, total: String(total) } },
      `${t.name} total `, el("b", { text: formatNumber(total, t.metric) }));
  });
  extras(body, el("p", { class: "totals" }, ...totals), meta(widget));
}

function valuesTable(widget, dim, metric, drillable) {
  const { index } = split(widget);
  const rows = widget.rows.map((row) => {
    const key = row[index(dim)];
    const value = row[index(metric)];
    return el("tr", { class: drillable ? "drill" : "", dataset: { key: String(key), value: String(value) },
      title: drillable ? `drill down: ${dim} = ${key}` : "", tabindex: drillable ? "0" : "-1",
      onclick: drillable ? () => drill(dim, key) : null,
      onkeydown: drillable ? (event) => { if (event.key === "Enter") drill(dim, key); } : null },
      el("td", { text: String(key) }), el("td", { class: "num", text: formatNumber(value, metric) }));
  });
  return el("table", { class: "values", dataset: { dimension: dim, metric } },
    el("thead", {}, el("tr", {}, el("th", { text: dim }), el("th", { class: "num", text: metric }))),
    el("tbody", {}, ...rows));
}

function renderPie(body, widget) {
  const { metrics, dims, index } = split(widget);
  const [dim, metric] = [dims[0], metrics[0]];
  const keys = widget.rows.map((r) => r[index(dim)]);
  const div = plotInto(body, [{
    type: "pie", labels: keys.map(plotText), values: widget.rows.map((r) => r[index(metric)]),
    sort: false, textinfo: "label+percent", hole: 0.35,
  }], { margin: { t: 10, r: 10, b: 10, l: 10 }, showlegend: false });
  div.keys = keys; // the raw values: the labels are escaped for display
  if (!div.dataset.drill) { // one handler per plot, reading the widget's dimension and values at click time
    div.on("plotly_click", (event) => drill(div.dataset.dimension, div.keys[event.points[0].pointNumber]));
    div.dataset.drill = "1";
  }
  div.dataset.dimension = dim;
  extras(body, valuesTable(widget, dim, metric, true), meta(widget));
}

function renderBar(body, widget) {
  const { metrics, dims, index, hasBucket } = split(widget);
  if (hasBucket) return renderLine(body, widget, "bar");
  const [dim, metric] = [dims[0], metrics[0]];
  const keys = widget.rows.map((r) => r[index(dim)]);
  const div = plotInto(body, [{ type: "bar", x: keys.map(plotText),
    y: widget.rows.map((r) => r[index(metric)]) }], { xaxis: { type: "category" } });
  div.keys = keys;
  if (!div.dataset.drill) {
    div.on("plotly_click", (event) => drill(div.dataset.dimension, div.keys[event.points[0].pointNumber]));
    div.dataset.drill = "1";
  }
  div.dataset.dimension = dim;
  extras(body, valuesTable(widget, dim, metric, true), meta(widget));
}

function renderTable(body, widget) {
  const { metrics, dims, index, hasBucket } = split(widget);
  const numeric = (c) => metrics.includes(c);
  const head = el("tr", {}, ...widget.columns.map((c) => el("th", { class: numeric(c) ? "num" : "", text: c })));
  const rows = widget.rows.map((row) => {
    const key = dims.length ? row[index(dims[0])] : row[0];
    const drillable = dims.length > 0 && !hasBucket;
    return el("tr", { class: drillable ? "drill" : "", dataset: { key: String(key), value: String(row[index(metrics[0])]) },
      onclick: drillable ? () => drill(dims[0], key) : null },
      ...row.map((v, i) => el("td", { class: numeric(widget.columns[i]) ? "num" : "",
        text: numeric(widget.columns[i]) ? formatNumber(v, widget.columns[i]) : String(v) })));
  });
  if (body.dataset.plot) { Plotly.purge(body.querySelector(".plot")); delete body.dataset.plot; }
  body.replaceChildren(el("table", { class: "rows", dataset: { dimension: dims[0] || "", metric: metrics[0] } },
    el("thead", {}, head), el("tbody", {}, ...rows)), meta(widget));
}

const RENDER = { number: renderNumber, line: renderLine, pie: renderPie, bar: renderBar, table: renderTable };

async function downloadCsv(widgetId) {
  try {
    const response = await api(`/v1/dashboards/${encodeURIComponent(state.dashboard)}/widgets/${encodeURIComponent(widgetId)}/data.csv`,
      viewParams());
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || `${widgetId}.csv`;
    const url = URL.createObjectURL(await response.blob());
    el("a", { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showStatus(`CSV: ${error.message}`, true);
  }
}

// ---- start -------------------------------------------------------------------------------------------------

async function start() {
  loadState();
  renderControls();
  $("#identity").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.tenant = $("#tenant").value.trim();
    state.apiKey = $("#api-key").value.trim();
    state.filters = [];
    await loadDashboards();
    changed();
  });
  $("#dashboard").addEventListener("change", (event) => {
    state.dashboard = event.target.value;
    state.filters = [];
    changed();
  });
  for (const button of document.querySelectorAll("#ranges button")) {
    button.addEventListener("click", () => { state.range = button.dataset.range; changed(); });
  }
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopLive();
    else { refresh(); startLive(); }
  });
  await loadDashboards();
  saveState();
  refresh();
  startLive();
}

start();
