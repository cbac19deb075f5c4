"""Charts drawn on the server as SVG: trends, bars over rounds, item shares, heatmaps, named values.

Each function returns a Chart: the SVG (role="img" with <title> and <desc>), a table of the same
numbers for screen readers and for people who prefer numbers, and numbered notes. Nothing here
decides what may be shown: values arrive through surveys/disclosure.py, and None means hidden,
drawn as a labelled gap or hatched cell, never as zero. Output is a pure function of the input.

svg.py: what every chart is made of; over_rounds.py: lines and bars over rounds; bars.py: shares
and named bars; heatmap.py: teams by rounds.
"""

from safespace.insights.charts.bars import named_bars, share_bars
from safespace.insights.charts.heatmap import heatmap
from safespace.insights.charts.over_rounds import bar_chart, line_chart
from safespace.insights.charts.svg import (
    BLUE,
    GREEN,
    INK,
    MUTED,
    NEUTRAL,
    VERMILLION,
    WIDTH,
    Chart,
    Note,
    Series,
    Table,
    contrast,
    suppressed_label,
)

__all__ = [
    "BLUE", "GREEN", "INK", "MUTED", "NEUTRAL", "VERMILLION", "WIDTH",
    "Chart", "Note", "Series", "Table",
    "bar_chart", "contrast", "heatmap", "line_chart", "named_bars", "share_bars", "suppressed_label",
]  # fmt: skip
