"""Jinja2 templates and static files: one environment for pages and mail, subresource integrity."""

from __future__ import annotations

import base64
import functools
import hashlib
from pathlib import Path

from jinja2 import BytecodeCache, Environment, FileSystemLoader, select_autoescape
from jinja2.bccache import Bucket

from safespace import i18n
from safespace.web.paths import here

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"  # package data: a plain wheel carries them


class _CompiledOnce(BytecodeCache):
    """Templates compiled once per process, for every environment made by template_environment
    (they all have the same settings, so one's code serves another): the app's, its error pages',
    the commands' mailers, and the test suite's app per test. Jinja checks each template's source
    checksum before using what is kept."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if (code := self.compiled.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledOnce()


def template_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        bytecode_cache=_COMPILED,
        autoescape=select_autoescape(["html"], default_for_string=False),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates change with a deploy (a restart), never under a running process: no stat()
        # of each template file on every render, which cost a page about 5% of its time.
        auto_reload=False,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: i18n.translations(i18n.current_language()).gettext(message),
        lambda singular, plural, n: i18n.translations(i18n.current_language()).ngettext(singular, plural, n),
        newstyle=True,
    )
    # `_` is the gettext above itself, not the extension's alias that looks "gettext" up in each
    # template's context on every call (a fifth of the cost of each of a page's many `_()`).
    env.globals["_"] = env.globals["gettext"]
    env.globals.update(current_language=i18n.current_language, languages=i18n.LANGUAGES, sri=subresource_integrity, return_here=here)
    return env


STATIC = Path(__file__).resolve().parent.parent / "static"


@functools.cache
def subresource_integrity(name: str) -> str:
    """The SRI value of one of our static files (read once per process: files change with a deploy)."""
    digest = hashlib.sha384((STATIC / name).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()
