"""Release rules: what may be shown about a group, and when (invariants P1 and P3).

Every number about answers passes through here before it reaches a page, JSON, CSV or mail.
The insights work adds complementary suppression across sibling groups (P2) to this module.
"""

from __future__ import annotations

import msgspec

MIN_GROUP_SIZE_FLOOR = 3
DEFAULT_COMMENT_THRESHOLD = 10


class GroupView(msgspec.Struct, frozen=True):
    """What may be said about one group in one round."""

    results: bool  # scores, distributions and the respondent count
    respondents: int | None
    response_rate: float | None


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
