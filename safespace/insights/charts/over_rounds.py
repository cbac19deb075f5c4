"""Charts over rounds: a line with its 95% band and labelled gaps, and bars."""

from __future__ import annotations

from collections.abc import Sequence

from safespace.i18n import gettext as _

# ---------------------------------------------------------------- charts over rounds
from safespace.insights.charts.svg import (
    FONT_SIZE,
    GREEN,
    INK,
    SERIES_COLOURS,
    SMALL,
    Chart,
    Note,
    Series,
    Table,
    _Axis,
    _check,
    _el,
    _frame,
    _gaps,
    _legend,
    _n,
    _number,
    _spread,
    _svg,
    _t,
    _text,
    _text_width,
)


def line_chart(chart_id: str, title: str, rounds: Sequence[str], series: Sequence[Series], *,
               y_range: tuple[float, float], y_label: str = "", unit: str = "", decimals: int = 1,
               notes: Sequence[tuple[int, str]] = (), gap_label: str | None = None,
               description: str | None = None, meetings: Sequence[bool] | None = None) -> Chart:
    """One or two series over rounds on one value range; bands, gaps, change flags and notes.

    notes: (round index, text) pairs; each becomes a numbered marker and a Note on the Chart.
    meetings: which places are meeting check-ins, not rounds: a hollow diamond off the line (the
    line joins the rounds around it), no band, no change flag, "Meeting check-in, <label>" in the
    table and the description, and a legend entry.
    Two quantities on different ranges (score 1–7, favourable %) read better as two charts.
    """
    rounds = [str(r) for r in rounds]
    if not 1 <= len(series) <= 2:
        raise ValueError(f"a line chart draws one or two series, got {len(series)}; give the others their own chart")
    meetings = list(meetings) if meetings is not None else [False] * len(rounds)
    _check(chart_id, rounds, meetings)
    for s in series:
        _check(chart_id, rounds, s.values, s.low, s.high, s.significant)
        if any(s.significant[i] for i in range(len(rounds)) if meetings[i] and s.significant):
            raise ValueError("a meeting check-in carries no change flag: changes are measured between rounds")
    for index, _note in notes:
        if not 0 <= index < len(rounds):
            raise ValueError(f"a note is pinned to round {index}, but the chart has rounds 0–{len(rounds) - 1}")
    gap_label = gap_label or _("hidden: too few answered")
    pinned = tuple(Note(n, rounds[i], text) for n, (i, text) in enumerate(notes, start=1))
    at = [i for i, _note in notes]

    parts, y = ([_text(0, 12, y_label, FONT_SIZE, **{"font-weight": 600})], 20.0) if y_label else ([], 0.0)
    legend, y = _legend(_legend_items(series, any(meetings)), y)
    parts += legend
    top = y + (26 if pinned else 12)  # room for the note markers above the plot
    axis = _Axis(top=top, bottom=top + 170, n=len(rounds), lo=y_range[0], hi=y_range[1])
    parts += _frame(axis, rounds, unit)
    named = [_meeting_name(r) if meetings[i] else r for i, r in enumerate(rounds)]  # in tips, table and words
    hidden = [(i, (f"{named[i]}: " if meetings[i] else "") + (gap_label if len(series) == 1 else
               "; ".join(f"{s.name}: {gap_label}" for s in series if s.values[i] is None)))
              for i in range(len(rounds)) if any(s.values[i] is None for s in series)]
    parts += _gaps(axis, hidden)
    for k, s in enumerate(series):
        parts += _series_marks(axis, k, s, named, decimals, unit, meetings)
    parts += [_note_marker(axis, note, i) for note, i in zip(pinned, at, strict=True)]

    headers, rows = _trend_table(named, series, decimals, unit, gap_label, meetings)
    if pinned:
        headers.append(_("Notes"))
        rows = [(*row, " ".join(f"{n.number}. {n.text}" for n, j in zip(pinned, at, strict=True) if j == i))
                for i, row in enumerate(rows)]
    if description is None:
        description = _describe(series, rounds, decimals, unit, hidden, gap_label, pinned, meetings)
    svg = _svg(chart_id, axis.bottom + 24, title, description, parts)
    return Chart(chart_id, title, description, svg, Table(title, tuple(headers), tuple(rows)), pinned)


def _meeting_name(label: str) -> str:
    return _("Meeting check-in, %(date)s", date=label)


# A hollow diamond: a meeting check-in differs from a round by its shape, not by colour alone.
def _diamond(x: float, y: float, r: float) -> str:
    return f"M{_n(x)} {_n(y - r)} L{_n(x + r)} {_n(y)} L{_n(x)} {_n(y + r)} L{_n(x - r)} {_n(y)} Z"


def _legend_items(series: Sequence[Series], meetings: bool = False) -> list[tuple[str, str]]:
    """A swatch per series, its band (when it has one) and the change marker (when one is flagged)."""
    items = []
    for k, s in enumerate(series):
        dash = "" if k == 0 else ' stroke-dasharray="5 3"'
        items.append((f'<line x1="0" y1="5" x2="14" y2="5" stroke="{SERIES_COLOURS[k]}" '
                      f'stroke-width="2.5"{dash}/>', s.name))
        if _has_band(s):
            items.append((f'<rect width="14" height="10" fill="{SERIES_COLOURS[k]}" fill-opacity=".2"/>',
                          _("%(name)s: %(level)s%% interval", name=s.name, level=95) if len(series) > 1
                          else _("%(level)s%% interval", level=95)))
    if any(any(s.significant or ()) for s in series):
        items.append((f'<path d="M7 0 L13 10 L1 10 Z" fill="{INK}"/>', _("significant change")))
    if meetings:
        items.append((f'<path d="{_diamond(7, 5, 5)}" fill="#ffffff" stroke="{SERIES_COLOURS[0]}" stroke-width="2"/>',
                      _("meeting check-in")))
    return items


def _note_marker(axis: _Axis, note: Note, i: int) -> str:
    """A numbered circle above round i, with a dotted line down to the axis."""
    x, y = axis.x(i), axis.top - 14
    return (f'<g class="note" data-round="{i}"><title>{_t(f"{note.number}. {note.text}")}</title>'
            + _el("line", {"x1": x, "x2": x, "y1": y + 8, "y2": axis.bottom, "stroke": INK, "stroke-dasharray": "1 3"})
            + _el("circle", {"cx": x, "cy": y, "r": 8.0, "fill": "#ffffff", "stroke": INK})
            + _text(x, y + 4, str(note.number), SMALL, **{"text-anchor": "middle", "font-weight": 600})
            + "</g>")


def _describe(series: Sequence[Series], rounds: list[str], decimals: int, unit: str, hidden: list[tuple[int, str]],
              gap_label: str, pinned: Sequence[Note], meetings: Sequence[bool]) -> str:
    """The chart in words: each series' spread over the rounds, hidden rounds, flagged changes,
    the meeting check-ins apart, and the notes."""
    at = [i for i in range(len(rounds)) if not meetings[i]]  # the rounds; the check-ins after them
    labels = [rounds[i] for i in at]
    sentences = [_("%(name)s over %(count)s rounds: %(spread)s.", name=s.name, count=len(at),
                   spread=_spread([s.values[i] for i in at], labels, decimals, unit) if at else _("no round can be shown"))
                 for s in series]
    hidden_rounds = sum(1 for i, _why in hidden if not meetings[i])
    if hidden_rounds:
        sentences.append(_("%(num)s of %(total)s rounds hidden (%(why)s).", num=hidden_rounds, total=len(at), why=gap_label))
    flagged = [rounds[i] for s in series if s.significant for i in range(len(rounds))
               if s.significant[i] and s.values[i] is not None]
    if flagged:
        sentences.append(_("Significant changes at %(rounds)s.", rounds=", ".join(flagged)))
    for i in (i for i in range(len(rounds)) if meetings[i]):
        figures = "; ".join(f"{s.name}: {gap_label if s.values[i] is None else _number(s.values[i], decimals, unit)}"
                            for s in series)
        sentences.append(_("%(label)s, marked apart from the rounds: %(figures)s.", label=_meeting_name(rounds[i]),
                           figures=figures))
    sentences += [_("Note %(n)s at %(round)s: %(text)s", n=n.number, round=n.label, text=n.text) for n in pinned]
    return " ".join(sentences)


def _has_band(s: Series) -> bool:
    return s.low is not None and s.high is not None


def _interval(s: Series, i: int) -> tuple[float, float] | None:
    if s.low is None or s.high is None or s.low[i] is None or s.high[i] is None or s.values[i] is None:
        return None
    return s.low[i], s.high[i]


def _rose(s: Series, i: int, meetings: Sequence[bool] = ()) -> bool:
    """Whether a round's value is at or above the previous shown round's (the direction of its
    flag; a meeting check-in between them does not count)."""
    before = next((p for j, p in reversed(list(enumerate(s.values[:i])))
                   if p is not None and not (j < len(meetings) and meetings[j])), None)
    return before is None or s.values[i] >= before


def _series_marks(axis: _Axis, k: int, s: Series, rounds: Sequence[str], decimals: int, unit: str,
                  meetings: Sequence[bool]) -> list[str]:
    """Band, line runs (broken at hidden rounds, joining the rounds around a meeting check-in),
    change flags and points of one series; a meeting check-in is a hollow diamond off the line."""
    colour, parts = SERIES_COLOURS[k], []
    radius = 3.5 if axis.band >= 10 else 2.0
    on_line = [i for i in range(len(rounds)) if not meetings[i]]
    for run in _runs([None if _interval(s, i) is None else i for i in on_line]):
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
    for run in _runs([None if s.values[i] is None else i for i in on_line]):
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
        if meetings[i]:
            parts.append(_el("path", {"class": f"point meeting series-{k}", "d": _diamond(x, y, radius + 2),
                                      "fill": "#ffffff", "stroke": colour, "stroke-width": 2.0}, title=tip))
            continue
        if (interval := _interval(s, i)) is not None:
            tip += " " + _("(%(level)s%% interval %(low)s–%(high)s)", level=95,
                           low=_number(interval[0], decimals, unit), high=_number(interval[1], decimals, unit))
        if s.significant is not None and s.significant[i]:
            up = _rose(s, i, meetings)
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
                 gap_label: str, meetings: Sequence[bool]) -> tuple[list[str], list[tuple[str, ...]]]:
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
                           _("significant rise") if _rose(s, i, meetings) else _("significant fall"))
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
              gap_label: str | None = None, description: str | None = None,
              blank: Sequence[bool] | None = None) -> Chart:
    """A series over rounds as columns (the response rate beneath a trend); None is a labelled gap.

    blank: places with no such figure at all (a meeting check-in beneath a trend has no response
    rate): nothing drawn, left out of the table and the description, so the columns stay under
    the places of the chart above."""
    rounds = [str(r) for r in rounds]
    _check(chart_id, rounds, values)
    if blank is not None:
        _check(chart_id, rounds, blank)
        kept = [i for i in range(len(rounds)) if not blank[i]]
    else:
        kept = list(range(len(rounds)))
    gap_label = gap_label or _("hidden: too few answered")
    fmt = lambda v: _number(v, decimals, unit)  # noqa: E731
    parts = [_text(0, 12, name, FONT_SIZE, **{"font-weight": 600})]
    axis = _Axis(top=30, bottom=150, n=len(rounds), lo=y_range[0], hi=y_range[1])
    parts += _frame(axis, rounds, unit)
    hidden = [(i, gap_label) for i in kept if values[i] is None]
    parts += _gaps(axis, hidden)
    width = min(axis.band * 0.7, 28)
    widest = max((_text_width(fmt(values[i]), SMALL) for i in kept if values[i] is not None), default=0.0)
    labelled = axis.band >= widest + 2  # values on the bars only where they fit
    for i in kept:
        v = values[i]
        if v is None:
            continue
        top = axis.y(v)
        parts.append(_el("rect", {"class": "bar", "x": axis.x(i) - width / 2, "y": top, "width": width,
                                  "height": max(axis.bottom - top, 0.0), "fill": GREEN},
                         title=f"{rounds[i]}: {fmt(v)}"))
        if labelled:
            parts.append(_text(axis.x(i), top - 4, fmt(v), SMALL, **{"text-anchor": "middle"}))
    rows = tuple((rounds[i], gap_label if values[i] is None else fmt(values[i])) for i in kept)
    if description is None:
        description = _("%(name)s over %(count)s rounds: %(spread)s.", name=name, count=len(kept),
                        spread=_spread([values[i] for i in kept], [rounds[i] for i in kept], decimals, unit))
        if hidden:
            description += " " + _("%(num)s of %(total)s rounds hidden (%(why)s).", num=len(hidden),
                                   total=len(kept), why=gap_label)
    svg = _svg(chart_id, axis.bottom + 24, title, description, parts)
    return Chart(chart_id, title, description, svg, Table(title, (_("Round"), name), rows))
