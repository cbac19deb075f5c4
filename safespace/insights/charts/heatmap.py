"""A heatmap of teams by rounds (or items), each hidden cell hatched and labelled with its reason."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from safespace.i18n import gettext as _
from safespace.i18n import ngettext
from safespace.insights.charts.svg import (
    AXIS,
    BLUE,
    FONT_SIZE,
    SMALL,
    VERMILLION,
    WIDTH,
    Chart,
    Table,
    _check,
    _el,
    _fit,
    _halo,
    _hatch,
    _legend,
    _mix,
    _n,
    _number,
    _svg,
    _t,
    _text,
    _text_on,
    _text_width,
    _ticks,
)

CELL_H = 28


def heatmap(chart_id: str, title: str, rows: Sequence[str], columns: Sequence[str],
            values: Sequence[Sequence[float | None]], *, value_range: tuple[float, float],
            midpoint: float | None = None, unit: str = "", decimals: int = 1,
            hidden_label: str | None = None, description: str | None = None,
            reasons: Sequence[Sequence[str | None]] | None = None) -> Chart:
    """Rows (teams) × columns (items), each cell coloured and printed; None is a hatched cell,
    labelled with its own reason from `reasons` (same shape as `values`) or else `hidden_label`.

    Colours run vermillion (low) through white (midpoint, default the middle) to blue (high), so
    the reading survives colour blindness and the printed number carries the value anyway.
    """
    _check(chart_id, rows, values)
    _check(chart_id, columns)
    for label, row in zip(rows, values, strict=True):
        if len(row) != len(columns):
            raise ValueError(f"row {label!r} has {len(row)} values for {len(columns)} columns; give one per column")
    hidden_label = hidden_label or _("hidden: too few answered")
    # A hidden cell's words: its own reason when given ("hidden: fewer than 5 people"), else hidden_label.
    why = lambda i, j: _("hidden: %(why)s", why=reasons[i][j]) if reasons and reasons[i][j] else hidden_label  # noqa: E731
    fmt = lambda v: _number(v, decimals, unit)  # noqa: E731
    lo, hi = value_range
    _ticks(lo, hi)  # checks the range
    fill = _colours(lo, hi, (lo + hi) / 2 if midpoint is None else midpoint)
    label_w = min(max(_text_width(r) for r in rows) + 8, 96)
    # Wide enough for a value or the word a hidden cell carries; wider than WIDTH, the chart grows.
    cell_w = max((WIDTH - label_w) / len(columns), _text_width(_("hidden"), SMALL) + 4, 37)
    width = label_w + cell_w * len(columns)
    head, parts = _column_heads(columns, label_w, cell_w)
    for i, (label, row) in enumerate(zip(rows, values, strict=True)):
        y = head + i * CELL_H
        parts.append(_el("text", {"x": label_w - 6, "y": y + 18, "font-size": FONT_SIZE, "text-anchor": "end"},
                         _t(_fit(label, label_w - 6)), title=label))
        for j, v in enumerate(row):
            x = label_w + j * cell_w
            tip = f"{label}, {columns[j]}: {why(i, j) if v is None else fmt(v)}"
            parts.append(_cell(chart_id, x, y, cell_w, tip, None if v is None else (fmt(v), fill(v))))
    steps = [lo + (hi - lo) * s / 4 for s in range(5)]
    swatches = [(f'<rect width="14" height="10" fill="{fill(s)}" stroke="{AXIS}" stroke-width=".5"/>', fmt(s))
                for s in steps]
    hidden_kinds = sorted({why(i, j) for i, row in enumerate(values) for j, v in enumerate(row) if v is None}) or [hidden_label]
    for kind in hidden_kinds:
        swatches.append((f'<rect width="14" height="10" fill="url(#{chart_id}-hatch)" stroke="{AXIS}"/>', kind))
    legend, y = _legend(swatches, head + len(rows) * CELL_H + 12, width)
    parts += legend
    table_rows = tuple((label, *(why(i, j) if v is None else fmt(v) for j, v in enumerate(row)))
                       for i, (label, row) in enumerate(zip(rows, values, strict=True)))
    if description is None:
        description = _describe(rows, columns, values, fmt, hidden_kinds)
    svg = _svg(chart_id, y + 4, title, description, parts, width=width, defs=_hatch(chart_id))
    return Chart(chart_id, title, description, svg, Table(title, ("", *columns), table_rows))


def _colours(lo: float, hi: float, mid: float) -> Callable[[float], str]:
    """A value's fill: vermillion below `mid`, blue above, white at it."""
    low_end, high_end = _mix(VERMILLION, "#ffffff", 0.1), _mix(BLUE, "#000000", 0.15)

    def fill(v: float) -> str:
        v = min(max(v, lo), hi)
        if v >= mid:
            return _mix("#f7f7f7", high_end, (v - mid) / (hi - mid) if hi > mid else 1.0)
        return _mix("#f7f7f7", low_end, (mid - v) / (mid - lo) if mid > lo else 1.0)

    return fill


def _column_heads(columns: Sequence[str], label_w: float, cell_w: float) -> tuple[float, list[str]]:
    """The column labels (written bottom to top when one is wider than a cell) and their height."""
    upright = max(_text_width(c, SMALL) for c in columns) > cell_w - 4
    head = (min(max(_text_width(c, SMALL) for c in columns), 110) + 12) if upright else 22.0
    parts: list[str] = []
    for j, column in enumerate(columns):
        x = label_w + cell_w * (j + 0.5)
        if upright:
            attrs = {"x": x + 4, "y": head - 6, "transform": f"rotate(-90 {_n(x + 4)} {_n(head - 6)})"}
        else:
            attrs = {"x": x, "y": head - 8, "text-anchor": "middle"}
        parts.append(_el("text", {**attrs, "font-size": SMALL, "class": "column-label"},
                         _t(_fit(column, 110, SMALL)), title=column))
    return head, parts


def _cell(chart_id: str, x: float, y: float, cell_w: float, tip: str, shown: tuple[str, str] | None) -> str:
    """One cell: its value printed on its colour, or hatched and marked "hidden" (`shown` None)."""
    box = {"x": x, "y": float(y), "width": cell_w, "height": float(CELL_H), "stroke": "#ffffff"}
    if shown is None:
        return (f'<g class="cell hidden"><title>{_t(tip)}</title>'
                + _el("rect", {**box, "fill": f"url(#{chart_id}-hatch)"})
                + _halo(x + cell_w / 2, y + 18, _("hidden"), SMALL, **{"text-anchor": "middle"}) + "</g>")
    text, colour = shown
    return (f'<g class="cell"><title>{_t(tip)}</title>' + _el("rect", {**box, "fill": colour})
            + _text(x + cell_w / 2, y + 18, text, SMALL, **{"text-anchor": "middle", "fill": _text_on(colour)}) + "</g>")


def _describe(rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float | None]],
              fmt: Callable[[float], str], hidden_kinds: list[str]) -> str:
    """The chart in words: its size, its highest and lowest shown cells, and how many are hidden."""
    shown = [(v, r, columns[j]) for r, row in zip(rows, values, strict=True) for j, v in enumerate(row) if v is not None]
    description = _("%(rows)s rows by %(columns)s columns.", rows=len(rows), columns=len(columns))
    if shown:
        (hv, hr, hc), (lv, lr, lc) = max(shown, key=lambda s: s[0]), min(shown, key=lambda s: s[0])
        description += " " + _("Highest %(hv)s (%(hr)s, %(hc)s); lowest %(lv)s (%(lr)s, %(lc)s).",
                               hv=fmt(hv), hr=hr, hc=hc, lv=fmt(lv), lr=lr, lc=lc)
    hidden = len(rows) * len(columns) - len(shown)
    if hidden:
        description += " " + ngettext("%(num)s cell hidden (%(why)s).", "%(num)s cells hidden (%(why)s).", hidden,
                                        why="; ".join(hidden_kinds))
    return description
