"""The answer form's every-visit read: the round (in the member's community), its survey's title,
the community and the member's own line of the ledger, in one statement on a bare connection
(db.engine.Reads) instead of four ORM queries. The member's place comes from the session.

The form's title and content blocks are kept rendered, per process and bounded, keyed by all they
show: those facts (the member's ledger state among them: one of four words), whether the round
is open now, and the language. The CSRF field is a slot (web.pages.CSRF_SLOT) filled per visit.

The instruments are the round's snapshot (fixed at opening): parsed once per process by
services.round_instruments, which reads the JSON text only the first time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, select

from safespace.db.engine import Reads
from safespace.identity.models import Community
from safespace.pulse.models import Participation, Round, Survey
from safespace.pulse.services import ledger_state
from safespace.web.pages import Kept


@dataclass(frozen=True)
class FormCommunity:
    id: uuid.UUID
    name: str
    time_zone: str
    require_tokens: bool


@dataclass(frozen=True)
class FormRound:
    """What the form and services.is_open / round_instruments read of a round."""

    id: uuid.UUID
    number: int
    opens_at: datetime
    closes_at: datetime
    closed: bool
    min_group_size: int
    instruments_json: str

    @property
    def instruments(self) -> list[dict[str, Any]]:
        return json.loads(self.instruments_json)


@dataclass(frozen=True)
class FormSurvey:
    title: str


@dataclass(frozen=True)
class AnswerForm:
    community: FormCommunity
    round: FormRound
    survey: FormSurvey
    state: str  # services.ledger_state: open, token, tokens or answered


@dataclass(frozen=True)
class _Ledger:
    token_request: bytes | None
    reissued: bool
    second_request: bytes | None


_FORM = (
    select(Round.id, Round.number, Round.opens_at, Round.closes_at, Round.closed, Round.min_group_size,
           cast(Round.instruments, Text), Survey.title, Community.name, Community.time_zone, Community.require_tokens,
           Participation.round_id, Participation.token_request, Participation.reissued, Participation.second_request)  # fmt: skip
    .join(Survey, Survey.id == Round.survey_id)
    .join(Community, Community.id == Round.community_id)
    .outerjoin(Participation, (Participation.round_id == Round.id) & (Participation.person_id == bindparam("person_id")))
    .where(Round.id == bindparam("round_id"), Round.community_id == bindparam("community_id"))
)


async def read(reads: Reads, community_id: uuid.UUID, round_id: uuid.UUID, person_id: uuid.UUID) -> AnswerForm | None:
    """The form's facts; None when the round is not in the community."""
    rows = await reads.rows(_FORM, {"round_id": round_id, "community_id": community_id, "person_id": person_id})
    if not rows:
        return None
    row = rows[0]
    ledger = _Ledger(row[12], bool(row[13]), row[14]) if row[11] is not None else None
    return AnswerForm(
        community=FormCommunity(community_id, row[8], row[9], bool(row[10])),
        round=FormRound(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6]),
        survey=FormSurvey(row[7]),
        state=ledger_state(ledger),  # type: ignore[arg-type]
    )


# Kept (title, content) blocks of pulse/answer.html.
_KEPT: dict[tuple, Kept] = {}
_KEPT_MAX = 512  # a full cache starts again


def kept_blocks(found: AnswerForm, is_open: bool, language: str, render: Callable[[], Kept]) -> Kept:
    r = found.round
    key = (found.community, r.id, r.number, r.closes_at, r.min_group_size, found.survey, found.state, is_open, language)
    kept = _KEPT.get(key)
    if kept is None:
        kept = render()
        if len(_KEPT) >= _KEPT_MAX:
            _KEPT.clear()
        _KEPT[key] = kept
    return kept
