"""GET /privacy: what Safespace keeps and who sees it, for members, in their language.

The page is docs/PRIVACY.md (or PRIVACY.<language>.md), rendered once when this module loads: one
text for the repository and the page, so they cannot drift apart. Public: no sign-in needed.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Controller, get
from litestar.response import Template
from markdown_it import MarkdownIt

from safespace import i18n
from safespace.web import page

DOCS = Path(__file__).resolve().parents[2] / "docs"


def privacy_source(language: str) -> Path:
    return DOCS / ("PRIVACY.md" if language == i18n.DEFAULT_LANGUAGE else f"PRIVACY.{language}.md")


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
