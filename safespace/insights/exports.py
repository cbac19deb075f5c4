"""CSV and JSON of exactly what the pages show: the same structs, flattened, with a column saying
why a cell is empty. Nothing here computes a figure; it only writes out released ones."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

import msgspec
from litestar import Request, Response

from safespace.insights.actions import ActionView
from safespace.insights.objective_figures import ObjectiveView
from safespace.insights.team_figures import TeamGrid
from safespace.insights.trend_figures import MeetingPoint, SurveyTrend, trend_places
from safespace.insights.vitality_figures import Vitality
from safespace.pulse.results import RoundResult


def _cell(value: object) -> object:
    """A number stays a number (-0.1267 is not a formula); text that a spreadsheet would run as a
    formula (= + - @, a tab or a carriage return first) is quoted as text (OWASP's CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    if isinstance(value, int):
        return value
    text = str(value)
    return "'" + text if text and text[0] in "=+-@\t\r" else text


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(value) for value in row])
    return Response(
        out.getvalue(),
        media_type="text/csv",  # Litestar adds "; charset=utf-8"
        headers={"content-disposition": f'attachment; filename="{filename}.csv"'},
    )


def json_response(filename: str, value: object) -> Response:
    return Response(
        msgspec.json.encode(value),
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="{filename}.json"'},
    )


def export(request: Request, filename: str, header: Sequence[str], rows: Iterable[Sequence[object]], value: object) -> Response:
    """The same figures as CSV or JSON, by the address asked for (…/name.csv or …/name.json)."""
    if request.url.path.endswith(".csv"):
        return csv_response(filename, header, rows)
    return json_response(filename, value)


# kind: "round", or "meeting_checkin" for a meeting check-in kept in the trend (its date in
# closed_on, no round number, member count, rate, interval or change; notes: the statements asked).
TREND_HEADER = (
    "survey", "instrument", "round", "closed_on", "members", "respondents", "response_rate", "score",
    "ci_low", "ci_high", "favourable", "change", "significant", "empty_because", "notes", "recommend_scores", "kind",
)  # fmt: skip


def trend_rows(trend: SurveyTrend) -> Iterable[tuple]:
    for instrument in trend.instruments:
        for p in trend_places(instrument):
            if isinstance(p, MeetingPoint):
                yield (
                    trend.title, instrument.key, None, p.day.isoformat(), None, p.respondents, None, p.score,
                    None, None, p.favourable, None, "no", p.empty_because, " | ".join(p.statements), "", p.kind,
                )  # fmt: skip
                continue
            yield (
                trend.title, instrument.key, p.number, p.closed_on.isoformat(), p.members, p.respondents, p.response_rate,
                p.score, p.ci_low, p.ci_high, p.favourable, p.change, "yes" if p.significant else "no",
                p.empty_because, " | ".join(p.notes),
                # a 0..10 instrument's score per statement (-100..100), "" where one is hidden
                " | ".join("" if v is None else f"{v:.1f}" for v in p.recommend_scores), "round",
            )  # fmt: skip


# favourable: the top two scale points; disagree / neutral / agree: every answer split at the middle
# point, to any degree. All four after reverse keying (surveys.stats.Shares), empty where the row is.
RESULT_HEADER = (
    "round", "instrument", "item", "statement", "reverse", "mean", "n", "favourable", "disagree", "neutral", "agree",
    "distribution", "empty_because", "kind", "promoters", "passives", "detractors", "recommend_score", "option_shares",
)  # fmt: skip


def result_rows(result: RoundResult) -> Iterable[tuple]:
    if not result.instruments:
        why = "round_not_closed" if result.status != "closed" else "fewer_than_k"
        yield (result.number, "", "", "", "", None, None, None, None, None, None, "", why)
    for instrument in result.instruments:
        if instrument.score:
            yield (result.number, instrument.key, "score", "", "", instrument.score.mean, instrument.score.n,
                   instrument.favourable, instrument.disagree, instrument.neutral, instrument.agree, "", None,
                   instrument.kind, None, None, None, None, "")  # fmt: skip
        for item in instrument.items:
            # A choice's shares as "option=share" in the options' order (the options are the scale's labels).
            options = " | ".join(f"{label}={share:.4f}" for label, share in zip(instrument.labels, item.option_shares))
            yield (
                result.number, instrument.key, item.key, item.text, "yes" if item.reverse else "no", item.mean, item.n,
                item.favourable, item.disagree, item.neutral, item.agree, " ".join(map(str, item.distribution)),
                None if item.n is not None else "fewer_than_k", instrument.kind,
                item.promoters, item.passives, item.detractors, item.recommend_score, options,
            )  # fmt: skip


TEAMS_HEADER = ("team", "column", "value", "empty_because")


def team_rows(grid: TeamGrid) -> Iterable[tuple]:
    for row in grid.rows:
        for key, value, why in zip(grid.column_keys, row.values, row.empty_because, strict=True):
            yield (row.name, key, value, why)


VITALITY_HEADER = ("section", "label", "value", "empty_because")


def vitality_rows(v: Vitality) -> Iterable[tuple]:
    yield ("active_members", "now", v.active_members, None)
    for p in v.participation:
        yield ("response_rate", f"{p.survey} round {p.number} ({p.closed_on.isoformat()})", p.response_rate, p.empty_because)
        yield ("members_at_opening", f"{p.survey} round {p.number} ({p.closed_on.isoformat()})", p.members, None)
    for a in v.activity:
        yield ("stories", a.month, a.stories, None)
        yield ("replies", a.month, a.replies, None)
        yield ("reactions", a.month, a.reactions, None)
    for d in v.keys:
        yield ("vitality_key", d.key, d.mean, d.empty_because)


OBJECTIVES_HEADER = (
    "title", "metric", "direction", "baseline", "current", "current_on", "target", "starts_on", "due_on", "progress", "status"
)  # fmt: skip


def objective_rows(objectives: list[ObjectiveView]) -> Iterable[tuple]:
    for o in objectives:
        current_on = o.current_on.isoformat() if o.current_on else None
        yield (
            o.title, o.metric, o.direction, o.baseline, o.current, current_on, o.target,
            o.starts_on.isoformat(), o.due_on.isoformat(), o.progress, o.status,
        )  # fmt: skip


ACTIONS_HEADER = ("title", "status", "owner", "due_on", "created_on", "round", "instrument", "statement_key", "statement")


def action_rows(actions: list[ActionView]) -> Iterable[tuple]:
    for a in actions:
        due_on = a.due_on.isoformat() if a.due_on else None
        yield (a.title, a.status, a.owner, due_on, a.created_on.isoformat(), a.round_number, a.instrument, a.item, a.statement)
