"""Every user-facing string is in the catalogs, and Spanish is complete."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from sqlalchemy import select

from safespace import i18n
from safespace.identity.models import Person
from tests.helpers import csrf, make_community, sign_in

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy": None}


def _source_messages() -> set[str]:
    found = set()
    for directory, method_map in (
        (ROOT / "safespace", [("**.py", "python")]),
        (ROOT / "safespace" / "templates", [("**.html", "jinja2"), ("**.txt", "jinja2")]),
    ):
        options = {"**.html": {"extensions": "jinja2.ext.i18n"}, "**.txt": {"extensions": "jinja2.ext.i18n"}}
        for _file, _line, message, _comments, _context in extract_from_dir(
            directory, method_map, options_map=options, keywords=KEYWORDS
        ):
            found.add(message[0] if isinstance(message, tuple) else message)
    assert len(found) > 100, "the extractor found too few messages: is the keyword list right?"
    return found


def test_spanish_catalog_translates_every_message() -> None:
    with (i18n.LOCALE_DIR / "es" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh, locale="es")
    translated = {
        m.id[0] if isinstance(m.id, tuple) else m.id
        for m in catalog
        if m.id and m.string and all(m.string if isinstance(m.string, tuple) else [m.string]) and not m.fuzzy
    }
    missing = sorted(_source_messages() - translated)
    assert not missing, f"{len(missing)} messages lack Spanish (run `make messages` and translate): {missing[:5]}"


def test_placeholders_survive_translation() -> None:
    i18n.set_language("es")
    try:
        text = i18n.gettext("Results are only shown for groups of at least %(k)s people.", k=7)
    finally:
        i18n.set_language("en")
    assert "7" in text and text != "Results are only shown for groups of at least 7 people."


def test_accept_language_picks_our_language() -> None:
    assert i18n.negotiate("es-ES,es;q=0.9,en;q=0.8") == "es"
    assert i18n.negotiate("fr-FR,fr;q=0.9,en;q=0.5,es;q=0.4") == "en"
    assert i18n.negotiate("de") == "en"
    assert i18n.negotiate("es;q=0, en") == "en"
    assert i18n.negotiate(None) == "en"


async def test_pages_follow_the_browser_language(client) -> None:
    page = await client.get("/signin", headers={"accept-language": "es-MX,es;q=0.9"})
    assert '<html lang="es">' in page.text and "Iniciar sesión" in page.text


async def test_signed_out_visitor_can_switch_language(client) -> None:
    english = await client.get("/signin", headers={"accept-language": "en"})
    assert 'href="/language/es?next=/signin"' in english.text
    switched = await client.get("/language/es?next=/signin")
    assert switched.headers["location"] == "/signin"
    page = await client.get("/signin", headers={"accept-language": "en"})
    assert "Iniciar sesión" in page.text
    assert (await client.get("/language/fr")).status_code == 404
    offsite = await client.get("/language/en?next=//evil.example")
    assert offsite.headers["location"] == "/signin"


async def test_signed_in_member_switches_language_from_any_page_and_stays_on_it(client, db) -> None:
    """Issue 17 item 6: the switcher was in the footer only when signed out."""
    world = await make_community(db, teams={"Energy": ["m1@x.org"]})
    await sign_in(client, db, "m1@x.org")
    here = f"/c/{world.community.id}/stories?q=plan&tag="
    english = await client.get(here, headers={"accept-language": "en"})
    footer = english.text.split('<footer class="foot">', 1)[1]
    assert 'action="/profile/language"' in footer and 'name="language" value="es"' in footer
    assert f'name="next" value="{here}"' in footer.replace("&amp;", "&")
    switched = await client.post("/profile/language", data={"language": "es", "next": here, "_csrf_token": csrf(client)})
    assert switched.status_code == 303 and switched.headers["location"] == here
    page = await client.get(here, headers={"accept-language": "en"})
    assert '<html lang="es">' in page.text and 'name="language" value="en"' in page.text
    assert (await db.scalar(select(Person.language).where(Person.email == "m1@x.org"))) == "es"  # the profile's choice
    offsite = await client.post("/profile/language", data={"language": "en", "next": "//evil.example", "_csrf_token": csrf(client)})
    assert offsite.headers["location"] == "/"
    assert (await client.post("/profile/language", data={"language": "fr", "_csrf_token": csrf(client)})).status_code == 404
