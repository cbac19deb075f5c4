"""Statistics from tallies match the textbook formulas applied to the raw answers."""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import astuple

from surveys.stats import (
    Estimate,
    Shares,
    cronbach_alpha,
    difference,
    favourable,
    item_estimate,
    item_shares,
    scale_estimate,
    t_quantile_975,
)
from surveys.tally import Tally, fold, new_tally

Round = tuple[Tally, list[dict[str, int | None]]]

# The hand-worked round of test_tally: 5 points, items a b c, c reverse-keyed (keyed = 6 - raw).
#   r1: a=4 b=5    c=2 -> keyed 4 5 4, score 13/3
#   r2: a=3 b=skip c=1 -> keyed 3 . 5, score  8/2
#   r3: a=2 b=3    c=4 -> keyed 2 3 2, score  7/3
SMALL_ROUND = [{"a": 4, "b": 5, "c": 2}, {"a": 3, "b": None, "c": 1}, {"a": 2, "b": 3, "c": 4}]


def folded(tally: Tally, answer_sets: list[dict[str, int | None]]) -> Tally:
    for answers in answer_sets:
        tally = fold(tally, answers)
    return tally


def close(obtained: Estimate | Shares | None, expected: Estimate | Shares, abs: float = 1e-6):
    """Compare a Struct field by field to hand-computed values rounded to six places."""
    assert obtained is not None
    assert type(obtained) is type(expected)
    return astuple(obtained) == pytest.approx(astuple(expected), abs=abs)


def small_round() -> Tally:
    return folded(new_tally(["a", "b", "c"], ["c"], 5), SMALL_ROUND)


# --- Student's t ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042), (40, 2.021), (60, 2.000),
     (100, 1.984), (120, 1.980), (1000, 1.962), (10**9, 1.960)],
)  # fmt: skip
def test_t_quantile_matches_the_printed_tables(df: int, expected: float) -> None:
    assert t_quantile_975(df) == pytest.approx(expected, abs=1e-3)


def _t_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for integer df, closed form (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    first = 3 if df % 2 else 2
    term = total = c if df % 2 else 1.0
    for j in range(first, df - 1, 2):
        term *= c * c * (j - 1) / j
        total += term
    if df % 2 == 0:
        return s * total
    return 2 / math.pi * (theta + (s * total if df > 1 else 0.0))


def test_t_quantile_agrees_with_the_exact_distribution() -> None:
    for df in [*range(1, 121), 150, 200, 300]:
        low, high = 1.0, 20.0
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if _t_two_sided(mid, df) < 0.95 else (low, mid)
        assert t_quantile_975(df) == pytest.approx(low, abs=1e-5), df


@pytest.mark.parametrize("df", [0, -3, 2.5, True])
def test_t_quantile_refuses_impossible_degrees_of_freedom(df: object) -> None:
    with pytest.raises(ValueError):
        t_quantile_975(df)  # type: ignore[arg-type]


# --- hand-computed values -------------------------------------------------------------------


def test_item_estimate_by_hand() -> None:
    # a: 4, 3, 2 -> mean 3, sample variance ((1 + 0 + 1) / 2) = 1, sd 1
    # CI: 3 -/+ t(2) * 1 / sqrt(3) = 3 -/+ 4.302653 / 1.732051 = 3 -/+ 2.484138
    estimate = item_estimate(small_round(), "a")
    assert close(estimate, Estimate(n=3, mean=3.0, sd=1.0, ci_low=0.515862, ci_high=5.484138))


def test_item_estimate_uses_raw_answers_of_reversed_item() -> None:
    # c raw: 2, 1, 4 -> mean 7/3, as people saw the scale (not 11/3 after keying)
    assert item_estimate(small_round(), "c").mean == pytest.approx(7 / 3)


def test_scale_estimate_by_hand() -> None:
    # scores 13/3, 12/3, 7/3 -> mean 32/9 = 3.555556
    # deviations 7/9, 4/9, -11/9 -> squares (49 + 16 + 121) / 81 = 186/81; / (n - 1) = 31/27
    # sd = sqrt(31/27) = 1.071517; half width = 4.302653 * 1.071517 / sqrt(3) = 2.661795
    estimate = scale_estimate(small_round())
    assert close(
        estimate, Estimate(n=3, mean=3.555556, sd=1.071517, ci_low=0.893760, ci_high=6.217351)
    )


def test_item_shares_by_hand_after_reverse_keying() -> None:
    # c keyed: 4, 5, 2 -> favourable (4, 5) 2/3; disagree (1, 2) 1/3, neutral (3) 0, agree (4, 5) 2/3
    assert close(item_shares(small_round(), "c"), Shares(3, favourable=0.666667, disagree=0.333333, neutral=0.0, agree=0.666667))


def test_favourable_pools_every_answer_by_hand() -> None:
    # keyed answers: a 4 3 2, b 5 3, c 4 5 2 -> 8 answers
    # favourable 4 5 4 5 = 4/8; disagree 2 2 = 2/8; neutral 3 3 = 2/8; agree = favourable on 5 points
    assert favourable(small_round()) == Shares(n=8, favourable=0.5, disagree=0.25, neutral=0.25, agree=0.5)


def test_favourable_pools_only_the_items_asked_for() -> None:
    # a and b keyed: 4 3 2, 5 3 -> favourable 4 5 = 2/5; disagree 2 = 1/5; neutral 3 3 = 2/5
    assert favourable(small_round(), ["a", "b"]) == Shares(n=5, favourable=0.4, disagree=0.2, neutral=0.4, agree=0.4)
    assert favourable(small_round(), []) is None
    with pytest.raises(ValueError, match="not an item"):
        favourable(small_round(), ["z"])


def test_seven_point_shares_split_at_the_middle_and_favourable_is_the_top_two() -> None:
    tally = folded(new_tally(["a"], [], 7), [{"a": v} for v in range(1, 8)])
    assert close(item_shares(tally, "a"), Shares(7, favourable=2 / 7, disagree=3 / 7, neutral=1 / 7, agree=3 / 7))


def test_seven_point_agreement_is_not_hidden_in_neutral() -> None:
    """Issue 17: statement 4, ten of twelve agreeing to some degree (mean 4.92), read 17% favourable
    and 83% neutral, because neutral was everything between the bottom two and the top two."""
    answers = [3, 4] + [5] * 8 + [6, 6]  # 59 / 12 = 4.92
    tally = folded(new_tally(["risk"], [], 7), [{"risk": v} for v in answers])
    assert item_estimate(tally, "risk").mean == pytest.approx(4.92, abs=0.005)
    shares = item_shares(tally, "risk")
    assert (shares.n, round(shares.agree * 100), round(shares.favourable * 100)) == (12, 83, 17)
    assert (round(shares.disagree * 100), round(shares.neutral * 100)) == (8, 8)


def test_a_reversed_item_agrees_in_the_favourable_direction() -> None:
    """Agree, like favourable, is counted after reverse keying: disagreeing with "mistakes are held
    against me" is the favourable answer, and counts as agree."""
    raw = [1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 5, 5]  # mostly disagreeing with a negatively worded item
    tally = folded(new_tally(["mistakes"], ["mistakes"], 7), [{"mistakes": v} for v in raw])
    shares = item_shares(tally, "mistakes")
    # keyed = 8 - raw: 7 7 7 6 6 6 6 5 5 4 3 3
    assert close(shares, Shares(12, favourable=7 / 12, disagree=2 / 12, neutral=1 / 12, agree=9 / 12))
    assert item_estimate(tally, "mistakes").mean == pytest.approx(31 / 12)  # the mean stays as answered


CRONBACH_DATA = [[3, 4, 3], [4, 5, 4], [2, 3, 3], [5, 5, 4]]


def _textbook_alpha(rows: list[list[int]]) -> float:
    k = len(rows[0])
    item_variances = sum(statistics.variance(column) for column in zip(*rows))
    return k / (k - 1) * (1 - item_variances / statistics.variance([sum(r) for r in rows]))


def test_cronbach_alpha_by_hand() -> None:
    # item variances (n - 1): 5/3, 2.75/3, 1/3 -> sum 8.75/3
    # totals 10, 13, 8, 14 -> mean 11.25, squared deviations 22.75 -> variance 22.75/3
    # alpha = 3/2 * (1 - 8.75/22.75) = 3/2 * 14/22.75 = 12/13 = 0.923077
    tally = folded(new_tally(["a", "b", "c"], [], 5), [dict(zip("abc", r)) for r in CRONBACH_DATA])
    assert cronbach_alpha(tally) == pytest.approx(12 / 13)
    assert cronbach_alpha(tally) == pytest.approx(_textbook_alpha(CRONBACH_DATA))


def test_cronbach_alpha_uses_keyed_values() -> None:
    # the same people, but item c is printed reversed (raw = 6 - keyed): alpha must not change
    rows = [{"a": r[0], "b": r[1], "c": 6 - r[2]} for r in CRONBACH_DATA]
    tally = folded(new_tally(["a", "b", "c"], ["c"], 5), rows)
    assert cronbach_alpha(tally) == pytest.approx(12 / 13)


def test_difference_by_hand() -> None:
    # var/n: 1/4 = 0.25 and 4/5 = 0.8 -> se = sqrt(1.05) = 1.024695
    # Welch df = 1.05^2 / (0.25^2/3 + 0.8^2/4) = 1.1025 / 0.180833 = 6.097 -> 6, t = 2.446912
    # half width = 2.446912 * 1.024695 = 2.507339
    before = Estimate(n=4, mean=3.0, sd=1.0, ci_low=None, ci_high=None)
    after = Estimate(n=5, mean=4.0, sd=2.0, ci_low=None, ci_high=None)
    change = difference(before, after)
    assert change is not None
    assert (change.n, change.mean, change.sd) == (9, 1.0, None)
    assert (change.ci_low, change.ci_high) == pytest.approx((1 - 2.507339, 1 + 2.507339))


def test_difference_of_constant_groups_is_exact() -> None:
    before = Estimate(n=3, mean=2.0, sd=0.0, ci_low=2.0, ci_high=2.0)
    after = Estimate(n=3, mean=5.0, sd=0.0, ci_low=5.0, ci_high=5.0)
    assert difference(before, after) == Estimate(n=6, mean=3.0, sd=None, ci_low=3.0, ci_high=3.0)


# --- too little data gives None, never an exception -----------------------------------------


def test_empty_tally_has_no_statistics() -> None:
    empty = new_tally(["a", "b"], ["b"], 7)
    assert item_estimate(empty, "a") is None
    assert item_shares(empty, "a") is None
    assert scale_estimate(empty) is None
    assert favourable(empty) is None
    assert cronbach_alpha(empty) is None


def test_one_respondent_has_a_mean_but_no_spread() -> None:
    tally = fold(new_tally(["a", "b"], [], 7), {"a": 5, "b": 6})
    assert item_estimate(tally, "a") == Estimate(n=1, mean=5.0, sd=None, ci_low=None, ci_high=None)
    assert scale_estimate(tally) == Estimate(n=1, mean=5.5, sd=None, ci_low=None, ci_high=None)
    assert cronbach_alpha(tally) is None
    assert difference(scale_estimate(tally), scale_estimate(tally)) is None


def test_alpha_needs_two_items_and_some_spread() -> None:
    one_item = folded(new_tally(["a"], [], 5), [{"a": 1}, {"a": 5}])
    assert cronbach_alpha(one_item) is None
    all_same = folded(new_tally(["a", "b"], [], 5), [{"a": 3, "b": 3}] * 4)
    assert cronbach_alpha(all_same) is None


def test_unknown_item_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="'z'"):
        item_estimate(small_round(), "z")


# --- properties against the raw answers -----------------------------------------------------


@st.composite
def raw_rounds(draw: st.DrawFn) -> Round:
    k = draw(st.integers(1, 5))
    items = [f"q{i}" for i in range(k)]
    reverse = draw(st.lists(st.sampled_from(items), unique=True))
    tally = new_tally(items, reverse, draw(st.sampled_from([5, 7])))
    value = st.one_of(st.none(), st.integers(1, tally.points))
    answers = st.fixed_dictionaries({key: value for key in items})
    return tally, draw(st.lists(answers, max_size=15))


def _keyed(tally: Tally, key: str, value: int) -> int:
    return tally.points + 1 - value if key in tally.reverse else value


@settings(max_examples=200, deadline=None)
@given(raw_rounds())
def test_estimates_match_the_raw_answers(round_: Round) -> None:
    empty, answer_sets = round_
    tally = folded(empty, answer_sets)
    for key in tally.items:
        values = [a[key] for a in answer_sets if a[key] is not None]
        estimate = item_estimate(tally, key)
        assert (estimate is None) == (not values)
        if values:
            assert estimate.mean == pytest.approx(statistics.mean(values))
        if len(values) >= 2:
            assert estimate.sd == pytest.approx(statistics.stdev(values), abs=1e-9)
    scores = [
        Fraction(sum(given.values()), len(given))
        for a in answer_sets
        if (given := {k: _keyed(tally, k, v) for k, v in a.items() if v is not None})
    ]
    estimate = scale_estimate(tally)
    assert (estimate is None) == (not scores)
    if len(scores) >= 2:
        assert estimate.mean == pytest.approx(float(statistics.mean(scores)))
        assert estimate.sd == pytest.approx(math.sqrt(statistics.variance(scores)), abs=1e-9)
        half = t_quantile_975(len(scores) - 1) * estimate.sd / math.sqrt(len(scores))
        assert estimate.ci_high - estimate.ci_low == pytest.approx(2 * half)


@settings(max_examples=200, deadline=None)
@given(raw_rounds())
def test_alpha_matches_the_textbook_formula(round_: Round) -> None:
    empty, answer_sets = round_
    tally = folded(empty, answer_sets)
    rows = [
        [_keyed(tally, k, a[k]) for k in tally.items]
        for a in answer_sets
        if all(a[k] is not None for k in tally.items)
    ]
    alpha = cronbach_alpha(tally)
    if len(rows) < 2 or len(tally.items) < 2 or statistics.variance([sum(r) for r in rows]) == 0:
        assert alpha is None
    else:
        assert alpha == pytest.approx(_textbook_alpha(rows), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(raw_rounds())
def test_shares_add_up_to_one(round_: Round) -> None:
    empty, answer_sets = round_
    tally = folded(empty, answer_sets)
    for shares in [favourable(tally), *(item_shares(tally, k) for k in tally.items)]:
        if shares is not None:
            assert shares.disagree + shares.neutral + shares.agree == pytest.approx(1.0)
            assert 0 <= shares.favourable <= shares.agree + 1e-12
            if tally.points == 5:  # the top two of five are all of agree
                assert shares.favourable == pytest.approx(shares.agree)


# --- 0..10 questions read the eNPS way, and single-choice shares -----------------------------------


def test_recommend_splits_promoters_passives_detractors_and_scores() -> None:
    from surveys.stats import option_shares, recommend

    # 0..10: three detractors (0, 5, 6), two passives (7, 8), five promoters (9, 9, 10, 10, 10)
    counts = [1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 3]
    found = recommend(counts)
    assert (found.n, found.promoters, found.passives, found.detractors) == (10, 0.5, 0.2, 0.3)
    assert found.score == 20.0
    assert recommend([0] * 11) is None
    assert recommend([4] + [0] * 10).score == -100.0 and recommend([0] * 10 + [4]).score == 100.0
    assert option_shares([3, 1, 0]) == [0.75, 0.25, 0.0] and option_shares([0, 0]) is None


def test_the_recommend_score_is_a_mean_with_an_interval() -> None:
    from surveys.stats import recommend, recommend_estimate

    counts = [1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 3]  # five promoters, two passives, three detractors
    found = recommend_estimate(counts)
    assert found.n == 10 and found.mean == pytest.approx(recommend(counts).score) == pytest.approx(20)
    # the same as the mean of ten answers coded +100, 0 and -100
    coded = [100] * 5 + [0] * 2 + [-100] * 3
    sd = (sum((x - 20) ** 2 for x in coded) / 9) ** 0.5
    assert found.sd == pytest.approx(sd) and found.ci_low < 20 < found.ci_high
    assert recommend_estimate([0] * 11) is None
