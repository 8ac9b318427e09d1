"""Email adapters: how the server sends verification and password-reset mails.

An adapter is anything with ``async send(to, subject, text, html=None)``. Two come with parsectl:

* :class:`FolderEmailAdapter` (the development default) writes each mail as one ``.eml`` file in a folder,
  so the links can be read and followed without a mail server;
* :class:`SMTPEmailAdapter` hands the mail to an SMTP server with the standard library's ``smtplib``
  (in a worker thread, so a slow server never stalls other requests).

:func:`adapter_for` builds one from the ``emailAdapter`` option::

    {"module": "folder", "options": {"directory": "parsectl-data/mail"}}
    {"module": "smtp", "options": {"host": "smtp.example.com", "port": 587, "starttls": true,
                                    "username": "...", "password": "...", "fromAddress": "app@example.com"}}
"""

from __future__ import annotations

import asyncio
import os
import secrets
import smtplib
import ssl
import tempfile
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

DEFAULT_DIRECTORY = "parsectl-data/mail"
DEFAULT_FROM = "parsectl@localhost"


@runtime_checkable
class EmailAdapter(Protocol):
    async def send(self, to: str, subject: str, text: str, html: str | None = None) -> None:
        """Deliver one mail (raise on failure)."""


def build_message(from_address: str, to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
    """A MIME message: plain text, plus an HTML alternative when ``html`` is given."""
    for name, value in (("to", to), ("subject", subject), ("from", from_address)):
        if "\r" in value or "\n" in value:
            raise ValueError(f"{name} must be a single line")
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = from_address.rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


class FolderEmailAdapter:
    """Writes every mail to ``directory`` as ``<UTC time>-<random>.eml`` (written whole, then renamed)."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY, from_address: str = DEFAULT_FROM) -> None:
        if not isinstance(directory, str | os.PathLike) or not str(directory):
            raise ValueError("emailAdapter.options.directory must be a folder path")
        if not isinstance(from_address, str) or "@" not in from_address:
            raise ValueError("emailAdapter.options.fromAddress must be an email address")
        self.directory = Path(directory)
        self.from_address = from_address

    async def send(self, to: str, subject: str, text: str, html: str | None = None) -> None:
        message = build_message(self.from_address, to, subject, text, html)
        await asyncio.to_thread(self._write, message.as_bytes(policy=policy.SMTP))

    def _write(self, data: bytes) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.directory / f"{stamp}-{secrets.token_hex(4)}.eml"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".eml", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def files(self) -> list[Path]:
        """The mails written so far, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.eml") if not p.name.startswith("."))

    def messages(self) -> list[EmailMessage]:
        """The mails written so far, parsed, oldest first."""
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(p.read_bytes()) for p in self.files()]  # type: ignore[misc]


class SMTPEmailAdapter:
    """Sends through an SMTP server: plain (optionally upgraded with ``starttls``) or implicit TLS (``ssl``)."""

    def __init__(self, host: str, port: int | None = None, username: str | None = None, password: str | None = None,
                 *, starttls: bool = False, ssl: bool = False, from_address: str = DEFAULT_FROM,
                 timeout: float = 30.0, verify_certificates: bool = True) -> None:
        def fail(option: str, why: str) -> None:
            raise ValueError(f"emailAdapter.options.{option} {why}")

        if not isinstance(host, str) or not host:
            fail("host", "must be a host name")
        if port is None:
            port = 465 if ssl else 587 if starttls else 25
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            fail("port", "must be a port number (1-65535)")
        for name, flag in (("starttls", starttls), ("ssl", ssl), ("verifyCertificates", verify_certificates)):
            if not isinstance(flag, bool):
                fail(name, "must be true or false")
        if starttls and ssl:
            fail("ssl", "cannot be combined with starttls (choose one)")
        if (username is None) != (password is None):
            fail("password" if password is None else "username", "must be given with the other credential")
        for name, value in (("username", username), ("password", password)):
            if value is not None and not isinstance(value, str):
                fail(name, "must be a string")
        if not isinstance(from_address, str) or "@" not in from_address:
            fail("fromAddress", "must be an email address")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            fail("timeout", "must be a positive number of seconds")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.ssl = ssl
        self.from_address = from_address
        self.timeout = float(timeout)
        self.verify_certificates = verify_certificates

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify_certificates:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def send(self, to: str, subject: str, text: str, html: str | None = None) -> None:
        message = build_message(self.from_address, to, subject, text, html)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if self.ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._context())
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.username is not None and self.password is not None:
                smtp.login(self.username, self.password)
            smtp.send_message(message)


_FOLDER_OPTIONS = {"directory": "directory", "fromAddress": "from_address", "from_address": "from_address"}
_SMTP_OPTIONS = {
    "host": "host", "port": "port", "username": "username", "user": "username", "password": "password",
    "starttls": "starttls", "startTLS": "starttls", "ssl": "ssl", "secure": "ssl",
    "fromAddress": "from_address", "from_address": "from_address", "from": "from_address",
    "timeout": "timeout", "verifyCertificates": "verify_certificates",
    "verify_certificates": "verify_certificates",
}


def adapter_for(spec: Any) -> EmailAdapter | None:
    """The adapter an ``emailAdapter`` option names.

    ``None`` gives the development default (a :class:`FolderEmailAdapter` on ``parsectl-data/mail``);
    ``False`` gives none; an object with an async ``send`` is used as it is; ``"folder"`` / ``"smtp"``
    or ``{"module": ..., "options": {...}}`` build one. A bad option raises ``ValueError`` naming it.
    """
    if spec is None:
        return FolderEmailAdapter(DEFAULT_DIRECTORY)
    if spec is False:
        return None
    if not isinstance(spec, str | dict) and callable(getattr(spec, "send", None)):
        return spec  # type: ignore[no-any-return]
    if isinstance(spec, str):
        spec = {"module": spec}
    if not isinstance(spec, dict):
        raise ValueError('emailAdapter must be an object such as {"module": "folder", "options": {...}}')
    unknown = sorted(set(spec) - {"module", "options"})
    if unknown:
        raise ValueError(f"emailAdapter.{unknown[0]} is not an option (use module and options)")
    module = spec.get("module")
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("emailAdapter.options must be an object")
    if module == "folder":
        names = _FOLDER_OPTIONS
    elif module == "smtp":
        names = _SMTP_OPTIONS
    else:
        raise ValueError(f"emailAdapter.module must be 'folder' or 'smtp', not {module!r}")
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key not in names:
            raise ValueError(f"emailAdapter.options.{key} is not an option of the {module} adapter")
        kwargs[names[key]] = value
    if module == "folder":
        return FolderEmailAdapter(**kwargs)
    if "host" not in kwargs:
        raise ValueError("emailAdapter.options.host is required for the smtp adapter")
    return SMTPEmailAdapter(**kwargs)
