"""Magic links and database-backed sessions.

Our own small session store rather than a generic key-value backend: the cookie's token is
kept only as a SHA-256 (a database copy cannot hijack a session), a new token is minted at
every sign-in (no fixation), and idle sessions die on the server, not just in the browser.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from safespace import clock
from safespace.db.batch import Batcher, padded
from safespace.db.engine import Reads
from safespace.i18n import gettext as _
from safespace.identity.members import accept_invitation
from safespace.identity.models import (
    Community,
    LoginLink,
    Membership,
    Person,
    SsoAttempt,
    WebSession,
)
from safespace.ratelimit import attempts, over_limit, rate_key

log = logging.getLogger(__name__)

SIGN_IN_LINK_TTL = timedelta(minutes=15)
INVITATION_LINK_TTL = timedelta(days=7)
# last_seen_at is kept to the hour: enough to end idle sessions, too coarse to time anyone's answers.
SESSION_TOUCH_EVERY = timedelta(hours=1)

# Sign-in requests allowed per window (ratelimit.RATE_WINDOW), per address and per client.
RATE_LIMIT_PER_ADDRESS = 5
RATE_LIMIT_PER_CLIENT = 20


def token_hash(token: str) -> bytes:
    # Tokens carry 256 random bits: a fast hash is enough, there is nothing to guess.
    return hashlib.sha256(token.encode()).digest()


async def issue_link(
    db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID | None = None, ttl: timedelta = SIGN_IN_LINK_TTL
) -> str:
    """A new single-use link token. Older unused links of the same kind stop working.

    "Same kind": sign-in links replace sign-in links, an invitation replaces the earlier
    invitation to the same community; one never cancels the other.
    """
    moment = clock.now()
    same_kind = LoginLink.community_id.is_(None) if community_id is None else LoginLink.community_id == community_id
    await db.execute(
        update(LoginLink)
        .where(LoginLink.person_id == person_id, LoginLink.used_at.is_(None), same_kind)
        .values(used_at=moment)
    )
    token = secrets.token_urlsafe(32)
    db.add(
        LoginLink(
            token_hash=token_hash(token),
            person_id=person_id,
            community_id=community_id,
            created_at=moment,
            expires_at=moment + ttl,
        )
    )
    await db.flush()
    return token


@dataclass(frozen=True)
class SignedIn:
    person_id: uuid.UUID
    community_id: uuid.UUID | None


@dataclass(frozen=True)
class LinkPreview:
    invitation_to: str | None  # the community's name for an invitation, None for a sign-in link
    person_id: uuid.UUID | None = None
    community_id: uuid.UUID | None = None


async def peek_link(db: AsyncSession, token: str) -> LinkPreview | None:
    """Whether a link would still work, without using it."""
    row = (
        await db.execute(
            select(LoginLink.community_id, Community.name, LoginLink.person_id)
            .outerjoin(Community, Community.id == LoginLink.community_id)
            .where(
                LoginLink.token_hash == token_hash(token),
                LoginLink.used_at.is_(None),
                LoginLink.expires_at > clock.now(),
            )
        )
    ).first()
    if row is None:
        return None
    return LinkPreview(invitation_to=row.name, person_id=row.person_id, community_id=row.community_id)


async def redeem_link(db: AsyncSession, token: str) -> SignedIn | None:
    """Use a link once. None when it is unknown, used, superseded or expired."""
    moment = clock.now()
    # One UPDATE claims the link, so two concurrent clicks cannot both succeed.
    claimed = await db.execute(
        update(LoginLink)
        .where(
            LoginLink.token_hash == token_hash(token),
            LoginLink.used_at.is_(None),
            LoginLink.expires_at > moment,
        )
        .values(used_at=moment)
        .returning(LoginLink.person_id, LoginLink.community_id)
    )
    row = claimed.first()
    if row is None:
        return None
    if row.community_id is not None:
        await accept_invitation(db, row.person_id, row.community_id)
    return SignedIn(person_id=row.person_id, community_id=row.community_id)


async def start_session(db: AsyncSession, person_id: uuid.UUID, community_id: uuid.UUID | None) -> str:
    """A new session, at home in `community_id` (an invitation's) or else in the community the
    person last opened, while they are still an active member of it: "/" goes there."""
    if community_id is None:
        community_id = await db.scalar(
            select(Membership.community_id)
            .join(Person, (Person.id == Membership.person_id) & (Person.last_community_id == Membership.community_id))
            .where(Person.id == person_id, Membership.status == "active")
        )
    else:  # the invitation's community is the one opened now
        await db.execute(update(Person).where(Person.id == person_id).values(last_community_id=community_id))
    token = secrets.token_urlsafe(32)
    moment = clock.now().replace(minute=0, second=0, microsecond=0)  # to the hour, like last_seen_at
    db.add(
        WebSession(
            token_hash=token_hash(token),
            person_id=person_id,
            community_id=community_id,
            created_at=moment,
            last_seen_at=moment,
        )
    )
    await db.flush()
    return token


@dataclass(frozen=True)
class LiveSession:
    """What a request needs of its session and person (one indexed row, no ORM objects)."""

    session_id: uuid.UUID
    community_id: uuid.UUID | None
    flash: str | None
    person_id: uuid.UUID
    email: str
    display_name: str
    language: str | None
    last_seen_at: datetime
    # (community id, name, role) of each active membership, by community name: the navigation.
    places: tuple[tuple[uuid.UUID, str, str], ...] = ()
    touched: bool = False  # last_seen_at was moved on: the caller has a write to commit


# Sets the one-time notice a session's next page shows (web.flash; answers set it in their batch).
SET_NOTICE = update(WebSession.__table__).where(WebSession.__table__.c.id == bindparam("session_id")).values(flash=bindparam("notice"))

# The session's row once per active membership of its person, with the community's name: what
# a request needs and what a page's navigation shows, in one trip, for every token asked for at
# once (SessionReader). Built once: building a statement (and its cache key) on every request
# cost about as much as running it.
_SESSIONS = (
    select(
        WebSession.token_hash,
        WebSession.id,
        WebSession.community_id,
        WebSession.flash,
        Person.id,
        Person.email,
        Person.display_name,
        Person.language,
        WebSession.last_seen_at,
        Membership.community_id,
        Community.name,
        Membership.role,
    )
    .join(Person, Person.id == WebSession.person_id)
    .outerjoin(Membership, (Membership.person_id == Person.id) & (Membership.status == "active"))
    .outerjoin(Community, Community.id == Membership.community_id)
    .where(WebSession.token_hash.in_(bindparam("token_hashes", expanding=True)))
    .order_by(Community.name)
)


def _live(rows: list) -> LiveSession | None:
    """One token's rows of _SESSIONS as a LiveSession (None: no such session)."""
    if not rows:
        return None
    places = tuple((row[9], row[10], row[11]) for row in rows if row[9] is not None)
    return LiveSession(*rows[0][1:9], places=places)


def needs_settling(live: LiveSession, idle: timedelta) -> bool:
    """Whether settle() has a write to do: the session went idle, or was last touched over an hour ago."""
    return clock.now() - live.last_seen_at > min(idle, SESSION_TOUCH_EVERY)


def needs_ending(live: LiveSession, idle: timedelta) -> bool:
    """The session went unused for longer than the idle limit: it is over."""
    return clock.now() - live.last_seen_at > idle


async def settle(db: AsyncConnection, live: LiveSession, idle: timedelta) -> LiveSession | None:
    """None (and the row gone) if the session was idle too long; else the session, with
    last_seen_at moved on if it is over an hour old (at most one write an hour). The caller commits."""
    moment = clock.now()
    if needs_ending(live, idle):
        await db.execute(delete(WebSession).where(WebSession.id == live.session_id))
        return None
    if moment - live.last_seen_at > SESSION_TOUCH_EVERY:
        hour = moment.replace(minute=0, second=0, microsecond=0)
        await db.execute(update(WebSession).where(WebSession.id == live.session_id).values(last_seen_at=hour))
        return replace(live, last_seen_at=hour, touched=True)
    return live


class SessionReader:
    """Reads the sessions of concurrent requests in one query (safespace.db.batch): under load,
    a request's session costs a share of a query rather than a query and a connection."""

    def __init__(self, reads: Reads) -> None:
        # Core on a bare connection: no ORM session or identity map (db.engine.Reads); settle()'s
        # rare writes go through reads.engine and commit at once.
        self.reads, self.engine = reads, reads.engine
        self.batcher: Batcher[bytes, LiveSession | None] = Batcher(self._read, max_batch=128)

    async def read(self, token: str) -> LiveSession | None:
        """The session as stored (not yet settled: see needs_settling and settle)."""
        return await self.batcher.submit(token_hash(token))

    async def _read(self, hashes: list[bytes]) -> list[LiveSession | None]:
        found: dict[bytes, list] = {}
        for row in await self.reads.rows(_SESSIONS, {"token_hashes": padded(hashes)}):
            found.setdefault(row[0], []).append(row)
        return [_live(found.get(hashed, [])) for hashed in hashes]


async def forget_old_sign_ins(db: AsyncSession, idle: timedelta) -> None:
    """Delete used or expired links and idle sessions: nothing kept longer than it is useful."""
    moment = clock.now()
    await db.execute(delete(LoginLink).where((LoginLink.expires_at < moment) | (LoginLink.used_at.is_not(None))))
    await db.execute(delete(WebSession).where(WebSession.last_seen_at < moment - idle))
    await db.execute(delete(SsoAttempt).where(SsoAttempt.expires_at < moment))  # single sign-ins never finished


async def end_session(db: AsyncSession, token: str) -> None:
    await db.execute(delete(WebSession).where(WebSession.token_hash == token_hash(token)))


async def remember_community(db: AsyncSession, session_id: uuid.UUID, person_id: uuid.UUID, community_id: uuid.UUID) -> None:
    """The community "/" opens next time, in this session and after the next sign-in. Done while
    a page is read, so a failed write (a full disk, a read-only database) is left for a later
    visit rather than failing the page."""
    try:
        async with db.begin_nested():
            await db.execute(update(WebSession).where(WebSession.id == session_id).values(community_id=community_id))
            await db.execute(update(Person).where(Person.id == person_id).values(last_community_id=community_id))
    except SQLAlchemyError as exc:
        log.warning("the session's community not remembered (%s)", exc.__class__.__name__)


# Invitations a community, and one person, may send a day: enough to invite a whole community of
# practice at once, few enough that nobody can use Safespace to mail strangers in bulk.
INVITATIONS_PER_DAY = 1000
INVITATION_WINDOW = timedelta(days=1)


class TooManyInvitations(Exception):
    """A day's invitations are used up: the message says whose and when to go on."""


async def count_invitations(db: AsyncSession, secret: bytes, community_id: uuid.UUID, sender_id: uuid.UUID, n: int) -> None:
    """Count n invitations against the community's and the sender's day; refuse (before anything
    is written) if either would go past INVITATIONS_PER_DAY."""
    keys = {
        "community": rate_key(secret, "invitations-community", str(community_id)),
        "sender": rate_key(secret, "invitations-sender", str(sender_id)),
    }
    for who, key in keys.items():
        used = await attempts(db, key, INVITATION_WINDOW)
        if used + n > INVITATIONS_PER_DAY:
            values = {"limit": INVITATIONS_PER_DAY, "used": used, "left": max(INVITATIONS_PER_DAY - used, 0)}
            if who == "community":
                message = _("A community can invite %(limit)s people a day; this one has invited %(used)s today. "
                            "Invite at most %(left)s more today, or the rest tomorrow.")  # fmt: skip
            else:
                message = _("One person can invite %(limit)s people a day; you have invited %(used)s today. "
                            "Invite at most %(left)s more today, or the rest tomorrow.")  # fmt: skip
            raise TooManyInvitations(message % values)
    for key in keys.values():
        await over_limit(db, key, INVITATIONS_PER_DAY, INVITATION_WINDOW, amount=n)
