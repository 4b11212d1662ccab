"""Sends a rendered report: by email through the configured SMTP server, or to a webhook as a multipart POST.

Each sender makes up to ``attempts`` tries with a doubling backoff and reports every try, so the schedule's
history shows each failure and the one that got through. A failure that no retry can fix (a 4xx answer, a
destination the egress guard refuses, recipients the SMTP server rejects for good) is *permanent*: the run
records it and stops trying; any other failure is *transient*, and Dagster retries the step.

Webhook deliveries go through ``serving.webhook_guard`` like alert notifications: the host is resolved and
checked at every attempt, the connection goes to the checked address, no redirect is followed. The
multipart body has a ``report`` part (JSON: schedule, dashboard, tenant, period) and one file part per
attachment (``application/pdf``, ``text/csv``).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx
import orjson

from common.settings import Settings
from serving.webhook_guard import EgressPolicy, EgressRefused, post_to_checked_address

_RETRYABLE_4XX = {408, 409, 425, 429}


@dataclass(frozen=True)
class Attachment:
    filename: str
    media_type: str  # e.g. application/pdf
    content: bytes


@dataclass(frozen=True)
class RenderedReport:
    """What one delivery carries: a subject line, a plain-text summary, facts for machines, attachments."""

    subject: str
    summary: str
    facts: dict[str, Any]
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Attempt:
    number: int
    ok: bool
    detail: str = ""
    permanent: bool = False


def _tries(attempts: int, backoff_seconds: float, once: Callable[[], Attempt],
           sleep: Callable[[float], None] = time.sleep) -> list[Attempt]:
    """``once`` up to ``attempts`` times, stopping at success or at a permanent failure."""
    made: list[Attempt] = []
    for i in range(max(1, attempts)):
        attempt = once()
        made.append(Attempt(i + 1, attempt.ok, attempt.detail, attempt.permanent))
        if attempt.ok or attempt.permanent:
            break
        if i + 1 < attempts:
            sleep(backoff_seconds * 2**i)
    return made


class EmailSender:
    """One message per delivery to all of a schedule's recipients, through ``smtp_host``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def enabled(self) -> bool:
        return bool(self._settings.smtp_host)

    def message(self, report: RenderedReport, recipients: tuple[str, ...]) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._settings.smtp_from
        message["To"] = ", ".join(recipients)
        message["Subject"] = report.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self._settings.smtp_from.rpartition("@")[2] or None)
        message.set_content(report.summary)
        for item in report.attachments:
            main, _, sub = item.media_type.partition("/")
            message.add_attachment(item.content, maintype=main, subtype=sub, filename=item.filename)
        return message

    def send(self, report: RenderedReport, recipients: tuple[str, ...]) -> list[Attempt]:
        settings = self._settings
        if not self.enabled:
            return [Attempt(1, False, "email delivery is off: LAKEHOUSE_SMTP_HOST is empty", permanent=True)]
        message = self.message(report, recipients)
        return _tries(settings.report_delivery_attempts, settings.report_retry_backoff_seconds,
                      lambda: self._once(message))

    def _once(self, message: EmailMessage) -> Attempt:
        settings = self._settings
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.smtp_username:
                    smtp.login(settings.smtp_username, settings.smtp_password)
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _ in exc.recipients.values()}
            return Attempt(0, False, f"every recipient was refused: {_refusals(exc.recipients)}",
                           permanent=all(500 <= c < 600 for c in codes))
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            return Attempt(0, False, f"SMTP {exc.smtp_code}: {text}"[:300], permanent=500 <= exc.smtp_code < 600)
        except (OSError, smtplib.SMTPException) as exc:  # connection refused, timeout, TLS, disconnect
            return Attempt(0, False, f"{type(exc).__name__}: {exc} (SMTP server "
                                     f"{settings.smtp_host}:{settings.smtp_port})"[:300])
        if refused:
            return Attempt(0, True, f"delivered; refused by the server: {_refusals(refused)}")
        return Attempt(0, True, f"accepted by {settings.smtp_host}:{settings.smtp_port}")


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in refused.items())[:300]


class WebhookReportSender:
    """POSTs the report as multipart/form-data to a tenant's webhook, through the egress guard."""

    def __init__(self, settings: Settings, egress: EgressPolicy | None = None) -> None:
        self._settings = settings
        self._egress = egress or EgressPolicy.from_settings(settings)

    def send(self, report: RenderedReport, url: str) -> list[Attempt]:
        settings = self._settings
        return _tries(settings.report_delivery_attempts, settings.report_retry_backoff_seconds,
                      lambda: asyncio.run(self._once(report, url)))

    async def _once(self, report: RenderedReport, url: str) -> Attempt:
        files = [(f"file{i}", (a.filename, a.content, a.media_type)) for i, a in enumerate(report.attachments, 1)]
        async with httpx.AsyncClient(timeout=self._settings.alert_webhook_timeout_seconds * 6,
                                     follow_redirects=False, trust_env=False) as client:
            try:
                response = await post_to_checked_address(
                    client, self._egress, url, "lakehouse-reports/1",
                    data={"report": orjson.dumps(report.facts).decode()}, files=files)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                return Attempt(0, False, f"{type(exc).__name__}: {exc}"[:300], permanent=True)
            except EgressRefused as exc:
                return Attempt(0, False, str(exc)[:300], permanent=True)
            except Exception as exc:  # timeouts, refused connections, TLS: worth another try
                return Attempt(0, False, f"{type(exc).__name__}: {exc}"[:300])
        status = response.status_code
        if 200 <= status < 300:
            return Attempt(0, True, f"HTTP {status}")
        return Attempt(0, False, f"HTTP {status}", permanent=400 <= status < 500 and status not in _RETRYABLE_4XX)
