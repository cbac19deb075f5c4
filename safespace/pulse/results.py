"""A round's results as people may see them: every figure passes surveys.disclosure first.

This is the minimal view of the pulse work: whole-community figures only. Team comparisons,
which need complementary suppression (P2), come with the insights pages.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.privacy.crypto import Keyring, associated_data
from safespace.pulse.models import ReleasedComment, Round, Tally
from safespace.pulse.services import COMMUNITY, is_open, round_instruments
from surveys import disclosure, stats
from surveys import tally as tally_rules


class ItemResult(msgspec.Struct):
    key: str
    text: str
    reverse: bool
    mean: float | None  # of the answers as given: a reversed statement's is not turned round
    # Shares of the answers after reverse keying (surveys.stats.Shares): favourable is the top two
    # points; disagree / neutral / agree split every answer at the middle point, to any degree.
    # All four None when the statement is hidden, like the rest of its row.
    favourable: float | None
    disagree: float | None
    neutral: float | None
    agree: float | None
    distribution: list[int]  # answers per scale point 1..points; empty when fewer than k answered the item
    n: int | None = None  # people who answered this statement (the figures above rest on them); None: hidden
    # A 0..10 question (eNPS): shares 0-1 of promoters (9-10), passives (7-8), detractors (0-6), and
    # the score %promoters - %detractors (-100..100). None for other kinds and when hidden.
    promoters: float | None = None
    passives: float | None = None
    detractors: float | None = None
    recommend_score: float | None = None
    # A single choice: each option's share (0-1), in the options' order; empty for other kinds or hidden.
    option_shares: list[float] = msgspec.field(default_factory=list)


class InstrumentResult(msgspec.Struct):
    key: str
    name: str
    points: int
    score: stats.Estimate | None  # None when fewer than k answered any of its items
    favourable: float | None
    disagree: float | None
    neutral: float | None
    agree: float | None
    reliability: float | None  # Cronbach's alpha, only with at least 10 complete answer sets
    items: list[ItemResult]
    comments: list[str]  # released comments in random order; on pages only the first COMMENTS_SHOWN
    comments_total: int  # how many were released, shown or not
    # What the four shares rest on: the answers to the statements shown, pooled (score.n is the
    # people the scale score rests on: those who answered at least one statement).
    favourable_n: int | None = None
    # agreement | zero_to_ten | choice: which of the figures above exist (surveys.instrument.Scale).
    # For 0..10 and choice there is no scale score, favourable, mean or reliability: they stay None.
    kind: str = "agreement"
    labels: list[str] = msgspec.field(default_factory=list)  # the options of a choice, the ends of 0..10


class RoundResult(msgspec.Struct):
    round_id: str
    number: int
    opens_at: datetime
    closes_at: datetime
    status: str  # "open" | "closed" | "scheduled"
    min_group_size: int
    members: int
    respondents: int | None  # None: hidden (fewer than k, or still open)
    response_rate: float | None  # None: hidden (fewer than k answered, or fewer than k members)
    instruments: list[InstrumentResult]  # empty unless the round is closed and met k
    # Members who took a second answer token in another browser (or answered with the form after
    # taking one): up to this many answers may be a member's second. Counted at close; 0 before.
    reissued_tokens: int = 0


MIN_FOR_RELIABILITY = 10


def _item_result(item, tally: tally_rules.Tally, k: int, language: str) -> ItemResult:  # noqa: ANN001
    """One statement's figures; every one rests on the people who answered it (P1 per item: five
    people in the round but one who answered this statement is one person)."""
    counts = tally.counts[item.key]
    shown = disclosure.enough(sum(counts), k)
    agreement = tally.kind == tally_rules.AGREEMENT
    estimate = stats.item_estimate(tally, item.key) if shown and agreement else None
    shares = stats.item_shares(tally, item.key) if shown and agreement else None
    recommend = stats.recommend(counts) if shown and tally.kind == tally_rules.ZERO_TO_TEN else None
    options = stats.option_shares(counts) if shown and tally.kind == tally_rules.CHOICE else None
    return ItemResult(
        key=item.key,
        text=item.text.get(language),
        reverse=item.reverse,
        mean=estimate.mean if estimate else None,
        favourable=shares.favourable if shares else None,
        disagree=shares.disagree if shares else None,
        neutral=shares.neutral if shares else None,
        agree=shares.agree if shares else None,
        distribution=list(counts) if shown else [],
        n=sum(counts) if shown else None,
        promoters=recommend.promoters if recommend else None,
        passives=recommend.passives if recommend else None,
        detractors=recommend.detractors if recommend else None,
        recommend_score=recommend.score if recommend else None,
        option_shares=options or [],
    )


def instrument_result(
    instrument, tally: tally_rules.Tally, k: int, language: str, comments: list[str], comments_total: int | None = None  # noqa: ANN001
) -> InstrumentResult:
    items = [_item_result(item, tally, k, language) for item in instrument.items]
    agreement = instrument.scale.kind == tally_rules.AGREEMENT
    scored = agreement and disclosure.enough(tally.score_n, k)
    # Pooled over the statements that are shown only: pooling a hidden one in would let it be
    # recovered by subtracting the shown ones.
    pooled = stats.favourable(tally, [item.key for item in items if item.favourable is not None]) if scored else None
    return InstrumentResult(
        key=instrument.key,
        name=instrument.name.get(language),
        points=instrument.scale.points,
        score=stats.scale_estimate(tally) if scored else None,
        favourable=pooled.favourable if pooled else None,
        disagree=pooled.disagree if pooled else None,
        neutral=pooled.neutral if pooled else None,
        agree=pooled.agree if pooled else None,
        reliability=stats.cronbach_alpha(tally) if agreement and tally.complete_n >= MIN_FOR_RELIABILITY else None,
        items=items,
        comments=comments,
        comments_total=len(comments) if comments_total is None else comments_total,
        favourable_n=pooled.n if pooled else None,
        kind=instrument.scale.kind,
        labels=[label.get(language) for label in instrument.scale.labels],
    )


COMMENTS_SHOWN = 50  # per statement block on a results page; "show all" and the exports give every one

# A round's released comments, the first `shown` of each instrument in their (random) order, with
# how many each has: no ORM objects, and only what is shown is decrypted. A big community's round
# releases hundreds; its results page should not grow with them.
_RANKED = select(
    ReleasedComment.id,
    ReleasedComment.instrument,
    ReleasedComment.body,
    func.row_number().over(partition_by=ReleasedComment.instrument, order_by=ReleasedComment.position).label("n"),
    func.count().over(partition_by=ReleasedComment.instrument).label("total"),
).where(ReleasedComment.round_id == bindparam("round_id")).subquery()
_COMMENTS = select(_RANKED).where(_RANKED.c.n <= bindparam("shown")).order_by(_RANKED.c.instrument, _RANKED.c.n)
_ALL = 2**31 - 1


def comments_shown(choice: str | None) -> int | None:
    """A results page's ?comments=: "all", or by default the first COMMENTS_SHOWN."""
    return None if choice == "all" else COMMENTS_SHOWN


# A closed round's figures never change: close_round wrote its last tallies and released its
# comments in one transaction, and nothing writes to either after. So they are worked out once per
# process, keyed by everything they are drawn from: the round (its k and comment threshold are
# its own, fixed at opening), the language of the names and statements, and how many comments are
# shown. Nothing of the viewer is in them: every member and facilitator sees the same figures.
# Results are not in a time zone (the pages date them); an open or scheduled round is never kept.
_CLOSED: dict[tuple, RoundResult] = {}
_CLOSED_KEPT = 512  # a full cache starts again


async def round_result(
    db: AsyncSession, keyring: Keyring, round_: Round, language: str, moment: datetime, comment_limit: int | None = None
) -> RoundResult:
    """A round's figures; `comment_limit` caps the comments decrypted per instrument (None: all)."""
    if not round_.closed:
        return await _round_result(db, keyring, round_, language, moment, comment_limit)
    key = (round_.id, round_.min_group_size, round_.comment_threshold, language, comment_limit)
    found = _CLOSED.get(key)
    if found is None:
        found = await _round_result(db, keyring, round_, language, moment, comment_limit)
        if len(_CLOSED) >= _CLOSED_KEPT:
            _CLOSED.clear()
        _CLOSED[key] = found
    return found  # shared by every request that reads it: read only


async def _round_result(
    db: AsyncSession, keyring: Keyring, round_: Round, language: str, moment: datetime, comment_limit: int | None
) -> RoundResult:
    answered = await tallied(db, round_.id)
    members = int(round_.population.get(COMMUNITY, 0))
    view = disclosure.group_view(answered, members, round_.min_group_size, closed=round_.closed)
    status = "closed" if round_.closed else ("open" if is_open(round_, moment) else "scheduled")
    instruments: list[InstrumentResult] = []
    if view.results:
        tallies = {
            row.instrument: msgspec.json.decode(row.data, type=tally_rules.Tally)
            for row in await db.scalars(
                select(Tally).where(Tally.round_id == round_.id, Tally.group_key == COMMUNITY)
            )
        }
        comments: dict[str, list[str]] = {}
        totals: dict[str, int] = {}
        if disclosure.comments_visible(answered, round_.min_group_size, round_.comment_threshold):
            shown = _ALL if comment_limit is None else comment_limit
            for row in await db.execute(_COMMENTS, {"round_id": round_.id, "shown": shown}):
                totals[row.instrument] = row.total
                text = keyring.open(row.body, associated_data("released_comment", "body", f"{round_.id}/{row.id}"))
                comments.setdefault(row.instrument, []).append(text)
        for instrument in round_instruments(round_):
            if instrument.key in tallies:
                instruments.append(
                    instrument_result(
                        instrument, tallies[instrument.key], round_.min_group_size, language,
                        comments.get(instrument.key, []), totals.get(instrument.key, 0),
                    )  # fmt: skip
                )
    return RoundResult(
        round_id=str(round_.id),
        number=round_.number,
        opens_at=round_.opens_at,
        closes_at=round_.closes_at,
        status=status,
        min_group_size=round_.min_group_size,
        members=members,
        respondents=view.respondents,
        response_rate=view.response_rate,
        instruments=instruments,
        reissued_tokens=round_.reissued if status == "closed" and view.respondents is not None else 0,
    )


async def tallied(db: AsyncSession, round_id) -> int:  # noqa: ANN001
    """How many answer sets a round's community tally holds (0 once a round below k closed).

    Not the ledger: with answer tokens it also lists members who took a token and never used it.
    """
    found = await db.scalar(select(func.max(Tally.respondents)).where(Tally.round_id == round_id, Tally.group_key == COMMUNITY))
    return found or 0


# --- released figures for the insights pages (closed rounds only) ---------------------------


async def closed_rounds(db: AsyncSession, survey_id, limit: int | None = None) -> list[Round]:  # noqa: ANN001
    """A survey's closed rounds, oldest first (the last `limit` of them)."""
    query = select(Round).where(Round.survey_id == survey_id, Round.closed.is_(True)).order_by(Round.number.desc())
    rows = list(await db.scalars(query.limit(limit) if limit else query))
    return rows[::-1]


async def released_tallies(db: AsyncSession, rounds: list[Round], group: str | None = None) -> dict[tuple, tally_rules.Tally]:
    """(round id, instrument, group key) -> tally, for closed rounds only (P3); one group or all.

    A closed round keeps only tallies that passed the storage rule (surveys.disclosure.
    groups_to_keep), so a missing key means "hidden", never "zero".
    """
    closed = [r.id for r in rounds if r.closed]
    if not closed:
        return {}
    query = select(Tally.round_id, Tally.instrument, Tally.group_key, Tally.data).where(Tally.round_id.in_(closed))
    rows = await db.execute(query.where(Tally.group_key == group) if group else query)
    return {(r, i, g): msgspec.json.decode(d, type=tally_rules.Tally) for r, i, g, d in rows}
