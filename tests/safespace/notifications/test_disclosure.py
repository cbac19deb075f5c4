"""No digest line carries a figure the results page would hide: for every count of answers,
members and k, what a line says follows surveys.disclosure.group_view (P1, P3)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from safespace.notifications.digest import Item, _pct, with_released_figures
from safespace.notifications.noting import LOW_SHARE, judge
from safespace.web.templates import template_environment
from surveys import disclosure

LINE = template_environment().get_template("emails/_digest_lines.txt").module.line
CLOSES = datetime(2026, 3, 26, tzinfo=UTC)
NUMBER = 7  # the round's number, said in every line


@st.composite
def participation(draw: st.DrawFn) -> tuple[int, int, int]:
    k = draw(st.integers(3, 12))
    members = draw(st.integers(0, 60))
    return draw(st.integers(0, members)), members, k


def _numbers(line: str) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", line.split(" on ")[0] + line.split(" UTC")[-1])}


@given(participation())
def test_a_closed_round_line_shows_its_count_and_rate_only_where_the_results_page_does(figures) -> None:
    respondents, members, k = figures
    view = disclosure.group_view(respondents, members, k, closed=True)
    item = with_released_figures(Item(kind="round_closed", link="", survey="Pulse", number=NUMBER, members=members, k=k), view)
    line = str(LINE(item, _pct))
    if view.results:
        assert f"{respondents} people answered, {_pct(view.response_rate)} of {members} members" in line
    else:
        assert "Fewer than" in line and _numbers(line) <= {NUMBER, k}


@given(participation(), st.none() | participation())
def test_a_low_participation_line_says_a_rate_only_where_the_results_page_does(figures, earlier) -> None:
    respondents, members, k = figures
    view = disclosure.group_view(respondents, members, k, closed=False)
    before = disclosure.group_view(*earlier[:2], earlier[2], closed=True) if earlier else None
    low = judge(view, object() if before else None, before)  # type: ignore[arg-type]
    if low is None:  # not low: then the rate was shown, and at least half and the previous one
        assert view.response_rate is not None and view.response_rate >= LOW_SHARE
        assert before is None or before.response_rate is None or view.response_rate >= before.response_rate
        return
    if view.response_rate is None:
        assert low.rate is None and low.previous_rate is None
        item = Item(kind="low_participation", link="", survey="Pulse", number=NUMBER, members=members, k=k, closes=CLOSES, low=low)
        assert _numbers(str(LINE(item, _pct))) <= {NUMBER, k}  # neither the count nor the members
    else:
        assert low.rate == view.response_rate
        assert low.previous_rate is None or low.previous_rate == before.response_rate  # shown figures only
