"""Statistics derived from tallies: means, spread, 95% intervals, favourable shares, reliability.

Every function reads only a Tally's sums and counts. Where there are too few answers for a
number to exist, the function returns None rather than raising; whether a number may be shown
at all (minimum group size) is decided in surveys/disclosure.py, not here.
"""

from __future__ import annotations

import math
from fractions import Fraction

import msgspec

from surveys.tally import Tally, pair_key, score_scale


class Estimate(msgspec.Struct, frozen=True):
    """A mean with its sample SD (n - 1) and Student's t 95% interval; no spread when n < 2."""

    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None


class Shares(msgspec.Struct, frozen=True):
    """Fractions (0–1) of the answers, keyed: a reversed item's scale is turned round first, so the
    top of the scale is always the favourable end and "agree" always means the favourable direction.

    favourable is the top-two box (6–7 of 7, 4–5 of 5). disagree / neutral / agree split every
    answer at the middle point, to any degree (1–3 / 4 / 5–7 of 7), and add up to 1; favourable is
    part of agree. On a 7-point scale the top-two box alone hides agreement: ten of twelve at 5–7
    with two at 6–7 is 17% favourable and 83% agree.
    """

    n: int
    favourable: float
    disagree: float
    neutral: float
    agree: float


class Recommend(msgspec.Struct, frozen=True):
    """A 0..10 question read the eNPS way: promoters answered 9-10, passives 7-8, detractors 0-6
    (fractions 0-1 of those who answered); score is %promoters - %detractors, -100..100."""

    n: int
    promoters: float
    passives: float
    detractors: float
    score: float


# Two-sided 95% critical values of Student's t for df = 1..30 (index df - 1).
_T_975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004,
    2.262157, 2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905,
    2.109816, 2.100922, 2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899,
    2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
_Z_975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The two-sided 95% critical value of Student's t with `df` degrees of freedom."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a whole number of at least 1, got {df!r}")
    if df <= len(_T_975):
        return _T_975[df - 1]
    # Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5); error below 1e-6 for df > 30.
    z, v = _Z_975, float(df)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4


def _estimate(n: int, total: int, total_sq: int, scale: int = 1) -> Estimate | None:
    """Estimate from n, sum and sum of squares of values that were multiplied by `scale`."""
    if n < 1:
        return None
    mean = Fraction(total, n * scale)
    if n < 2:
        return Estimate(n=n, mean=float(mean), sd=None, ci_low=None, ci_high=None)
    # Exact variance in integers first: the textbook float formula cancels badly.
    variance = Fraction(n * total_sq - total * total, n * (n - 1) * scale * scale)
    sd = math.sqrt(variance)
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    low, high = float(mean) - half, float(mean) + half
    return Estimate(n=n, mean=float(mean), sd=sd, ci_low=low, ci_high=high)


def _check_item(tally: Tally, key: str) -> None:
    if key not in tally.items:
        raise ValueError(f"{key!r} is not an item of this tally; items are {tally.items}")


def _keyed_counts(tally: Tally, key: str) -> list[int]:
    row = tally.counts.get(key) or [0] * tally.points
    return list(reversed(row)) if key in tally.reverse else list(row)


def _shares(points: int, keyed_counts: list[int]) -> Shares | None:
    n = sum(keyed_counts)
    if n == 0:
        return None
    half = points // 2  # below the middle point; an even scale would have no middle (neutral 0)
    disagree, agree = sum(keyed_counts[:half]), sum(keyed_counts[points - half :])
    favourable = sum(keyed_counts[points - 2 :])
    return Shares(
        n=n, favourable=favourable / n, disagree=disagree / n, neutral=(n - disagree - agree) / n, agree=agree / n
    )


def item_estimate(tally: Tally, key: str) -> Estimate | None:
    """Mean of one item's raw answers, as people saw the scale; n counts who answered it."""
    _check_item(tally, key)
    return counts_estimate(tally.counts.get(key) or [0] * tally.points)


def counts_estimate(counts: list[int]) -> Estimate | None:
    """Mean of answers given as counts per scale point (1, 2, ...), with its interval."""
    n = sum(counts)
    total = sum(point * count for point, count in enumerate(counts, start=1))
    total_sq = sum(point * point * count for point, count in enumerate(counts, start=1))
    return _estimate(n, total, total_sq)


def item_shares(tally: Tally, key: str) -> Shares | None:
    """Favourable (top two) and disagree / neutral / agree shares of one item after reverse keying."""
    _check_item(tally, key)
    return _shares(tally.points, _keyed_counts(tally, key))


def scale_estimate(tally: Tally) -> Estimate | None:
    """Mean of respondents' scale scores (each the mean of their answered, keyed items)."""
    return _estimate(tally.score_n, tally.score_sum, tally.score_sumsq, score_scale(tally))


def favourable(tally: Tally, keys: list[str] | None = None) -> Shares | None:
    """Shares pooled over these items (every item by default) after reverse keying; n counts
    answers, not people."""
    pooled = [0] * tally.points
    for key in tally.items if keys is None else keys:
        _check_item(tally, key)
        pooled = [x + y for x, y in zip(pooled, _keyed_counts(tally, key))]
    return _shares(tally.points, pooled)


def cronbach_alpha(tally: Tally) -> float | None:
    """Cronbach's alpha over respondents who answered every item (keyed values).

    alpha = k/(k-1) * (1 - sum of item variances / variance of the total score). The common
    1/(n(n-1)) factor of every (co)variance cancels, so it is computed from n-scaled sums.
    """
    n, k = tally.complete_n, len(tally.items)
    if n < 2 or k < 2:
        return None

    def scaled_cov(a: str, b: str, cross: int) -> int:  # n(n-1) * covariance(a, b)
        return n * cross - tally.keyed_sum.get(a, 0) * tally.keyed_sum.get(b, 0)

    item_var = sum(scaled_cov(key, key, tally.keyed_sumsq.get(key, 0)) for key in tally.items)
    pair_cov = sum(
        scaled_cov(a, b, tally.cross.get(pair_key(a, b), 0))
        for i, a in enumerate(tally.items)
        for b in tally.items[i + 1 :]
    )
    total_var = item_var + 2 * pair_cov
    if total_var == 0:
        return None
    return float(Fraction(k, k - 1) * (1 - Fraction(item_var, total_var)))


def difference(before: Estimate, after: Estimate) -> Estimate | None:
    """Change in mean (after - before) with a Welch 95% interval; None if either lacks an SD.

    The result's `sd` is None: a difference of two group means has a standard error, not a
    sample SD. Its `n` is the number of answers behind both estimates together.
    """
    if before.sd is None or after.sd is None:
        return None
    change = after.mean - before.mean
    var_b, var_a = before.sd**2 / before.n, after.sd**2 / after.n
    se = math.sqrt(var_b + var_a)
    if se == 0:
        return Estimate(n=before.n + after.n, mean=change, sd=None, ci_low=change, ci_high=change)
    welch = (var_b + var_a) ** 2 / (var_b**2 / (before.n - 1) + var_a**2 / (after.n - 1))
    # round down, but float noise must not cost a whole degree of freedom
    half = t_quantile_975(max(1, math.floor(welch + 1e-9))) * se
    return Estimate(
        n=before.n + after.n, mean=change, sd=None, ci_low=change - half, ci_high=change + half
    )


def recommend(counts: list[int]) -> Recommend | None:
    """Promoters, passives, detractors and the score from the 11 counts of a 0..10 question."""
    if len(counts) != 11:
        raise ValueError(f"a 0-10 question has 11 counts, got {len(counts)}")
    n = sum(counts)
    if n == 0:
        return None
    promoters, passives = counts[9] + counts[10], counts[7] + counts[8]
    detractors = n - promoters - passives
    return Recommend(
        n=n,
        promoters=promoters / n,
        passives=passives / n,
        detractors=detractors / n,
        score=float(Fraction(100 * (promoters - detractors), n)),
    )


def recommend_estimate(counts: list[int]) -> Estimate | None:
    """The 0..10 score as a mean with its 95% interval: each answer counts +100 (promoter, 9-10),
    0 (passive, 7-8) or -100 (detractor, 0-6), so their mean is exactly the score, and a change
    between rounds can be judged like any other mean's (difference)."""
    found = recommend(counts)
    if found is None:
        return None
    promoters, detractors = counts[9] + counts[10], sum(counts[:7])
    return _estimate(found.n, 100 * (promoters - detractors), 100 * 100 * (promoters + detractors))


def option_shares(counts: list[int]) -> list[float] | None:
    """Each option's share (0-1) of those who answered a single-choice question."""
    n = sum(counts)
    return [count / n for count in counts] if n else None
