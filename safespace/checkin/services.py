"""Starting a check-in and finding one: the statements it asks, its join code, its live state."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.checkin.models import CheckIn, CheckInTally
from safespace.errors import InvalidInput, Refused
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.pulse.services import available_instruments
from surveys import disclosure
from surveys import tally as tally_rules
from surveys.instrument import Instrument, agreement_labels, instrument_to_dict, parse_instrument

# Unambiguous letters and digits (no 0/O, 1/I/L): read aloud or typed from a projected slide.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 6
MOST_STATEMENTS = 3
INSTRUMENT_KEY = "checkin"


class NotOpen(Refused):
    """The check-in no longer takes answers (revealed, or closed by time or by its facilitator)."""


class TooFew(Refused):
    """Fewer than k answered: nothing may be shown."""


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normal_code(code: str) -> str:
    """What a member typed, as stored: upper case, no spaces or dashes."""
    return "".join(ch for ch in code.upper() if ch.isalnum())[:12]


def statement_ref(instrument_key: str, item_key: str) -> str:
    return f"{instrument_key}/{item_key}"


async def statement_choices(db: AsyncSession, community_id: uuid.UUID) -> dict[str, tuple[Instrument, str]]:
    """Every statement a check-in may ask: ref -> (its instrument, its item key). Agreement
    scales only, so the figures are a round's (mean, favourable, distribution)."""
    found = {}
    for key, instrument in (await available_instruments(db, community_id)).items():
        if instrument.scale.points not in tally_rules.SCALE_POINTS or not getattr(instrument.scale, "ordered", True):
            continue
        for item in instrument.items:
            found[statement_ref(key, item.key)] = (instrument, item.key)
    return found


def checkin_instrument(
    choices: dict[str, tuple[Instrument, str]], refs: list[str], question: str, points: int, language: str
) -> Instrument:
    """The check-in's statements as one instrument (snapshotted at start); InvalidInput if the
    form asks for none, too many, statements of different scales, or both kinds at once."""
    refs = [ref for ref in dict.fromkeys(refs) if ref]
    question = question.strip()
    if question and refs:
        raise InvalidInput({"question": _("Ask either statements or your own question, not both.")})
    if not question and not refs:
        raise InvalidInput({"statements": _("Choose one to three statements, or write a question.")})
    if len(refs) > MOST_STATEMENTS:
        raise InvalidInput({"statements": _("Choose at most three statements: a check-in is quick.")})
    if question:
        if len(question) > 200:
            raise InvalidInput({"question": _("Keep the question under 200 characters.")})
        if points not in tally_rules.SCALE_POINTS:
            raise InvalidInput({"points": _("Choose a 5- or 7-point scale.")})
        labels = [msgspec.to_builtins(t) for t in agreement_labels(points)]
        items = [{"key": "q1", "text": {"en": question, "es": question}, "reverse": False}]
    else:
        unknown = [ref for ref in refs if ref not in choices]
        if unknown:
            raise InvalidInput({"statements": _("A chosen statement no longer exists; choose again.")})
        scales = {choices[ref][0].scale.points for ref in refs}
        if len(scales) > 1:
            raise InvalidInput({"statements": _("Choose statements that share one scale (all 5-point or all 7-point).")})
        points = scales.pop()
        labels = [msgspec.to_builtins(t) for t in choices[refs[0]][0].scale.labels]
        items = []
        for n, ref in enumerate(refs, 1):
            instrument, item_key = choices[ref]
            item = instrument.item(item_key)
            items.append({"key": f"s{n}", "text": msgspec.to_builtins(item.text), "reverse": item.reverse})
    raw = {
        "key": INSTRUMENT_KEY,
        "version": 1,
        "name": {"en": "Meeting check-in", "es": "Check-in de reunión"},
        "description": {"en": "Asked live in a meeting.", "es": "Preguntado en directo en una reunión."},
        "scale": {"points": points, "labels": labels},
        "items": items,
    }
    return parse_instrument(raw, "check-in")


async def start(
    db: AsyncSession, community: Community, instrument: Instrument, prompt: str, moment: datetime, hours: float
) -> CheckIn:
    """A new open check-in with k and the comment threshold locked from the community now."""
    prompt = prompt.strip()
    if len(prompt) > 200:
        raise InvalidInput({"prompt": _("Keep the prompt on one line, under 200 characters.")})
    checkin = CheckIn(
        id=uuid.uuid4(),
        community_id=community.id,
        code=new_code(),
        instrument=instrument_to_dict(instrument),
        prompt=prompt or None,
        state="open",
        min_group_size=disclosure.effective_k(community.min_group_size),
        comment_threshold=community.comment_threshold,
        opened_at=moment,
        closes_at=moment + timedelta(hours=hours),
    )
    db.add(checkin)
    empty = tally_rules.new_tally(instrument.item_keys, instrument.reverse_keys, instrument.scale.points)
    db.add(CheckInTally(checkin_id=checkin.id, respondents=0, data=msgspec.json.encode(empty)))
    await db.flush()
    return checkin


def instrument_of(checkin: CheckIn) -> Instrument:
    return parse_instrument(checkin.instrument, f"check-in {checkin.id}")


async def by_code(db: AsyncSession, code: str) -> CheckIn | None:
    return await db.scalar(select(CheckIn).where(CheckIn.code == normal_code(code)))


async def in_community(db: AsyncSession, community_id: uuid.UUID, checkin_id: uuid.UUID) -> CheckIn | None:
    return await db.scalar(select(CheckIn).where(CheckIn.id == checkin_id, CheckIn.community_id == community_id))


async def of_community(db: AsyncSession, community_id: uuid.UUID) -> list[CheckIn]:
    return list(await db.scalars(select(CheckIn).where(CheckIn.community_id == community_id).order_by(CheckIn.opened_at.desc())))


async def answered(db: AsyncSession, checkin_id: uuid.UUID) -> int:
    # The row, not the column: a revealed check-in's page then reads its figures
    # (results.revealed_result) from the same row without a second query.
    row = await db.get(CheckInTally, checkin_id)
    return row.respondents if row is not None else 0


def shown_count(checkin: CheckIn, count: int) -> int | None:
    """P1/P3: how many answered, only once at least k have; None before."""
    return count if disclosure.enough(count, checkin.min_group_size) else None
