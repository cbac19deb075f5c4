"""Mail: a small Mailer protocol, a console mailer (the default) and an SMTP mailer."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import sys
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from safespace.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str
    html: str


class Mailer(Protocol):
    async def send(self, message: Message) -> None: ...


class ConsoleMailer:
    """Prints each message: for development and for operators who have no SMTP server yet."""

    def __init__(self, stream=None) -> None:  # noqa: ANN001
        self.stream = stream

    async def send(self, message: Message) -> None:
        out = self.stream or sys.stdout
        out.write(f"\n--- mail to {message.to}: {message.subject}\n{message.text}\n---\n")
        out.flush()


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _envelope(self, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.settings.mail_from
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Message-ID"] = make_msgid(domain="safespace")
        email.set_content(message.text)
        email.add_alternative(message.html, subtype="html")
        return email

    def _send_blocking(self, email: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        if s.smtp_security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=30, context=context)
        else:
            client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=30)
        with client:
            if s.smtp_security == "starttls":
                client.starttls(context=context)
            if s.smtp_user:
                client.login(s.smtp_user, s.smtp_password)
            client.send_message(email)

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._send_blocking, self._envelope(message))


def make_mailer(settings: Settings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else ConsoleMailer()
