"""Sending mail: to SMTP in production, or as .eml files in a local outbox folder in embedded
mode, where a developer (or a test) reads the sign-in code from the file."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from suanli_auth.settings import AuthSettings
from suanli_common.ids import new_id
from suanli_common.logging import get_logger

log = get_logger(__name__)


class Mailer(Protocol):
    async def send(self, to: str, subject: str, body: str) -> None: ...


def _message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="suanli.local")
    message.set_content(body)
    return message


class OutboxFolderMailer:
    """Writes each mail to `<folder>/<time-ordered id>.eml`."""

    def __init__(self, folder: Path, sender: str) -> None:
        self._folder = folder
        self._sender = sender

    async def send(self, to: str, subject: str, body: str) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        path = self._folder / f"{new_id('mail')}.eml"
        data = _message(self._sender, to, subject, body).as_bytes()
        # Write then rename, so a reader never sees half a mail.
        tmp = path.with_suffix(".tmp")
        await asyncio.to_thread(tmp.write_bytes, data)
        tmp.replace(path)
        log.info("mail written to the local outbox", path=str(path), subject=subject)


class SmtpMailer:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        user: str | None,
        password: str | None,
        starttls: bool,
        timeout_s: float,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._user, self._password = user, password
        self._starttls, self._timeout_s = starttls, timeout_s

    async def send(self, to: str, subject: str, body: str) -> None:
        # smtplib blocks; a thread keeps the event loop serving while the server answers.
        await asyncio.to_thread(self._send_blocking, _message(self._sender, to, subject, body))

    def _send_blocking(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._user:
                smtp.login(self._user, self._password or "")
            smtp.send_message(message)


def make_mailer(settings: AuthSettings) -> Mailer:
    if not settings.smtp_host:
        return OutboxFolderMailer(settings.mail_outbox_dir, settings.mail_from)
    return SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        settings.mail_from,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        starttls=settings.smtp_starttls,
        timeout_s=settings.smtp_timeout_s,
    )
