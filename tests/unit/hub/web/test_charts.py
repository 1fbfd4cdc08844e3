"""Server-side SVG charts: well-formed, escaped, scaled."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from hub.web.charts import Series, _nice_scale, line_chart, percent

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def test_chart_is_well_formed_svg_with_a_line_and_legend_per_series():
    series = [
        Series("NAME_MISMATCH", [(T0 + timedelta(days=i), 10 - i) for i in range(5)]),
        Series("DOB_MISMATCH", [(T0 + timedelta(days=i), i) for i in range(5)]),
    ]
    root = ET.fromstring(str(line_chart(series, title="tax")))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert len(root.findall(f"{SVG}polyline")) == 2
    legend = [t.text for t in root.findall(f"{SVG}text") if t.get("class") == "legend"]
    assert legend == ["NAME_MISMATCH", "DOB_MISMATCH"]


def test_labels_are_escaped():
    chart = str(line_chart([Series("<script>", [(T0, 1.0)])], title='a"b<c>'))
    assert "<script>" not in chart and "&lt;script&gt;" in chart
    ET.fromstring(chart)


def test_empty_chart_says_so():
    assert "no data yet" in str(line_chart([], title="x"))


def test_single_point_is_drawn_as_a_dot():
    root = ET.fromstring(str(line_chart([Series("s", [(T0, 0.5)])], title="x", y_max=1.0)))
    assert root.findall(f"{SVG}polyline") == [] and len(root.findall(f"{SVG}circle")) == 1


def test_y_axis_steps_are_round_numbers():
    assert _nice_scale(3) == (3.0, 1.0)
    assert _nice_scale(7) == (8, 2)
    assert _nice_scale(612_345) == (800_000, 200_000)
    assert percent(0.2) == "20%" and percent(1.0) == "100%"
