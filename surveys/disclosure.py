"""Release rules: what may be shown about a group, and when (invariants P1, P2 and P3).

Every number about answers passes through here before it reaches a page, JSON, CSV or mail.

P2 in one picture: a round's figures for the community are the sums of its teams' figures plus
those of members without a team. Whatever is hidden therefore adds up to one "hidden block":
community minus the shown teams. Anyone can compute that block's total, so the rules below keep
every such total at 0 or at least k people; each hidden team inside it stays unknown.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Literal

import msgspec

MIN_GROUP_SIZE_FLOOR = 3
DEFAULT_COMMENT_THRESHOLD = 10

Reason = Literal["below_k", "complementary"]
BELOW_K: Reason = "below_k"  # the group itself has fewer than k people in this figure
COMPLEMENTARY: Reason = "complementary"  # hidden so that a smaller hidden group cannot be subtracted out


class GroupView(msgspec.Struct, frozen=True):
    """What may be said about one group in one round."""

    results: bool  # scores, distributions and the respondent count
    respondents: int | None
    response_rate: float | None


class Cell(msgspec.Struct, frozen=True):
    """Whether one group's figure may be shown and, if not, why (pages say why a cell is empty)."""

    shown: bool
    reason: Reason | None = None  # None exactly when shown


SHOWN = Cell(shown=True)


def effective_k(k: int) -> int:
    # A stored k below the floor (corrupt or hand-edited data) never weakens the rule.
    return max(k, MIN_GROUP_SIZE_FLOOR)


def enough(n: int, k: int) -> bool:
    """P1 for any one figure: it describes at least k people."""
    return n >= effective_k(k)


def group_view(respondents: int, members: int, k: int, closed: bool) -> GroupView:
    """P1: nothing about fewer than k respondents. P3: no results while the round is open.

    The response rate shows once at least k have answered and only for groups of at least k
    members, open or closed; scores and counts only after close and only with k respondents.
    """
    k = effective_k(k)
    rate_visible = respondents >= k and members >= k
    rate = min(1.0, respondents / members) if rate_visible else None
    results = closed and respondents >= k
    return GroupView(results=results, respondents=respondents if results else None, response_rate=rate)


def comments_visible(respondents: int, k: int, threshold: int = DEFAULT_COMMENT_THRESHOLD) -> bool:
    """P5: free text only for groups meeting the comment threshold (never below k)."""
    return respondents >= max(threshold, effective_k(k))


def groups_to_keep(community: int, teams: dict[str, int], k: int) -> set[str]:
    """Which team tallies may be kept once a round closes (P1 and P2 at the storage level).

    A team with fewer than k respondents is dropped. If the people not covered by the kept teams
    (the community minus their sum) are between 1 and k-1, they could be recovered by
    differencing, so the smallest kept teams are dropped too until that remainder reaches k or
    no team is kept. The community tally itself is kept only if it meets k (the caller checks).
    """
    k = effective_k(k)
    kept = {team: n for team, n in teams.items() if n >= k}
    while kept and 0 < community - sum(kept.values()) < k:
        smallest = min(kept, key=lambda team: (kept[team], team))
        del kept[smallest]
    return set(kept)


def _check_family(parent: int, siblings: Mapping[str, int], what: str) -> None:
    if parent < 0 or any(n < 0 for n in siblings.values()):
        raise ValueError(f"{what}: counts cannot be negative, got {parent} and {dict(siblings)}")
    if sum(siblings.values()) > parent:
        raise ValueError(
            f"{what}: the teams add up to {sum(siblings.values())} but the community has only {parent};"
            " every team's people are also in the community, so recount from the same round"
        )


def suppress_siblings(
    parent: int, siblings: Mapping[str, int], k: int, hidden: Collection[str] = ()
) -> dict[str, Cell]:
    """P1 and P2 for one family of cells: which sibling groups' figures may be shown.

    `parent` is the whole group's count (e.g. the community's respondents to one item in one
    round) and `siblings` the teams' counts of the same thing. Teams need not cover the parent:
    members without a team are in the parent only (the remainder). `hidden` names siblings the
    caller has hidden already (for another figure); they count as hidden here too.

    - Primary: a sibling with 0 < n < k is hidden (BELOW_K).
    - n == 0 is shown: a count of nobody says nothing about anyone's answers, and hiding it or
      not changes no total, so it never helps or hinders differencing. (A team with no
      respondents at all is hidden by suppress_team_results and suppress_response_rates.)
    - Complementary: while the hidden siblings plus the remainder (parent minus the shown
      siblings) number 1..k-1, hide the smallest shown sibling with anyone in it (ties by name),
      until they number at least k or no sibling with people is left (COMPLEMENTARY).

    So parent - sum(shown siblings) is always 0, at least k, or the parent itself; the parent
    is shown exactly when it meets k (`enough(parent, k)`), which the caller checks.
    """
    k = effective_k(k)
    _check_family(parent, siblings, "suppress_siblings")
    cells = {
        name: Cell(False, BELOW_K) if 0 < n < k else Cell(False, COMPLEMENTARY) if name in hidden else SHOWN
        for name, n in siblings.items()
    }
    with_people = {name: n for name, n in siblings.items() if cells[name].shown and n > 0}
    while with_people and 0 < parent - sum(with_people.values()) < k:
        smallest = min(with_people, key=lambda name: (with_people[name], name))
        cells[smallest] = Cell(False, COMPLEMENTARY)
        del with_people[smallest]
    return cells


def suppress_team_results(
    community: Mapping[str, int], teams: Mapping[str, Mapping[str, int]], k: int, hidden: Collection[str] = ()
) -> dict[tuple[str, str], Cell]:
    """P1 and P2 for a closed round's team results: one Cell per (team, figure).

    `community` maps each released figure to the community's count of people in it and
    `teams[team]` the team's counts (a missing key means 0). Figures are every count the pages
    show per group: each item's respondents, and the scale score's count (e.g. "score"), since
    a team's score is computed from its answers to all items. `hidden`: the teams whose response
    rate suppress_response_rates hides, so a team's results and rate are shown or hidden together.

    The rule: a team is hidden for every figure of the round as soon as it is hidden for one
    (suppress_siblings per figure, repeated until no figure hides another team). A team in which
    nobody answered is hidden too. Why this is safe: a shown team shows its whole tally, a
    hidden team nothing, so for every figure the hidden people are the same block (hidden teams
    plus members without a team) and subtracting shown teams from the community yields only
    that block's tally, whose count for each shown community figure is 0 or at least k.
    Hiding a team for one item but not another would let its score (pooled over items) or its
    other figures be combined with the item's block; one hidden set per round rules that out.
    Afterwards show a team's response rate only if its cells are shown (hiding more rates is
    always safe: the hidden block only grows).
    """
    k = effective_k(k)
    unknown = [team for team in hidden if team not in teams]
    stray = sorted({key for counts in teams.values() for key in counts} - set(community))
    if unknown or stray:
        raise ValueError(f"suppress_team_results: unknown teams {unknown} or figures {stray}; pass the same round's keys")
    silent = {team for team, counts in teams.items() if not any(counts.values())}
    hiding = set(hidden) | silent
    while True:  # ends: `hiding` only grows, and there are finitely many teams
        more = set()
        for key, parent in community.items():
            cells = suppress_siblings(parent, {team: counts.get(key, 0) for team, counts in teams.items()}, k, hiding)
            more |= {team for team, cell in cells.items() if not cell.shown}
        if more <= hiding:
            break
        hiding |= more

    def cell(team: str, key: str) -> Cell:
        n = teams[team].get(key, 0)
        if team not in hiding:
            return SHOWN
        return Cell(False, BELOW_K if 0 < n < k or team in silent else COMPLEMENTARY)

    return {(team, key): cell(team, key) for team in teams for key in community}


def suppress_response_rates(
    members: int, respondents: int, team_members: Mapping[str, int], team_respondents: Mapping[str, int], k: int
) -> dict[str, Cell]:
    """P3 and P2 for response rates: which teams' rates (and respondent counts) may be shown.

    `members` and `respondents` are the community's; `team_members` and `team_respondents` the
    teams' (same keys). Members without a team are in the community only. Facilitators know
    every group's size, so a rate gives away its respondent count and the hidden block is
    (community respondents minus the shown teams') out of (community members minus theirs).

    - Primary (as group_view): a team with fewer than k members or fewer than k respondents is
      hidden (BELOW_K), so no team shows "0 of 8".
    - Complementary: while the hidden block has members but fewer than k of them answered, or
      all of them answered (then each hidden team's count would be its known size), hide the
      shown team with the fewest respondents (ties by size, then name).

    The community's own rate follows group_view. A 100% community rate says everyone answered,
    so every group's count follows from its size; nothing here can (or tries to) hide that.
    """
    k = effective_k(k)
    if set(team_members) != set(team_respondents):
        raise ValueError("suppress_response_rates: give members and respondents for the same teams")
    _check_family(members, team_members, "suppress_response_rates (members)")
    _check_family(respondents, team_respondents, "suppress_response_rates (respondents)")
    if respondents > members or any(team_respondents[t] > n for t, n in team_members.items()):
        raise ValueError("suppress_response_rates: more respondents than members; count both at the same moment")
    cells = {
        team: SHOWN if n >= k and team_respondents[team] >= k else Cell(False, BELOW_K)
        for team, n in team_members.items()
    }
    shown = {team for team, cell in cells.items() if cell.shown}
    while shown:
        hidden_members = members - sum(team_members[t] for t in shown)
        hidden_respondents = respondents - sum(team_respondents[t] for t in shown)
        # Safe: nobody hidden, or at least k hidden respondents and at least one hidden non-respondent.
        if hidden_members == 0 or k <= hidden_respondents < hidden_members:
            break
        smallest = min(shown, key=lambda t: (team_respondents[t], team_members[t], t))
        cells[smallest] = Cell(False, COMPLEMENTARY)
        shown.discard(smallest)
    return cells
