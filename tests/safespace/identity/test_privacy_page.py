"""GET /privacy: the members' privacy page, public, in the reader's language, linked from every page."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from safespace.identity.models import Person
from tests.helpers import make_community, sign_in


async def test_signed_out_visitor_reads_the_privacy_page_in_english_and_spanish(client) -> None:
    english = await client.get("/privacy", headers={"accept-language": "en"})
    assert english.status_code == 200
    assert '<html lang="en">' in english.text and "<h1>Your privacy in Safespace</h1>" in english.text
    for words in ("What &quot;k&quot; means", "Your receipt code", "Private mode", "How long things are kept"):
        assert words in english.text, words
    assert english.headers["cache-control"] == "no-store"

    spanish = await client.get("/privacy", headers={"accept-language": "es-ES,es;q=0.9"})
    assert spanish.status_code == 200
    assert '<html lang="es">' in spanish.text and "<h1>Tu privacidad en Safespace</h1>" in spanish.text
    assert "Tu código de recibo" in spanish.text and "Your receipt code" not in spanish.text
    assert "<title>Tu privacidad · Safespace</title>" in spanish.text


async def test_signed_in_member_reads_it_in_their_own_language(client, db: AsyncSession) -> None:
    world = await make_community(db, teams={"Energy": ["ana@x.org"]})
    person = await db.scalar(select(Person).where(Person.email == "ana@x.org"))
    person.language = "es"
    await db.commit()
    await sign_in(client, db, "ana@x.org")
    page = await client.get("/privacy", headers={"accept-language": "en"})  # the profile's choice wins
    assert page.status_code == 200 and "Tu privacidad en Safespace" in page.text
    home = await client.get(f"/c/{world.community.id}")
    assert '<a href="/privacy">Tu privacidad</a>' in home.text


async def test_every_page_footer_links_to_the_privacy_page(client) -> None:
    for path in ("/signin", "/privacy", "/no-such-page"):
        page = await client.get(path, headers={"accept-language": "en"})
        assert '<a href="/privacy">Your privacy</a>' in page.text, path
