"""People, communities and teams: the rules, callable without HTTP. Who belongs where (invitations,
the roster, role and status changes): members.py."""

from __future__ import annotations

import uuid
import zoneinfo
from functools import cache

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community, Membership, Person, Team, community_name_key
from safespace.settings import MIN_GROUP_SIZE_FLOOR
from safespace.text import clean_text
from surveys.disclosure import DEFAULT_COMMENT_THRESHOLD


class CommunityNameTaken(InvalidInput):
    """The name is another community's (compared as `community_name_key` compares names)."""

    def __init__(self, existing: Community) -> None:
        super().__init__({"name": _("There is already a community called “%(name)s”. Choose another name.") % {"name": existing.name}})
        self.existing = existing


# --- people ------------------------------------------------------------------------------


def normalize_email(raw: str) -> str:
    """The address in the form we store it, or InvalidInput naming the problem."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise InvalidInput({"email": _("Enter an email address like name@example.org.")}) from None


async def find_person(db: AsyncSession, email: str) -> Person | None:
    return await db.scalar(select(Person).where(Person.email == email.lower()))


async def get_or_create_person(db: AsyncSession, email: str) -> tuple[Person, bool]:
    email = normalize_email(email)
    person = await find_person(db, email)
    if person:
        return person, False
    person = Person(email=email, display_name="", created_at=clock.now())
    db.add(person)
    await db.flush()
    return person, True


async def update_profile(db: AsyncSession, person_id: uuid.UUID, display_name: str, language: str) -> Person:
    display_name = clean_text(display_name)
    errors = {}
    if len(display_name) > 80:
        errors["display_name"] = _("Keep your display name to 80 characters or fewer.")
    if language not in ("", "en", "es"):
        errors["language"] = _("Choose English or Spanish.")
    if errors:
        raise InvalidInput(errors)
    person = await db.get_one(Person, person_id)
    person.display_name = display_name
    person.language = language or None
    return person


async def choose_language(db: AsyncSession, person_id: uuid.UUID, language: str) -> None:
    """The switcher at the foot of every page, signed in: the same choice as the profile's."""
    if language not in ("en", "es"):
        raise InvalidInput({"language": _("Choose English or Spanish.")})
    person = await db.get_one(Person, person_id)
    person.language = language


# --- communities ---------------------------------------------------------------------------


@cache
def _time_zones() -> frozenset[str]:
    # Only real IANA zones: "localtime" would follow the server's own setting.
    return frozenset(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")


def _check_vision(vision: str) -> str:
    vision = clean_text(vision, multiline=True)
    if len(vision) > 4000:
        raise InvalidInput({"vision": _("Keep the vision statement to 4000 characters or fewer.")})
    return vision


def _check_community(name: str, min_group_size: int | str | None, time_zone: str) -> tuple[str, int, str]:
    errors: dict[str, str] = {}
    name = clean_text(name)
    if not name:
        errors["name"] = _("Give the community a name.")
    elif len(name) > 120:
        errors["name"] = _("Keep the name to 120 characters or fewer.")
    try:
        k = int(min_group_size)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        errors["min_group_size"] = _("Enter a whole number of people, 3 or more.")
        k = 0
    else:
        if k < MIN_GROUP_SIZE_FLOOR:
            errors["min_group_size"] = _(
                "The minimum group size cannot be below 3: results about one or two people "
                "would tell everyone what those people answered."
            )
        elif k > 1000:
            errors["min_group_size"] = _("Use a minimum group size of 1000 or fewer.")
    if time_zone not in _time_zones():
        errors["time_zone"] = _("Choose a time zone from the list, such as Europe/Madrid.")
    if errors:
        raise InvalidInput(errors)
    return name, k, time_zone


def _check_comment_threshold(value: int | str | None, k: int, current: int) -> int:
    """P5: free text needs at least this many respondents; never below k (raised with k)."""
    if value is None or value == "":
        return max(current, k)
    try:
        threshold = int(value)
    except (TypeError, ValueError):
        raise InvalidInput({"comment_threshold": _("Enter a whole number of people.")}) from None
    if threshold < k:
        raise InvalidInput(
            {"comment_threshold": _("The comment threshold cannot be below the minimum group size (%(k)s).") % {"k": k}}
        )
    if threshold > 1000:
        raise InvalidInput({"comment_threshold": _("Use a comment threshold of 1000 or fewer.")})
    return threshold


async def find_community(db: AsyncSession, reference: str) -> Community | None:
    """The community with this id, else with this name (case and spacing aside): for operators."""
    try:
        community = await db.get(Community, uuid.UUID(reference.strip()))
    except ValueError:
        community = None
    return community or await db.scalar(select(Community).where(Community.name_key == community_name_key(reference)))


async def _ensure_unique_name(db: AsyncSession, name: str, except_id: uuid.UUID | None = None) -> None:
    # The unique index on name_key holds this too; checked first to answer with a field error.
    existing = await db.scalar(select(Community).where(Community.name_key == community_name_key(name)))
    if existing is not None and existing.id != except_id:
        raise CommunityNameTaken(existing)


async def create_community(
    db: AsyncSession,
    founder_id: uuid.UUID,
    name: str,
    vision: str,
    min_group_size: int | str | None,
    time_zone: str,
    comment_threshold: int | str | None = None,
) -> Community:
    name, k, time_zone = _check_community(name, min_group_size, time_zone)
    await _ensure_unique_name(db, name)
    community = Community(
        name=name,
        vision=_check_vision(vision),
        min_group_size=k,
        comment_threshold=_check_comment_threshold(comment_threshold, k, DEFAULT_COMMENT_THRESHOLD),
        time_zone=time_zone,
        created_at=clock.now(),
    )
    db.add(community)
    await db.flush()
    db.add(
        Membership(
            person_id=founder_id,
            community_id=community.id,
            role="facilitator",
            status="active",
            accepted=True,
            created_at=clock.now(),
        )
    )
    await db.flush()
    return community


async def update_community(
    db: AsyncSession,
    community: Community,
    name: str,
    vision: str,
    min_group_size: int | str | None,
    time_zone: str,
    comment_threshold: int | str | None = None,
) -> Community:
    # Rounds lock k and the comment threshold when they open; these values apply to later rounds.
    checked = _check_community(name, min_group_size, time_zone)
    threshold = _check_comment_threshold(comment_threshold, checked[1], community.comment_threshold)
    await _ensure_unique_name(db, checked[0], except_id=community.id)
    community.vision = _check_vision(vision)
    community.name, community.min_group_size, community.time_zone = checked
    community.comment_threshold = threshold
    await db.flush()
    return community


# --- teams ---------------------------------------------------------------------------------


def _team_name(name: str) -> str:
    name = clean_text(name)
    if not name:
        raise InvalidInput({"name": _("Give the team a name.")})
    if len(name) > 80:
        raise InvalidInput({"name": _("Keep the team name to 80 characters or fewer.")})
    return name


async def _ensure_unique_team(db: AsyncSession, community_id: uuid.UUID, name: str, except_id=None) -> None:  # noqa: ANN001
    # Compared in Python: SQLite's lower() folds ASCII only, so "Ä" passed a check in SQL and then
    # hit the unique index as a 500. A community has few teams.
    query = select(Team.id, Team.name).where(Team.community_id == community_id)
    if any(team_id != except_id and other.casefold() == name.casefold() for team_id, other in await db.execute(query)):
        raise InvalidInput({"name": _("There is already a team with that name.")})


async def teams_of(db: AsyncSession, community_id: uuid.UUID) -> list[Team]:
    return list(await db.scalars(select(Team).where(Team.community_id == community_id).order_by(Team.name)))


async def create_team(db: AsyncSession, community_id: uuid.UUID, name: str) -> Team:
    name = _team_name(name)
    await _ensure_unique_team(db, community_id, name)
    team = Team(community_id=community_id, name=name)
    db.add(team)
    await db.flush()
    return team


async def team_in(db: AsyncSession, community_id: uuid.UUID, team_id: uuid.UUID | str | None) -> Team | None:
    """The team with that id in this community; None for no team; InvalidInput for a stranger."""
    if team_id in (None, ""):
        return None
    try:
        team_uuid = team_id if isinstance(team_id, uuid.UUID) else uuid.UUID(str(team_id))
    except ValueError:
        team_uuid = None
    team = await db.get(Team, team_uuid) if team_uuid else None
    if team is None or team.community_id != community_id:
        raise InvalidInput({"team": _("Choose one of this community's teams.")})
    return team


async def rename_team(db: AsyncSession, community_id: uuid.UUID, team_id: uuid.UUID, name: str) -> Team:
    team = await team_in(db, community_id, team_id)
    assert team is not None
    name = _team_name(name)
    await _ensure_unique_team(db, community_id, name, except_id=team.id)
    team.name = name
    await db.flush()
    return team


def add_membership(
    db: AsyncSession, community_id: uuid.UUID, person_id: uuid.UUID, team_id: uuid.UUID | None, status: str
) -> Membership:
    membership = Membership(
        person_id=person_id,
        community_id=community_id,
        team_id=team_id,
        role="member",
        status=status,
        accepted=status == "active",
        created_at=clock.now(),
    )
    db.add(membership)
    return membership
