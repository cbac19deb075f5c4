"""Paths on this site to go back to, for pages and for the templates that mail renders too (this
module imports no web framework: the commands render mail without loading Litestar)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode


def local_path(value: str | None) -> str | None:
    """A path on this site to go back to after sign-in; anything else (another host) is dropped."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")) and "\n" not in value:
        return value
    return None


def here(path: str, query: str) -> str:
    """Where the language switcher returns to: this page, with its query but without a `next` that
    leads off the site (the sign-in page drops such a `next`; the switcher must not carry it on).
    Empty on a sign-in link's page: its token stays out of any query."""
    if path.startswith("/signin/"):
        return ""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "next" or local_path(v)]
    return path + ("?" + urlencode(pairs) if pairs else "")
