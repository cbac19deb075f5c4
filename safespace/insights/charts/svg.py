"""What every chart is made of: colours and sizes, the Chart it returns, text measured and fitted,
numbers in the reader's language, SVG elements, and the axis and frame of charts over rounds."""

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

from safespace.i18n import current_language
from safespace.i18n import gettext as _

# Okabe–Ito colours with at least 3:1 against white (WCAG 1.4.11); text stays ink, black or white.
BLUE, VERMILLION, GREEN = "#0072B2", "#D55E00", "#009E73"
INK, MUTED, GRID, AXIS, NEUTRAL, WASH = "#1f2933", "#52606d", "#d9e2ec", "#9aa5b1", "#c8d1da", "#f4f7f6"
SERIES_COLOURS = (BLUE, VERMILLION)
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', sans-serif"
# 270 user units across (six 45-unit steps, see _size_class): on a 390 px phone a chart gets about
# 318 px, so 11-unit text is drawn at 13 px; safespace.css never draws a unit below 1.11 px.
WIDTH, FONT_SIZE, SMALL = 270, 12, 11
LEFT, RIGHT = 40, 12  # fixed, so a trend and the response-rate bars beneath it line up
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,40}$")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class ShareLike(Protocol):
    """surveys.stats.Shares or anything with the three fractions (0–1) that add up to 1."""

    disagree: float
    neutral: float
    agree: float


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
    """Width in steps of 45 units (3.125 to 4rem on screen): CSS keeps every chart's text near one size."""
    return min(max(math.ceil(width / 45 - 1e-9), 6), 16)


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
    # where a label pushed inwards at the edge leaves no room, the next one moves back a round or more.
    widest = max(_text_width(r, SMALL) for r in rounds) + 10
    step, kept, i = max(1, math.ceil(widest / axis.band)), math.inf, len(rounds) - 1
    while i >= 0:
        half = _text_width(rounds[i], SMALL) / 2
        x = min(max(axis.x(i), half), WIDTH - half)
        if kept - x < widest:
            i -= 1
            continue
        parts.append(_el("line", {"x1": axis.x(i), "x2": axis.x(i), "y1": axis.bottom, "y2": axis.bottom + 4,
                                  "stroke": AXIS}))
        parts.append(_text(x, axis.bottom + 17, rounds[i], SMALL, **{"text-anchor": "middle", "class": "x-label"}))
        kept, i = x, i - step
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
