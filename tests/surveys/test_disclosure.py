"""P1 and P3 as rules: nothing about fewer than k, nothing but a response rate while open."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from surveys.disclosure import comments_visible, group_view


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
