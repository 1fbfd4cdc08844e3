"""Server-side SVG charts: well-formed, escaped, scaled; legends that fit, series told apart
without colour, and links to the queue of what each shows."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from hub.vocabulary import RULE_CODES
from hub.web.charts import (
    DASHES,
    MARKERS,
    Bar,
    Series,
    Style,
    _nice_scale,
    bar_list,
    line_chart,
    percent,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def parse(chart) -> tuple[ET.Element, ET.Element | None]:
    """(the SVG, the legend list) of a chart figure."""
    root = ET.fromstring(str(chart))
    if root.tag == f"{SVG}svg":
        return root, None
    assert root.tag == "figure" and root.get("class") == "chart-figure"
    return root.find(f"{SVG}svg"), root.find("ul")


def text_of(el: ET.Element) -> str:
    return "".join(el.itertext())


def rule_series(n: int = len(RULE_CODES), points: int = 30) -> list[Series]:
    return [
        Series(
            r,
            [(T0 + timedelta(hours=h), (i + 1) * h) for h in range(points)],
            f"/queue?sector=tax&rule={r}",
        )
        for i, r in enumerate(RULE_CODES[:n])
    ]


def test_chart_is_well_formed_svg_with_a_line_and_legend_entry_per_series():
    series = [
        Series("NAME_MISMATCH", [(T0 + timedelta(days=i), 10 - i) for i in range(5)]),
        Series("DOB_MISMATCH", [(T0 + timedelta(days=i), i) for i in range(5)]),
    ]
    svg, legend = parse(line_chart(series, title="tax"))
    assert svg.get("role") == "img"
    assert len([p for p in svg.iter(f"{SVG}polyline") if p.get("class") != "hit"]) == 2
    assert [text_of(li) for li in legend.findall("li")] == ["NAME_MISMATCH", "DOB_MISMATCH"]


def test_legend_entries_carry_every_rule_name_whole_in_html_that_wraps():
    longest = max(RULE_CODES, key=len)
    svg, legend = parse(line_chart(rule_series(), title="tax: open mismatches by rule"))
    labels = [text_of(li) for li in legend.findall("li")]
    assert labels == list(RULE_CODES) and longest in labels
    # No legend text is drawn inside the fixed-width SVG, where it could be cut.
    assert not [t for t in svg.iter(f"{SVG}text") if t.get("class") == "legend"]
    assert longest not in "".join(t.text or "" for t in svg.iter(f"{SVG}text"))


def test_each_series_has_its_own_marker_and_dash_shown_in_the_legend_too():
    series = rule_series()
    svg, legend = parse(line_chart(series, title="x"))
    styles = [(li.get("data-marker"), li.get("data-dash")) for li in legend.findall("li")]
    assert len(set(styles)) == len(series)  # every pair distinct: not colour alone
    assert len({Style.of(i).marker + Style.of(i).dash for i in range(len(MARKERS) * 4)}) == 28
    for i, g in enumerate(svg.iter(f"{SVG}g")):
        style = Style.of(i)
        line = g.find(f".//{SVG}polyline")
        assert (line.get("stroke-dasharray") or "") == style.dash
        marks = [m for m in g.iter() if m.get("class") == "marker"]
        assert marks and {m.get("data-marker") for m in marks} == {style.marker}
        assert len(marks) <= 9  # thinned: about eight and the last point
        key = legend.findall("li")[i]
        drawn = key.find(f".//{SVG}svg")
        assert (drawn.find(f"{SVG}line").get("stroke-dasharray") or "") == style.dash
        assert [m.get("data-marker") for m in drawn if m.get("class") == "marker"] == [style.marker]
    assert {Style.of(i).dash for i in range(len(DASHES))} == set(DASHES)


def test_every_marker_shape_is_drawn():
    series = [Series(f"s{i}", [(T0, 1.0), (T0 + timedelta(hours=1), 2.0)]) for i in range(7)]
    svg, _ = parse(line_chart(series, title="x"))
    shapes = {m.get("data-marker") for m in svg.iter() if m.get("class") == "marker"}
    assert shapes == set(MARKERS)


def test_series_lines_legend_entries_and_the_chart_link_to_the_queue():
    series = rule_series(3)
    svg, legend = parse(line_chart(series, title="x", href="/queue?sector=tax"))
    line_links = [a.get("href") for a in svg.iter(f"{SVG}a")]
    assert line_links == [s.href for s in series]
    assert [li.find("a").get("href") for li in legend.findall("li")] == line_links
    root = ET.fromstring(str(line_chart(series, title="x", href="/queue?sector=tax")))
    assert root.find("p/a").get("href") == "/queue?sector=tax"


def test_labels_and_links_are_escaped():
    chart = str(line_chart([Series("<script>", [(T0, 1.0)], "/q?a=1&b=<2>")], title='a"b<c>'))
    assert "<script>" not in chart and "&lt;script&gt;" in chart
    assert "&amp;b=&lt;2&gt;" in chart
    ET.fromstring(chart)


def test_empty_chart_says_so():
    assert "no data yet" in str(line_chart([], title="x"))


def test_single_point_is_drawn_as_a_marker():
    svg, _ = parse(line_chart([Series("s", [(T0, 0.5)])], title="x", y_max=1.0))
    assert svg.findall(f".//{SVG}polyline") == []
    assert len([m for m in svg.iter() if m.get("class") == "marker"]) == 1


def test_bars_scale_to_the_largest_and_link_each_label():
    table = ET.fromstring(
        str(
            bar_list(
                [
                    Bar("Same person, transliteration", 4, "/queue?dismissal_code=a", "a"),
                    Bar("Other", 1, "/queue?dismissal_code=other", "other"),
                ],
                title="by reason",
                label_header="Reason",
            )
        )
    )
    assert table.find("thead/tr/th").text == "Reason"
    rows = table.findall("tbody/tr")
    assert [r.get("data-key") for r in rows] == ["a", "other"]
    assert [r.find("th/a").get("href") for r in rows] == [
        "/queue?dismissal_code=a",
        "/queue?dismissal_code=other",
    ]
    assert [r.find(f"td/{SVG}svg/{SVG}rect").get("width") for r in rows] == ["100.0", "25.0"]
    assert [r.find("td").text for r in rows] == ["4", "1"]
    assert "None" in str(bar_list([], title="x", empty="None yet."))


def test_y_axis_steps_are_round_numbers():
    assert _nice_scale(3) == (3.0, 1.0)
    assert _nice_scale(7) == (8, 2)
    assert _nice_scale(612_345) == (800_000, 200_000)
    assert percent(0.2) == "20%" and percent(1.0) == "100%"
