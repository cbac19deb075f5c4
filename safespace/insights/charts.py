"""Charts drawn on the server as SVG: trends, bars over rounds, item shares, heatmaps, named values.

Each function returns a Chart: the SVG (role="img" with <title> and <desc>), a table of the same
numbers for screen readers and for people who prefer numbers, and numbered notes. Nothing here
decides what may be shown: values arrive through surveys/disclosure.py, and None means hidden,
drawn as a labelled gap or hatched cell, never as zero. Output is a pure function of the input.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from babel import Locale
from babel.numbers import NumberPattern, parse_pattern
from markupsafe import Markup, escape

from safespace.i18n import current_language, ngettext
from safespace.i18n import gettext as _

# Okabe–Ito colours with at least 3:1 against white (WCAG 1.4.11); text stays ink, black or white.
BLUE, VERMILLION, GREEN = "#0072B2", "#D55E00", "#009E73"
INK, MUTED, GRID, AXIS, NEUTRAL, WASH = "#1f2933", "#52606d", "#d9e2ec", "#9aa5b1", "#c8d1da", "#f4f7f6"
SERIES_COLOURS = (BLUE, VERMILLION)
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif"
# 360 user units across: at a 390 px phone (about 326 px of card) 12-unit text is still 11 px.
WIDTH, FONT_SIZE, SMALL = 360, 12, 11
LEFT, RIGHT = 40, 12  # fixed, so a trend and the response-rate bars beneath it line up
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,40}$")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class ShareLike(Protocol):
    """surveys.stats.Shares or anything with the three fractions (0–1)."""

    favourable: float
    neutral: float
    unfavourable: float


@dataclass(frozen=True, slots=True)
class Table:
    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]  # already formatted; the first cell names the row


@dataclass(frozen=True, slots=True)
class Note:
    number: int
    label: str  # the round it is pinned to
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    id: str
    title: str
    description: str
    svg: Markup
    table: Table
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True, slots=True)
class Series:
    """One line over rounds; None is a hidden round. low/high: the 95% interval, drawn as a band."""

    name: str
    values: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None
    significant: Sequence[bool] | None = None  # change from the previous shown round beyond its CI


def suppressed_label(k: int) -> str:
    """The words a gap or hatched cell carries."""
    return _("fewer than %(k)s answered", k=k)


# ---------------------------------------------------------------- text, numbers, colour


def _t(text: object) -> str:
    """Escaped for SVG text and attributes; characters XML cannot carry are dropped."""
    return str(escape(_NOT_XML.sub("", str(text))))


def _n(x: float) -> str:
    s = f"{x:.1f}"
    return "0" if s in ("0.0", "-0.0") else s.removesuffix(".0")


@functools.lru_cache(maxsize=32)
def _decimal_format(language: str, decimals: int) -> tuple[NumberPattern, Locale]:
    """Babel parses a pattern and loads a locale on every call; a chart formats hundreds of numbers."""
    return parse_pattern("#,##0" + ("." + "0" * decimals if decimals else "")), Locale.parse(language)


def _number(value: float, decimals: int, unit: str = "") -> str:
    pattern, locale = _decimal_format(current_language(), decimals)
    return pattern.apply(value, locale) + unit


def _text_width(text: str, size: float = FONT_SIZE) -> float:
    return len(text) * size * 0.62  # a generous average: wide fonts must not overlap either


def _fit(text: str, width: float, size: float = FONT_SIZE) -> str:
    chars = max(int(width / (size * 0.62)), 2)
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def _wrap(text: str, width: float, lines: int = 2, size: float = FONT_SIZE) -> list[str]:
    chars, out, words = max(int(width / (size * 0.62)), 4), [""], text.split()
    for word in words:
        candidate = f"{out[-1]} {word}".strip()
        if len(candidate) <= chars or not out[-1]:
            out[-1] = candidate
        else:
            out.append(word)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = _fit(out[-1] + " …", width, size) if len(out[-1]) + 2 > chars else out[-1] + " …"
    return [_fit(line, width, size) for line in out] or [""]


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _mix(a: str, b: str, t: float) -> str:
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(_rgb(a), _rgb(b), strict=True))


@functools.lru_cache(maxsize=256)
def _text_on(fill: str) -> str:
    """Black or white, whichever reads better; one of them always reaches 4.5:1."""
    return "#000000" if contrast(fill, "#000000") >= contrast(fill, "#ffffff") else "#ffffff"


# ---------------------------------------------------------------- SVG pieces


def _el(tag: str, attrs: dict[str, object], content: str | None = None, title: str | None = None) -> str:
    a = "".join(f' {k}="{_t(_n(v) if isinstance(v, float) else v)}"' for k, v in attrs.items() if v is not None)
    inner = (f"<title>{_t(title)}</title>" if title else "") + (content or "")
    return f"<{tag}{a}>{inner}</{tag}>" if inner else f"<{tag}{a}/>"


def _text(x: float, y: float, text: str, size: float = FONT_SIZE, **attrs: object) -> str:
    return _el("text", {"x": float(x), "y": float(y), "font-size": size, **attrs}, _t(text))


def _halo(x: float, y: float, text: str, size: float = SMALL, **attrs: object) -> str:
    """Text with a white outline so lines and hatching beneath it do not eat its contrast."""
    return _text(x, y, text, size, stroke="#ffffff", **{"stroke-width": 3, "paint-order": "stroke"}, **attrs)


def _hatch(chart_id: str) -> str:
    return (
        f'<pattern id="{chart_id}-hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{WASH}"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{AXIS}" stroke-width="2"/></pattern>'
    )


def _size_class(width: float) -> int:
    """Width in steps of 45 units (4rem on screen): CSS keeps every chart's text near one size."""
    return min(max(math.ceil(width / 45 - 1e-9), 8), 16)


def _svg(chart_id: str, height: float, title: str, desc: str, body: list[str], width: float = WIDTH,
         defs: str = "") -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg chart-w{_size_class(width)}" '
        f'id="{chart_id}-svg" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" viewBox="0 0 {_n(width)} {_n(height)}" '
        f'width="100%" preserveAspectRatio="xMidYMin meet" font-family="{FONT}" fill="{INK}">'
        f'<title id="{chart_id}-title">{_t(title)}</title><desc id="{chart_id}-desc">{_t(desc)}</desc>'
    )
    return Markup(head + (f"<defs>{defs}</defs>" if defs else "") + "".join(body) + "</svg>")


def _legend(items: list[tuple[str, str]], y: float, width: float = WIDTH) -> tuple[list[str], float]:
    """items: (swatch svg drawn at 0,0 within 14×10, label); flows and wraps; returns parts, height."""
    parts, x = [], 0.0
    for swatch, label in items:
        w = 18 + _text_width(label, SMALL) + 12
        if x and x + w > width:
            x, y = 0.0, y + 16
        parts.append(f'<g class="legend-item" transform="translate({_n(x)} {_n(y)})">{swatch}'
                     + _text(18, 9, label, SMALL) + "</g>")
        x += w
    return parts, (y + 16 if items else y)


def _check(chart_id: str, labels: Sequence[str], *columns: Sequence[object] | None) -> None:
    if not _ID.match(chart_id):
        raise ValueError(f"chart id {chart_id!r} must start with a letter and hold only letters, digits, - or _")
    if not labels:
        raise ValueError("a chart needs at least one label; show a 'no results yet' message instead")
    for column in columns:
        if column is not None and len(column) != len(labels):
            raise ValueError(f"got {len(column)} values for {len(labels)} labels; "
                             "give one value per label (None if hidden)")


@dataclass(frozen=True, slots=True)
class _Axis:
    """Rounds across (one band each), a value range up; values outside are drawn at the edge."""

    top: float
    bottom: float
    n: int
    lo: float
    hi: float

    @property
    def band(self) -> float:
        return (WIDTH - LEFT - RIGHT) / self.n

    def x(self, i: int) -> float:
        return LEFT + (i + 0.5) * self.band

    def y(self, v: float) -> float:
        v = min(max(v, self.lo), self.hi)
        return self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)


def _ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    if not hi > lo:
        raise ValueError(f"the value range must run from low to high, got {lo}–{hi}")
    span = hi - lo
    magnitude = 10 ** math.floor(math.log10(span / most))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10, 20, 25, 50) if span / (m * magnitude) <= most - 1)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _frame(axis: _Axis, rounds: Sequence[str], unit: str) -> list[str]:
    ticks = _ticks(axis.lo, axis.hi)
    decimals = 0 if all(t == int(t) for t in ticks) else 1
    parts = []
    for t in ticks:
        y = axis.y(t)
        parts.append(_el("line", {"x1": LEFT, "x2": WIDTH - RIGHT, "y1": y, "y2": y, "stroke": GRID}))
        parts.append(_text(LEFT - 5, y + 4, _number(t, decimals, unit), SMALL, **{"text-anchor": "end"}, fill=MUTED))
    parts.append(_el("line", {"x1": LEFT, "x2": WIDTH - RIGHT, "y1": axis.bottom, "y2": axis.bottom, "stroke": AXIS}))
    # Label every step-th round counting back from the latest, so the newest round always has one;
    # a label pushed inwards at the edge drops its neighbour rather than overlap it.
    widest = max(_text_width(r, SMALL) for r in rounds) + 10
    step, kept = max(1, math.ceil(widest / axis.band)), math.inf
    for i in range(len(rounds) - 1, -1, -step):
        half = _text_width(rounds[i], SMALL) / 2
        x = min(max(axis.x(i), half), WIDTH - half)
        if kept - x < widest:
            continue
        kept = x
        parts.append(_el("line", {"x1": axis.x(i), "x2": axis.x(i), "y1": axis.bottom, "y2": axis.bottom + 4,
                                  "stroke": AXIS}))
        parts.append(_text(x, axis.bottom + 17, rounds[i], SMALL, **{"text-anchor": "middle", "class": "x-label"}))
    return parts


def _gaps(axis: _Axis, hidden: list[tuple[int, str]]) -> list[str]:
    """A dashed line at each hidden round, carrying the label (written upright when there is room)."""
    parts, last_text = [], -math.inf
    for i, why in hidden:
        x = axis.x(i)
        inner = _el("line", {"x1": x, "x2": x, "y1": axis.top, "y2": axis.bottom, "stroke": MUTED,
                             "stroke-dasharray": "3 3"})
        if x - last_text >= SMALL + 4:
            last_text, middle = x, (axis.top + axis.bottom) / 2
            text = _fit(why, axis.bottom - axis.top - 6, SMALL)  # beside the line, reading upwards
            inner += _halo(x - 3, middle, text, **{"text-anchor": "middle", "fill": MUTED,
                                                   "transform": f"rotate(-90 {_n(x - 3)} {_n(middle)})"})
        parts.append(f'<g class="gap" data-round="{i}"><title>{_t(why)}</title>{inner}</g>')
    return parts


def _spread(values: Sequence[float | None], rounds: Sequence[str], decimals: int, unit: str) -> str:
    shown = [(v, r) for v, r in zip(values, rounds, strict=True) if v is not None]
    if not shown:
        return _("no round can be shown")
    (first, r0), (last, r1) = shown[0], shown[-1]
    high, low = max(shown, key=lambda p: p[0]), min(shown, key=lambda p: p[0])
    change = round(last - first, decimals)
    trend = (_("unchanged") if change == 0 or len(shown) == 1 else
             _("up %(by)s", by=_number(abs(change), decimals, unit)) if change > 0 else
             _("down %(by)s", by=_number(abs(change), decimals, unit)))
    return _("from %(first)s (%(r0)s) to %(last)s (%(r1)s), %(trend)s; "
             "highest %(high)s (%(rh)s), lowest %(low)s (%(rl)s)",
             first=_number(first, decimals, unit), r0=r0, last=_number(last, decimals, unit), r1=r1, trend=trend,
             high=_number(high[0], decimals, unit), rh=high[1], low=_number(low[0], decimals, unit), rl=low[1])


# ---------------------------------------------------------------- charts over rounds


def line_chart(chart_id: str, title: str, rounds: Sequence[str], series: Sequence[Series], *,
               y_range: tuple[float, float], y_label: str = "", unit: str = "", decimals: int = 1,
               notes: Sequence[tuple[int, str]] = (), gap_label: str | None = None,
               description: str | None = None) -> Chart:
    """One or two series over rounds on one value range; bands, gaps, change flags and notes.

    notes: (round index, text) pairs; each becomes a numbered marker and a Note on the Chart.
    Two quantities on different ranges (score 1–7, favourable %) read better as two charts.
    """
    rounds = [str(r) for r in rounds]
    if not 1 <= len(series) <= 2:
        raise ValueError(f"a line chart draws one or two series, got {len(series)}; give the others their own chart")
    for s in series:
        _check(chart_id, rounds, s.values, s.low, s.high, s.significant)
    for index, _note in notes:
        if not 0 <= index < len(rounds):
            raise ValueError(f"a note is pinned to round {index}, but the chart has rounds 0–{len(rounds) - 1}")
    gap_label = gap_label or _("hidden: too few answered")
    pinned = tuple(Note(n, rounds[i], text) for n, (i, text) in enumerate(notes, start=1))
    at = [i for i, _note in notes]

    legend_items = []
    for k, s in enumerate(series):
        dash = "" if k == 0 else ' stroke-dasharray="5 3"'
        legend_items.append((f'<line x1="0" y1="5" x2="14" y2="5" stroke="{SERIES_COLOURS[k]}" '
                             f'stroke-width="2.5"{dash}/>', s.name))
        if _has_band(s):
            legend_items.append((f'<rect width="14" height="10" fill="{SERIES_COLOURS[k]}" fill-opacity=".2"/>',
                                 _("%(name)s: %(level)s%% interval", name=s.name, level=95) if len(series) > 1
                                 else _("%(level)s%% interval", level=95)))
    if any(any(s.significant or ()) for s in series):
        legend_items.append((f'<path d="M7 0 L13 10 L1 10 Z" fill="{INK}"/>', _("significant change")))
    parts, y = ([_text(0, 12, y_label, FONT_SIZE, **{"font-weight": 600})], 20.0) if y_label else ([], 0.0)
    legend, y = _legend(legend_items, y)
    parts += legend
    top = y + (26 if pinned else 12)  # room for the note markers above the plot
    axis = _Axis(top=top, bottom=top + 170, n=len(rounds), lo=y_range[0], hi=y_range[1])
    parts += _frame(axis, rounds, unit)
    hidden = [(i, gap_label if len(series) == 1 else
               "; ".join(f"{s.name}: {gap_label}" for s in series if s.values[i] is None))
              for i in range(len(rounds)) if any(s.values[i] is None for s in series)]
    parts += _gaps(axis, hidden)
    for k, s in enumerate(series):
        parts += _series_marks(axis, k, s, rounds, decimals, unit)
    for note, i in zip(pinned, at, strict=True):
        x, y = axis.x(i), axis.top - 14
        parts.append(f'<g class="note" data-round="{i}"><title>{_t(f"{note.number}. {note.text}")}</title>'
                     + _el("line", {"x1": x, "x2": x, "y1": y + 8, "y2": axis.bottom, "stroke": INK,
                                    "stroke-dasharray": "1 3"})
                     + _el("circle", {"cx": x, "cy": y, "r": 8.0, "fill": "#ffffff", "stroke": INK})
                     + _text(x, y + 4, str(note.number), SMALL, **{"text-anchor": "middle", "font-weight": 600})
                     + "</g>")

    headers, rows = _trend_table(rounds, series, decimals, unit, gap_label)
    if pinned:
        headers.append(_("Notes"))
        rows = [(*row, " ".join(f"{n.number}. {n.text}" for n, j in zip(pinned, at, strict=True) if j == i))
                for i, row in enumerate(rows)]
    if description is None:
        sentences = [_("%(name)s over %(count)s rounds: %(spread)s.", name=s.name, count=len(rounds),
                       spread=_spread(s.values, rounds, decimals, unit)) for s in series]
        if hidden:
            sentences.append(_("%(num)s of %(total)s rounds hidden (%(why)s).", num=len(hidden), total=len(rounds),
                               why=gap_label))
        flagged = [rounds[i] for s in series if s.significant for i in range(len(rounds))
                   if s.significant[i] and s.values[i] is not None]
        if flagged:
            sentences.append(_("Significant changes at %(rounds)s.", rounds=", ".join(flagged)))
        sentences += [_("Note %(n)s at %(round)s: %(text)s", n=n.number, round=n.label, text=n.text) for n in pinned]
        description = " ".join(sentences)
    svg = _svg(chart_id, axis.bottom + 24, title, description, parts)
    return Chart(chart_id, title, description, svg, Table(title, tuple(headers), tuple(rows)), pinned)


def _has_band(s: Series) -> bool:
    return s.low is not None and s.high is not None


def _interval(s: Series, i: int) -> tuple[float, float] | None:
    if s.low is None or s.high is None or s.low[i] is None or s.high[i] is None or s.values[i] is None:
        return None
    return s.low[i], s.high[i]


def _rose(s: Series, i: int) -> bool:
    """Whether a round's value is at or above the previous shown one (the direction of its flag)."""
    before = next((p for p in reversed(s.values[:i]) if p is not None), None)
    return before is None or s.values[i] >= before


def _series_marks(axis: _Axis, k: int, s: Series, rounds: Sequence[str], decimals: int, unit: str) -> list[str]:
    """Band, line runs (broken at hidden rounds), change flags and points of one series."""
    colour, parts = SERIES_COLOURS[k], []
    radius = 3.5 if axis.band >= 10 else 2.0
    for run in _runs([None if _interval(s, i) is None else i for i in range(len(rounds))]):
        if len(run) == 1:  # a lone round: its interval as a short bar
            (i,) = run
            parts.append(_el("rect", {"class": "band", "x": axis.x(i) - 3, "width": 6.0, "y": axis.y(s.high[i]),
                                      "height": axis.y(s.low[i]) - axis.y(s.high[i]), "fill": colour,
                                      "fill-opacity": ".2"}))
        else:
            upper = " L".join(f"{_n(axis.x(i))} {_n(axis.y(s.high[i]))}" for i in run)
            lower = " L".join(f"{_n(axis.x(i))} {_n(axis.y(s.low[i]))}" for i in reversed(run))
            parts.append(_el("path", {"class": "band", "d": f"M{upper} L{lower} Z", "fill": colour,
                                      "fill-opacity": ".2"}))
    for run in _runs([None if v is None else i for i, v in enumerate(s.values)]):
        if len(run) > 1:
            d = "M" + " L".join(f"{_n(axis.x(i))} {_n(axis.y(s.values[i]))}" for i in run)
            parts.append(_el("path", {"class": f"line series-{k}", "d": d, "fill": "none", "stroke": colour,
                                      "stroke-width": 2.5, "stroke-linejoin": "round",
                                      "stroke-dasharray": None if k == 0 else "5 3"}))
    for i, v in enumerate(s.values):
        if v is None:
            continue
        x, y = axis.x(i), axis.y(v)
        tip = f"{s.name}, {rounds[i]}: {_number(v, decimals, unit)}"
        if (interval := _interval(s, i)) is not None:
            tip += " " + _("(%(level)s%% interval %(low)s–%(high)s)", level=95,
                           low=_number(interval[0], decimals, unit), high=_number(interval[1], decimals, unit))
        if s.significant is not None and s.significant[i]:
            up = _rose(s, i)
            tip += "; " + (_("significant rise") if up else _("significant fall"))
            base, sign = (y - radius - 3, -1) if up else (y + radius + 3, 1)
            d = f"M{_n(x)} {_n(base + 8 * sign)} L{_n(x + 5)} {_n(base)} L{_n(x - 5)} {_n(base)} Z"
            parts.append(_el("path", {"class": "flag", "d": d, "fill": INK}))
        shape = ({"cx": x, "cy": y, "r": radius} if k == 0 else  # the second series: squares, not only colour
                 {"x": x - radius, "y": y - radius, "width": radius * 2, "height": radius * 2})
        parts.append(_el("circle" if k == 0 else "rect", {"class": f"point series-{k}", **shape, "fill": colour,
                                                          "stroke": "#ffffff" if radius > 2 else None,
                                                          "stroke-width": 1.0}, title=tip))
    return parts


def _trend_table(rounds: Sequence[str], series: Sequence[Series], decimals: int, unit: str,
                 gap_label: str) -> tuple[list[str], list[tuple[str, ...]]]:
    headers = [_("Round")]
    for s in series:
        headers.append(s.name)
        if _has_band(s):
            headers.append(_("%(name)s %(level)s%% interval", name=s.name, level=95))
        if s.significant is not None:
            headers.append(_("%(name)s change", name=s.name))
    rows = []
    for i, label in enumerate(rounds):
        row = [label]
        for s in series:
            v = s.values[i]
            row.append(gap_label if v is None else _number(v, decimals, unit))
            if _has_band(s):
                interval = _interval(s, i)
                row.append("" if interval is None else "–".join(_number(b, decimals, unit) for b in interval))
            if s.significant is not None:
                row.append("" if v is None or not s.significant[i] else
                           _("significant rise") if _rose(s, i) else _("significant fall"))
        rows.append(tuple(row))
    return headers, rows


def _runs(indices: Sequence[int | None]) -> list[list[int]]:
    runs: list[list[int]] = [[]]
    for i in indices:
        if i is None:
            runs.append([])
        else:
            runs[-1].append(i)
    return [run for run in runs if run]


def bar_chart(chart_id: str, title: str, rounds: Sequence[str], values: Sequence[float | None], *,
              name: str, y_range: tuple[float, float] = (0, 100), unit: str = "%", decimals: int = 0,
              gap_label: str | None = None, description: str | None = None) -> Chart:
    """A series over rounds as columns (the response rate beneath a trend); None is a labelled gap."""
    rounds = [str(r) for r in rounds]
    _check(chart_id, rounds, values)
    gap_label = gap_label or _("hidden: too few answered")
    fmt = lambda v: _number(v, decimals, unit)  # noqa: E731
    parts = [_text(0, 12, name, FONT_SIZE, **{"font-weight": 600})]
    axis = _Axis(top=30, bottom=150, n=len(rounds), lo=y_range[0], hi=y_range[1])
    parts += _frame(axis, rounds, unit)
    hidden = [(i, gap_label) for i, v in enumerate(values) if v is None]
    parts += _gaps(axis, hidden)
    width = min(axis.band * 0.7, 28)
    widest = max((_text_width(fmt(v), SMALL) for v in values if v is not None), default=0.0)
    labelled = axis.band >= widest + 2  # values on the bars only where they fit
    for i, v in enumerate(values):
        if v is None:
            continue
        top = axis.y(v)
        parts.append(_el("rect", {"class": "bar", "x": axis.x(i) - width / 2, "y": top, "width": width,
                                  "height": max(axis.bottom - top, 0.0), "fill": GREEN},
                         title=f"{rounds[i]}: {fmt(v)}"))
        if labelled:
            parts.append(_text(axis.x(i), top - 4, fmt(v), SMALL, **{"text-anchor": "middle"}))
    rows = tuple((r, gap_label if v is None else fmt(v)) for r, v in zip(rounds, values, strict=True))
    if description is None:
        description = _("%(name)s over %(count)s rounds: %(spread)s.", name=name, count=len(rounds),
                        spread=_spread(values, rounds, decimals, unit))
        if hidden:
            description += " " + _("%(num)s of %(total)s rounds hidden (%(why)s).", num=len(hidden),
                                   total=len(rounds), why=gap_label)
    svg = _svg(chart_id, axis.bottom + 24, title, description, parts)
    return Chart(chart_id, title, description, svg, Table(title, (_("Round"), name), rows))


# ---------------------------------------------------------------- charts over items and teams


def _row_label(y: float, label: str, width: float = WIDTH) -> tuple[list[str], float]:
    lines = _wrap(label, width)
    parts = [_text(0, y + 12 + 15 * n, line) for n, line in enumerate(lines)]
    if lines != [label]:
        parts = [f"<g><title>{_t(label)}</title>{''.join(parts)}</g>"]
    return parts, y + 15 * len(lines) + 3


def _hidden_bar(chart_id: str, y: float, width: float, height: float, label: str) -> str:
    return (f'<g class="hidden-row"><title>{_t(label)}</title>'
            + _el("rect", {"x": 0.0, "y": y, "width": width, "height": height, "fill": f"url(#{chart_id}-hatch)",
                           "stroke": AXIS})
            + _halo(8, y + height / 2 + 4, _fit(label, width - 16, SMALL), fill=INK) + "</g>")


def share_bars(chart_id: str, title: str, items: Sequence[str], shares: Sequence[ShareLike | None], *,
               hidden_label: str | None = None, description: str | None = None) -> Chart:
    """One stacked bar per item: favourable, neutral, unfavourable shares; None is a hatched row."""
    _check(chart_id, items, shares)
    hidden_label = hidden_label or _("hidden: too few answered")
    names = (_("Favourable"), _("Neutral"), _("Unfavourable"))
    fills = (BLUE, NEUTRAL, VERMILLION)
    swatches = [(f'<rect width="14" height="10" fill="{f}" stroke="{INK}" stroke-width=".5"/>', n)
                for f, n in zip(fills, names, strict=True)]
    swatches.append((f'<rect width="14" height="10" fill="url(#{chart_id}-hatch)" stroke="{AXIS}"/>', hidden_label))
    parts, y = _legend(swatches, 0)
    y += 6
    rows, shown = [], []
    for label, share in zip(items, shares, strict=True):
        lines, y = _row_label(y, label)
        parts += lines
        if share is None:
            parts.append(_hidden_bar(chart_id, y, WIDTH, 22, hidden_label))
            rows.append((label, hidden_label, hidden_label, hidden_label))
        else:
            fractions = [max(f, 0.0) for f in (share.favourable, share.neutral, share.unfavourable)]
            percents, total = _whole_percents(fractions), sum(fractions) or 1.0
            x, segments = 0.0, []
            for fraction, pct, fill, name in zip(fractions, percents, fills, names, strict=True):
                w = WIDTH * fraction / total  # shares rounded upstream may not add to exactly 1
                segments.append(_el("rect", {"class": "segment", "x": x, "y": y, "width": w, "height": 22.0,
                                             "fill": fill}, title=f"{label}: {name} {pct}%"))
                if w >= _text_width(f"{pct}%", SMALL) + 6:
                    segments.append(_text(x + w / 2, y + 15, f"{pct}%", SMALL,
                                          **{"text-anchor": "middle", "fill": _text_on(fill)}))
                x += w
            parts.append('<g class="share">' + "".join(segments)
                         + _el("rect", {"x": 0.0, "y": y, "width": WIDTH, "height": 22.0, "fill": "none",
                                        "stroke": INK, "stroke-width": .5}) + "</g>")
            rows.append((label, *(f"{p}%" for p in percents)))
            shown.append((percents[0], label))
        y += 22 + 12
    if description is None:
        description = _("Favourable, neutral and unfavourable shares for %(count)s items.", count=len(items))
        if shown:
            description += " " + _("Most favourable: %(high)s (%(hp)s%%); least: %(low)s (%(lp)s%%).",
                                   high=max(shown)[1], hp=max(shown)[0], low=min(shown)[1], lp=min(shown)[0])
        if len(shown) < len(rows):
            description += " " + ngettext("%(num)s item hidden (%(why)s).", "%(num)s items hidden (%(why)s).",
                                            len(rows) - len(shown), why=hidden_label)
    svg = _svg(chart_id, y, title, description, parts, defs=_hatch(chart_id))
    return Chart(chart_id, title, description, svg, Table(title, (_("Item"), *names), tuple(rows)))


def _whole_percents(fractions: Sequence[float]) -> list[int]:
    """Whole percentages that add up to 100 (largest remainder), so the bar's labels agree."""
    raw = [max(f, 0.0) * 100 for f in fractions]
    total = sum(raw)
    if total <= 0:
        return [0] * len(raw)
    raw = [r * 100 / total for r in raw]
    whole = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: (whole[i] - raw[i], i))[: 100 - sum(whole)]:
        whole[i] += 1
    return whole


def named_bars(chart_id: str, title: str, names: Sequence[str], values: Sequence[float | None], *,
               value_range: tuple[float, float], unit: str = "", decimals: int = 1,
               hidden_label: str | None = None, description: str | None = None) -> Chart:
    """One horizontal bar per named value (the vitality keys); the name sits above its bar."""
    _check(chart_id, names, values)
    hidden_label = hidden_label or _("hidden: too few answered")
    fmt = lambda v: _number(v, decimals, unit)  # noqa: E731
    lo, hi = value_range
    ticks, track = _ticks(lo, hi), WIDTH - 48  # room after the bar for its value
    scale = lambda v: track * (min(max(v, lo), hi) - lo) / (hi - lo)  # noqa: E731
    parts, y, rows = [], 0.0, []
    for name, v in zip(names, values, strict=True):
        lines, y = _row_label(y, name)
        parts += lines
        if v is None:
            parts.append(_hidden_bar(chart_id, y, track, 18, hidden_label))
            rows.append((name, hidden_label))
        else:
            parts.append(_el("rect", {"x": 0.0, "y": y, "width": track, "height": 18.0, "fill": WASH}))
            parts.append(_el("rect", {"class": "bar", "x": 0.0, "y": y, "width": scale(v), "height": 18.0,
                                      "fill": BLUE}, title=f"{name}: {fmt(v)}"))
            parts.append(_text(scale(v) + 5, y + 13, fmt(v), FONT_SIZE, **{"font-weight": 600}))
            rows.append((name, fmt(v)))
        y += 18 + 10
    decimals_ticks = 0 if all(t == int(t) for t in ticks) else 1
    for t in ticks:
        x = scale(t)
        parts.append(_el("line", {"x1": x, "x2": x, "y1": y - 4, "y2": y, "stroke": AXIS}))
        parts.append(_text(min(max(x, 8), track), y + 13, _number(t, decimals_ticks, unit), SMALL,
                           **{"text-anchor": "middle", "fill": MUTED}))
    if description is None:
        shown = [(v, n) for n, v in zip(names, values, strict=True) if v is not None]
        description = _("%(count)s values on a range of %(lo)s to %(hi)s.", count=len(names),
                        lo=_number(lo, decimals_ticks, unit), hi=_number(hi, decimals_ticks, unit))
        if shown:
            description += " " + _("Highest: %(high)s (%(hv)s); lowest: %(low)s (%(lv)s).",
                                   high=max(shown)[1], hv=fmt(max(shown)[0]), low=min(shown)[1], lv=fmt(min(shown)[0]))
        if len(shown) < len(names):
            description += " " + ngettext("%(num)s value hidden (%(why)s).", "%(num)s values hidden (%(why)s).",
                                            len(names) - len(shown), why=hidden_label)
    svg = _svg(chart_id, y + 20, title, description, parts, defs=_hatch(chart_id))
    return Chart(chart_id, title, description, svg, Table(title, (_("Name"), _("Value")), tuple(rows)))


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
    mid = (lo + hi) / 2 if midpoint is None else midpoint
    low_end, high_end = _mix(VERMILLION, "#ffffff", 0.1), _mix(BLUE, "#000000", 0.15)

    def fill(v: float) -> str:
        v = min(max(v, lo), hi)
        if v >= mid:
            return _mix("#f7f7f7", high_end, (v - mid) / (hi - mid) if hi > mid else 1.0)
        return _mix("#f7f7f7", low_end, (mid - v) / (mid - lo) if mid > lo else 1.0)

    label_w = min(max(_text_width(r) for r in rows) + 8, 96)
    cell_w = max((WIDTH - label_w) / len(columns), 37)  # seven items still fit 360 units
    width = label_w + cell_w * len(columns)
    upright = max(_text_width(c, SMALL) for c in columns) > cell_w - 4  # too wide: written bottom to top
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
    cell_h, cells = 28, 0
    for i, (label, row) in enumerate(zip(rows, values, strict=True)):
        y = head + i * cell_h
        parts.append(_el("text", {"x": label_w - 6, "y": y + 18, "font-size": FONT_SIZE, "text-anchor": "end"},
                         _t(_fit(label, label_w - 6)), title=label))
        for j, v in enumerate(row):
            x = label_w + j * cell_w
            tip = f"{label}, {columns[j]}: {why(i, j) if v is None else fmt(v)}"
            box = {"x": x, "y": float(y), "width": cell_w, "height": float(cell_h), "stroke": "#ffffff"}
            if v is None:
                parts.append(f'<g class="cell hidden"><title>{_t(tip)}</title>'
                             + _el("rect", {**box, "fill": f"url(#{chart_id}-hatch)"})
                             + _halo(x + cell_w / 2, y + 18, _("hidden"), 10, **{"text-anchor": "middle"}) + "</g>")
            else:
                colour = fill(v)
                parts.append(f'<g class="cell"><title>{_t(tip)}</title>' + _el("rect", {**box, "fill": colour})
                             + _text(x + cell_w / 2, y + 18, fmt(v), SMALL,
                                     **{"text-anchor": "middle", "fill": _text_on(colour)}) + "</g>")
                cells += 1
    y = head + len(rows) * cell_h + 12
    steps = [lo + (hi - lo) * s / 4 for s in range(5)]
    swatches = [(f'<rect width="14" height="10" fill="{fill(s)}" stroke="{AXIS}" stroke-width=".5"/>', fmt(s))
                for s in steps]
    hidden_kinds = sorted({why(i, j) for i, row in enumerate(values) for j, v in enumerate(row) if v is None}) or [hidden_label]
    for kind in hidden_kinds:
        swatches.append((f'<rect width="14" height="10" fill="url(#{chart_id}-hatch)" stroke="{AXIS}"/>', kind))
    legend, y = _legend(swatches, y, width)
    parts += legend
    table_rows = tuple((label, *(why(i, j) if v is None else fmt(v) for j, v in enumerate(row)))
                       for i, (label, row) in enumerate(zip(rows, values, strict=True)))
    if description is None:
        shown = [(v, r, columns[j]) for r, row in zip(rows, values, strict=True)
                 for j, v in enumerate(row) if v is not None]
        description = _("%(rows)s rows by %(columns)s columns.", rows=len(rows), columns=len(columns))
        if shown:
            (hv, hr, hc), (lv, lr, lc) = max(shown, key=lambda s: s[0]), min(shown, key=lambda s: s[0])
            description += " " + _("Highest %(hv)s (%(hr)s, %(hc)s); lowest %(lv)s (%(lr)s, %(lc)s).",
                                   hv=fmt(hv), hr=hr, hc=hc, lv=fmt(lv), lr=lr, lc=lc)
        hidden = len(rows) * len(columns) - cells
        if hidden:
            description += " " + ngettext("%(num)s cell hidden (%(why)s).", "%(num)s cells hidden (%(why)s).", hidden,
                                            why="; ".join(hidden_kinds))
    svg = _svg(chart_id, y + 4, title, description, parts, width=width, defs=_hatch(chart_id))
    return Chart(chart_id, title, description, svg, Table(title, ("", *columns), table_rows))
