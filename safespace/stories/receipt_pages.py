"""My story with the receipt code alone: open, edit, withdraw. No session is read here."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from safespace import i18n, ratelimit
from safespace.errors import InvalidInput
from safespace.i18n import gettext as _
from safespace.identity.models import Community
from safespace.privacy.crypto import Keyring
from safespace.stories import moderation, responses, services
from safespace.stories.controllers import finding_labels, reaction_labels
from safespace.stories.models import Story
from safespace.web.pages import form_text, page
from safespace.web.session import language_for

Form = URLEncodedBody[dict[str, Any]]
# Wrong receipt codes per 15 minutes. A code whose first group (the locator) names a story is
# counted against that story, so guessing at one story stops after 10 tries whoever and wherever
# the guesser is; a code that names no story is counted against the client's address. So someone
# guessing behind the same office NAT never locks the real author out (their code names their
# story), and scrypt (tens of ms, 16 MiB) runs at most RECEIPT_ATTEMPTS times per story and
# RECEIPT_CHECKS times in all per window.
RECEIPT_ATTEMPTS = 10
RECEIPT_CHECKS = 500
RECEIPT_PATH = "/stories/mine"
EDIT_CHECKS = 10  # identifying-details checks per story per 15 minutes when its author edits it


class ReceiptController(Controller):
    """My story, with the receipt code alone: no session is read (app.py: ANONYMOUS), so opening,
    editing or withdrawing a story pairs it with no one. A browser with JavaScript sends the code
    with no cookie at all (static/mine.js); without it, the cookie goes along unread."""

    path = RECEIPT_PATH
    include_in_schema = False

    @get("/")
    async def form(self, request: Request) -> Template:
        i18n.set_language(language_for(request))
        return page("stories/mine.html", community=None, story=None, text=None, errors={})

    @post("/", name="receipt:open")
    async def open(
        self, request: Request, data: Form, db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
    ) -> Template:  # fmt: skip
        found = await _story_by_code(request, data, db_session, secret)
        if isinstance(found, Template):
            return found
        return await _story_page(db_session, keyring, *found)

    @post("/withdraw", name="receipt:withdraw")
    async def withdraw(
        self, request: Request, data: Form, db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
    ) -> Template:  # fmt: skip
        """Withdrawing deletes the story for good: a first press asks once more, on a page that
        works without script; the second (confirmed=yes) deletes."""
        found = await _story_by_code(request, data, db_session, secret)
        if isinstance(found, Template):
            return found
        story, community, code = found
        if form_text(data, "confirmed") != "yes":
            return page("stories/mine.html", community=community, story=story, text=services.open_story(keyring, story),
                        code=code, errors={}, confirm_withdraw=True)  # fmt: skip
        await services.withdraw(db_session, story)
        return page("stories/mine.html", community=community, story=None, text=None, errors={}, withdrawn=True)

    @post("/edit", name="receipt:edit")
    async def edit(
        self, request: Request, data: Form, db_session: NamedDependency[AsyncSession], keyring: NamedDependency[Keyring],
        secret: NamedDependency[bytes],
    ) -> Template:  # fmt: skip
        found = await _story_by_code(request, data, db_session, secret)
        if isinstance(found, Template):
            return found
        story, community, code = found
        values = {name: form_text(data, name) for name in services.FIELDS}
        try:
            text, _tags, _advice = services.read_form(values, moderation.community_tags(community))
        except InvalidInput as exc:
            return page("stories/mine.html", status_code=422, community=community, story=None, text=None, errors=exc.errors)
        if form_text(data, "confirmed") != "yes":
            if await ratelimit.over_limit(db_session, ratelimit.rate_key(secret, "story-edit-check", str(story.id)), EDIT_CHECKS):
                errors = {"code": _("Too many attempts. Wait 15 minutes, then try again.")}
                return page("stories/mine.html", status_code=429, community=community, story=None, text=None, errors=errors)
            findings = await services.identifying_details(db_session, community.id, text)
            if findings:
                # The same warning as when sharing: the edit is not saved until the writer confirms.
                return page("stories/mine.html", story=story, text=text, replies=[], reactions={}, kinds=reaction_labels(),
                            errors={}, findings=findings, labels=finding_labels(), community=community, code=code)  # fmt: skip
        await services.edit(db_session, keyring, story, text, community.moderate_stories)
        saved = _("Your changes are saved. They wait for a facilitator's review before they are shown.") if community.moderate_stories \
            else _("Your changes are saved.")  # fmt: skip
        return await _story_page(db_session, keyring, story, community, code, saved=saved)


async def _story_by_code(request: Request, data: dict, db: AsyncSession, secret: bytes) -> tuple[Story, Community, str] | Template:
    """The story of the receipt code sent, or the page that says why not (a wrong code, too many
    tries). Wrong codes are counted per story locator and per client, and all checks together."""
    # Sent with no cookie from a page with JavaScript: the page says its language in the form.
    chosen = form_text(data, "lang")
    i18n.set_language(chosen if chosen in i18n.LANGUAGES else language_for(request))
    client = request.client.host if request.client else "unknown"
    code = form_text(data, "code")
    candidates = await services.receipt_candidates(db, code)
    if candidates:
        key = ratelimit.rate_key(secret, "receipt-story", candidates[0].receipt_locator)
    else:
        key = ratelimit.rate_key(secret, "receipt", client)
    checks = ratelimit.rate_key(secret, "receipt-checks", "all")
    if await ratelimit.attempts(db, key) >= RECEIPT_ATTEMPTS or (
        candidates and await ratelimit.attempts(db, checks) >= RECEIPT_CHECKS
    ):
        errors = {"code": _("Too many attempts. Wait 15 minutes, then try again.")}
        return page("stories/mine.html", status_code=429, community=None, story=None, text=None, errors=errors)
    story = await services.find_by_receipt(candidates, code)
    if story is None:
        await ratelimit.over_limit(db, key, RECEIPT_ATTEMPTS)  # only wrong codes count
        if candidates:
            await ratelimit.over_limit(db, checks, RECEIPT_CHECKS)
        await db.commit()
        errors = {"code": _("No story matches this receipt code. Check it and try again.")}
        return page("stories/mine.html", status_code=404, community=None, story=None, text=None, errors=errors)
    return story, await db.get_one(Community, story.community_id), code


async def _story_page(db: AsyncSession, keyring: Keyring, story: Story, community: Community, code: str, saved: str | None = None) -> Template:
    return page(
        "stories/mine.html",
        community=community,
        code=code,
        story=story,
        text=services.open_story(keyring, story),
        replies=(await responses.released_replies(db, keyring, [story.id])).get(story.id, []),
        reactions=(await responses.reaction_counts(db, [story.id])).get(story.id, {}),
        kinds=reaction_labels(),
        errors={},
        saved=saved,
    )
