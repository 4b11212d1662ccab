// Product-analytics widgets: a funnel (bars with conversion %; a step's "who dropped off" lists the users), a
// retention grid (a heatmap with the numbers in it), paths (a Sankey diagram) and session numbers.
// The dashboard's answer carries each one's request (its endpoint, the dashboard's range applied); the page
// sends it and draws the answer, so these widgets show exactly what /v1/funnels, /v1/retention, /v1/paths and
// /v1/sessions answer. Every chart has its numbers as a table too. Loaded after app.js and uses its helpers.
"use strict";

const FUNNEL_ORDER = { ordered: "steps in order (other events between allowed)", strict: "strict order", any: "steps in any order" };
const DROPOFF_SHOWN = 200; // user ids listed in the page; the CSV has them all
const openDropoff = new Map(); // widget id → the step whose drop-offs are listed (kept across refreshes)

function percent(ratio) {
  return ratio === null || ratio === undefined ? "–"
    : `${(100 * ratio).toLocaleString(undefined, { maximumFractionDigits: 1 })}\u00a0%`; // kept on one line
}

// 75 → "1 min 15 s"; 0.4 → "0.4 s"; days for the long ones.
function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toLocaleString(undefined, { maximumFractionDigits: 1 })}\u00a0s`;
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  const parts = [];
  let rest = Math.round(seconds);
  for (const [unit, size] of units) {
    if (rest >= size && parts.length < 2) { parts.push(`${Math.floor(rest / size)}\u00a0${unit}`); rest %= size; }
  }
  return parts.join(" ");
}

function eventLabel(name) {
  return String(name).replaceAll("_", " ");
}

function analyticsMeta(widget, answer, ...more) {
  const words = [...new Set((answer.sources || []).map((s) => SOURCE_WORDS[s] || "stored data"))];
  const unfiltered = state.filters.length ? "the drill-down filters do not apply here" : "";
  return el("p", { class: "meta", text: [words.join(" + "), ...more, unfiltered].filter(Boolean).join(" · "),
    dataset: { sources: (answer.sources || []).join(",") } });
}

function plain(body) {
  if (body.dataset.plot) Plotly.purge(body.querySelector(".plot"));
  delete body.dataset.plot;
}

function tableOf(className, headings, rows, dataset = {}) {
  return scrollBox(className.replace("-", " "), el("table", { class: className, dataset },
    el("thead", {}, el("tr", {}, ...headings.map((h, i) => el("th", { scope: "col", class: i ? "num" : "", text: h })))),
    el("tbody", {}, ...rows)));
}

// Sends the widget's request and draws the answer; resolves to false when it could not.
async function renderAnalytics(body, widget) {
  const section = body.closest(".widget");
  section.dataset.state = "loading";
  try {
    const answer = await (await sendRequest(widget.request)).json();
    ANALYTICS_RENDER[widget.chart](body, widget, answer);
    section.dataset.state = "ready";
    return true;
  } catch (error) {
    plain(body);
    body.replaceChildren(el("p", { class: "error", text: `Cannot be shown: ${error.message}` }));
    section.dataset.state = "error";
    return false;
  }
}

// ---- funnel ---------------------------------------------------------------------------------------------

function renderFunnel(body, widget, answer) {
  const steps = answer.steps;
  if (!steps.length || !steps[0].count) {
    plain(body);
    body.replaceChildren(el("p", { class: "meta empty", text: "Nobody entered this funnel in this range." }),
      analyticsMeta(widget, answer));
    return;
  }
  const names = steps.map((s) => `${s.step}. ${eventLabel(s.event)}`);
  const div = plotInto(body, [{
    type: "bar", x: names.map(plotText), y: steps.map((s) => s.count), marker: { color: PALETTE[0] },
    text: steps.map((s) => `${formatNumber(s.count)} · ${percent(s.conversion_from_first)}`), textposition: "auto", textangle: 0,
    hovertemplate: "%{x}: %{text} of step 1<extra></extra>",
  }], { xaxis: { type: "category", automargin: true }, yaxis: { rangemode: "tozero" },
    description: `${widget.title}: users at each step, with the conversion from step 1` });
  div.stepCount = steps.length;
  if (!div.dataset.drill) { // a click on a bar lists who stopped there
    div.on("plotly_click", (event) => {
      const step = event.points[0].pointNumber + 1;
      if (step < div.stepCount) showDropoff(div.closest(".widget"), step);
    });
    div.dataset.drill = "1";
  }
  const rows = steps.map((s, i) => {
    const next = steps[i + 1];
    const button = next && next.drop_off > 0 ? el("button", { type: "button", class: "dropoff-button",
      text: `${formatNumber(next.drop_off)} dropped off`, "aria-label": `list the ${next.drop_off} who reached step ${s.step} and went no further`,
      onclick: () => showDropoff(body.closest(".widget"), s.step) }) : (next ? "none dropped off" : "");
    return el("tr", { dataset: { step: String(s.step), event: s.event, count: String(s.count) } },
      el("th", { scope: "row", text: names[i] }),
      el("td", { class: "num", text: formatNumber(s.count) }),
      el("td", { class: "num", text: i ? percent(s.conversion_from_previous) : "" }),
      el("td", { class: "num", text: percent(s.conversion_from_first) }),
      el("td", { class: "num", text: i ? formatDuration(s.time_to_convert_median) : "" }),
      el("td", { class: "num" }, button));
  });
  // a breakdown (attributed from the step-1 event): users at each step per value, the rest as "other"
  const groups = answer.breakdown?.length ? tableOf("funnel-breakdown", [eventLabel(answer.breakdown_by), ...names],
    answer.breakdown.map((g) => el("tr", { dataset: { value: g.value } }, el("th", { scope: "row", text: g.value }),
      ...g.steps.map((s) => el("td", { class: "num", text: `${formatNumber(s.count)} (${percent(s.conversion_from_first)})` }))))) : null;
  extras(body, ...[
    tableOf("funnel-steps", ["step", "users", "from previous", "from step 1", "median time", "after this step"], rows),
    groups,
    el("div", { class: "dropoff", "aria-live": "polite" }),
    analyticsMeta(widget, answer, `entered ${answer.from.slice(0, 10)} – ${answer.to.slice(0, 10)}, converting until `
      + `${answer.conversion_until.slice(0, 10)}`, FUNNEL_ORDER[answer.mode] || answer.mode, `counted in ${answer.unit}`),
  ].filter(Boolean));
  const open = openDropoff.get(widget.id);
  if (open && open < steps.length) showDropoff(body.closest(".widget"), open);
}

async function showDropoff(section, step) {
  const box = $(".dropoff", section);
  if (!box || !section.request) return;
  openDropoff.set(section.dataset.widgetId, step);
  box.dataset.step = String(step);
  box.dataset.state = "loading";
  box.replaceChildren(el("p", { class: "meta", text: `Loading who stopped after step ${step}…` }));
  const request = { ...section.request, path: "/v1/funnels/dropoff" };
  try {
    const { users } = await (await sendRequest(request, { step })).json();
    if (box.dataset.step !== String(step)) return; // another step was asked meanwhile
    const shown = users.slice(0, DROPOFF_SHOWN);
    box.replaceChildren(...[
      el("h3", { text: `${formatNumber(users.length)} reached step ${step} and went no further` }),
      el("ul", { class: "users", tabindex: "0", "aria-label": `users who stopped after step ${step}` },
        ...shown.map((u) => el("li", { text: u }))),
      users.length > shown.length ? el("p", { class: "meta", text: `and ${formatNumber(users.length - shown.length)} more in the CSV` }) : null,
      el("div", { class: "actions" },
        el("button", { type: "button", class: "csv", text: "CSV", "aria-label": `download the users who stopped after step ${step} as CSV`,
          onclick: () => downloadRequest(request, { step, format: "csv" }) }),
        el("button", { type: "button", class: "csv", text: "Close", onclick: () => {
          openDropoff.delete(section.dataset.widgetId); delete box.dataset.step; box.replaceChildren(); } }))].filter(Boolean));
    box.dataset.state = "ready";
  } catch (error) {
    box.replaceChildren(el("p", { class: "error", text: `Cannot list them: ${error.message}` }));
    box.dataset.state = "error";
  }
}

async function downloadRequest(request, extra) {
  try {
    const response = await sendRequest(request, extra);
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || "export.csv";
    const url = URL.createObjectURL(await response.blob());
    el("a", { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showStatus(`CSV: ${error.message}`, true);
  }
}

// ---- retention ------------------------------------------------------------------------------------------

// White to dark blue: ordered by lightness alone, so it reads the same with any colour-vision deficiency.
const RETENTION_SCALE = [[0, "#f7fbff"], [0.25, "#c6dbef"], [0.5, "#6baed6"], [0.75, "#2171b5"], [1, "#08306b"]];

function renderRetention(body, widget, answer) {
  const cohorts = answer.cohorts;
  if (!cohorts.length) {
    plain(body);
    body.replaceChildren(el("p", { class: "meta empty", text: `Nobody did ${eventLabel(answer.start_event)} for the first time in this range.` }),
      analyticsMeta(widget, answer));
    return;
  }
  const periods = cohorts[0].counts.length;
  const x = [...Array(periods).keys()].map((n) => `${answer.period} ${n}`);
  const y = cohorts.map((c) => (c.value !== undefined ? `${c.cohort} · ${c.value}` : c.cohort));
  plotInto(body, [{
    type: "heatmap", x, y: y.map(plotText), z: cohorts.map((c) => c.percentages), zmin: 0, zmax: 100,
    colorscale: RETENTION_SCALE, showscale: false, xgap: 2, ygap: 2,
    text: cohorts.map((c) => c.counts.map((n, i) => `${formatNumber(n)}<br>${percent(c.percentages[i] / 100)}`)),
    texttemplate: "%{text}", hovertemplate: "cohort %{y}, %{x}: %{text}<extra></extra>",
  }], { margin: { t: 30, r: 10, b: 10, l: 110 }, height: Math.max(200, 50 + 42 * cohorts.length),
    yaxis: { type: "category", autorange: "reversed", automargin: true }, xaxis: { type: "category", side: "top", automargin: true },
    description: `${widget.title}: users of each cohort returning in each ${answer.period}` });
  const rows = cohorts.map((c, r) => el("tr", { dataset: { cohort: c.cohort, value: c.value ?? "", size: String(c.size) } },
    el("th", { scope: "row", text: y[r] }),
    ...c.counts.map((n, i) => el("td", { class: "num", dataset: { count: String(n) },
      text: `${formatNumber(n)} (${percent(c.percentages[i] / 100)})` }))));
  const mode = answer.mode === "on" ? "returned in that period" : "returned in that period or later";
  extras(body, el("details", { class: "as-table" }, el("summary", { text: "Show as a table" }),
    tableOf("retention-grid", ["cohort", ...x], rows)),
  analyticsMeta(widget, answer, `cohort: first ${eventLabel(answer.start_event)} per ${answer.period} (UTC)`,
    `${eventLabel(answer.return_event)} ${mode}`));
}

// ---- paths ------------------------------------------------------------------------------------------------

function renderPaths(body, widget, answer) {
  if (!answer.edges.length) {
    plain(body);
    body.replaceChildren(el("p", { class: "meta empty", text: "No paths in this range." }), analyticsMeta(widget, answer));
    return;
  }
  const index = new Map(answer.nodes.map((n, i) => [n.id, i]));
  const after = answer.direction === "after";
  plotInto(body, [{
    type: "sankey", arrangement: "snap",
    node: { label: answer.nodes.map((n) => plotText(n.step ? `${eventLabel(n.event)} (${after ? "+" : "−"}${n.step})` : eventLabel(n.event))),
      color: answer.nodes.map((n) => PALETTE[n.step % PALETTE.length]), pad: 12, thickness: 14 },
    link: { source: answer.edges.map((e) => index.get(after ? e.source : e.target)),
      target: answer.edges.map((e) => index.get(after ? e.target : e.source)),
      value: answer.edges.map((e) => e.sessions), color: "rgba(0, 114, 178, 0.25)" },
  }], { height: 360, description: `${widget.title}: the most frequent events ${answer.direction} ${eventLabel(answer.anchor)}` });
  const rows = answer.edges.map((e) => el("tr", { dataset: { step: String(e.step), from: e.from, to: e.to, sessions: String(e.sessions) } },
    el("th", { scope: "row", text: String(e.step) }), el("td", { text: eventLabel(e.from) }), el("td", { text: eventLabel(e.to) }),
    el("td", { class: "num", text: formatNumber(e.sessions) })));
  extras(body, el("details", { class: "as-table" }, el("summary", { text: "Show as a table" }),
    tableOf("path-edges", ["step", "from", "to", "sessions"], rows)),
  analyticsMeta(widget, answer, `sessions ${answer.direction} ${eventLabel(answer.anchor)}, up to ${answer.steps} steps`));
}

// ---- sessions ---------------------------------------------------------------------------------------------

const SESSION_MEASURES = [
  ["sessions", "Sessions", (v) => formatNumber(v)],
  ["avg_session_duration", "Average session", formatDuration],
  ["pages_per_session", "Pages per session", (v) => formatNumber(v)],
  ["bounce_rate", "Bounce rate", percent],
];

function renderSessions(body, widget, answer) {
  plain(body);
  const totals = answer.totals;
  const numbers = SESSION_MEASURES.map(([key, name, show]) => el("div", { class: "number", dataset: { metric: key, value: String(totals[key]) } },
    el("div", { class: "label", text: name }), el("div", { class: "value", text: show(totals[key]) })));
  const by = answer.by;
  const table = by && answer.rows?.length ? tableOf("session-rows", [eventLabel(by), ...SESSION_MEASURES.map(([, name]) => name)],
    answer.rows.map((r) => el("tr", { dataset: { key: String(r[by]) } }, el("th", { scope: "row", text: String(r[by]) || "(no page view)" }),
      ...SESSION_MEASURES.map(([key, , show]) => el("td", { class: "num", text: show(r[key]) }))))) : null;
  body.replaceChildren(...[el("div", { class: "numbers" }, ...numbers), table,
    analyticsMeta(widget, answer, "sessions starting in the range; bounce: under 2 page views and no interaction")].filter(Boolean));
}

const ANALYTICS_RENDER = { funnel: renderFunnel, retention: renderRetention, paths: renderPaths, sessions: renderSessions };
