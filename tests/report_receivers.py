"""Local receivers of scheduled reports for the tests: an SMTP server (aiosmtpd) and a webhook endpoint."""

from __future__ import annotations

import email
import email.policy
import threading
from datetime import datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo


class Mailbox:
    """aiosmtpd handler: keeps every message the SMTP server accepted, with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 OK"


class Receiver:
    """A local webhook receiver: records each POST, answers the statuses queued in ``answers`` (then 200)."""

    def __init__(self) -> None:
        self.posts: list[tuple[int, dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.posts.append((status, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/reports"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[tuple[int, dict[str, str], bytes]]:
        return [p for p in self.posts if p[0] == 200]


def zone_in_daytime(now: datetime) -> str:
    """A zone where it is now between 01:00 and 21:00, so that today's firing and yesterday's period are whole
    and past whatever the hour the test runs at."""
    for name in ("America/New_York", "Asia/Tokyo", "Europe/Paris"):
        if 1 <= now.astimezone(ZoneInfo(name)).hour <= 21:
            return name
    raise AssertionError("three zones 5 and 8 hours apart cannot all be at night")


def attachments(message: EmailMessage) -> dict[str, bytes]:
    """An email's attachments by file name."""
    return {part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()}  # type: ignore[misc]


def multipart_files(headers: dict[str, str], body: bytes) -> dict[str, bytes]:
    """The file parts of a multipart/form-data body, by file name (parsed with the standard email parser)."""
    raw = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return {part.get_filename(): part.get_payload(decode=True) for part in parsed.iter_parts()  # type: ignore[union-attr]
            if part.get_filename()}
