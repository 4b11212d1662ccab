// The dashboard editor: create, rename, reorder, duplicate and delete dashboards and their widgets by clicking.
// It writes exactly what POST/PUT /v1/dashboards take (the same validation answers here: the API's message is
// shown), saves with If-Match so a change made elsewhere meanwhile is refused with a message, never overwritten.
// Loaded after app.js and uses its helpers (state, api, el, $, label, loadDashboards, changed, showStatus).
"use strict";

const CHARTS = ["line", "bar", "pie", "table", "number", "funnel", "retention", "paths", "sessions"];
const CHART_WORDS = { funnel: "funnel (conversion)", retention: "retention grid", paths: "paths (Sankey)",
  sessions: "session numbers" };
const ANALYTICS = ["funnel", "retention", "paths", "sessions"];
const WINDOWS = ["1h", "1d", "7d", "14d", "30d"];
const PERIODS = ["day", "week", "month"];
const EDIT_RANGES = ["1h", "24h", "7d", "30d", "90d", "1y", "7y"];
const editor = { id: null, version: null, builtin: false, name: "", widgets: [], armedDelete: false };

// A widget's query as the chosen chart needs it (the same shapes the API validates).
function widgetQuery(row) {
  if (row.chart === "funnel") {
    const steps = row.steps.split(",").map((e) => e.trim()).filter(Boolean).map((event) => ({ event }));
    return { steps, window: row.window, range: row.range };
  }
  if (row.chart === "retention") {
    return { start_event: row.startEvent.trim(), ...(row.returnEvent.trim() ? { return_event: row.returnEvent.trim() } : {}),
      period: row.period, range: row.range };
  }
  if (row.chart === "paths") return { start_event: row.startEvent.trim(), range: row.range };
  if (row.chart === "sessions") return { range: row.range };
  const m = row.metric;
  const d = row.dimension;
  const filters = parseFilters(row.filters || "");
  const base = { metrics: [m], range: row.range, ...(filters.length ? { filters } : {}) };
  if (row.chart === "line" || (row.chart === "bar" && !d)) return { ...base, granularity: "auto", fill: "auto" };
  if (row.chart === "number") return base;
  const limit = row.chart === "pie" ? 20 : 10;
  return { ...base, dimensions: [d || "country"], order_by: [{ field: m, direction: "desc" }], limit };
}

// A widget's filters as typed: "country:US, device!=ios, page:/a|/b, revenue>=10" (the GET endpoints'
// syntax, comparisons for metrics); what cannot be read is sent as typed, so the API's message names it.
const FILTER_TEXT = /^\s*([^:!<>=\s]+)\s*(!=|>=|<=|>|<|:)\s*(.*?)\s*$/;

function parseFilters(text) {
  return text.split(",").map((item) => item.trim()).filter(Boolean).map((item) => {
    const match = FILTER_TEXT.exec(item);
    if (!match) return { field: item, op: "=" };
    const [, field, sign, value] = match;
    if (sign === ":" || sign === "!=") {
      const values = value.split("|");
      const negated = sign === "!=";
      return values.length > 1 ? { field, op: negated ? "not in" : "in", values }
        : { field, op: negated ? "!=" : "=", value };
    }
    return { field, op: sign, value: Number.isNaN(Number(value)) ? value : Number(value) };
  });
}

function filtersText(filters = []) {
  return filters.map((f) => {
    const several = (f.values || []).join("|");
    if (f.op === "in" || f.op === "not in") return `${f.field}${f.op === "in" ? ":" : "!="}${several}`;
    if (!f.op || f.op === "=" || f.op === "!=") return `${f.field}${f.op === "!=" ? "!=" : ":"}${f.value ?? several}`;
    return `${f.field}${f.op}${f.value ?? several}`;
  }).join(", ");
}

function rowOf(widget) {
  const q = widget.query || {};
  return { id: widget.id, title: widget.title || "", chart: widget.chart, metric: (q.metrics || ["events"])[0],
    dimension: (q.dimensions || [])[0] || "", filters: filtersText(q.filters), range: q.range || (ANALYTICS.includes(widget.chart) ? "7d" : "24h"),
    steps: (Array.isArray(q.steps) ? q.steps : [{ event: "page_view" }, { event: "purchase" }]).map((step) => step.event).join(", "),
    window: q.window || "14d", startEvent: q.start_event || q.end_event || "page_view", returnEvent: q.return_event || "",
    period: q.period || "week", original: q, dirty: false };
}

function asWidget(row) {
  const widget = { title: row.title, chart: row.chart, query: row.dirty ? widgetQuery(row) : row.original };
  if (row.id) widget.id = row.id;
  return widget;
}

function editorMessage(text, isError = false) {
  const box = $("#ed-message");
  box.textContent = text;
  box.classList.toggle("error", isError);
  document.body.dataset.editor = isError ? "error" : "saved";
}

async function openEditor() {
  const response = await api(`/v1/dashboards/${encodeURIComponent(state.dashboard)}`);
  const dashboard = await response.json();
  Object.assign(editor, { id: dashboard.id, version: dashboard.version, builtin: !!dashboard.builtin,
    name: dashboard.name, widgets: dashboard.widgets.map(rowOf), armedDelete: false });
  $("#editor").hidden = false;
  $("#edit").setAttribute("aria-expanded", "true");
  renderEditor();
  $("#ed-name").focus();
}

function closeEditor() {
  $("#editor").hidden = true;
  $("#edit").setAttribute("aria-expanded", "false");
  $("#edit").focus();
}

function options(values, chosen, text = (v) => v) {
  return values.map((v) => { const o = el("option", { value: v, text: text(v) }); o.selected = v === chosen; return o; });
}

function renderEditor() {
  const metrics = Object.keys(state.catalog.metrics || {}).length ? Object.keys(state.catalog.metrics)
    : ["events", "page_views", "clicks", "signups", "purchases", "revenue", "unique_users"];
  const dims = Object.keys(state.catalog.dimensions || {}).length ? Object.keys(state.catalog.dimensions)
    : ["event", "country", "device", "page"];
  $("#ed-name").value = editor.name;
  $("#ed-version").textContent = !editor.id ? "not saved yet: “Save as new” creates it"
    : editor.builtin ? "built-in, read-only: “Save as new” makes an editable copy"
    : `version ${editor.version}`;
  $("#ed-save").disabled = editor.builtin;
  $("#ed-delete").disabled = editor.builtin;
  $("#ed-delete").textContent = editor.armedDelete ? "Really delete this dashboard?" : "Delete dashboard";
  const rows = editor.widgets.map((row, i) => {
    const set = (key) => (event) => {
      row[key] = event.target.value;
      row.dirty = key !== "title" || row.dirty;
      if (key === "chart") { // the fields a chart needs differ: draw this row again, focus kept on the select
        Object.assign(row, { ...rowOf({ chart: row.chart, query: {} }), id: row.id, title: row.title, chart: row.chart,
          metric: row.metric, dimension: row.dimension, range: row.range, dirty: true });
        renderEditor();
        $(`#editor .ed-widget:nth-child(${i + 1}) .ed-chart`).focus();
      }
    };
    const text = (cls, key, name, hint) => el("label", {}, `${name} `, el("input", { class: cls, value: row[key],
      title: hint, oninput: set(key) }));
    const fields = {
      funnel: () => [text("ed-steps", "steps", "Steps", "event names in order, separated by commas"),
        el("label", {}, "Window ", el("select", { class: "ed-window", onchange: set("window") }, ...options(WINDOWS, row.window)))],
      retention: () => [text("ed-start-event", "startEvent", "First event", "the event that puts a user in a cohort"),
        text("ed-return-event", "returnEvent", "Return event", "empty: the first event again"),
        el("label", {}, "Period ", el("select", { class: "ed-period", onchange: set("period") }, ...options(PERIODS, row.period)))],
      paths: () => [text("ed-start-event", "startEvent", "After event", "paths in sessions after this event")],
      sessions: () => [],
    }[row.chart];
    const move = (to) => () => {
      if (to < 0 || to >= editor.widgets.length) return;
      editor.widgets.splice(to, 0, editor.widgets.splice(i, 1)[0]);
      renderEditor();
      $(`#editor .ed-widget:nth-child(${to + 1}) .ed-title`).focus();
    };
    return el("li", { class: "ed-widget", dataset: { index: String(i) } },
      el("label", {}, "Title ", el("input", { class: "ed-title", value: row.title, maxlength: "200", oninput: set("title") })),
      el("label", {}, "Chart ", el("select", { class: "ed-chart", onchange: set("chart") },
        ...options(CHARTS, row.chart, (c) => CHART_WORDS[c] || c))),
      ...(fields ? fields() : [
        el("label", {}, "Metric ", el("select", { class: "ed-metric", onchange: set("metric") }, ...options(metrics, row.metric, label))),
        el("label", {}, "By ", el("select", { class: "ed-dimension", onchange: set("dimension") },
          ...options(["", ...dims], row.dimension, (d) => (d ? label(d) : "— (over time / total)")))),
        text("ed-filters", "filters", "Filters", "e.g. country:US, device!=ios, page:/a|/b, revenue>=10")]),
      el("label", {}, "Range ", el("select", { class: "ed-range", onchange: set("range") }, ...options(EDIT_RANGES, row.range))),
      el("span", { class: "ed-buttons" },
        el("button", { type: "button", text: "↑", "aria-label": `move ${row.title || "widget"} up`, onclick: move(i - 1) }),
        el("button", { type: "button", text: "↓", "aria-label": `move ${row.title || "widget"} down`, onclick: move(i + 1) }),
        el("button", { type: "button", class: "ed-duplicate", text: "Duplicate", onclick: () => {
          editor.widgets.splice(i + 1, 0, { ...row, id: undefined, title: `${row.title} (copy)` });
          renderEditor(); } }),
        el("button", { type: "button", class: "ed-remove", text: "Delete", onclick: () => {
          editor.widgets.splice(i, 1); renderEditor(); } })));
  });
  $("#ed-widgets").replaceChildren(...rows);
}

// FastAPI's 422 details as words: "widgets › 2 › query › steps: List should have at least 2 items …".
function validationMessage(detail) {
  if (!Array.isArray(detail)) return "";
  return detail.slice(0, 3).map((d) => `${(d.loc || []).slice(1).map((p) => (typeof p === "number" ? p + 1 : p)).join(" › ")}: ${d.msg}`)
    .join("; ");
}

async function send(method, path, body, version) {
  const headers = { ...authHeaders(), "Content-Type": "application/json" };
  if (version !== null && version !== undefined) headers["If-Match"] = `"${version}"`;
  const response = await fetch(apiUrl(path), { method, headers, body: body ? JSON.stringify(body) : undefined });
  const payload = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (response.status === 412) {
    throw new Error("Someone else saved this dashboard since you opened it: your change was not saved. "
      + "Reload it in the editor to see their version, then make your change again.");
  }
  if (!response.ok) throw new Error(payload.error || validationMessage(payload.detail) || `${response.status} ${response.statusText}`);
  return payload;
}

async function saveDashboard(asNew) {
  editor.name = $("#ed-name").value.trim() || "Untitled";
  const body = { name: editor.name, widgets: editor.widgets.map(asWidget) };
  if (asNew) body.widgets = body.widgets.map(({ id, ...w }) => (editor.builtin ? w : { id, ...w }));
  try {
    const saved = asNew ? await send("POST", "/v1/dashboards", body)
      : await send("PUT", `/v1/dashboards/${encodeURIComponent(editor.id)}`, body, editor.version);
    Object.assign(editor, { id: saved.id, version: saved.version, builtin: false, widgets: saved.widgets.map(rowOf) });
    state.dashboard = saved.id;
    state.filters = [];
    await loadDashboards();
    renderEditor();
    editorMessage(`Saved “${saved.name}” (version ${saved.version}).`);
    changed();
  } catch (error) {
    editorMessage(error.message, true);
  }
}

async function deleteDashboard() {
  if (!editor.armedDelete) { editor.armedDelete = true; renderEditor(); $("#ed-delete").focus(); return; }
  try {
    await send("DELETE", `/v1/dashboards/${encodeURIComponent(editor.id)}`, null, editor.version);
    state.dashboard = "overview";
    await loadDashboards();
    closeEditor();
    changed();
    showStatus(`Deleted “${editor.name}”.`);
  } catch (error) {
    editor.armedDelete = false;
    renderEditor();
    editorMessage(error.message, true);
  }
}

function startEditor() {
  $("#edit").addEventListener("click", () => ($("#editor").hidden ? openEditor().catch((e) => showStatus(e.message, true))
    : closeEditor()));
  $("#ed-close").addEventListener("click", closeEditor);
  $("#ed-name").addEventListener("input", (event) => { editor.name = event.target.value; });
  $("#ed-add").addEventListener("click", () => {
    editor.widgets.push({ title: "New widget", chart: "line", metric: "events", dimension: "", range: "24h", dirty: true });
    renderEditor();
    $("#editor .ed-widget:last-child .ed-title").focus();
  });
  $("#ed-new").addEventListener("click", () => {
    Object.assign(editor, { id: null, version: null, builtin: true, name: "New dashboard", armedDelete: false,
      widgets: [{ title: "Events", chart: "number", metric: "events", dimension: "", range: "24h", dirty: true }] });
    renderEditor();
    $("#ed-name").focus();
  });
  $("#ed-save").addEventListener("click", () => saveDashboard(false));
  $("#ed-save-new").addEventListener("click", () => saveDashboard(true));
  $("#ed-delete").addEventListener("click", deleteDashboard);
  $("#editor").addEventListener("keydown", (event) => { if (event.key === "Escape") closeEditor(); });
}

startEditor();
