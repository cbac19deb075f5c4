"""For any answers to a 0..10 or single-choice question and any k, the released figures of a
question follow P1: nothing about it unless at least k answered it, and then figures that add up
(issue 18 item 7). The pages, exports and API all print these structs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safespace.pulse.results import instrument_result
from surveys import disclosure
from surveys.instrument import Instrument, parse_instrument
from surveys.tally import fold_all, new_tally


def instrument(kind: str, options: int, items: int) -> Instrument:
    scale = ({"kind": kind, "points": 11, "labels": [{"en": "No", "es": "No"}, {"en": "Yes", "es": "Sí"}]} if kind == "zero_to_ten"
             else {"kind": kind, "points": options, "labels": [{"en": f"o{i}", "es": f"o{i}"} for i in range(options)]})  # fmt: skip
    return parse_instrument({
        "key": "q", "version": 1, "name": {"en": "Q", "es": "Q"}, "description": {"en": "Q", "es": "Q"}, "scale": scale,
        "items": [{"key": f"i{n}", "text": {"en": f"S{n}", "es": f"S{n}"}} for n in range(items)],
    }, "test")  # fmt: skip


@st.composite
def released(draw: st.DrawFn) -> tuple:
    kind = draw(st.sampled_from(["zero_to_ten", "choice"]))
    options, items = draw(st.integers(2, 10)), draw(st.integers(1, 3))
    made = instrument(kind, options, items)
    low, high = made.scale.lowest, made.scale.lowest + made.scale.points - 1
    answer = st.none() | st.integers(low, high)
    answers = draw(st.lists(st.fixed_dictionaries({item.key: answer for item in made.items}), max_size=25))
    tally = fold_all(new_tally(made.item_keys, [], made.scale.points, kind), answers)
    return made, tally, draw(st.integers(3, 12))


@given(released())
def test_a_question_shows_nothing_below_k_and_consistent_figures_from_k(case) -> None:
    made, tally, k = case
    result = instrument_result(made, tally, k, "en", [])
    assert (result.score, result.favourable, result.agree, result.reliability) == (None, None, None, None)
    for item in result.items:
        answered = sum(tally.counts[item.key])
        assert item.mean is None and item.favourable is None and item.disagree is None  # no Likert figure at all
        figures = (item.n, item.promoters, item.passives, item.detractors, item.recommend_score)
        if not disclosure.enough(answered, k):
            assert figures == (None,) * 5 and item.distribution == [] and item.option_shares == []
            continue
        assert item.n == answered and sum(item.distribution) == answered
        if made.scale.kind == "zero_to_ten":
            assert item.promoters + item.passives + item.detractors == pytest.approx(1)
            assert item.recommend_score == pytest.approx(100 * (item.promoters - item.detractors))
            assert item.promoters == pytest.approx(sum(item.distribution[9:]) / answered) and not item.option_shares
        else:
            assert item.option_shares == pytest.approx([count / answered for count in item.distribution])
            assert item.promoters is None and item.recommend_score is None
