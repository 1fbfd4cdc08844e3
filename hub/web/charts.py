"""Line charts drawn as inline SVG on the server: no script and nothing fetched by the browser."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from hub.web.i18n import gettext

# Distinguishable on white, also for the common colour-vision deficiencies (Okabe–Ito + extras).
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
    "#17BECF",
)


# Each series also gets its own marker and dash pattern, so lines are told apart without
# colour (print, colour-vision deficiencies): 7 markers × 4 dashes give 28 distinct pairs.
MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down", "cross", "plus")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
MARKERS_PER_LINE = 8
"""A line draws at most about this many markers (and always its last point)."""


@dataclass(frozen=True)
class Series:
    """One line: a label, (time, value) points, oldest first, and where it leads (a queue
    link of what it counts; None: nowhere)."""

    label: str
    points: Sequence[tuple[datetime, float]]
    href: str | None = None


@dataclass(frozen=True)
class Style:
    """How series ``index`` is drawn: colour, marker shape and dash pattern."""

    color: str
    marker: str
    dash: str

    @classmethod
    def of(cls, index: int) -> Style:
        return cls(
            PALETTE[index % len(PALETTE)],
            MARKERS[index % len(MARKERS)],
            DASHES[index % len(DASHES)],
        )


def marker(shape: str, x: float, y: float, color: str, r: float = 3.5, title: str = "") -> str:
    """An SVG marker of ``shape`` centred on (x, y); ``title`` its tooltip (escaped here)."""
    tip = f"<title>{escape(title)}</title>" if title else ""
    attrs = f'class="marker" data-marker="{shape}" fill="{color}" stroke="{color}"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" {attrs}>{tip}</circle>'
    if shape == "square":
        d = r * 0.9
        return (
            f'<rect x="{x - d:.1f}" y="{y - d:.1f}" width="{2 * d:.1f}" height="{2 * d:.1f}" '
            f"{attrs}>{tip}</rect>"
        )
    pts = {
        "triangle": [(0, -1.2), (1.1, 0.8), (-1.1, 0.8)],
        "triangle-down": [(0, 1.2), (1.1, -0.8), (-1.1, -0.8)],
        "diamond": [(0, -1.3), (1.1, 0), (0, 1.3), (-1.1, 0)],
    }.get(shape)
    if pts is not None:
        path = " ".join(f"{x + dx * r:.1f},{y + dy * r:.1f}" for dx, dy in pts)
        return f'<polygon points="{path}" {attrs}>{tip}</polygon>'
    a = r * (0.85 if shape == "cross" else 1.15)
    if shape == "cross":
        d = f"M{x - a:.1f},{y - a:.1f}L{x + a:.1f},{y + a:.1f}M{x - a:.1f},{y + a:.1f}L{x + a:.1f},{y - a:.1f}"
    else:
        d = f"M{x - a:.1f},{y:.1f}H{x + a:.1f}M{x:.1f},{y - a:.1f}V{y + a:.1f}"
    return f'<path d="{d}" stroke-width="2" {attrs}>{tip}</path>'


def _dash(style: Style) -> str:
    return f' stroke-dasharray="{style.dash}"' if style.dash else ""


def swatch(style: Style) -> str:
    """A small SVG of a series' line, dash and marker: its legend key."""
    return (
        '<svg class="swatch-line" viewBox="0 0 30 12" width="30" height="12" aria-hidden="true" '
        'xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="1" x2="29" y1="6" y2="6" stroke="{style.color}" stroke-width="2"{_dash(style)}/>'
        f"{marker(style.marker, 15, 6, style.color, 3.5)}</svg>"
    )


def _link(href: str | None, inner: str, label: str) -> str:
    if not href:
        return inner
    return f'<a href="{escape(href)}" aria-label="{escape(label)}">{inner}</a>'


def _nice_scale(v: float) -> tuple[float, float]:
    """(top, step) of a y axis from 0 with at most 5 gridlines, ``step`` 1, 2 or 5 × 10^k
    (whole steps once ``v`` reaches 1)."""
    if v <= 0:
        return 1.0, 0.25
    raw = v / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if v >= 1 and step < 1:
        step = 1.0
    return round(math.ceil(v / step - 1e-9) * step, 10), step


def _time_label(t: datetime, span_s: float) -> str:
    return t.strftime("%H:%M") if span_s < 2 * 86400 else t.strftime("%d/%m")


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_max: float | None = None,
    y_format: Callable[[float], str] = lambda v: f"{v:,.0f}",
    width: int = 560,
    height: int = 220,
    href: str | None = None,
    link_text: str = "Open these in the queue",
) -> Markup:
    """An accessible line chart of ``series`` over a shared time axis: an SVG (role=img, a
    <title>, a <title> per marker) and an HTML legend below it, whose text wraps rather than
    being cut. Each series has its own colour, marker and dash (:class:`Style`); a series
    with an ``href`` links its line and its legend entry there, and ``href`` links the
    chart as a whole. A series with one point is drawn as a marker."""
    left, right, top, bottom = 56, 12, 12, 28
    pw, ph = width - left - right, height - top - bottom
    times = [t for s in series for t, _ in s.points]
    values = [v for s in series for _, v in s.points]
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if not times:
        empty = escape(gettext("no data yet"))
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="muted">'
            f"{empty}</text></svg>"
        )
        return Markup("".join(parts))
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1.0)
    if y_max is not None:
        top_v, step = y_max, y_max / 4
    else:
        top_v, step = _nice_scale(max(values) if values else 1.0)

    def x(t: datetime) -> float:
        if t1 == t0:
            return left + pw / 2
        return left + pw * (t - t0).total_seconds() / span

    def y(v: float) -> float:
        return top + ph - ph * (min(max(v, 0.0), top_v) / top_v)

    for i in range(round(top_v / step) + 1):  # horizontal grid with labels
        v = step * i
        yy = y(v)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" class="axis">'
            f"{escape(y_format(v))}</text>"
        )
    ticks = (
        [(t0, "middle")]
        if t0 == t1
        else [(t0, "start"), (t0 + (t1 - t0) / 2, "middle"), (t1, "end")]
    )
    for t, anchor in ticks:
        parts.append(
            f'<text x="{x(t):.1f}" y="{top + ph + 18}" text-anchor="{anchor}" class="axis">'
            f"{escape(_time_label(t, span))}</text>"
        )
    legend = []
    # The series of a chart share their time points (a dashboard's dozen lines of 120
    # points each): each point's x is worked out and formatted once, not once per line.
    xs = {t: x(t) for t in set(times)}
    x_text = {t: f"{px:.1f}" for t, px in xs.items()}
    for i, s in enumerate(series):
        style = Style.of(i)
        pts = [
            (xs[t], top + ph - ph * (min(max(v, 0.0), top_v) / top_v), t, v) for t, v in s.points
        ]
        drawn = []
        if len(pts) > 1:
            path = " ".join([f"{x_text[t]},{py:.1f}" for _, py, t, _ in pts])
            drawn.append(
                f'<polyline points="{path}" fill="none" stroke="{style.color}" '
                f'stroke-width="2"{_dash(style)}/>'
            )
            if s.href:  # a wider invisible stroke: the line is easy to hit with a pointer
                drawn.append(
                    f'<polyline points="{path}" class="hit" fill="none" stroke="transparent" '
                    'stroke-width="12"/>'
                )
        for px, py, t, v in _marked(pts, i):
            tip = f"{s.label} {t.strftime('%Y-%m-%d %H:%M')}: {y_format(v)}"
            drawn.append(marker(style.marker, px, py, style.color, title=tip))
        parts.append(
            f'<g class="series" data-series="{escape(s.label)}">'
            + _link(s.href, "".join(drawn), f"{s.label}: open in the queue")
            + "</g>"
        )
        key = f"{swatch(style)}<span>{escape(s.label)}</span>"
        legend.append(
            f'<li data-series="{escape(s.label)}" data-marker="{style.marker}" '
            f'data-dash="{style.dash or "solid"}">'
            + (f'<a href="{escape(s.href)}">{key}</a>' if s.href else key)
            + "</li>"
        )
    parts.append("</svg>")
    out = ['<figure class="chart-figure">', *parts]
    out.append(
        f'<ul class="chart-legend" aria-label="{escape(title)}: legend">{"".join(legend)}</ul>'
    )
    if href:
        out.append(f'<p class="chart-link"><a href="{escape(href)}">{escape(link_text)}</a></p>')
    out.append("</figure>")
    return Markup("".join(out))


def _marked(pts: list, index: int) -> list:
    """The points of a line that get a marker: about MARKERS_PER_LINE spread along it,
    offset per series so neighbouring lines' markers do not sit on each other, and the last."""
    if len(pts) <= MARKERS_PER_LINE:
        return pts
    step = len(pts) / MARKERS_PER_LINE
    offset = (index * 0.37 % 1) * step
    chosen = sorted({min(int(offset + k * step), len(pts) - 1) for k in range(MARKERS_PER_LINE)})
    if chosen[-1] != len(pts) - 1:
        chosen.append(len(pts) - 1)
    return [pts[k] for k in chosen]


@dataclass(frozen=True)
class Bar:
    """One bar: a label, a count and the queue link of what it counts."""

    label: str
    value: int
    href: str | None = None
    key: str = ""


def bar_list(
    bars: Sequence[Bar], *, title: str, label_header: str = "", empty: str = "None yet."
) -> Markup:
    """A horizontal bar chart as an HTML table (label, count, bar), so labels wrap and
    never overlap; each label links to ``href``. Bars scale to the largest value."""
    if not bars:
        return Markup(f'<p class="muted">{escape(empty)}</p>')
    top = max(b.value for b in bars) or 1
    rows = []
    for i, b in enumerate(bars):
        w = 100 * b.value / top
        label = escape(b.label)
        cell = f'<a href="{escape(b.href)}">{label}</a>' if b.href else label
        rows.append(
            f'<tr data-key="{escape(b.key or b.label)}"><th scope="row">{cell}</th>'
            f'<td class="num">{b.value:,}</td>'
            '<td class="bar"><svg viewBox="0 0 100 10" preserveAspectRatio="none" '
            'aria-hidden="true" xmlns="http://www.w3.org/2000/svg">'
            f'<rect x="0" y="0" width="{w:.1f}" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            "</svg></td></tr>"
        )
    return Markup(
        f'<table class="bar-list"><caption>{escape(title)}</caption>'
        f'<thead><tr><th scope="col">{escape(label_header)}</th><th scope="col">Count</th>'
        '<th scope="col"><span class="visually-hidden">Share</span></th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def percent(v: float) -> str:
    return f"{v * 100:.0f}%" if v < 0.995 or v == 1 else f"{v * 100:.1f}%"
