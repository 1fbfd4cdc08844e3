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


@dataclass(frozen=True)
class Series:
    """One line: a label and (time, value) points, oldest first."""

    label: str
    points: Sequence[tuple[datetime, float]]


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
) -> Markup:
    """An accessible SVG line chart (role=img, a <title>, a legend, a <title> per point)
    of ``series`` over a shared time axis. A series with one point is drawn as a dot."""
    left, right, top, bottom = 56, 12, 12, 28
    pw, ph = width - left - right, height - top - bottom
    times = [t for s in series for t, _ in s.points]
    values = [v for s in series for _, v in s.points]
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 18 * ((len(series) + 2) // 3)}" '
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
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = [(x(t), y(v), t, v) for t, v in s.points]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in pts)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        for px, py, t, v in pts[-1:] if len(pts) > 1 else pts:
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}">'
                f"<title>{escape(s.label)} {escape(t.strftime('%Y-%m-%d %H:%M'))}: "
                f"{escape(y_format(v))}</title></circle>"
            )
        lx = left + (i % 3) * (pw / 3)
        ly = height + 4 + 18 * (i // 3)
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly}" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14:.1f}" y="{ly + 9}" class="legend">{escape(s.label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def percent(v: float) -> str:
    return f"{v * 100:.0f}%" if v < 0.995 or v == 1 else f"{v * 100:.1f}%"
