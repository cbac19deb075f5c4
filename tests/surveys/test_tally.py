"""A tally keeps only counts and sums, and folding is exactly independent of answer order."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from surveys.tally import AnswerError, Tally, check_answers, fold, merge, new_tally, score_scale

ITEMS = ["ps_help", "ps_mistakes", "ps_risk"]
Round = tuple[Tally, list[dict[str, int | None]]]


def folded(tally: Tally, answer_sets: list[dict[str, int | None]]) -> Tally:
    for answers in answer_sets:
        tally = fold(tally, answers)
    return tally


def seven_point() -> Tally:
    return new_tally(ITEMS, ["ps_mistakes"], 7)


# --- checking one answer set ----------------------------------------------------------------


def test_unknown_item_is_refused_by_name() -> None:
    with pytest.raises(AnswerError) as caught:
        fold(seven_point(), {"ps_help": 4, "ps_salary": 3})
    assert caught.value.item == "ps_salary"
    assert "ps_salary" in str(caught.value)


@pytest.mark.parametrize("value", [8, 0, -1, True, False, "4", 4.0])
def test_answer_off_the_scale_is_refused(value: object) -> None:
    with pytest.raises(AnswerError) as caught:
        fold(seven_point(), {"ps_help": value})
    assert caught.value.item == "ps_help"
    assert str(caught.value).startswith(f"ps_help: {value!r} is not on the 7-point scale")


def test_answers_must_be_a_mapping() -> None:
    with pytest.raises(AnswerError) as caught:
        fold(seven_point(), [("ps_help", 4)])  # type: ignore[arg-type]
    assert caught.value.item is None


def test_missing_items_count_as_prefer_not_to_answer() -> None:
    assert check_answers(seven_point(), {"ps_risk": 7}) == {
        "ps_help": None,
        "ps_mistakes": None,
        "ps_risk": 7,
    }


def test_refused_answer_set_leaves_the_tally_unchanged() -> None:
    tally = fold(seven_point(), {"ps_help": 5})
    before = msgspec.json.encode(tally)
    with pytest.raises(AnswerError):
        fold(tally, {"ps_help": 9})
    assert msgspec.json.encode(tally) == before


def test_fold_returns_a_new_tally() -> None:
    empty = seven_point()
    fold(empty, {"ps_help": 5, "ps_mistakes": 2, "ps_risk": 6})
    assert empty == seven_point()


@pytest.mark.parametrize(
    ("items", "reverse", "points"),
    [([], [], 5), (["a", "a"], [], 5), (["a"], ["b"], 5), (["a"], [], 6), (["a|b"], [], 5)],
)
def test_new_tally_refuses_a_broken_instrument(items, reverse, points) -> None:
    with pytest.raises(ValueError):
        new_tally(items, reverse, points)


# --- what gets counted ----------------------------------------------------------------------


def test_prefer_not_to_answer_is_counted_apart_from_answers() -> None:
    tally = folded(
        seven_point(),
        [{"ps_help": None, "ps_mistakes": 3}, {"ps_help": 6}, {}],
    )
    assert tally.respondents == 3
    assert tally.skipped == {"ps_help": 2, "ps_mistakes": 2, "ps_risk": 3}
    assert tally.counts["ps_help"] == [0, 0, 0, 0, 0, 1, 0]
    # the respondent who skipped everything has no scale score
    assert tally.score_n == 2
    assert tally.complete_n == 0


def test_reverse_keyed_item_turns_the_score_round() -> None:
    # 7-point scale: a raw 2 on the reversed item is keyed 8 - 2 = 6; score = (6 + 6 + 6) / 3 = 6
    tally = fold(seven_point(), {"ps_help": 6, "ps_mistakes": 2, "ps_risk": 6})
    assert tally.counts["ps_mistakes"] == [0, 1, 0, 0, 0, 0, 0]  # stored raw
    assert score_scale(tally) == 6  # lcm(1, 2, 3)
    assert tally.score_sum == 6 * 6
    assert tally.keyed_sum["ps_mistakes"] == 6
    assert tally.score_hist == [0, 0, 0, 0, 0, 1, 0]


def test_hand_worked_tally() -> None:
    # 5-point scale, items a b c, c reverse-keyed (keyed = 6 - raw), L = lcm(1, 2, 3) = 6.
    #   r1: a=4 b=5    c=2 -> keyed 4 5 4, score 13/3, scaled 26, complete
    #   r2: a=3 b=skip c=1 -> keyed 3 . 5, score  8/2, scaled 24
    #   r3: a=2 b=3    c=4 -> keyed 2 3 2, score  7/3, scaled 14, complete
    # score_sum = 26 + 24 + 14 = 64; score_sumsq = 676 + 576 + 196 = 1448
    # histogram: 13/3 -> 4, 4 -> 4, 7/3 -> 2
    # complete (r1, r3): keyed sums a 4+2, b 5+3, c 4+2; squares a 16+4, b 25+9, c 16+4
    #   cross a|b 4*5 + 2*3 = 26, a|c 4*4 + 2*2 = 20, b|c 5*4 + 3*2 = 26
    tally = folded(
        new_tally(["a", "b", "c"], ["c"], 5),
        [{"a": 4, "b": 5, "c": 2}, {"a": 3, "b": None, "c": 1}, {"a": 2, "b": 3, "c": 4}],
    )
    assert tally == Tally(
        items=["a", "b", "c"],
        reverse=["c"],
        points=5,
        respondents=3,
        counts={"a": [0, 1, 1, 1, 0], "b": [0, 0, 1, 0, 1], "c": [1, 1, 0, 1, 0]},
        skipped={"a": 0, "b": 1, "c": 0},
        score_n=3,
        score_sum=64,
        score_sumsq=1448,
        score_hist=[0, 1, 0, 2, 0],
        complete_n=2,
        keyed_sum={"a": 6, "b": 8, "c": 6},
        keyed_sumsq={"a": 20, "b": 34, "c": 20},
        cross={"a|b": 26, "a|c": 20, "b|c": 26},
    )


def test_score_histogram_rounds_half_up() -> None:
    # two items: score (3 + 4) / 2 = 3.5 goes to bin 4; (1 + 2) / 2 = 1.5 goes to bin 2
    tally = folded(new_tally(["a", "b"], [], 5), [{"a": 3, "b": 4}, {"a": 1, "b": 2}])
    assert tally.score_hist == [0, 1, 0, 1, 0]


def test_merging_different_instruments_is_refused() -> None:
    with pytest.raises(ValueError, match="different instruments"):
        merge(new_tally(["a", "b"], [], 5), new_tally(["a", "b"], ["b"], 5))
    with pytest.raises(ValueError, match="different instruments"):
        merge(new_tally(["a"], [], 5), new_tally(["a"], [], 7))


def test_tally_json_refuses_unknown_fields() -> None:
    raw = msgspec.json.encode(seven_point())[:-1] + b',"answers":[]}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=Tally)


# --- properties -----------------------------------------------------------------------------


@st.composite
def instruments(draw: st.DrawFn) -> Tally:
    """A tally of any kind: agreement (5 or 7 points, some reversed), 0..10, or 2 to 10 options."""
    k = draw(st.integers(1, 6))
    items = [f"q{i}" for i in range(k)]
    kind = draw(st.sampled_from(["agreement", "zero_to_ten", "choice"]))
    if kind == "agreement":
        reverse = draw(st.lists(st.sampled_from(items), unique=True))
        return new_tally(items, reverse, draw(st.sampled_from([5, 7])))
    points = 11 if kind == "zero_to_ten" else draw(st.integers(2, 10))
    return new_tally(items, [], points, kind)


def answer_sets(tally: Tally) -> st.SearchStrategy[list[dict[str, int | None]]]:
    value = st.one_of(st.none(), st.integers(tally.lowest, tally.lowest + tally.points - 1))
    return st.lists(st.dictionaries(st.sampled_from(tally.items), value), max_size=12)


@st.composite
def rounds(draw: st.DrawFn) -> Round:
    tally = draw(instruments())
    return tally, draw(answer_sets(tally))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_folding_in_any_order_gives_the_identical_tally(data: st.DataObject) -> None:
    empty, answer_sets = data.draw(rounds())
    shuffled = data.draw(st.permutations(answer_sets))
    one, other = folded(empty, answer_sets), folded(empty, shuffled)
    assert one == other
    assert msgspec.json.encode(one) == msgspec.json.encode(other)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_merge_of_two_groups_equals_folding_everyone(data: st.DataObject) -> None:
    empty, xs = data.draw(rounds())
    ys = data.draw(answer_sets(empty))
    everyone = folded(empty, xs + ys)
    merged = merge(folded(empty, xs), folded(empty, ys))
    assert merged == everyone
    assert msgspec.json.encode(merged) == msgspec.json.encode(everyone)
    assert merge(empty, everyone) == everyone == merge(everyone, empty)
    assert merge(folded(empty, ys), folded(empty, xs)) == everyone


@settings(max_examples=200, deadline=None)
@given(rounds())
def test_tally_survives_a_json_round_trip(round_: Round) -> None:
    empty, answer_sets = round_
    tally = folded(empty, answer_sets)
    decoded = msgspec.json.decode(msgspec.json.encode(tally), type=Tally)
    assert decoded == tally
    assert msgspec.json.encode(decoded) == msgspec.json.encode(tally)
    # a decoded tally goes on folding like the original
    assert fold(decoded, {}) == fold(tally, {})


@settings(max_examples=200, deadline=None)
@given(rounds())
def test_tally_totals_agree(round_: Round) -> None:
    empty, answer_sets = round_
    tally = folded(empty, answer_sets)
    assert tally.respondents == len(answer_sets)
    for key in tally.items:
        assert sum(tally.counts[key]) + tally.skipped[key] == tally.respondents
        assert len(tally.counts[key]) == tally.points
    if tally.kind != "agreement":  # counts only: no score, keyed sums or cross products
        assert (tally.score_n, tally.score_hist, tally.keyed_sum, tally.cross) == (0, [], {}, {})
        return
    assert sum(tally.score_hist) == tally.score_n
    assert tally.score_n == sum(1 for a in answer_sets if any(v is not None for v in a.values()))
    assert tally.complete_n == sum(
        1 for a in answer_sets if all(a.get(k) is not None for k in tally.items)
    )


# --- 0..10 and single-choice questions ------------------------------------------------------------


def test_zero_to_ten_counts_every_point_from_zero() -> None:
    empty = new_tally(["rc"], [], 11, "zero_to_ten")
    tally = folded(empty, [{"rc": 0}, {"rc": 10}, {"rc": 10}, {"rc": 7}, {"rc": None}])
    assert tally.counts["rc"] == [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2]
    assert tally.skipped["rc"] == 1 and tally.respondents == 5
    assert tally.score_n == 0 and tally.score_hist == []


@pytest.mark.parametrize("value", [-1, 11, 3.0, True, "5"])
def test_zero_to_ten_refuses_what_is_off_the_scale(value: object) -> None:
    with pytest.raises(AnswerError) as caught:
        check_answers(new_tally(["rc"], [], 11, "zero_to_ten"), {"rc": value})
    assert caught.value.item == "rc" and "choose 0 to 10" in caught.value.reason


@pytest.mark.parametrize("value", [0, 4])
def test_choice_refuses_an_option_that_is_not_there(value: int) -> None:
    with pytest.raises(AnswerError) as caught:
        check_answers(new_tally(["where"], [], 3, "choice"), {"where": value})
    assert "not one of the 3 options" in caught.value.reason


def test_choice_counts_one_per_option() -> None:
    tally = folded(new_tally(["where", "when"], [], 3, "choice"), [{"where": 1, "when": 3}, {"where": 1}, {"when": 2}])
    assert tally.counts == {"where": [2, 0, 0], "when": [0, 1, 1]}
    assert tally.skipped == {"where": 1, "when": 1}


@pytest.mark.parametrize(("kind", "points", "reverse"), [
    ("zero_to_ten", 7, []), ("zero_to_ten", 11, ["q"]), ("choice", 1, []), ("choice", 11, []),
    ("choice", 3, ["q"]), ("stars", 5, []),
])  # fmt: skip
def test_new_tally_refuses_impossible_kinds(kind: str, points: int, reverse: list[str]) -> None:
    with pytest.raises(ValueError):
        new_tally(["q"], reverse, points, kind)


def test_tallies_of_different_kinds_do_not_merge() -> None:
    with pytest.raises(ValueError, match="different instruments"):
        merge(new_tally(["q"], [], 5, "choice"), new_tally(["q"], [], 5))


def test_a_tally_stored_before_kinds_existed_reads_as_agreement() -> None:
    old = msgspec.json.encode(seven_point()).replace(b',"kind":"agreement"', b"")
    assert b"kind" not in old
    assert msgspec.json.decode(old, type=Tally) == seven_point()
