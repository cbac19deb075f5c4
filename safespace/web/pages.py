"""Small pieces every page route uses: redirects, form text, rendering (local paths: web/paths.py)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

# A private name, but no public accessor exists for the request's session; the version is pinned.
from jinja2 import Template as JinjaTemplate
from litestar import Request
from litestar.background_tasks import BackgroundTask
from litestar.response import Redirect, Template
from litestar.utils.scope.state import ScopeState
from markupsafe import Markup

API_PREFIX = "/api/"




def see_other(path: str) -> Redirect:
    """After a form POST: the browser GETs the next page (303), so reloading it re-sends nothing."""
    return Redirect(path, status_code=303)


def form_text(data: dict[str, Any], name: str) -> str:
    """One form field as text (the last value if it was sent twice)."""
    value = data.get(name, "")
    return str(value[-1] if isinstance(value, list) else value or "").strip()


def page(
    name: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    background: BackgroundTask | None = None,
    **context: Any,
) -> Template:
    return Template(template_name=name, context=context, status_code=status_code, headers=headers, background=background)


# Stands for the viewer's CSRF field in HTML kept for every viewer: no character that HTML escaping
# changes, and none that clean_text lets into stored text.
CSRF_SLOT = "\x00csrf\x00"


@dataclass(frozen=True, slots=True)
class Kept:
    """A page's title and content blocks, rendered once for every viewer. The content is kept cut
    at the CSRF slot, so each visit joins the pieces around its own field (a page template writes
    `{{ kept.content(csrf_input) }}`) instead of searching the whole block for the slot."""

    title: Markup
    pieces: tuple[str, ...]

    def content(self, csrf_field: str) -> Markup:
        return Markup(csrf_field.join(self.pieces))


def render_blocks(template: JinjaTemplate, context: dict[str, Any]) -> Kept:
    """A page template's title and content blocks rendered on their own, with the CSRF slot for
    the viewer's field: what a page keeps for every viewer (the frame, base.html, stays the viewer's)."""
    rendered = template.new_context(context | {"csrf_input": CSRF_SLOT, "kept": None})
    title, content = ("".join(template.blocks[name](rendered)) for name in ("title", "content"))
    return Kept(Markup(title), tuple(content.split(CSRF_SLOT)))


def csrf_input(request: Request) -> str:
    """The hidden CSRF field of this request's forms, as Litestar gives templates `csrf_input`
    (for HTML rendered apart with a slot in its place)."""
    token = ScopeState.from_scope(request.scope).csrf_token
    return f'<input type="hidden" name="_csrf_token" value="{html.escape(token or "")}" />'


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX)
