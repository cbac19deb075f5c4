"""The messages identity sends: sign-in links and invitations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

from jinja2 import Environment

from safespace.i18n import DEFAULT_LANGUAGE
from safespace.identity.models import Membership, Person
from safespace.mail import Mailer
from safespace.mail.messages import render

log = logging.getLogger(__name__)


def link_url(base_url: str, token: str, next_path: str | None = None) -> str:
    url = f"{base_url.rstrip('/')}/signin/{token}"
    return f"{url}?{urlencode({'next': next_path})}" if next_path else url


@dataclass
class Postman:
    mailer: Mailer
    templates: Environment
    base_url: str

    async def sign_in_link(
        self, person: Person, token: str, language: str | None = None, next_path: str | None = None
    ) -> None:
        message = render(
            self.templates,
            "sign_in",
            to=person.email,
            language=person.language or language or DEFAULT_LANGUAGE,
            link=link_url(self.base_url, token, next_path),
            minutes=15,
        )
        await self.mailer.send(message)

    async def invitation(self, membership: Membership, token: str, inviter_name: str, language: str | None = None) -> bool:
        """Send one invitation; False (and a log line without the address) if the mail server refused."""
        message = render(
            self.templates,
            "invitation",
            to=membership.person.email,
            language=membership.person.language or language or DEFAULT_LANGUAGE,
            link=link_url(self.base_url, token),
            community=membership.community,
            inviter=inviter_name,
            days=7,
        )
        try:
            await self.mailer.send(message)
        except OSError as exc:
            # The class only: an SMTP error's text can contain the address.
            log.error("an invitation could not be sent (%s)", exc.__class__.__name__)
            return False
        return True
