"""What a webhook delivery says: JSON written at its first try and sent as it is after that.

Only what the results page and the wall show members, and less: names of the community and the
survey, a round's window, whether its results are out or too few answered, a published summary
with its actions' titles and statuses, and a link. No figure at all (no count, rate or score:
where one may be shown, and to whom, is the results page's to decide, P1-P3), no member, and
nothing about who answered or wrote what. A story release says that stories were released, not
how many: the count would tell a system outside the community how many members wrote that week.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity.models import Community
from safespace.insights import actions
from safespace.pulse.models import Round, Survey
from safespace.pulse.results import tallied
from safespace.pulse.services import COMMUNITY
from safespace.webhooks.models import WebhookDelivery
from surveys import disclosure


def instant(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


async def compose(db: AsyncSession, delivery: WebhookDelivery, community_id: uuid.UUID, base_url: str) -> bytes | None:
    """The delivery's body; None when what it is about is gone (a round deleted since)."""
    community = await db.get(Community, community_id)
    if community is None:
        return None
    base = f"{base_url.rstrip('/')}/c/{community.id}"
    body: dict[str, Any] = {
        "event": delivery.event,
        "id": str(delivery.id),
        "occurred_at": instant(delivery.created_at),
        "community": {"id": str(community.id), "name": community.name},
    }
    if delivery.event == "ping":
        return msgspec.json.encode(body | {"url": base})
    if delivery.event == "stories.released":
        return msgspec.json.encode(body | {"url": f"{base}/stories"})
    round_ = await db.get(Round, delivery.round_id) if delivery.round_id else None
    if round_ is None:
        return None
    survey = await db.get_one(Survey, round_.survey_id)
    body |= {
        "survey": {"id": str(survey.id), "title": survey.title},
        "round": {"id": str(round_.id), "opens_at": instant(round_.opens_at), "closes_at": instant(round_.closes_at)},
    }
    if delivery.event == "round.opened":
        return msgspec.json.encode(body | {"url": f"{base}/rounds/{round_.id}"})
    if delivery.event == "round.closed":
        return msgspec.json.encode(body | {"outcome": await outcome(db, round_), "url": f"{base}/rounds/{round_.id}/results"})
    summary = await actions.published(db, round_.id)  # action.published
    if summary is None:
        return None
    # As members read it: the facilitators' words and each action's title and status (no owner: a name).
    shown = {"text": summary.text, "actions": [{"title": title, "status": status} for title, status, _owner in summary.actions]}
    return msgspec.json.encode(body | {"summary": shown, "url": f"{base}/summary"})


async def outcome(db: AsyncSession, round_: Round) -> str:
    """"results" when the results page shows the closed round's results, else "too_few" (decided
    as that page decides it, surveys.disclosure.group_view; no count either way)."""
    members = int(round_.population.get(COMMUNITY, 0))
    view = disclosure.group_view(await tallied(db, round_.id), members, round_.min_group_size, closed=True)
    return "results" if view.results else "too_few"
