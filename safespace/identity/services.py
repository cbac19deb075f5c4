"""Communities, teams, members and invitations: the rules, callable without HTTP."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from dataclasses import dataclass, field
from functools import cache

from email_validator import EmailNotValidError, validate_email
from litestar.exceptions import PermissionDeniedException
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import clock
from safespace.errors import InvalidInput, Refused
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


def may_create_communities(creators: str) -> None:
    """SAFESPACE_COMMUNITY_CREATORS: "anyone" signed in, or "operators" (the CLI) only."""
    if creators != "anyone":
        raise PermissionDeniedException(_("On this Safespace, communities are started by the people who run it. Ask them to start one for you."))


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


async def memberships_of(db: AsyncSession, person_id: uuid.UUID) -> list[Membership]:
    """Where a person may go: their active and invited memberships, by community name."""
    rows = await db.scalars(
        select(Membership)
        .join(Community)
        .where(Membership.person_id == person_id, Membership.status != "deactivated")
        .order_by(Community.name)
    )
    return list(rows)


# Built once: every page under a community runs it, and building a statement (and its cache key)
# costs about as much as running it.
_ACTIVE_MEMBERSHIP = select(Membership).where(
    Membership.person_id == bindparam("person_id"),
    Membership.community_id == bindparam("community_id"),
    Membership.status == "active",
)


async def active_membership(
    db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID
) -> Membership | None:
    return await db.scalar(_ACTIVE_MEMBERSHIP, {"person_id": person_id, "community_id": community_id})


async def pending_invitation(db: AsyncSession, person_id: uuid.UUID) -> Community | None:
    """The community a person was invited to and has not joined, if they belong to none yet."""
    statuses = set(await db.scalars(select(Membership.status).where(Membership.person_id == person_id)))
    if "active" in statuses or "invited" not in statuses:
        return None
    return await db.scalar(
        select(Community)
        .join(Membership, Membership.community_id == Community.id)
        .where(Membership.person_id == person_id, Membership.status == "invited")
        .order_by(Community.name)
        .limit(1)
    )


async def accept_invitation(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID) -> bool:
    """The person joins the community they were invited to (and proved their address for)."""
    membership = await db.scalar(
        select(Membership).where(
            Membership.person_id == person_id,
            Membership.community_id == community_id,
            Membership.status == "invited",
        )
    )
    if membership is None:
        return False
    membership.status, membership.accepted = "active", True
    return True


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


# --- members -------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s,;]+")


def split_addresses(text: str) -> tuple[list[str], list[str]]:
    """Pasted text -> (valid normalized addresses, first seen first, no repeats; invalid entries)."""
    valid: list[str] = []
    invalid: list[str] = []
    for entry in _SEPARATORS.split(text):
        entry = entry.strip().strip("<>")
        if not entry:
            continue
        try:
            address = normalize_email(entry)
        except InvalidInput:
            if entry not in invalid:
                invalid.append(entry)
            continue
        if address not in valid:
            valid.append(address)
    return valid, invalid


@dataclass
class Invitations:
    invited: list[Membership] = field(default_factory=list)
    already_members: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


async def invite(
    db: AsyncSession, community_id: uuid.UUID, addresses: str | list[str], team_id: uuid.UUID | str | None
) -> Invitations:
    """Create memberships for new addresses; list invalid ones back; ignore existing members."""
    text = addresses if isinstance(addresses, str) else "\n".join(addresses)
    valid, invalid = split_addresses(text)
    if not valid and not invalid:
        raise InvalidInput({"addresses": _("Paste at least one email address.")})
    team = await team_in(db, community_id, team_id)
    result = Invitations(invalid=invalid)
    for address in valid:
        person, _created = await get_or_create_person(db, address)
        existing = await db.scalar(
            select(Membership).where(Membership.person_id == person.id, Membership.community_id == community_id)
        )
        if existing:
            result.already_members.append(address)
            continue
        result.invited.append(add_membership(db, community_id, person.id, team.id if team else None, "invited"))
    await db.flush()
    for membership in result.invited:
        await db.refresh(membership, ["person", "team", "community"])
    return result


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


async def roster(db: AsyncSession, community_id: uuid.UUID) -> list[Membership]:
    return list(
        await db.scalars(
            select(Membership)
            .join(Person)
            .where(Membership.community_id == community_id)
            .order_by(func.lower(Person.display_name), Person.email)
        )
    )


async def member_in(db: AsyncSession, community_id: uuid.UUID, membership_id: uuid.UUID) -> Membership:
    membership = await db.get(Membership, membership_id)
    if membership is None or membership.community_id != community_id:
        raise LookupError("no such member in this community")
    return membership


async def _active_facilitators(db: AsyncSession, community_id: uuid.UUID) -> int:
    return await db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.community_id == community_id,
            Membership.role == "facilitator",
            Membership.status == "active",
        )
    ) or 0


async def _lock_community(db: AsyncSession, community_id: uuid.UUID) -> None:
    """Serialise role changes in one community (PostgreSQL row lock; SQLite's write lock)."""
    await db.execute(select(Community.id).where(Community.id == community_id).with_for_update())


async def change_member(
    db: AsyncSession,
    community_id: uuid.UUID,
    membership_id: uuid.UUID,
    *,
    status: str | None = None,
    role: str | None = None,
    team_id: uuid.UUID | str | None = ...,  # type: ignore[assignment]
) -> Membership:
    """Deactivate/reactivate, grant/withdraw the facilitator role, or move to another team."""
    await _lock_community(db, community_id)
    membership = await member_in(db, community_id, membership_id)
    if status is not None:
        if status not in ("active", "deactivated"):
            raise InvalidInput({"status": _("A member is either active or deactivated.")})
        if status == "deactivated":
            membership.status = "deactivated"
        elif membership.status == "deactivated":
            # Only someone who accepted the invitation becomes active; others are invited again.
            membership.status = "active" if membership.accepted else "invited"
    if role is not None:
        if role not in ("member", "facilitator"):
            raise InvalidInput({"role": _("A role is either member or facilitator.")})
        membership.role = role
    if team_id is not ...:
        team = await team_in(db, community_id, team_id)
        membership.team_id = team.id if team else None
    await db.flush()
    # Counted after the change, under the lock: two facilitators demoting each other cannot both pass.
    if await _active_facilitators(db, community_id) == 0:
        raise Refused(
            _("A community always keeps at least one facilitator. Make someone else a facilitator first.")
        )
    await db.refresh(membership, ["team"])
    return membership
