"""Mail reaches a real SMTP server (aiosmtpd) with a text and an HTML part and a working link."""

from __future__ import annotations

import io

from sqlalchemy.ext.asyncio import AsyncSession

from safespace.mail import ConsoleMailer, Message
from tests.helpers import follow_link, make_community, post_form


async def test_sign_in_mail_has_both_parts_and_a_working_link(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    await client.get("/signin")
    await post_form(client, "/signin", {"email": world.facilitator})
    [mail] = inbox.to(world.facilitator)
    assert mail["Subject"] == "Your Safespace sign-in link"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    link = inbox.last_link(world.facilitator)
    assert link in text and link in html
    assert link.startswith("http://testserver.local/signin/")
    response = await follow_link(client, link)
    assert response.status_code == 303
    while response.status_code in (302, 303):
        response = await client.get(response.headers["location"])
    assert response.status_code == 200 and world.community.name in response.text


async def test_mail_comes_in_the_recipients_language(client, db: AsyncSession, inbox) -> None:
    world = await make_community(db)
    from safespace.identity.services import find_person

    person = await find_person(db, world.facilitator)
    person.language = "es"
    await db.commit()
    await client.get("/signin")
    await post_form(client, "/signin", {"email": world.facilitator})
    [mail] = inbox.to(world.facilitator)
    assert "enlace" in mail["Subject"].lower()


async def test_console_mailer_prints_the_message() -> None:
    out = io.StringIO()
    await ConsoleMailer(out).send(Message("a@x.org", "Hello", "Open https://x/signin/abc", "<p>html</p>"))
    assert "a@x.org" in out.getvalue() and "https://x/signin/abc" in out.getvalue()
