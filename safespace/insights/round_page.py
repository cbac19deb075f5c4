"""A closed round's results page, kept rendered: a closed round's figures never change, so the page
is drawn once per version of everything else on it and served from memory afterwards.

Every visit reads one statement on a bare connection (db.engine.Reads): the round, checked to be
in the community, with the facts the page draws besides its frozen figures. They are the key:

- the survey's title and trend revision (Survey.trend_revision: bumped when a note is pinned or
  removed, when an action is planned on the round or dropped);
- the community's name and time zone (the round's and the summary's dates are in it);
- the published summary ("You said, we did"), by its time of publication (published once);
- the round's actions and their updates, by count (an action's status changes by adding an
  update; its title, owner and due date are fixed when it is planned);
- the teams' ids and names (the team heatmaps name them);
- the language, and how many comments are shown (?comments=all).

Nothing of the viewer is in the kept blocks: the CSRF field of the forms is a slot filled in on
each visit (web.pages.CSRF_SLOT), and the header, navigation and notice are base.html's, rendered per visit.
An open or scheduled round is not kept: its page moves with every answer and with the clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from jinja2 import Template as JinjaTemplate
from sqlalchemy import String, bindparam, cast, func, literal, select

from safespace.db.engine import Reads
from safespace.identity.models import Community, Team
from safespace.insights.models import Action, ActionUpdate, RoundSummary
from safespace.pulse.models import Round, Survey
from safespace.web.pages import Kept, render_blocks

_ACTIONS = select(func.count(Action.id)).where(Action.round_id == Round.id).scalar_subquery()
_UPDATES = (
    select(func.count(ActionUpdate.id)).join(Action, Action.id == ActionUpdate.action_id).where(Action.round_id == Round.id)
).scalar_subquery()
# The teams as one string, "id name" for each, joined by a character clean_text keeps out of every
# stored name (text.py): one row for the statement instead of one per team, and no UUID to build
# per team on every visit (the key only has to change when a team does).
TEAM_SEPARATOR = "\x1f"
_TEAMS = (
    select(func.aggregate_strings(cast(Team.id, String) + literal(" ") + Team.name, TEAM_SEPARATOR))
    .where(Team.community_id == Round.community_id)
    .scalar_subquery()
)
_ROUND_STATE = (
    select(Round.closed, Round.survey_id, Survey.title, Survey.trend_revision, Community.name, Community.time_zone,
           RoundSummary.published_at, _ACTIONS, _UPDATES, _TEAMS)  # fmt: skip
    .join(Survey, Survey.id == Round.survey_id)
    .join(Community, Community.id == Round.community_id)
    .outerjoin(RoundSummary, RoundSummary.round_id == Round.id)
    .where(Round.id == bindparam("round_id"), Round.community_id == bindparam("community_id"))
)


async def closed_round_key(reads: Reads, community_id: uuid.UUID, round_id: uuid.UUID) -> tuple | None:
    """The version of a closed round's page (see the module's docstring); None when the round is
    not closed or not in the community (the caller takes the full path, which answers 404)."""
    rows = await reads.rows(_ROUND_STATE, {"round_id": round_id, "community_id": community_id})
    if not rows or not rows[0][0]:
        return None
    *state, teams = rows[0][1:]
    # In an order of our own: the aggregate's order is the database's.
    return (round_id, *state, tuple(sorted((teams or "").split(TEAM_SEPARATOR))))


# The kept (title, content) blocks of insights/round.html, per process and bounded.
_KEPT: dict[tuple, Kept] = {}
_KEPT_MAX = 256  # a full cache starts again


async def kept_blocks(
    key: tuple, template: JinjaTemplate, context: Callable[[], Awaitable[dict[str, Any]]]
) -> Kept:
    """The page's title and content blocks for `key`, rendered from `context()` on the first visit."""
    found = _KEPT.get(key)
    if found is None:
        found = render_blocks(template, await context() | {"values": {}, "errors": {}})
        if len(_KEPT) >= _KEPT_MAX:
            _KEPT.clear()
        _KEPT[key] = found
    return found

