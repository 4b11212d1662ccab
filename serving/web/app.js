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
// Okabe–Ito: eight colours told apart with every common colour-vision deficiency.
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
const BROWSER_TZ = (() => { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (_) { return "UTC"; } })();
const ZONES = ["UTC", "America/Los_Angeles", "America/New_York", "America/Sao_Paulo", "Europe/London", "Europe/Berlin",
  "Africa/Johannesburg", "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo", "Australia/Sydney"];
// Where an answer's rows were read, in words: the table names stay in the element's data for debugging.
const SOURCE_WORDS = {
  "hot:rollups_1m": "live (last 7 days)",
  "hot:rollups_1h": "live (hourly, last 90 days)",
  "warm:rollups_hourly": "archive (hourly)",
  "cold:rollups_daily": "archive (daily)",
  "hot:events_raw": "live (raw events, last 7 days)",
  "lake:events": "archive (raw events)",
};

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
  tz: BROWSER_TZ, // the zone of day buckets and of the time axis
  compare: true, // answer and show the previous period too
  catalog: { metrics: {}, dimensions: {} }, // labels and descriptions from /v1/catalog
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

// Numbers in the viewer's locale (the browser's), e.g. 1,234.5 or 1.234,5.
function formatNumber(value, metric) {
  if (value === null || value === undefined) return "–";
  if (metric === "revenue") return value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return Number.isInteger(value) ? value.toLocaleString() : value.toLocaleString(undefined, { maximumFractionDigits: 2 });
}

function label(name) {
  const entry = state.catalog.metrics[name] || state.catalog.dimensions[name];
  return entry?.label || name.replaceAll("_", " ");
}

function describe(name) {
  const entry = state.catalog.metrics[name] || state.catalog.dimensions[name];
  return entry?.description || "";
}

const wallClocks = new Map();
// An instant as the wall-clock time of the chosen zone ("2026-11-26 09:00:00"), which Plotly shows as is.
function wallClock(instant, tz = state.tz) {
  if (!wallClocks.has(tz)) {
    wallClocks.set(tz, new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }));
  }
  const parts = Object.fromEntries(wallClocks.get(tz).formatToParts(new Date(instant)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

function validZone(tz) {
  try { new Intl.DateTimeFormat("en", { timeZone: tz }); return true; } catch (_) { return false; }
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
  const tz = params.get("tz") ?? saved.tz;
  state.tz = tz && validZone(tz) ? tz : BROWSER_TZ;
  state.compare = (params.get("compare") ?? String(saved.compare ?? true)) !== "false";
  state.filters = params.getAll("filter").map((f) => {
    const at = f.indexOf(":");
    return { field: f.slice(0, at), value: f.slice(at + 1) };
  }).filter((f) => f.field && f.value);
}

function saveState() {
  localStorage.setItem(STORE_KEY, JSON.stringify({
    tenant: state.tenant, apiKey: state.apiKey, dashboard: state.dashboard, range: state.range, tz: state.tz,
    compare: state.compare,
  }));
  const params = new URLSearchParams();
  if (state.tenant) params.set("tenant", state.tenant);
  params.set("dashboard", state.dashboard);
  params.set("range", state.range);
  if (state.tz !== BROWSER_TZ) params.set("tz", state.tz);
  if (!state.compare) params.set("compare", "false");
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
  return checkedResponse(await fetch(apiUrl(path, extra), { headers: authHeaders() }));
}

// A request as the API describes it ({method, path, body | params}: an analytics widget's), sent as is.
async function sendRequest(request, extra = {}) {
  const { method, path, body, params } = request;
  const headers = { ...authHeaders(), ...(body ? { "Content-Type": "application/json" } : {}) };
  return checkedResponse(await fetch(apiUrl(path, { ...(params || {}), ...extra }),
    { method, headers, body: body ? JSON.stringify(body) : undefined }));
}

async function checkedResponse(response) {
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

function dataParams() {
  return { ...viewParams(), tz: state.tz, ...(state.compare ? { compare: "previous_period" } : {}) };
}

async function loadCatalog() {
  try {
    const catalog = await (await api("/v1/catalog")).json();
    if (catalog.labels) state.catalog = catalog.labels;
  } catch (_) { /* names stand in for labels */ }
}

// ---- controls ------------------------------------------------------------------------------------------

function renderControls() {
  $("#tenant").value = state.tenant;
  $("#api-key").value = state.apiKey;
  for (const button of document.querySelectorAll("#ranges button")) {
    button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
  }
  const zones = [...new Set([BROWSER_TZ, state.tz, ...ZONES])];
  $("#tz").replaceChildren(...zones.map((z) => el("option", { value: z,
    text: z === BROWSER_TZ ? `${z.replaceAll("_", " ")} (this device)` : z.replaceAll("_", " ") })));
  $("#tz").value = state.tz;
  $("#compare").checked = state.compare;
  const chips = $("#filters");
  chips.replaceChildren(...state.filters.map((f, i) => el("span", { class: "chip", dataset: { field: f.field, value: f.value } },
    `${label(f.field)} = ${f.value}`,
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
  $("#widgets").setAttribute("aria-busy", "true");
  if (!$("#widgets").children.length) showStatus("Loading…");
  try {
    const response = await api(`/v1/dashboards/${encodeURIComponent(state.dashboard)}/data`, dataParams());
    const data = await response.json();
    if (sequence !== state.sequence) return; // a newer request is under way
    const analyticsFailed = await renderWidgets(data);
    if (sequence !== state.sequence) return;
    document.body.dataset.state = "ready";
    document.body.dataset.renders = String(Number(document.body.dataset.renders) + 1);
    document.body.dataset.filters = state.filters.map((f) => `${f.field}:${f.value}`).join(",");
    const how = state.live ? "live (pushed by the server)" : `refreshed every ${REFRESH_SECONDS[state.range]} s`;
    const failed = data.widgets.filter((w) => w.error).length + analyticsFailed;
    document.body.dataset.partial = String(failed > 0);
    const partial = failed ? ` · ${failed} of ${data.widgets.length} widgets cannot be shown for this range` : "";
    showStatus(`Updated ${new Date(data.generated_at).toLocaleTimeString(undefined, { timeZone: state.tz })} · ${how}${partial}`,
      failed === data.widgets.length);
  } catch (error) {
    if (sequence !== state.sequence) return;
    document.body.dataset.state = "error";
    showStatus(`Could not load the dashboard: ${error.message}. Check the API key and tenant, then Apply.`, true);
  }
  $("#widgets").removeAttribute("aria-busy");
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
        el("h2", { text: widget.title, id: `title-${widget.id}` }),
        el("div", { class: "actions" },
          ...(["line", "pie", "bar", "funnel", "retention", "paths"].includes(widget.chart) ? ["png", "svg"].map((format) => el("button", {
            class: "csv", type: "button", text: format.toUpperCase(), title: `download this chart as ${format.toUpperCase()}`,
            "aria-label": `download ${widget.title} as ${format.toUpperCase()}`,
            onclick: () => downloadImage(section, widget.id, format) })) : []),
          el("button", { class: "csv", type: "button", text: "CSV", title: "download this widget's numbers as CSV",
            "aria-label": `download ${widget.title} as CSV`, onclick: () => downloadCsv(widget.id, section) }))),
      el("div", { class: "body" }));
  }
  $("h2", section).textContent = widget.title;
  return section;
}

function renderWidgets(data) {
  const sections = data.widgets.map((widget) => [widget, widgetSection(widget)]);
  $("#widgets").replaceChildren(...sections.map(([, section]) => section)); // in the page before Plotly sizes them
  const analytics = [];
  for (const [widget, section] of sections) {
    const body = $(".body", section);
    section.request = widget.request; // an analytics widget's: its CSV is its endpoint's
    if (widget.request && !widget.error) {
      analytics.push(renderAnalytics(body, widget)); // analytics.js: the page asks the widget's endpoint
    } else if (widget.error) {
      if (body.dataset.plot) Plotly.purge(body.querySelector(".plot"));
      delete body.dataset.plot;
      body.replaceChildren(el("p", { class: "error", text: widget.error }));
    } else if (!widget.rows.length && widget.chart !== "number") {
      if (body.dataset.plot) Plotly.purge(body.querySelector(".plot"));
      delete body.dataset.plot;
      body.replaceChildren(el("p", { class: "meta empty", text: "No events in this range and filters." }), meta(widget));
    } else {
      RENDER[widget.chart](body, widget);
    }
  }
  // resolves, once every analytics widget is drawn, to how many of them could not be
  return Promise.all(analytics).then((drawn) => drawn.filter((ok) => !ok).length);
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
  const { description, ...plotLayout } = layout;
  // the box keeps the chart's height itself: Plotly's resize handler sizes a plot from its box, and a box
  // re-attached by a refresh measured 0 px high on a later resize, drawing the chart over what follows it
  div.style.height = `${plotLayout.height ?? 300}px`;
  Plotly.react(div, traces, { margin: { t: 10, r: 10, b: 40, l: 50 }, height: 300, colorway: PALETTE,
    piecolorway: PALETTE, separators: (1234.5).toLocaleString().replace(/\d/g, "").split("").reverse().join("") || ".,",
    font: { family: "system-ui, sans-serif" }, ...plotLayout }, PLOT_CONFIG);
  div.setAttribute("role", "img");
  div.setAttribute("aria-label", `${description || "chart"}; the same numbers are in the table below`);
  return div;
}

// A wide table's own horizontal scroll box: focusable, so a keyboard can scroll it too.
function scrollBox(name, table) {
  return el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": name }, table);
}

function extras(body, ...nodes) {
  for (const node of body.querySelectorAll(":scope > :not(.plot)")) node.remove();
  body.append(...nodes);
}

// Where the numbers come from and how exact they are, in words.
function provenance(widget) {
  const words = [...new Set((widget.sources || []).map((s) => SOURCE_WORDS[s] || "stored data"))];
  const parts = [words.join(" + ")];
  if (widget.granularity) parts.push(`per ${widget.granularity}${widget.granularity === "day" ? ` (${state.tz.replaceAll("_", " ")})` : ""}`);
  const metrics = widget.query?.metrics || [];
  if (widget.approximate?.length) parts.push(`approximate: ${widget.approximate.map(label).join(", ")}`);
  else if (metrics.includes("unique_users") && (widget.sources || []).some((s) => s.startsWith("hot:"))) {
    parts.push("unique users approximate ±2 %");
  }
  return parts.filter(Boolean).join(" · ");
}

function meta(widget) {
  return el("p", { class: "meta", text: provenance(widget), dataset: { sources: (widget.sources || []).join(",") } });
}

function changeNode(change, metric) {
  if (!change) return null;
  const { change: delta, change_percent: percent, previous } = change;
  const direction = delta > 0 ? "up" : delta < 0 ? "down" : "flat";
  const arrow = { up: "▲", down: "▼", flat: "■" }[direction];
  const pct = percent === null ? (delta ? "new" : "no change")
    : `${percent > 0 ? "+" : ""}${percent.toLocaleString(undefined, { maximumFractionDigits: 1 })} %`;
  const abs = `${delta > 0 ? "+" : ""}${formatNumber(delta, metric)}`;
  return el("div", { class: `change ${direction}`, dataset: { change: String(delta), changePercent: String(percent), previous: String(previous) },
    title: `previous period: ${formatNumber(previous, metric)}` },
    el("span", { "aria-hidden": "true", text: `${arrow} ` }), `${pct} (${abs}) vs previous period`);
}

function renderNumber(body, widget) {
  const row = widget.rows[0] || [];
  const items = widget.columns.map((metric, i) => el("div", { class: "number", dataset: { metric, value: String(row[i] ?? 0) } },
    el("div", { class: "label", text: label(metric), title: describe(metric) }),
    el("div", { class: "value", text: formatNumber(row[i] ?? 0, metric) }),
    changeNode(widget.totals?.[metric], metric)));
  body.replaceChildren(el("div", { class: "numbers" }, ...items), meta(widget));
}

// One line per group and metric over the chosen zone's wall-clock time. Empty buckets arrive from the API as 0
// (counts, sums) or null (unique users): a null breaks the line (connectgaps off), it is never bridged.
function lineSeries(rows, columns, metrics, shiftMs = 0) {
  const index = (name) => columns.indexOf(name);
  const dims = columns.filter((c, i) => i > 0 && !metrics.includes(c));
  const series = new Map();
  for (const row of rows) {
    const group = dims.map((d) => row[index(d)]).join(" · ");
    for (const metric of metrics) {
      const name = [group, metrics.length > 1 || !group ? label(metric) : ""].filter(Boolean).join(" ");
      if (!series.has(name)) series.set(name, { name, metric, x: [], y: [], at: [] });
      const trace = series.get(name);
      trace.at.push(row[0]);
      trace.x.push(wallClock(new Date(row[0]).getTime() + shiftMs));
      trace.y.push(row[index(metric)]);
    }
  }
  return [...series.values()];
}

function renderLine(body, widget, kind = "scatter") {
  const { metrics } = split(widget);
  const current = lineSeries(widget.rows, widget.columns, metrics);
  const traces = current.map((t, i) => ({ type: kind, mode: "lines+markers", name: plotText(t.name), x: t.x, y: t.y,
    connectgaps: false, marker: { size: 4, color: PALETTE[i % PALETTE.length] }, line: { color: PALETTE[i % PALETTE.length] } }));
  let previous = [];
  if (widget.previous && state.compare) { // the previous period drawn over this one, shifted by its length
    const shift = new Date(widget.from).getTime() - new Date(widget.previous.from).getTime();
    previous = lineSeries(widget.previous.rows, widget.previous.columns, metrics, shift);
    traces.push(...previous.map((t, i) => ({ type: "scatter", mode: "lines", name: plotText(`${t.name} (previous period)`),
      x: t.x, y: t.y, connectgaps: false, hoverinfo: "y+name", opacity: 0.8,
      line: { dash: "dot", width: 1.5, color: PALETTE[(i + 1) % PALETTE.length] } })));
  }
  plotInto(body, traces, { xaxis: { type: "date" }, yaxis: { rangemode: "tozero" }, showlegend: traces.length > 1,
    legend: { orientation: "h", y: -0.2 }, description: `${widget.title}: ${metrics.map(label).join(", ")} per ${widget.granularity}` });
  const totals = current.map((t) => {
    const total = t.y.reduce((a, b) => a + (b ?? 0), 0);
    return el("span", { class: "total", dataset: { series: t.name, metric: t.metric, total: String(total) } },
      `${t.name} total `, el("b", { text: formatNumber(total, t.metric) }));
  });
  extras(body, el("p", { class: "totals" }, ...totals), seriesTable(current, previous), meta(widget));
}

// The chart's text alternative: every bucket and value (and the previous period's) as a table.
function seriesTable(current, previous) {
  const head = el("tr", {}, el("th", { scope: "col", text: `time (${state.tz.replaceAll("_", " ")})` }),
    ...current.map((t) => el("th", { scope: "col", class: "num", text: t.name })),
    ...previous.map((t) => el("th", { scope: "col", class: "num", text: `${t.name} (previous period)` })));
  const rows = (current[0]?.x || []).map((x, i) => el("tr", {}, el("th", { scope: "row", text: x.slice(0, 16) }),
    ...current.map((t) => el("td", { class: "num", text: formatNumber(t.y[i], t.metric) })),
    ...previous.map((t) => el("td", { class: "num", text: formatNumber(t.y[i], t.metric) }))));
  return el("details", { class: "as-table" }, el("summary", { text: "Show as a table" }),
    scrollBox("the chart's numbers", el("table", { class: "series" }, el("thead", {}, head), el("tbody", {}, ...rows))));
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
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: label(dim), title: describe(dim) }),
      el("th", { scope: "col", class: "num", text: label(metric), title: describe(metric) }))),
    el("tbody", {}, ...rows));
}

function renderPie(body, widget) {
  const { metrics, dims, index } = split(widget);
  const [dim, metric] = [dims[0], metrics[0]];
  const keys = widget.rows.map((r) => r[index(dim)]);
  const div = plotInto(body, [{
    type: "pie", labels: keys.map(plotText), values: widget.rows.map((r) => r[index(metric)]),
    sort: false, textinfo: "label+percent", hole: 0.35, marker: { colors: PALETTE, line: { color: "#fff", width: 1 } },
  }], { margin: { t: 10, r: 10, b: 10, l: 10 }, showlegend: false, description: `${widget.title}, by ${label(dim)}` });
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
  const head = el("tr", {}, ...widget.columns.map((c) => el("th", { scope: "col", class: numeric(c) ? "num" : "",
    text: c === "bucket" ? "time" : label(c), title: describe(c) })));
  const rows = widget.rows.map((row) => {
    const key = dims.length ? row[index(dims[0])] : row[0];
    const drillable = dims.length > 0 && !hasBucket;
    return el("tr", { class: drillable ? "drill" : "", dataset: { key: String(key), value: String(row[index(metrics[0])]) },
      tabindex: drillable ? "0" : "-1", title: drillable ? `drill down: ${label(dims[0])} = ${key}` : "",
      onclick: drillable ? () => drill(dims[0], key) : null,
      onkeydown: drillable ? (event) => { if (event.key === "Enter") drill(dims[0], key); } : null },
      ...row.map((v, i) => el("td", { class: numeric(widget.columns[i]) ? "num" : "",
        text: numeric(widget.columns[i]) ? formatNumber(v, widget.columns[i]) : String(v) })));
  });
  if (body.dataset.plot) { Plotly.purge(body.querySelector(".plot")); delete body.dataset.plot; }
  body.replaceChildren(scrollBox(widget.title, el("table", { class: "rows", dataset: { dimension: dims[0] || "", metric: metrics[0] } },
    el("thead", {}, head), el("tbody", {}, ...rows))), meta(widget));
}

const RENDER = { number: renderNumber, line: renderLine, pie: renderPie, bar: renderBar, table: renderTable };

// A chart as an image, drawn by Plotly in the page (nothing is sent anywhere).
async function downloadImage(section, widgetId, format) {
  const plot = section.querySelector(".plot");
  if (!plot) { showStatus("This widget has no chart to export for this range.", true); return; }
  try {
    await Plotly.downloadImage(plot, { format, filename: `${state.dashboard}-${widgetId}-${state.range}`,
      width: Math.max(plot.clientWidth, 600), height: 400 });
  } catch (error) {
    showStatus(`${format.toUpperCase()}: ${error.message}`, true);
  }
}

async function downloadCsv(widgetId, section) {
  try {
    const response = section?.request ? await sendRequest(section.request, { format: "csv" })
      : await api(`/v1/dashboards/${encodeURIComponent(state.dashboard)}/widgets/${encodeURIComponent(widgetId)}/data.csv`,
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
  $("#tz").addEventListener("change", (event) => { state.tz = event.target.value; changed(); });
  $("#compare").addEventListener("change", (event) => { state.compare = event.target.checked; changed(); });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) stopLive();
    else { refresh(); startLive(); }
  });
  await Promise.all([loadDashboards(), loadCatalog()]);
  saveState();
  refresh();
  startLive();
}

start();
