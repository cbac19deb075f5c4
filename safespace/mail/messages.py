"""Rendering mail from templates/emails/, in the recipient's language."""

from __future__ import annotations

from jinja2 import Environment

from safespace import i18n
from safespace.mail import Message


def render(env: Environment, name: str, to: str, language: str, **context: object) -> Message:
    """Render templates/emails/<name>.txt and .html; the subject is the .txt's first line."""
    previous = i18n.current_language()
    i18n.set_language(language)
    try:
        text = env.get_template(f"emails/{name}.txt").render(**context)
        html = env.get_template(f"emails/{name}.html").render(**context)
    finally:
        i18n.set_language(previous)
    subject, _, body = text.partition("\n")
    return Message(to=to, subject=subject.strip(), text=body.lstrip("\n"), html=html)
