"""Sufficient statistics of a survey round: fold one answer set into a Tally, merge tallies.

The server never keeps one person's answers. Each answer set is folded into the round's tally
and thrown away, so a tally holds only counts and sums. Everything here is integer arithmetic:
folding is then exactly commutative, and the stored tally (and its JSON) is identical whatever
order people answered in, so it cannot leak that order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping

import msgspec

SCALE_POINTS = (5, 7)
# The kinds of scale (surveys.instrument.Scale.kind imports them): agreement has a score, keyed sums
# and cross products; a 0..10 scale and a single choice keep only counts per point, skips and respondents.
AGREEMENT, ZERO_TO_TEN, CHOICE = "agreement", "zero_to_ten", "choice"
CHOICE_OPTIONS = (2, 10)


class AnswerError(ValueError):
    """One answer set does not fit the instrument; `item` names the offending item, if any."""

    def __init__(self, item: str | None, reason: str) -> None:
        self.item = item
        self.reason = reason
        super().__init__(f"{item}: {reason}" if item is not None else reason)


class Tally(msgspec.Struct, forbid_unknown_fields=True):
    """Counts and sums for one round and one group; never a single person's answers.

    `counts[item]` has one count per point: agreement 1..points, zero_to_ten 0..10 (11 counts),
    choice one per option. The score, keyed and cross fields are filled for agreement only.
    """

    items: list[str]
    reverse: list[str]
    points: int
    respondents: int = 0
    counts: dict[str, list[int]] = msgspec.field(default_factory=dict)
    skipped: dict[str, int] = msgspec.field(default_factory=dict)
    score_n: int = 0
    score_sum: int = 0
    score_sumsq: int = 0
    score_hist: list[int] = msgspec.field(default_factory=list)
    complete_n: int = 0
    keyed_sum: dict[str, int] = msgspec.field(default_factory=dict)
    keyed_sumsq: dict[str, int] = msgspec.field(default_factory=dict)
    cross: dict[str, int] = msgspec.field(default_factory=dict)
    kind: str = AGREEMENT  # tallies stored before kinds existed are agreement tallies

    @property
    def lowest(self) -> int:
        """The answer counted in counts[item][0]: 0 on a 0..10 scale, else 1."""
        return 0 if self.kind == ZERO_TO_TEN else 1


def score_scale(tally: Tally) -> int:
    """The factor L = lcm(1..k) that makes every respondent's mean score an exact integer.

    A mean over m answered items (1 <= m <= k) times L is always whole, so scores stay in
    integers and sums of them never depend on the order they were added in.
    """
    return math.lcm(*range(1, len(tally.items) + 1))


# More answer sets than any tally takes (one per member of a community): the bound of
# encode_fixed_length. A tally past it still encodes, only no longer at the fixed length.
MAX_ANSWER_SETS = 10**7


def encode_fixed_length(tally: Tally) -> bytes:
    """The tally's JSON, padded with trailing spaces (JSON whitespace: it decodes as is) to the
    length it would have with every count and sum at its largest for MAX_ANSWER_SETS answer sets.

    The length then depends on the instrument's shape only, never on what was answered: sealing
    hides a tally's content but not its length, and the states a database keeps of a tally row
    (PostgreSQL pages and WAL), each written beside a ledger row naming who answered, would
    otherwise tell from a sum gaining a digit how high that person answered."""
    plain = msgspec.json.encode(tally)
    return plain + b" " * max(0, _largest_length(tuple(tally.items), tuple(tally.reverse), tally.points, tally.kind) - len(plain))


@functools.lru_cache(maxsize=256)
def _largest_length(items: tuple[str, ...], reverse: tuple[str, ...], points: int, kind: str) -> int:
    """Once per instrument shape: every answer batch of a round seals its tallies at this length."""
    return len(msgspec.json.encode(_largest(new_tally(list(items), list(reverse), points, kind))))


def _largest(tally: Tally) -> Tally:
    n, top = MAX_ANSWER_SETS, tally.points + tally.lowest
    scaled = top * score_scale(tally)  # the largest mean score, scaled as _fold_into scales it
    t = _canonical(tally)
    return msgspec.structs.replace(
        t,
        respondents=n,
        counts={k: [n] * len(row) for k, row in t.counts.items()},
        skipped=dict.fromkeys(t.skipped, n),
        score_n=n,
        score_sum=n * scaled,
        score_sumsq=n * scaled * scaled,
        score_hist=[n] * len(t.score_hist),
        complete_n=n,
        keyed_sum=dict.fromkeys(t.keyed_sum, n * top),
        keyed_sumsq=dict.fromkeys(t.keyed_sumsq, n * top * top),
        cross=dict.fromkeys(t.cross, n * top * top),
    )

def pair_key(a: str, b: str) -> str:
    """The key of a pair of items in `Tally.cross`; `a` comes before `b` in the instrument."""
    return f"{a}|{b}"


def _pairs(items: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(items) for b in items[i + 1 :]]


def _check_scale(kind: str, points: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int):
        raise ValueError(f"points must be a whole number, got {points!r}")
    if kind == AGREEMENT and points not in SCALE_POINTS:
        raise ValueError(f"points must be 5 or 7, got {points!r}")
    if kind == ZERO_TO_TEN and points != 11:
        raise ValueError(f"a 0-10 scale has 11 points, got {points!r}")
    if kind == CHOICE and not CHOICE_OPTIONS[0] <= points <= CHOICE_OPTIONS[1]:
        raise ValueError(f"a single choice has 2 to 10 options, got {points!r}")
    if kind not in (AGREEMENT, ZERO_TO_TEN, CHOICE):
        raise ValueError(f"unknown scale kind {kind!r}")


def new_tally(items: list[str], reverse: list[str], points: int, kind: str = AGREEMENT) -> Tally:
    """An empty tally for an instrument, with every key present so its JSON has a fixed shape."""
    items = list(items)
    if not items:
        raise ValueError("an instrument needs at least one item")
    if len(set(items)) != len(items):
        raise ValueError(f"item keys must be unique, got {items}")
    for key in items:
        if not isinstance(key, str) or not key or "|" in key:
            raise ValueError(f"item key {key!r} must be a non-empty string without '|'")
    unknown = [key for key in reverse if key not in items]
    if unknown:
        raise ValueError(f"reverse-keyed items {unknown} are not among the items {items}")
    _check_scale(kind, points)
    if reverse and kind != AGREEMENT:
        raise ValueError(f"only agreement items can be reverse-keyed, not {kind} items {list(reverse)}")
    return _canonical(Tally(items=items, reverse=[k for k in items if k in reverse], points=points, kind=kind))


def _canonical(t: Tally) -> Tally:
    """A copy with every dict filled in instrument order, so equal tallies encode to equal bytes."""
    zero = [0] * t.points
    for key, row in t.counts.items():
        if len(row) != t.points:
            raise ValueError(f"tally counts for {key!r} have {len(row)} points, not {t.points}")
    if t.score_hist and len(t.score_hist) != t.points:
        raise ValueError(f"tally score histogram has {len(t.score_hist)} bins, not {t.points}")
    scored = t.kind == AGREEMENT  # no score, keyed sums or cross products where no order or no reversal
    return Tally(
        items=list(t.items),
        reverse=list(t.reverse),
        points=t.points,
        respondents=t.respondents,
        counts={k: list(t.counts.get(k, zero)) for k in t.items},
        skipped={k: t.skipped.get(k, 0) for k in t.items},
        score_n=t.score_n,
        score_sum=t.score_sum,
        score_sumsq=t.score_sumsq,
        score_hist=list(t.score_hist or zero) if scored else [],
        complete_n=t.complete_n,
        keyed_sum={k: t.keyed_sum.get(k, 0) for k in t.items} if scored else {},
        keyed_sumsq={k: t.keyed_sumsq.get(k, 0) for k in t.items} if scored else {},
        cross={pair_key(a, b): t.cross.get(pair_key(a, b), 0) for a, b in _pairs(t.items)} if scored else {},
        kind=t.kind,
    )


def check_answers(tally: Tally, answers: Mapping[str, int | None]) -> dict[str, int | None]:
    """Validate one answer set; return it with every item present (None = prefer not to answer)."""
    if not isinstance(answers, Mapping):
        raise AnswerError(None, "answers must map item keys to scale points")
    known = set(tally.items)
    for key in answers:
        if key not in known:
            raise AnswerError(
                str(key), "not an item of this survey; reload the form and answer again"
            )
    normalised: dict[str, int | None] = {}
    low, high = tally.lowest, tally.lowest + tally.points - 1
    for key in tally.items:
        value = answers.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
        ):
            if tally.kind == CHOICE:
                reason = f"{value!r} is not one of the {tally.points} options; choose 1 to {high}"
            elif tally.kind == AGREEMENT:
                reason = f"{value!r} is not on the {high}-point scale; choose 1 to {high}"
            else:
                reason = f"{value!r} is not on the {low}-{high} scale; choose {low} to {high}"
            raise AnswerError(key, reason)
        normalised[key] = value
    return normalised


def keyed(tally: Tally, key: str, value: int) -> int:
    """The answer with reverse-keyed items turned round, so higher always means more trust."""
    return tally.points + 1 - value if key in tally.reverse else value


def fold(tally: Tally, answers: Mapping[str, int | None]) -> Tally:
    """A new tally with one more answer set folded in; the answer set itself is not kept."""
    return fold_all(tally, [answers])


def fold_all(tally: Tally, answer_sets: Iterable[Mapping[str, int | None]]) -> Tally:
    """A new tally with every answer set folded in, in one copy (a batch of answers)."""
    t = _canonical(tally)
    for answers in answer_sets:
        _fold_into(t, check_answers(tally, answers))
    return t


def _fold_into(t: Tally, answers: dict[str, int | None]) -> None:
    t.respondents += 1
    for key, value in answers.items():
        if value is None:
            t.skipped[key] += 1
        else:
            t.counts[key][value - t.lowest] += 1
    if t.kind != AGREEMENT:
        return  # counts per point are all a 0..10 or a choice question's figures need
    given = {key: keyed(t, key, value) for key, value in answers.items() if value is not None}
    if given:
        answered, total = len(given), sum(given.values())
        scaled = total * score_scale(t) // answered  # exact: `answered` divides the scale
        t.score_n += 1
        t.score_sum += scaled
        t.score_sumsq += scaled * scaled
        nearest = (2 * total + answered) // (2 * answered)  # mean rounded half up, in integers
        t.score_hist[min(max(nearest, 1), t.points) - 1] += 1
    if len(given) == len(t.items):
        t.complete_n += 1
        for key, value in given.items():
            t.keyed_sum[key] += value
            t.keyed_sumsq[key] += value * value
        for a, b in _pairs(t.items):
            t.cross[pair_key(a, b)] += given[a] * given[b]


def merge(a: Tally, b: Tally) -> Tally:
    """The tally of both groups of answer sets together (e.g. teams into a community)."""
    if (a.items, a.reverse, a.points, a.kind) != (b.items, b.reverse, b.points, b.kind):
        raise ValueError(
            "cannot merge tallies of different instruments: "
            f"{a.items} {a.reverse} {a.points}-point {a.kind} vs {b.items} {b.reverse} {b.points}-point {b.kind}"
        )
    a, b = _canonical(a), _canonical(b)

    def add(x: dict[str, int], y: dict[str, int]) -> dict[str, int]:
        return {key: x[key] + y[key] for key in x}

    return Tally(
        items=a.items,
        reverse=a.reverse,
        points=a.points,
        respondents=a.respondents + b.respondents,
        counts={k: [x + y for x, y in zip(a.counts[k], b.counts[k])] for k in a.items},
        skipped=add(a.skipped, b.skipped),
        score_n=a.score_n + b.score_n,
        score_sum=a.score_sum + b.score_sum,
        score_sumsq=a.score_sumsq + b.score_sumsq,
        score_hist=[x + y for x, y in zip(a.score_hist, b.score_hist)],
        complete_n=a.complete_n + b.complete_n,
        keyed_sum=add(a.keyed_sum, b.keyed_sum),
        keyed_sumsq=add(a.keyed_sumsq, b.keyed_sumsq),
        cross=add(a.cross, b.cross),
        kind=a.kind,
    )
