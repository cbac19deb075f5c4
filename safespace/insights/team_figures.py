"""Teams side by side: a round's team grid and the teams' trend, each hidden cell with its reason
(below k, dropped at close, or hidden so that a smaller group cannot be worked out)."""

from __future__ import annotations

import uuid
from datetime import date
from zoneinfo import ZoneInfo

import msgspec
from babel.dates import format_date
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.i18n import gettext as _
from safespace.identity.models import Community, Team

# --- teams ----------------------------------------------------------------------------------------
from safespace.insights.reasons import BELOW_K, COMPLEMENTARY, HIDDEN
from safespace.pulse import results as pulse_results
from safespace.pulse.models import Round, Survey
from safespace.pulse.services import COMMUNITY, round_instruments
from surveys import disclosure, stats
from surveys import tally as tally_rules
from surveys.instrument import Instrument


class TeamRow(msgspec.Struct):
    team_id: str
    name: str
    values: list[float | None]  # one per column; None: hidden
    empty_because: list[str | None]


class TeamGrid(msgspec.Struct):
    title: str
    description: str
    points: int
    columns: list[str]
    column_keys: list[str]
    rows: list[TeamRow]
    # agreement: means on 1..points; zero_to_ten: each statement's score (%promoters - %detractors,
    # -100..100). A single choice has no team grid (rows stay empty): its options have no order.
    kind: str = "agreement"


def _hidden_teams(round_: Round, tallies: dict[tuple, tally_rules.Tally]) -> dict[str, str | None]:
    """Which kept team tallies of a closed round may be shown: team -> None (shown) or a reason.

    Every figure the pages show per team (each item's answers and each scale score's count, over
    all instruments of the round) goes through surveys.disclosure.suppress_team_results, so a
    team is shown whole or not at all, and the community minus the shown teams never leaves
    between 1 and k-1 people in any figure (P1, P2).
    """
    figures: dict[str, int] = {}
    teams: dict[str, dict[str, int]] = {}
    for (round_id, instrument, group), tally in tallies.items():
        if round_id != round_.id:
            continue
        counts = {f"{instrument}/{item}": sum(tally.counts.get(item, ())) for item in tally.items}
        counts[f"{instrument}/score"] = tally.score_n
        if group == COMMUNITY:
            figures |= counts
        else:
            teams.setdefault(group, {}).update(counts)
    if not figures:  # the community itself is below k: nothing about any team either
        return {team: BELOW_K for team in teams}
    cells = disclosure.suppress_team_results(figures, teams, round_.min_group_size)
    hidden: dict[str, str | None] = {team: None for team in teams}
    for (team, _figure), cell in cells.items():
        if not cell.shown:
            reason = BELOW_K if cell.reason == disclosure.BELOW_K else COMPLEMENTARY
            hidden[team] = hidden[team] if hidden[team] == BELOW_K else reason
    return hidden


def _dropped(round_: Round, team_id: str) -> str:
    """Why a team has no tally in a closed round: too small to be counted apart when it opened, or
    dropped at close for the reason close recorded (rounds closed before it recorded one: HIDDEN)."""
    if team_id not in round_.population:
        return BELOW_K
    return (round_.hidden_teams or {}).get(team_id, HIDDEN)


def _team_cell(tally: tally_rules.Tally, column: str) -> tuple[float | None, str | None]:
    if tally.kind == tally_rules.ZERO_TO_TEN:
        found = stats.recommend(tally.counts[column])
        return (found.score, None) if found else (None, BELOW_K)
    estimate = stats.scale_estimate(tally) if column == "score" else stats.item_estimate(tally, column)
    return (estimate.mean, None) if estimate else (None, BELOW_K)


async def _team_names(db: AsyncSession, community_id: uuid.UUID) -> dict[str, str]:
    return {str(t.id): t.name for t in await db.scalars(select(Team).where(Team.community_id == community_id).order_by(Team.name))}


# A closed round's grids, per process: its tallies and the suppression worked out from them never
# change, but its teams' names do (a rename, a team added or removed), so the names are read on
# every visit and are part of the key, with the instrument and the language of the labels.
_CLOSED_GRIDS: dict[tuple, TeamGrid] = {}
_CLOSED_GRIDS_KEPT = 512  # a full cache starts again


async def round_team_grid(db: AsyncSession, round_: Round, instrument: Instrument, language: str) -> TeamGrid:
    """Teams × items (and the scale score) of one closed round: means, suppressed cells marked."""
    if instrument.scale.kind == tally_rules.CHOICE:  # options without order: an empty grid, read nothing
        return await _round_team_grid(db, round_, instrument, language, {})
    names = await _team_names(db, round_.community_id)
    if not round_.closed:
        return await _round_team_grid(db, round_, instrument, language, names)
    key = (round_.id, round_.min_group_size, instrument.key, language, tuple(names.items()))
    found = _CLOSED_GRIDS.get(key)
    if found is None:
        found = await _round_team_grid(db, round_, instrument, language, names)
        if len(_CLOSED_GRIDS) >= _CLOSED_GRIDS_KEPT:
            _CLOSED_GRIDS.clear()
        _CLOSED_GRIDS[key] = found
    return found  # shared by every request that reads it: read only


async def _round_team_grid(db: AsyncSession, round_: Round, instrument: Instrument, language: str, names: dict[str, str]) -> TeamGrid:
    kind = instrument.scale.kind
    title = _("%(name)s by team, round %(number)s", name=instrument.name.get(language), number=round_.number)
    if kind == tally_rules.CHOICE:
        return TeamGrid(title=title, description="", points=instrument.scale.points, columns=[], column_keys=[], rows=[], kind=kind)
    tallies = await pulse_results.released_tallies(db, [round_])
    teams = {g: t for (_r, i, g), t in tallies.items() if i == instrument.key and g != COMMUNITY}
    scored = kind == tally_rules.AGREEMENT
    columns = [item.key for item in instrument.items] + (["score"] if scored else [])
    hidden = _hidden_teams(round_, tallies)
    rows = []
    for team_id, name in names.items():
        if team_id in teams and hidden[team_id] is None:
            cells = [_team_cell(teams[team_id], column) for column in columns]
        elif team_id in teams:
            cells = [(None, hidden[team_id])] * len(columns)
        else:  # too small to be counted apart, or dropped at close
            cells = [(None, _dropped(round_, team_id))] * len(columns)
        rows.append(TeamRow(team_id, name, [v for v, _r in cells], [r for _v, r in cells]))
    labels = [f"{n}. {item.text.get(language)}" for n, item in enumerate(instrument.items, start=1)]
    if scored:
        description = _("Mean answer per statement and team (1–%(points)s, as people saw the scale); hatched cells are hidden.",
                        points=instrument.scale.points)  # fmt: skip
    else:
        description = _("Score per statement and team: promoters (9–10) minus detractors (0–6), in points from −100 to 100; hatched cells are hidden.")
    return TeamGrid(
        title=title,
        description=description,
        points=instrument.scale.points,
        columns=labels + ([_("Scale score")] if scored else []),
        column_keys=columns,
        rows=rows,
        kind=kind,
    )


async def team_trend_grid(db: AsyncSession, community: Community, survey: Survey, instrument: Instrument, language: str) -> TeamGrid:
    """Teams × the last closed rounds: each team's scale score over time, same rules per round."""
    if instrument.scale.kind != tally_rules.AGREEMENT:  # no scale score to follow: the round grid shows a 0..10 per team
        title = _("%(name)s: each team's scale score by round", name=instrument.name.get(language))
        return TeamGrid(title=title, description="", points=instrument.scale.points, columns=[], column_keys=[], rows=[],
                        kind=instrument.scale.kind)  # fmt: skip
    names = await _team_names(db, community.id)
    rounds = [r for r in await pulse_results.closed_rounds(db, survey.id, 12) if any(i.key == instrument.key for i in round_instruments(r))]
    tallies = await pulse_results.released_tallies(db, rounds)
    zone = ZoneInfo(community.time_zone)
    by_round = {r.id: _hidden_teams(r, tallies) for r in rounds}
    rows = []
    for team_id, name in names.items():
        cells = []
        for round_ in rounds:
            tally = tallies.get((round_.id, instrument.key, team_id))
            if tally is None:
                cells.append((None, _dropped(round_, team_id)))
            elif by_round[round_.id].get(team_id) is not None:
                cells.append((None, by_round[round_.id][team_id]))
            else:
                cells.append(_team_cell(tally, "score"))
        rows.append(TeamRow(team_id, name, [v for v, _r in cells], [r for _v, r in cells]))
    return TeamGrid(
        title=_("%(name)s: each team's scale score by round", name=instrument.name.get(language)),
        description=_("Scale score per team and round; hatched cells are hidden to protect small groups."),
        points=instrument.scale.points,
        columns=[format_day(r.closes_at.astimezone(zone).date(), language) for r in rounds],
        column_keys=[str(r.id) for r in rounds],
        rows=rows,
    )


def format_day(day: date, language: str) -> str:
    return format_date(day, "d MMM yy", locale=language)
