"""A saved dashboard as a PDF: a cover with the title, tenant, range and generation time, then one page per
widget with its chart drawn and its numbers as a table, every page numbered.

Drawn with fpdf2 (pure Python, from PyPI): the charts are lines, bars and arcs drawn directly, so nothing is
fetched from anywhere and no browser or plotting stack runs in the API process. It renders the JSON that
``GET /v1/dashboards/{id}/data`` answers, so the report shows the same numbers as the web dashboard.
The core PDF fonts cover Latin-1 only: other characters print as ``?``.
"""

from __future__ import annotations

from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

MAX_TABLE_ROWS = 40  # more rows than this are left to the widget's CSV download
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def number(value: Any) -> str:
    """How a value prints: whole numbers without decimals, others with two."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.2f}"
    return str(value)


def _latin1(text: Any) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


class _Report(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._footer_text = footer_text
        self.set_auto_page_break(auto=True, margin=18)
        self.set_creator("lakehouse")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, _latin1(self._footer_text), align="L")
        self.set_x(-40)
        self.cell(30, 6, f"page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0, 0, 0)


def render_dashboard(data: dict[str, Any], tenant: str) -> bytes:
    """The PDF of one dashboard answer (``DashboardService.data``'s JSON)."""
    name = data.get("name") or data.get("dashboard") or "dashboard"
    pdf = _Report(f"{name} - tenant {tenant} - generated {data.get('generated_at', '')}")
    pdf.set_title(_latin1(name))
    _cover(pdf, data, tenant)
    for widget in data.get("widgets", []):
        _widget_page(pdf, widget)
    return bytes(pdf.output())


def _cover(pdf: FPDF, data: dict[str, Any], tenant: str) -> None:
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 22)
    pdf.multi_cell(0, 11, _latin1(data.get("name", "")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", size=11)
    filters = ", ".join(f"{f.get('field')} {f.get('op')} {'|'.join(map(str, f.get('values', [])))}"
                        for f in data.get("filters", [])) or "none"
    ranges = sorted({f"{w.get('from')} to {w.get('to')}" for w in data.get("widgets", []) if "from" in w})
    facts = [("Tenant", tenant), ("Dashboard", f"{data.get('dashboard')} (version {data.get('version')})"),
             ("Range", data.get("range") or "each widget's own"), *(("From - to", r) for r in ranges),
             ("Filters", filters), ("Generated", data.get("generated_at", ""))]
    for label, value in facts:
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(32, 7, _latin1(label))
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 7, _latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 8, "Widgets", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=11)
    for i, widget in enumerate(data.get("widgets", []), start=2):
        pdf.cell(0, 6, _latin1(f"page {i}: {widget.get('title') or widget.get('id')} ({widget.get('chart')})"),
                 new_x="LMARGIN", new_y="NEXT")


def _widget_page(pdf: FPDF, widget: dict[str, Any]) -> None:
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, _latin1(widget.get("title") or widget.get("id")), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.set_text_color(90, 90, 90)
    if "error" in widget:
        pdf.multi_cell(0, 6, _latin1(f"cannot be shown: {widget['error']}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
        return
    if "request" in widget:  # an analytics widget: the page sends its endpoint's request and draws the answer
        request = widget["request"]
        pdf.multi_cell(0, 6, _latin1(f"{widget.get('chart')}: shown in the web dashboard; its numbers are "
                                     f"{request.get('method')} {request.get('path')} (add format=csv for a table)"),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
        return
    span = f"{widget.get('from')} to {widget.get('to')}"
    if widget.get("granularity"):
        span += f", by {widget['granularity']}"
    pdf.cell(0, 6, _latin1(f"{widget.get('chart')} - {span} - from {', '.join(widget.get('sources', []))}"),
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(3)
    columns, rows = widget.get("columns", []), widget.get("rows", [])
    box = (pdf.l_margin, pdf.get_y(), pdf.w - pdf.l_margin - pdf.r_margin, 85.0)
    drawn = {"line": _line, "pie": _pie, "bar": _bars, "number": _numbers}.get(widget.get("chart", ""))
    if drawn is not None and rows:
        drawn(pdf, box, widget, columns, rows)
        pdf.set_y(box[1] + box[3] + 6)
    elif not rows:
        pdf.cell(0, 8, "no data in this range", new_x="LMARGIN", new_y="NEXT")
    _table(pdf, columns, rows)


def _dims(widget: dict[str, Any]) -> list[str]:
    return list(widget.get("query", {}).get("dimensions", []))


def _numbers(pdf: FPDF, box: tuple[float, float, float, float], widget: dict[str, Any], columns: list[str],
             rows: list[list[Any]]) -> None:
    x, y, w, _h = box
    values = list(zip(columns, rows[0], strict=False))
    cell = w / max(len(values), 1)
    for i, (column, value) in enumerate(values):
        pdf.set_fill_color(*PALETTE[i % len(PALETTE)])
        pdf.rect(x + i * cell + 2, y, cell - 4, 3, style="F")
        pdf.set_xy(x + i * cell, y + 8)
        pdf.set_font("Helvetica", "B", 26)
        pdf.cell(cell, 14, number(value), align="C")
        pdf.set_xy(x + i * cell, y + 24)
        pdf.set_font("Helvetica", size=11)
        pdf.cell(cell, 6, _latin1(column), align="C")
    pdf.set_font("Helvetica", size=10)


def _axes(pdf: FPDF, box: tuple[float, float, float, float], top: float) -> tuple[float, float, float, float]:
    """The plot area inside ``box`` with a y axis labelled 0 … ``top``."""
    x, y, w, h = box
    left, bottom = x + 18, y + h - 8
    pdf.set_draw_color(150, 150, 150)
    pdf.set_line_width(0.2)
    pdf.line(left, y, left, bottom)
    pdf.line(left, bottom, x + w, bottom)
    pdf.set_font("Helvetica", size=7)
    for k in range(5):
        level = bottom - (bottom - y) * k / 4
        pdf.set_xy(x, level - 2)
        pdf.cell(16, 4, number(top * k / 4), align="R")
        pdf.line(left - 1, level, left, level)
    return left, y, x + w - left, bottom - y


def _line(pdf: FPDF, box: tuple[float, float, float, float], widget: dict[str, Any], columns: list[str],
          rows: list[list[Any]]) -> None:
    dims = _dims(widget)
    buckets = sorted({r[0] for r in rows})
    series: dict[tuple, dict[str, float]] = {}
    for row in rows:
        series.setdefault(tuple(row[1:1 + len(dims)]), {})[row[0]] = float(row[1 + len(dims)] or 0)
    top = max((v for s in series.values() for v in s.values()), default=0.0) or 1.0
    left, ytop, width, height = _axes(pdf, box, top)
    pdf.set_line_width(0.6)
    for i, (key, points) in enumerate(list(series.items())[:len(PALETTE)]):
        pdf.set_draw_color(*PALETTE[i])
        coords = [(left + width * (j / max(len(buckets) - 1, 1)), ytop + height * (1 - points.get(b, 0.0) / top))
                  for j, b in enumerate(buckets)]
        if len(coords) == 1:
            pdf.circle(x=coords[0][0], y=coords[0][1], radius=1.2, style="D")
        else:
            pdf.polyline(coords)
        if key:
            pdf.set_text_color(*PALETTE[i])
            pdf.set_xy(left + 2, ytop + 4 * i)
            pdf.set_font("Helvetica", size=7)
            pdf.cell(60, 4, _latin1(" / ".join(map(str, key))))
    pdf.set_text_color(0, 0, 0)
    pdf.set_font("Helvetica", size=7)
    pdf.set_xy(left, ytop + height + 1)
    pdf.cell(width / 2, 4, _latin1(buckets[0]))
    pdf.cell(width / 2, 4, _latin1(buckets[-1]), align="R")


def _labelled_values(widget: dict[str, Any], rows: list[list[Any]]) -> list[tuple[str, float]]:
    n = max(len(_dims(widget)), 1)
    return [(" / ".join(map(str, r[:n])), float(r[n] or 0)) for r in rows]


def _bars(pdf: FPDF, box: tuple[float, float, float, float], widget: dict[str, Any], columns: list[str],
          rows: list[list[Any]]) -> None:
    x, y, w, h = box
    values = _labelled_values(widget, rows)[:20]
    top = max((v for _, v in values), default=0.0) or 1.0
    bar = h / max(len(values), 1)
    pdf.set_font("Helvetica", size=7)
    for i, (label, value) in enumerate(values):
        pdf.set_xy(x, y + i * bar)
        pdf.cell(38, bar, _latin1(label)[:30], align="R")
        pdf.set_fill_color(*PALETTE[i % len(PALETTE)])
        pdf.rect(x + 40, y + i * bar + bar * 0.15, (w - 60) * value / top, bar * 0.7, style="F")
        pdf.set_xy(x + 41 + (w - 60) * value / top, y + i * bar)
        pdf.cell(18, bar, number(value))


def _pie(pdf: FPDF, box: tuple[float, float, float, float], widget: dict[str, Any], columns: list[str],
         rows: list[list[Any]]) -> None:
    x, y, _w, h = box
    values = [(label, value) for label, value in _labelled_values(widget, rows) if value > 0]
    whole = sum(v for _, v in values)
    if not whole:
        return
    radius = h / 2 - 2
    cx, cy = x + radius + 4, y + h / 2
    start = 0.0
    for i, (_, value) in enumerate(values):
        sweep = 360.0 * value / whole
        pdf.set_fill_color(*PALETTE[i % len(PALETTE)])
        pdf.set_draw_color(255, 255, 255)
        if sweep >= 359.99:
            pdf.circle(x=cx, y=cy, radius=radius, style="F")
        else:
            pdf.solid_arc(cx - radius, cy - radius, 2 * radius, start, start + sweep, style="FD")
        start += sweep
    pdf.set_font("Helvetica", size=8)
    legend_x = cx + radius + 10
    for i, (label, value) in enumerate(values[:16]):
        pdf.set_fill_color(*PALETTE[i % len(PALETTE)])
        pdf.rect(legend_x, y + 2 + i * 5, 3.5, 3.5, style="F")
        pdf.set_xy(legend_x + 5, y + 1.5 + i * 5)
        pdf.cell(70, 4.5, _latin1(f"{label}: {number(value)} ({100 * value / whole:.1f} %)"))


def _table(pdf: FPDF, columns: list[str], rows: list[list[Any]]) -> None:
    if not columns:
        return
    pdf.set_font("Helvetica", size=8)
    pdf.set_fill_color(255, 255, 255)
    pdf.set_draw_color(170, 170, 170)
    pdf.set_line_width(0.2)
    with pdf.table(col_widths=tuple(1 for _ in columns), text_align="LEFT", line_height=5,
                   first_row_as_headings=True,
                   headings_style=FontFace(emphasis="BOLD", fill_color=(230, 230, 230))) as table:
        table.row([_latin1(c) for c in columns])
        for row in rows[:MAX_TABLE_ROWS]:
            table.row([_latin1(number(v)) for v in row])
    if len(rows) > MAX_TABLE_ROWS:
        pdf.set_font("Helvetica", size=8)
        pdf.cell(0, 6, f"... {len(rows) - MAX_TABLE_ROWS} more rows: download the widget as CSV",
                 new_x="LMARGIN", new_y="NEXT")
