"""GET /privacy: what Safespace keeps and who sees it, for members, in their language.

The page is PRIVACY.md (or PRIVACY.<language>.md) beside this module, rendered once when this module
loads: one text for the repository (docs/PRIVACY*.md link here) and the page, so they cannot drift
apart, and it ships in the package. Public: no sign-in needed.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, get
from litestar.response import Template
from markdown_it import MarkdownIt

from safespace import i18n
from safespace.web.pages import page


def privacy_source(language: str) -> Path:
    return Path(__file__).with_name("PRIVACY.md" if language == i18n.DEFAULT_LANGUAGE else f"PRIVACY.{language}.md")


def render_privacy(language: str) -> str:
    # Raw HTML in the markdown is escaped, not passed through: the page keeps to the CSP and our markup.
    return MarkdownIt("commonmark", {"html": False}).render(privacy_source(language).read_text(encoding="utf-8"))


PRIVACY_HTML = {language: render_privacy(language) for language in i18n.LANGUAGES}


class PrivacyController(Controller):
    include_in_schema = False

    @get("/privacy")
    async def privacy(self) -> Template:
        # The session middleware has set the language: the member's choice, else the browser's.
        return page("privacy.html", body=PRIVACY_HTML[i18n.current_language()])
