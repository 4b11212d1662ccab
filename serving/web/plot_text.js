// Text for Plotly: dimension values are tenant data, and Plotly renders a subset of HTML in labels, legend
// entries and hover text (links, styles, line breaks). plotText makes any value show as the text it is:
// Plotly decodes these entities back to the characters, and no tag survives to be rendered.
"use strict";

// Only these three: without "<" no tag can open, and Plotly does not decode every entity (it showed &quot; as is).
const PLOT_ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };

function plotText(value) {
  return String(value).replace(/[&<>]/g, (c) => PLOT_ENTITIES[c]);
}

if (typeof module !== "undefined") module.exports = { plotText };
