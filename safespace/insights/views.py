"""From released figures (the insights *_figures modules) to charts: one function per picture on the pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TypeVar
from zoneinfo import ZoneInfo

import msgspec
from babel.dates import format_date

from safespace import i18n
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.insights import charts
from safespace.insights.reasons import reason_text
from safespace.insights.team_figures import TeamGrid, format_day
from safespace.insights.trend_figures import InstrumentTrend, MeetingPoint, trend_places
from safespace.insights.vitality_figures import Vitality
from safespace.pulse.results import InstrumentResult

T = TypeVar("T")


def day_label(day: date) -> str:
    return format_day(day, i18n.current_language())


def _direction(values: list[float | None], decimals: int = 2) -> str:
    shown = [v for v in values if v is not None]
    if len(shown) < 2:
        return _("Too few rounds with results to show a direction yet.")
    first, last = shown[0], shown[-1]
    if abs(last - first) < 10 ** (-decimals):
        return _("Level: %(first)s at the start, %(last)s now.", first=f"{first:.{decimals}f}", last=f"{last:.{decimals}f}")
    if last > first:
        return _("Rising: from %(first)s to %(last)s.", first=f"{first:.{decimals}f}", last=f"{last:.{decimals}f}")
    return _("Falling: from %(first)s to %(last)s.", first=f"{first:.{decimals}f}", last=f"{last:.{decimals}f}")


def _monthly(values: list[float], months: list[str]) -> str:
    """What a chart of counts per month says. Not the direction from the first month to the last:
    this month has only begun, so "0 at the start, 0 now" hid the stories of every month between."""
    total = int(sum(values))
    if not total:
        return _("None yet since %(first)s.", first=months[0])
    if len(values) == 1:
        return _("%(total)s so far in %(month)s.", total=total, month=months[0])
    busiest = max(range(len(values)), key=lambda i: (values[i], i))  # the latest of the busiest months
    return _(
        "%(total)s in all from %(first)s to %(last)s; the most in %(busiest)s (%(most)s); %(now)s so far in %(last)s.",
        total=total, first=months[0], last=months[-1], busiest=months[busiest], most=int(values[busiest]), now=int(values[-1]),
    )  # fmt: skip


def zone(community: Community) -> ZoneInfo:
    return ZoneInfo(community.time_zone)


# Charts of closed rounds are drawn once per process, keyed by all they are drawn from (figures,
# dates in the community's time zone, notes, names), the language and the ids.
_DRAWN: dict[tuple, object] = {}
_DRAWN_KEPT = 2_000


def _drawn(key: tuple, draw: Callable[[], T]) -> T:
    if key not in _DRAWN:
        if len(_DRAWN) >= _DRAWN_KEPT:
            _DRAWN.clear()
        _DRAWN[key] = draw()
    return _DRAWN[key]  # type: ignore[return-value]


def trend_charts(prefix: str, trend: InstrumentTrend, k: int, with_notes: bool = True) -> list[charts.Chart]:
    """Score with its 95% band and change flags, favourable %, and the response rate beneath.

    Facilitators' notes are theirs: the members' summary draws the trend without them.
    """
    # Keyed by everything drawn, encoded (as the heatmap is): the rounds' dates change with the
    # community's time zone, and were missed when the key was the round ids and notes alone.
    key = ("trend", prefix, k, with_notes, i18n.current_language(), msgspec.json.encode(trend))
    return _drawn(key, lambda: _draw_trend(prefix, trend, k, with_notes))


def _draw_trend(prefix: str, trend: InstrumentTrend, k: int, with_notes: bool) -> list[charts.Chart]:
    if trend.kind == "zero_to_ten":  # a check-in asks agreement statements only: rounds alone here
        labels = [day_label(p.closed_on) for p in trend.rounds]
        notes = [(i, text) for i, p in enumerate(trend.rounds) for text in p.notes] if with_notes else []
        gap = charts.suppressed_label(k)
        return [*_recommend_lines(prefix, trend, labels, notes, gap), _rate_bars(prefix, trend.rounds, trend.name, labels, gap)]
    # A meeting check-in is a place of its own at its date, marked apart (line_chart's meetings):
    # its figures only; no band, no response rate, and no change is measured from or to it.
    points = trend_places(trend)
    meetings = [isinstance(p, MeetingPoint) for p in points]
    labels = [day_label(p.day if isinstance(p, MeetingPoint) else p.closed_on) for p in points]
    notes = [(i, text) for i, p in enumerate(points) if not meetings[i] for text in p.notes] if with_notes else []
    gap = charts.suppressed_label(k)
    rounds_only = lambda field: [None if meetings[i] else getattr(p, field) for i, p in enumerate(points)]  # noqa: E731
    scores = [p.score for p in points]
    score = charts.line_chart(
        f"{prefix}-score",
        _("%(name)s: scale score by round", name=trend.name),
        labels,
        [
            charts.Series(
                name=_("Scale score"),
                values=scores,
                low=rounds_only("ci_low"),
                high=rounds_only("ci_high"),
                significant=[not meetings[i] and p.significant for i, p in enumerate(points)],
            )
        ],
        y_range=(1, trend.points),
        y_label=_("Score (1–%(points)s)", points=trend.points),
        decimals=2,
        notes=notes,
        gap_label=gap,
        meetings=meetings,
    )
    favourable = [None if p.favourable is None else p.favourable * 100 for p in points]
    share = charts.line_chart(
        f"{prefix}-favourable",
        _("%(name)s: favourable answers by round", name=trend.name),
        labels,
        [charts.Series(name=_("Favourable"), values=favourable)],
        y_range=(0, 100),
        y_label=_("Favourable (%)"),
        unit="%",
        decimals=0,
        gap_label=gap,
        meetings=meetings,
    )
    return [score, share, _rate_bars(prefix, points, trend.name, labels, gap, meetings)]


def _rate_bars(prefix: str, points: list, name: str, labels: list[str], gap: str, meetings: list[bool] | None = None) -> charts.Chart:
    """Beneath the trend, place for place; a meeting check-in's place stays empty (no member count)."""
    meetings = meetings or [False] * len(points)
    rates = [None if meetings[i] or p.response_rate is None else p.response_rate * 100 for i, p in enumerate(points)]
    return charts.bar_chart(
        f"{prefix}-rate",
        _("%(name)s: response rate by round", name=name),
        labels,
        rates,
        name=_("Response rate"),
        gap_label=gap,
        description=_direction([r for i, r in enumerate(rates) if not meetings[i]], 0),
        blank=meetings,
    )


def _recommend_lines(prefix: str, trend: InstrumentTrend, labels: list[str], notes: list, gap: str) -> list[charts.Chart]:
    """A 0..10 instrument: each statement's score (%promoters - %detractors) by round, -100 to 100."""
    drawn = []
    for n, statement in enumerate(trend.statements):
        values = [p.recommend_scores[n] if n < len(p.recommend_scores) else None for p in trend.rounds]
        drawn.append(
            charts.line_chart(
                f"{prefix}-recommend{n}",
                # the question goes in the description: "...to a colleague?: score by round" read badly
                _("%(name)s: score by round", name=trend.name) if len(trend.statements) == 1
                else _("%(name)s, question %(n)s: score by round", name=trend.name, n=n + 1),
                labels,
                [charts.Series(name=_("Score (promoters minus detractors)"), values=values)],
                y_range=(-100, 100),
                y_label=_("Score (−100 to 100)"),
                decimals=0,
                notes=notes if n == 0 else [],
                gap_label=gap,
                description=f"{statement} {_direction(values, 0)}",
            )
        )
    return drawn


def share_chart(prefix: str, instrument: InstrumentResult, k: int) -> charts.Chart | None:
    """Disagree / neutral / agree (any degree) per statement; hidden statements are hatched rows.
    None for a 0..10 or choice instrument: its statements have no agree or disagree."""
    if instrument.kind != "agreement":
        return None
    # Keyed by all it is drawn from: the name and statements (in their language) with their figures.
    key = ("shares", prefix, k, i18n.current_language(), msgspec.json.encode((instrument.name, instrument.items)))
    return _drawn(key, lambda: _draw_shares(prefix, instrument, k))


def _draw_shares(prefix: str, instrument: InstrumentResult, k: int) -> charts.Chart:
    return charts.share_bars(
        prefix,
        _("%(name)s: answers per statement", name=instrument.name),
        [f"{n}. {item.text}" for n, item in enumerate(instrument.items, start=1)],
        [item if item.favourable is not None else None for item in instrument.items],
        hidden_label=charts.suppressed_label(k),
        description=_("Share of answers per statement that disagree, are neutral or agree, to any degree; reversed statements are turned round first, so agree is always the favourable direction."),
    )


def team_heatmap(prefix: str, grid: TeamGrid, k: int) -> charts.Chart:
    """Teams x statements (or rounds); a grid's figures and names, all of it in the key."""
    key = ("heatmap", prefix, k, i18n.current_language(), msgspec.json.encode(grid))
    return _drawn(key, lambda: _draw_heatmap(prefix, grid, k))


def _draw_heatmap(prefix: str, grid: TeamGrid, k: int) -> charts.Chart:
    return charts.heatmap(
        prefix,
        grid.title,
        [row.name for row in grid.rows],
        grid.columns,
        [row.values for row in grid.rows],
        # a 0..10 grid holds scores (%promoters - %detractors), an agreement grid means on its points
        value_range=(-100, 100) if grid.kind == "zero_to_ten" else (1, grid.points),
        decimals=0 if grid.kind == "zero_to_ten" else 2,
        hidden_label=charts.suppressed_label(k),
        description=grid.description,
        reasons=[[reason_text(why, k) if why else None for why in row.empty_because] for row in grid.rows],
    )


def vitality_charts(vitality: Vitality, k: int) -> list[charts.Chart]:
    shown: list[charts.Chart] = []
    if vitality.participation:
        points = vitality.participation
        rates = [None if p.response_rate is None else p.response_rate * 100 for p in points]
        shown.append(
            charts.bar_chart(
                "vitality-rate",
                _("Response rate by round, all surveys"),
                [day_label(p.closed_on) for p in points],
                rates,
                name=_("Response rate"),
                gap_label=charts.suppressed_label(k),
                description=_direction(rates, 0),
            )
        )
        members = [float(p.members) for p in points]
        shown.append(
            charts.bar_chart(
                "vitality-members",
                _("Active members when each round opened"),
                [day_label(p.closed_on) for p in points],
                members,
                name=_("Active members"),
                y_range=(0, max(members) * 1.1 or 1),
                unit="",
                description=_direction(members, 0),
            )
        )
    months = [format_date(date.fromisoformat(a.month + "-01"), "MMM yy", locale=i18n.current_language()) for a in vitality.activity]
    for key, title, values in (
        ("stories", _("Stories shared per month"), [float(a.stories) for a in vitality.activity]),
        ("replies", _("Replies per month"), [float(a.replies) for a in vitality.activity]),
        ("reactions", _("Reactions per month"), [float(a.reactions) for a in vitality.activity]),
    ):
        shown.append(
            charts.bar_chart(
                f"vitality-{key}",
                title,
                months,
                values,
                name=title,
                y_range=(0, max(values + [4.0]) * 1.1),
                unit="",
                description=_monthly(values, months),
            )
        )
    if vitality.keys:
        shown.append(
            charts.named_bars(
                "vitality-keys",
                _("The five keys of a community of practice"),
                [d.name for d in vitality.keys],
                [d.mean for d in vitality.keys],
                value_range=(1, vitality.points),
                decimals=2,
                hidden_label=charts.suppressed_label(k),
            )
        )
    return shown
