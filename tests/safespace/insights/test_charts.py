"""The SVG charts, checked the way a reader would: what is plotted, what is hidden, what is said."""

from __future__ import annotations

import contextvars
import re
import xml.etree.ElementTree as ET

import pytest

from safespace.i18n import set_language
from safespace.insights import charts
from safespace.insights.charts import Chart, Series, bar_chart, heatmap, line_chart, named_bars, share_bars
from surveys.stats import Shares

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script> & Co'
K = charts.suppressed_label(5)
ROUNDS = ["3 Mar", "10 Mar", "17 Mar", "24 Mar", "31 Mar", "7 Apr"]
SCORES = [4.8, 5.0, None, 5.1, 5.6, 5.5]
LOW = [None if v is None else round(v - 0.3, 2) for v in SCORES]
HIGH = [None if v is None else round(v + 0.3, 2) for v in SCORES]


def parse(chart: Chart) -> ET.Element:
    return ET.fromstring(str(chart.svg))


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if name in el.get("class", "").split()]


def title_of(el: ET.Element) -> str:
    found = el.find(f"{SVG}title")
    return "" if found is None else found.text or ""


def texts(root: ET.Element) -> list[str]:
    return ["".join(el.itertext()) for el in root.iter(f"{SVG}text")]


def trend(**kw: object) -> Chart:
    options = {"y_range": (1, 7), "y_label": "Scale score (1–7)", "gap_label": K}
    return line_chart("trend", "Psychological safety", ROUNDS,
                      [Series("Scale score", SCORES, LOW, HIGH, [False, False, False, False, True, False])],
                      **(options | kw))


def every_chart(prefix: str = "c") -> list[Chart]:
    return [
        trend(notes=[(1, "Reorganisation announced")]) if prefix == "trend" else
        line_chart(f"{prefix}-line", "Trend", ROUNDS, [Series("Score", SCORES, LOW, HIGH)], y_range=(1, 7),
                   notes=[(0, "Kick-off")]),
        bar_chart(f"{prefix}-bars", "Response rate", ROUNDS, [70, 65, None, 80, 75, 60], name="Response rate"),
        share_bars(f"{prefix}-shares", "Items", ["Safe to take a risk", "Hidden item"],
                   [Shares(9, favourable=0.4, disagree=0.1, neutral=0.3, agree=0.6), None], hidden_label=K),
        heatmap(f"{prefix}-heat", "Teams", ["Blue", "Green"], ["Q1", "Q2"], [[5.0, None], [None, 6.1]],
                value_range=(1, 7), hidden_label=K),
        named_bars(f"{prefix}-vitality", "Vitality", ["Energy", "Belonging"], [5.2, None], value_range=(1, 7),
                   hidden_label=K),
    ]


def test_trend_plots_one_point_per_shown_round() -> None:
    root = parse(trend())
    assert len(with_class(root, "point")) == sum(v is not None for v in SCORES)


def test_suppressed_round_breaks_the_line_and_is_labelled_not_zero() -> None:
    chart = trend()
    root = parse(chart)
    assert len(with_class(root, "line")) == 2  # before and after the hidden round
    (gap,) = with_class(root, "gap")
    assert gap.get("data-round") == "2"
    assert title_of(gap) == K and K in texts(gap)
    gap_x = float(gap.find(f"{SVG}line").get("x1"))
    assert all(abs(float(p.get("cx")) - gap_x) > 1 for p in with_class(root, "point"))
    assert chart.table.rows[2][1] == K
    assert "1 of 6 rounds hidden (fewer than 5 answered)" in chart.description


def test_confidence_band_surrounds_each_point() -> None:
    root = parse(trend())
    bands = with_class(root, "band")
    assert len(bands) == 2  # the band breaks at the gap too
    corners: dict[float, list[float]] = {}
    for band in bands:
        for x, y in re.findall(r"([\d.]+) ([\d.]+)", band.get("d")):
            corners.setdefault(float(x), []).append(float(y))
    for point in with_class(root, "point"):
        ys = corners[float(point.get("cx"))]
        assert min(ys) < float(point.get("cy")) < max(ys)


def test_table_holds_the_same_numbers_as_the_points() -> None:
    chart = trend()
    assert chart.table.headers == ("Round", "Scale score", "Scale score 95% interval", "Scale score change")
    assert [row[0] for row in chart.table.rows] == ROUNDS
    assert [row[1] for row in chart.table.rows] == ["4.8", "5.0", K, "5.1", "5.6", "5.5"]
    assert chart.table.rows[0][2] == "4.5–5.1"
    tips = [title_of(p) for p in with_class(parse(chart), "point")]
    shown = [row for row in chart.table.rows if row[1] != K]
    assert tips == [f"Scale score, {r[0]}: {r[1]} (95% interval {r[2]})" + ("; significant rise" if r[3] else "")
                    for r in shown]


def test_points_sit_where_their_values_are() -> None:
    root = parse(trend())
    ys = [float(p.get("cy")) for p in with_class(root, "point")]
    values = [v for v in SCORES if v is not None]
    # Higher values sit higher (smaller y), in proportion.
    scale = (ys[0] - ys[3]) / (values[3] - values[0])
    for y, v in zip(ys, values, strict=True):
        assert ys[0] - y == pytest.approx((v - values[0]) * scale, abs=0.3)


def test_significant_change_is_flagged_on_its_point() -> None:
    chart = trend()
    root = parse(chart)
    (flag,) = with_class(root, "flag")
    assert chart.table.rows[4][3] == "significant rise"
    assert "Significant changes at 31 Mar." in chart.description
    assert "significant change" in texts(root)  # in the legend


def test_notes_are_numbered_markers_with_their_text() -> None:
    chart = trend(notes=[(1, "Reorganisation announced"), (4, "New lead")])
    assert [(n.number, n.label, n.text) for n in chart.notes] == [(1, "10 Mar", "Reorganisation announced"),
                                                                  (2, "31 Mar", "New lead")]
    markers = with_class(parse(chart), "note")
    assert [title_of(m) for m in markers] == ["1. Reorganisation announced", "2. New lead"]
    assert [m.get("data-round") for m in markers] == ["1", "4"]
    assert chart.table.rows[1][-1] == "1. Reorganisation announced"


def test_two_series_keep_their_own_gaps() -> None:
    chart = line_chart("fav", "Favourable", ROUNDS, [Series("Community", [60, 62, None, 65, 70, 71]),
                                                     Series("Team Blue", [55, None, None, 61, 68, 64])],
                       y_range=(0, 100), unit="%", decimals=0, gap_label=K)
    root = parse(chart)
    assert len(with_class(root, "point")) == 5 + 4
    lines = [el for el in with_class(root, "line") if "series-1" in el.get("class")]
    assert len(lines) == 1  # Team Blue's first round stands alone: a point, no line to the next
    assert [title_of(g) for g in with_class(root, "gap")] == [f"Team Blue: {K}", f"Community: {K}; Team Blue: {K}"]
    assert chart.table.rows[1] == ("10 Mar", "62%", K)


def test_crowded_rounds_skip_labels_but_keep_the_latest() -> None:
    rounds = [f"Round {i}" for i in range(1, 157)]
    chart = line_chart("weekly", "Three years", rounds, [Series("Score", [4 + (i % 7) / 3 for i in range(156)])],
                       y_range=(1, 7))
    root = parse(chart)
    labels = with_class(root, "x-label")
    assert 3 <= len(labels) < 20
    assert labels[0].text == "Round 156"  # drawn newest first
    xs = sorted(float(el.get("x")) for el in labels)
    assert all(b - a >= len("Round 156") * 11 * 0.62 for a, b in zip(xs, xs[1:]))
    assert len(with_class(root, "point")) == 156


def test_response_rate_bars_one_per_shown_round_with_labelled_gap() -> None:
    chart = bar_chart("rate", "Response rate", ROUNDS, [70, 65, None, 80, 75, 60], name="Response rate",
                      gap_label=K)
    root = parse(chart)
    bars = with_class(root, "bar")
    assert [title_of(b) for b in bars] == ["3 Mar: 70%", "10 Mar: 65%", "24 Mar: 80%", "31 Mar: 75%", "7 Apr: 60%"]
    assert title_of(with_class(root, "gap")[0]) == K
    assert chart.table.rows[2] == ("17 Mar", K)
    heights = [float(b.get("height")) for b in bars]
    assert heights[2] > heights[0] > heights[4]


def test_item_shares_add_up_and_hidden_item_is_a_labelled_row() -> None:
    chart = share_bars("items", "Items", ["Safe to take a risk", "Mistakes held against me", "Seldom asked"],
                       [Shares(9, favourable=0.2, disagree=1 / 3, neutral=1 / 3, agree=1 / 3),
                        Shares(9, favourable=0.2, disagree=0.2, neutral=0.3, agree=0.5), None], hidden_label=K)
    root = parse(chart)
    assert len(with_class(root, "share")) == 2
    (hidden,) = with_class(root, "hidden-row")
    assert title_of(hidden) == K and K in texts(hidden)
    assert hidden.find(f"{SVG}rect").get("fill") == "url(#items-hatch)"
    assert chart.table.headers == ("Item", "Disagree", "Neutral", "Agree")  # in the scale's order
    assert chart.table.rows == (("Safe to take a risk", "33%", "33%", "33%"),
                                ("Mistakes held against me", "20%", "30%", "50%"),
                                ("Seldom asked", K, K, K))
    widths = [float(s.get("width")) for s in with_class(root, "segment")]
    assert sum(widths[:3]) == pytest.approx(charts.WIDTH, abs=0.5)
    assert "1 item hidden" in chart.description


def test_share_labels_round_each_share_as_the_results_table_does() -> None:
    """Ten of twelve agreeing is 83%, in the chart as in the table beside it and the exports (made to
    add up to 100, the labels had printed 84%)."""
    chart = share_bars("s4", "Items", ["Try something new"],
                       [Shares(12, favourable=2 / 12, disagree=1 / 12, neutral=1 / 12, agree=10 / 12)], hidden_label=K)
    assert chart.table.rows == (("Try something new", "8%", "8%", "83%"),)
    assert "Try something new: Agree 83%" in [title_of(s) for s in with_class(parse(chart), "segment")]


def test_heatmap_hatches_and_labels_hidden_cells_and_prints_values() -> None:
    values = [[5.1, None, 6.3], [None, None, 2.0], [4.5, 5.5, None]]
    chart = heatmap("teams", "Teams × items", ["Blue", "Green", "Red"], ["Q1", "Q2", "Q3"], values,
                    value_range=(1, 7), hidden_label=K)
    root = parse(chart)
    cells = with_class(root, "cell")
    hidden = with_class(root, "hidden")
    assert len(cells) == 9 and len(hidden) == 4
    assert all(h.find(f"{SVG}rect").get("fill") == "url(#teams-hatch)" and title_of(h).endswith(K) for h in hidden)
    printed = [t for c in cells if c not in hidden for t in texts(c)]
    assert printed == ["5.1", "6.3", "2.0", "4.5", "5.5"]
    assert K in texts(root)  # the legend says what hatching means
    assert chart.table.headers == ("", "Q1", "Q2", "Q3")
    assert chart.table.rows[1] == ("Green", K, K, "2.0")
    assert "Highest 6.3 (Blue, Q3); lowest 2.0 (Green, Q3)." in chart.description


@pytest.mark.parametrize("value", [x / 4 for x in range(4, 29)])
def test_heatmap_numbers_meet_wcag_aa_on_their_cell(value: float) -> None:
    chart = heatmap("h", "T", ["A"], ["Q"], [[value]], value_range=(1, 7))
    (cell,) = with_class(parse(chart), "cell")
    fill, ink = cell.find(f"{SVG}rect").get("fill"), cell.find(f"{SVG}text").get("fill")
    assert charts.contrast(fill, ink) >= 4.5


def test_palette_meets_contrast() -> None:
    for colour in (charts.BLUE, charts.VERMILLION, charts.GREEN):  # lines and bars: 3:1 for graphics
        assert charts.contrast(colour, "#ffffff") >= 3
    for colour in (charts.INK, charts.MUTED):  # text on white
        assert charts.contrast(colour, "#ffffff") >= 4.5
    assert charts.contrast("#ffffff", charts.BLUE) >= 4.5  # percentages printed on favourable
    assert charts.contrast("#000000", charts.VERMILLION) >= 4.5
    assert charts.contrast("#000000", charts.NEUTRAL) >= 4.5


def test_named_values_one_bar_each_and_hidden_is_labelled() -> None:
    chart = named_bars("vitality", "Vitality", ["Energy", "Belonging", "Learning"], [5.2, None, 3.9],
                       value_range=(1, 7), hidden_label=K)
    root = parse(chart)
    assert [title_of(b) for b in with_class(root, "bar")] == ["Energy: 5.2", "Learning: 3.9"]
    assert title_of(with_class(root, "hidden-row")[0]) == K
    assert chart.table.rows == (("Energy", "5.2"), ("Belonging", K), ("Learning", "3.9"))
    assert "Highest: Energy (5.2); lowest: Learning (3.9)." in chart.description


def test_hostile_text_is_escaped_everywhere() -> None:
    made = [
        line_chart("a", HOSTILE, [HOSTILE, "r2"], [Series(HOSTILE, [1.0, None])], y_range=(0, 2), y_label=HOSTILE,
                   notes=[(0, HOSTILE)], gap_label=HOSTILE),
        bar_chart("b", HOSTILE, [HOSTILE], [None], name=HOSTILE, gap_label=HOSTILE),
        share_bars("c", HOSTILE, [HOSTILE, HOSTILE], [Shares(5, favourable=1, disagree=0, neutral=0, agree=1), None],
                   hidden_label=HOSTILE),
        heatmap("d", HOSTILE, [HOSTILE], [HOSTILE], [[None]], value_range=(1, 7), hidden_label=HOSTILE),
        named_bars("e", HOSTILE, [HOSTILE], [None], value_range=(1, 7), hidden_label=HOSTILE),
    ]
    for chart in made:
        svg = str(chart.svg)
        assert "<script" not in svg
        root = ET.fromstring(svg)  # still well-formed
        assert not [el for el in root.iter() if el.tag.endswith("script")]
        assert title_of(root) == HOSTILE  # shown as text, not run
        assert any(HOSTILE in "".join(el.itertext()) for el in root.iter() if el is not root)


def test_characters_xml_cannot_carry_are_dropped() -> None:
    chart = named_bars("x", "Team\x0bname\x00", ["Blue\x1b"], [4.0], value_range=(1, 7))
    assert title_of(parse(chart)) == "Teamname"


def test_every_chart_is_an_accessible_well_formed_svg_with_a_table() -> None:
    for chart in every_chart():
        root = parse(chart)
        assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.get("width") == "100%"
        assert root.get("aria-labelledby") == f"{chart.id}-title {chart.id}-desc"
        assert root.find(f"{SVG}title").text == chart.title
        assert root.find(f"{SVG}desc").text == chart.description and chart.description
        assert re.fullmatch(r"0 0 [\d.]+ [\d.]+", root.get("viewBox"))
        assert chart.table.rows and all(len(row) == len(chart.table.headers) for row in chart.table.rows)
        # SMALL units: 12 px or more on a 390 px phone (tests/e2e/test_accessibility.py measures it drawn)
        assert min(float(el.get("font-size")) for el in root.iter(f"{SVG}text")) >= charts.svg.SMALL


def test_ids_are_prefixed_and_references_stay_inside_the_chart() -> None:
    for chart in every_chart("page2"):
        root = parse(chart)
        ids = {el.get("id") for el in root.iter() if el.get("id")}
        assert ids and all(i.startswith(f"{chart.id}-") for i in ids)
        refs = {ref for el in root.iter() for value in el.attrib.values() for ref in re.findall(r"url\(#([^)]+)\)", value)}
        refs |= set(root.get("aria-labelledby").split())
        assert refs <= ids


def test_two_charts_on_one_page_share_no_id() -> None:
    first, second = every_chart("one"), every_chart("two")
    page = "<div xmlns='http://www.w3.org/2000/svg'>" + "".join(str(c.svg) for c in first + second) + "</div>"
    ids = [el.get("id") for el in ET.fromstring(page).iter() if el.get("id")]
    assert len(ids) == len(set(ids))


def test_nothing_is_loaded_from_elsewhere_and_nothing_runs() -> None:
    for chart in every_chart():
        svg = str(chart.svg)
        assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"<script|\son\w+=|href=|<foreignObject|<image", svg)


def test_output_is_deterministic() -> None:
    assert [c.svg for c in every_chart()] == [c.svg for c in every_chart()]


def test_numbers_follow_the_reader_language() -> None:
    def in_spanish() -> Chart:
        set_language("es")
        return trend()

    chart = contextvars.copy_context().run(in_spanish)
    assert chart.table.rows[0][1] == "4,8"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: line_chart("x", "T", ROUNDS, [Series("S", [1.0])], y_range=(1, 7)), "one value per label"),
        (lambda: line_chart("1x", "T", ["a"], [Series("S", [1.0])], y_range=(1, 7)), "must start with a letter"),
        (lambda: line_chart("x y", "T", ["a"], [Series("S", [1.0])], y_range=(1, 7)), "must start with a letter"),
        (lambda: line_chart("x", "T", ["a"], [Series("S", [1.0])] * 3, y_range=(1, 7)), "their own chart"),
        (lambda: line_chart("x", "T", ["a"], [Series("S", [1.0])], y_range=(7, 1)), "from low to high"),
        (lambda: line_chart("x", "T", ["a"], [Series("S", [1.0])], y_range=(1, 7), notes=[(3, "n")]), "pinned"),
        (lambda: bar_chart("x", "T", [], [], name="N"), "at least one label"),
        (lambda: heatmap("x", "T", ["A"], ["Q1", "Q2"], [[1.0]], value_range=(1, 7)), "one per column"),
    ],
)
def test_bad_input_says_what_to_fix(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_a_round_with_every_value_hidden_still_draws() -> None:
    chart = line_chart("none", "T", ["a", "b"], [Series("S", [None, None])], y_range=(1, 7), gap_label=K)
    root = parse(chart)
    assert not with_class(root, "point") and len(with_class(root, "gap")) == 2
    assert "no round can be shown" in chart.description


def test_every_value_range_gets_a_few_ticks() -> None:
    """Any range a page may ask for (e.g. 0 to 1.1 × the most members, 69) gets 2–7 ticks."""
    from safespace.insights.charts.svg import _ticks

    for hi in [0.5, 1, 4.4, 7, 9.9, 41.8, 69, 75.9, 100, 137.5, 999, 5500, 55000]:
        ticks = _ticks(0, hi)
        assert 2 <= len(ticks) <= 7, (hi, ticks)
        assert ticks[0] >= 0 and ticks[-1] <= hi


# --- a meeting check-in kept in the trend (checkin/trend.py) -------------------------------------


def meeting_trend() -> Chart:
    """Rounds at 5.0 and 4.0 with a meeting check-in at 2.0 between them; the second round's fall is flagged."""
    return line_chart("meet", "Psychological safety", ["3 Mar", "5 Mar", "10 Mar"],
                      [Series("Scale score", [5.0, 2.0, 4.0], [4.8, None, 3.8], [5.2, None, 4.2], [False, False, True])],
                      y_range=(1, 7), decimals=2, gap_label=K, meetings=[False, True, False])


def test_a_meeting_check_in_is_a_diamond_off_the_line_between_the_rounds() -> None:
    chart = meeting_trend()
    root = parse(chart)
    (line,) = with_class(root, "line")  # one line, from the first round to the second, past the check-in
    assert line.get("d").count("L") == 1
    (diamond,) = with_class(root, "meeting")
    assert diamond.tag == f"{SVG}path" and diamond.get("fill") == "#ffffff"
    assert title_of(diamond) == "Scale score, Meeting check-in, 5 Mar: 2.00"
    assert len(with_class(root, "point")) == 3 and "meeting check-in" in texts(root)
    assert [row[0] for row in chart.table.rows] == ["3 Mar", "Meeting check-in, 5 Mar", "10 Mar"]
    assert chart.table.rows[1][1:] == ("2.00", "", "")  # no interval, no change


def test_a_change_is_measured_between_rounds_never_from_a_meeting_check_in() -> None:
    chart = meeting_trend()
    # 4.0 after a 5.0 round is a fall, though the check-in between was 2.0.
    assert chart.table.rows[2][-1] == "significant fall"
    assert "Scale score over 2 rounds: from 5.00 (3 Mar) to 4.00 (10 Mar)" in chart.description
    assert "Meeting check-in, 5 Mar, marked apart from the rounds: Scale score: 2.00." in chart.description
    with pytest.raises(ValueError, match="between rounds"):
        line_chart("bad", "T", ["a", "b"], [Series("S", [1.0, 2.0], significant=[False, True])], y_range=(1, 7),
                   meetings=[False, True])


def test_a_hidden_meeting_check_in_is_a_labelled_gap_and_rate_bars_leave_its_place_empty() -> None:
    chart = line_chart("meet", "T", ["3 Mar", "5 Mar"], [Series("Scale score", [5.0, None])], y_range=(1, 7),
                       gap_label=K, meetings=[False, True])
    (gap,) = with_class(parse(chart), "gap")
    assert title_of(gap) == f"Meeting check-in, 5 Mar: {K}" and chart.table.rows[1][1] == K
    assert "rounds hidden" not in chart.description
    bars = bar_chart("rate", "Response rate", ["3 Mar", "5 Mar"], [70, None], name="Response rate", blank=[False, True])
    root = parse(bars)
    assert not with_class(root, "gap") and len(with_class(root, "bar")) == 1
    assert bars.table.rows == (("3 Mar", "70%"),)
