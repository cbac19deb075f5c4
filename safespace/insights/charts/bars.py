"""Charts over items and teams: stacked shares per item, and named bars."""

from __future__ import annotations

from collections.abc import Sequence

from safespace.i18n import gettext as _
from safespace.i18n import ngettext

# ---------------------------------------------------------------- charts over items and teams
from safespace.insights.charts.svg import (
    AXIS,
    BLUE,
    FONT_SIZE,
    INK,
    MUTED,
    NEUTRAL,
    SMALL,
    VERMILLION,
    WASH,
    WIDTH,
    Chart,
    ShareLike,
    Table,
    _check,
    _el,
    _fit,
    _halo,
    _hatch,
    _legend,
    _number,
    _svg,
    _t,
    _text,
    _text_on,
    _text_width,
    _ticks,
    _wrap,
)


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
    """One stacked bar per item: disagree, neutral, agree shares (any degree, in the scale's order);
    None is a hatched row."""
    _check(chart_id, items, shares)
    hidden_label = hidden_label or _("hidden: too few answered")
    names = (_("Disagree"), _("Neutral"), _("Agree"))
    fills = (VERMILLION, NEUTRAL, BLUE)
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
            fractions = [max(f, 0.0) for f in (share.disagree, share.neutral, share.agree)]
            # Each share rounded on its own, as the results table beside the chart and the exports
            # round it: 10 of 12 is 83% everywhere (making the three add up to 100 printed 84%).
            percents, total = [round(f * 100) for f in fractions], sum(fractions) or 1.0
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
            shown.append((percents[2], label))
        y += 22 + 12
    if description is None:
        description = _("Disagree, neutral and agree shares for %(count)s items.", count=len(items))
        if shown:
            description += " " + _("Most agreement: %(high)s (%(hp)s%%); least: %(low)s (%(lp)s%%).",
                                   high=max(shown)[1], hp=max(shown)[0], low=min(shown)[1], lp=min(shown)[0])
        if len(shown) < len(rows):
            description += " " + ngettext("%(num)s item hidden (%(why)s).", "%(num)s items hidden (%(why)s).",
                                            len(rows) - len(shown), why=hidden_label)
    svg = _svg(chart_id, y, title, description, parts, defs=_hatch(chart_id))
    return Chart(chart_id, title, description, svg, Table(title, (_("Item"), *names), tuple(rows)))


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
