"""P1, P2 and P3 as rules: nothing about fewer than k, no differencing, only a response rate while open."""

from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from surveys.disclosure import (
    BELOW_K,
    COMPLEMENTARY,
    SHOWN,
    Cell,
    comments_visible,
    enough,
    group_view,
    groups_to_keep,
    suppress_response_rates,
    suppress_siblings,
    suppress_team_results,
)


def test_open_round_shows_no_results_even_when_large() -> None:
    view = group_view(respondents=40, members=50, k=5, closed=False)
    assert view.results is False and view.respondents is None
    assert view.response_rate == 0.8


def test_response_rate_needs_k_answers_and_k_members() -> None:
    assert group_view(respondents=4, members=20, k=5, closed=False).response_rate is None
    assert group_view(respondents=4, members=4, k=3, closed=False).response_rate == 1.0
    assert group_view(respondents=4, members=4, k=5, closed=True).response_rate is None


def test_a_stored_k_below_three_is_treated_as_three() -> None:
    assert group_view(respondents=2, members=2, k=1, closed=True).results is False


@given(st.integers(0, 500), st.integers(0, 500), st.integers(3, 50), st.booleans())
def test_nothing_about_fewer_than_k_ever(respondents: int, members: int, k: int, closed: bool) -> None:
    view = group_view(respondents, members, k, closed)
    if respondents < k:
        assert not view.results and view.respondents is None and view.response_rate is None
    if not closed:
        assert not view.results and view.respondents is None
    if view.response_rate is not None:
        assert members >= k and 0 <= view.response_rate <= 1


def test_comments_need_the_threshold_and_never_less_than_k() -> None:
    assert not comments_visible(9, k=5)
    assert comments_visible(10, k=5)
    assert not comments_visible(11, k=12)


def test_small_teams_and_their_complement_are_dropped() -> None:
    from surveys.disclosure import groups_to_keep

    assert groups_to_keep(12, {"a": 7, "b": 5}, k=5) == {"a", "b"}
    assert groups_to_keep(12, {"a": 8, "b": 4}, k=5) == set()  # 12 - 8 = 4 would reveal team b
    # 20 - 8 - 8 = 4 would reveal team c (and the rest): drop the smallest kept team, b.
    assert len(groups_to_keep(20, {"a": 8, "b": 8, "c": 4}, k=5)) == 1


@given(
    st.lists(st.integers(0, 30), min_size=0, max_size=6),
    st.integers(0, 30),
    st.integers(3, 10),
)
def test_no_hidden_people_can_be_recovered_by_subtraction(team_sizes: list[int], no_team: int, k: int) -> None:
    from surveys.disclosure import groups_to_keep

    teams = {f"t{i}": n for i, n in enumerate(team_sizes)}
    community = sum(team_sizes) + no_team
    kept = groups_to_keep(community, teams, k)
    assert all(teams[t] >= k for t in kept)
    remainder = community - sum(teams[t] for t in kept)
    assert remainder == 0 or remainder >= k or not kept


# P2: complementary suppression, written as attacks. The attacker is a facilitator who knows every
# released figure, every group's size, that counts are whole numbers >= 0, and whether anyone in
# the community is outside the teams; for each released total they solve for every set of hidden
# cells at once.


def pinned_sums(total: int, bounds: dict[str, int | None]) -> dict[frozenset[str], int]:
    """Every set of unknowns whose sum the released total forces, with the sum it is forced to.

    The unknowns are whole numbers in [0, bound] (None: no bound) adding up to `total`. A set S can
    then sum to exactly the values in [max(0, total - bound(rest)), min(bound(S), total)], so S is
    pinned when that range is a single value.
    """
    names = list(bounds)
    pinned = {}
    for size in range(1, len(names) + 1):
        for subset in combinations(names, size):
            inside = [bounds[n] for n in subset]
            rest = [bounds[n] for n in names if n not in subset]
            low = 0 if None in rest else max(0, total - sum(rest))  # type: ignore[arg-type]
            high = total if None in inside else min(sum(inside), total)  # type: ignore[arg-type]
            if low == high:
                pinned[frozenset(subset)] = low
    return pinned


@given(st.lists(st.integers(0, 12), max_size=5), st.integers(0, 6), st.integers(3, 7))
@example([4, 8], 0, 5)  # a team of 4 in a community of 12
@example([3, 9], 0, 5)  # teams of 3 and 9
@example([3, 9], 2, 5)
@example([1, 2, 3, 4], 0, 5)
@example([0, 4, 20], 1, 5)
def test_no_hidden_team_can_be_solved_from_the_released_totals(sizes: list[int], no_team: int, k: int) -> None:
    teams = {f"t{i}": n for i, n in enumerate(sizes)}
    parent = sum(sizes) + no_team
    cells = suppress_siblings(parent, teams, k)
    shown = {t for t, cell in cells.items() if cell.shown}
    assert all(teams[t] == 0 or teams[t] >= k for t in shown)
    assert all(cells[t].reason == (BELOW_K if 0 < teams[t] < k else COMPLEMENTARY) for t in teams if t not in shown)
    if not enough(parent, k):
        return  # the parent is not released: there is nothing to subtract from
    unknowns: dict[str, int | None] = {t: None for t in teams if t not in shown}
    if no_team:
        unknowns["no team"] = None
    remainder = parent - sum(teams[t] for t in shown)
    assert remainder == 0 or remainder >= k
    for group, value in pinned_sums(remainder, unknowns).items():
        assert value == 0 or value >= k, f"{sorted(group)} recovered as {value} from {parent} - shown {shown}"


def test_team_of_four_in_community_of_twelve_cannot_be_computed_from_the_others() -> None:
    cells = suppress_siblings(12, {"four": 4, "eight": 8}, k=5)
    assert cells == {"four": Cell(False, BELOW_K), "eight": Cell(False, COMPLEMENTARY)}  # 12 - 8 would be 4
    round_cells = suppress_team_results(
        {"q1": 12, "score": 12}, {"four": {"q1": 4, "score": 4}, "eight": {"q1": 8, "score": 8}}, k=5
    )
    assert not any(cell.shown for cell in round_cells.values())


def test_teams_of_three_and_nine_are_both_hidden_when_one_would_give_away_the_other() -> None:
    assert suppress_siblings(12, {"three": 3, "nine": 9}, k=5) == {
        "three": Cell(False, BELOW_K),
        "nine": Cell(False, COMPLEMENTARY),
    }
    # Two answered without a team: 14 - 9 = 5 mixes the three with those two, so nine may show.
    cells = suppress_siblings(14, {"three": 3, "nine": 9}, k=5)
    assert cells["three"].reason == BELOW_K and cells["nine"].shown


def test_a_team_with_nobody_in_a_figure_shows_zero_but_a_silent_team_shows_nothing() -> None:
    assert all(cell.shown for cell in suppress_siblings(20, {"a": 0, "b": 20}, k=5).values())
    cells = suppress_team_results(
        {"q1": 20, "q2": 12},
        {"answered": {"q1": 12, "q2": 0}, "silent": {}, "rest": {"q1": 8, "q2": 12}},
        k=5,
    )
    assert cells["answered", "q2"].shown  # 0 of its 12 respondents: about 12 people, and it moves no total
    assert cells["silent", "q1"] == Cell(False, BELOW_K)  # would say "nobody in this team answered"


def test_a_team_hidden_for_one_item_is_hidden_for_every_item_and_the_score() -> None:
    community = {"q1": 30, "q2": 30, "score": 30}
    teams = {
        "a": {"q1": 3, "q2": 10, "score": 10},
        "b": {"q1": 12, "q2": 10, "score": 10},
        "c": {"q1": 15, "q2": 10, "score": 10},
    }
    cells = suppress_team_results(community, teams, k=5)
    assert cells["a", "q1"] == Cell(False, BELOW_K)
    assert cells["a", "q2"] == cells["a", "score"] == Cell(False, COMPLEMENTARY)
    assert not any(cells["b", key].shown for key in community)  # 3 + 0 remainder < 5: b covers a on q1
    assert all(cells["c", key].shown for key in community)


def test_response_rates_of_a_team_of_four_and_its_complement_are_hidden() -> None:
    cells = suppress_response_rates(12, 10, {"four": 4, "eight": 8}, {"four": 4, "eight": 6}, k=5)
    assert cells == {"four": Cell(False, BELOW_K), "eight": Cell(False, COMPLEMENTARY)}


def test_response_rates_hide_more_when_every_hidden_member_answered() -> None:
    # Team a (3 of 3) and the 2 without a team (2 of 2) would be known to have answered in full.
    cells = suppress_response_rates(23, 19, {"a": 3, "b": 10, "c": 8}, {"a": 3, "b": 6, "c": 8}, k=5)
    assert cells == {"a": Cell(False, BELOW_K), "b": Cell(False, COMPLEMENTARY), "c": SHOWN}


def test_counts_that_do_not_add_up_are_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="recount"):
        suppress_siblings(10, {"a": 6, "b": 6}, k=5)
    with pytest.raises(ValueError, match="same round"):
        suppress_team_results({"q1": 10}, {"a": {"q9": 3}}, k=5)


@given(st.lists(st.integers(1, 20), max_size=6), st.integers(0, 20), st.integers(3, 8))
def test_storage_and_pages_hide_the_same_teams(sizes: list[int], no_team: int, k: int) -> None:
    teams = {f"t{i}": n for i, n in enumerate(sizes)}
    cells = suppress_siblings(sum(sizes) + no_team, teams, k)
    assert groups_to_keep(sum(sizes) + no_team, teams, k) == {t for t, cell in cells.items() if cell.shown}


class Group(NamedTuple):
    members: int
    respondents: int
    counts: dict[str, int]  # people with an answer in each figure (items and the score)


FIGURES = ("q1", "q2", "score")


@st.composite
def groups(draw: st.DrawFn, max_members: int) -> Group:
    members = draw(st.integers(0, max_members))
    respondents = draw(st.integers(0, members))
    return Group(members, respondents, {key: draw(st.integers(0, respondents)) for key in FIGURES})


def assert_nothing_small_is_pinned(
    figure: str, total: int, unknowns: dict[str, int], k: int, everyone_answered: bool
) -> None:
    for group, value in pinned_sums(total, dict(unknowns)).items():
        nobody_there = sum(unknowns[g] for g in group) == 0
        # A 100% community rate (shown by P3) already says that everyone answered everything counted.
        assert (
            value >= k or (value == 0 and (figure != "respondents" or nobody_there)) or everyone_answered
        ), f"{figure}: {sorted(group)} recovered as {value}"


@given(
    st.lists(groups(max_members=12), max_size=4),
    groups(max_members=6),
    st.integers(3, 6),
    st.booleans(),
)
@example(  # a team of 4 in a community of 12, everyone answered
    [Group(4, 4, {"q1": 4, "q2": 4, "score": 4}), Group(8, 8, {"q1": 8, "q2": 7, "score": 8})], Group(0, 0, {}), 5, True
)
@example(  # teams of 3 and 9 answering
    [Group(4, 3, {"q1": 3, "q2": 3, "score": 3}), Group(10, 9, {"q1": 9, "q2": 2, "score": 9})], Group(0, 0, {}), 5, True
)
@example(  # a team of 3 and two members without a team, all of whom answered
    [Group(3, 3, {"q1": 3, "q2": 3, "score": 3}), Group(10, 6, {"q1": 6, "q2": 6, "score": 6})],
    Group(2, 2, {"q1": 2, "q2": 2, "score": 2}),
    5,
    True,
)
def test_no_released_figure_lets_a_facilitator_solve_for_a_small_hidden_group(
    team_list: list[Group], no_team: Group, k: int, closed: bool
) -> None:
    """Everything a facilitator sees for one round: rates (open or closed) and, once closed, results."""
    teams = {f"t{i}": g for i, g in enumerate(team_list)}
    everyone = [*teams.values(), no_team]
    members = sum(g.members for g in everyone)
    respondents = sum(g.respondents for g in everyone)
    community = {key: sum(g.counts.get(key, 0) for g in everyone) for key in FIGURES}

    rates = suppress_response_rates(
        members, respondents, {t: g.members for t, g in teams.items()}, {t: g.respondents for t, g in teams.items()}, k
    )
    hidden = {t for t, cell in rates.items() if not cell.shown}
    released = {"respondents": group_view(respondents, members, k, closed).response_rate is not None}
    if closed:
        cells = suppress_team_results(community, {t: g.counts for t, g in teams.items()}, k, hidden=hidden)
        hidden |= {t for (t, _), cell in cells.items() if not cell.shown}
        for t in teams:  # one hidden set for the whole round: a team shows everything or nothing
            assert len({cells[t, key].shown for key in FIGURES}) == 1
        released |= {key: enough(community[key], k) for key in FIGURES}

    for t in set(teams) - hidden:
        assert teams[t].members >= k and teams[t].respondents >= k
        assert not closed or all(n == 0 or n >= k for n in teams[t].counts.values())
    for figure, is_released in released.items():
        if not is_released:
            continue
        total = respondents if figure == "respondents" else community[figure]
        count = (lambda g: g.respondents) if figure == "respondents" else (lambda g, figure=figure: g.counts.get(figure, 0))
        block = total - sum(count(teams[t]) for t in set(teams) - hidden)
        unknowns = {t: teams[t].members for t in hidden}
        if no_team.members:
            unknowns["no team"] = no_team.members
        assert_nothing_small_is_pinned(figure, block, unknowns, k, everyone_answered=respondents == members)
