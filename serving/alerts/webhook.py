"""Delivers one notification to a webhook: POST JSON, a timeout, a few retries with backoff.

The sender only reports what happened to each attempt; keeping an undelivered notification for the
next tick is the evaluator's job (it stays in the rule's outbox until an attempt succeeds).

Every attempt resolves the host through ``serving.webhook_guard`` and connects to the address it checked
(the original name travels in the Host header and as the TLS server name, so certificates are verified
against it). A refused destination is a permanent failure. A receiver's answer body is never recorded:
the rule's history is shown to the tenant, and only the status code is theirs to see.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from serving.webhook_guard import EgressPolicy, EgressRefused, post_to_checked_address

# 4xx answers that mean "later" rather than "never"
_RETRYABLE_4XX = {408, 409, 425, 429}


@dataclass(frozen=True)
class Attempt:
    number: int
    status: int | None  # HTTP status, None when no answer came (timeout, refused)
    error: str = ""
    unusable_url: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def permanent_failure(self) -> bool:
        """The receiver refused this message for good (e.g. 400, 404): retrying cannot help."""
        if self.unusable_url:
            return True
        return self.status is not None and 400 <= self.status < 500 and self.status not in _RETRYABLE_4XX


class WebhookSender:
    def __init__(self, timeout_seconds: float = 5.0, attempts: int = 3, backoff_seconds: float = 0.5,
                 client: httpx.AsyncClient | None = None, egress: EgressPolicy | None = None) -> None:
        # no redirects (a public URL could bounce to an internal one) and no proxy from the environment
        # (the connection must go to the checked address)
        self._client = client or httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False, trust_env=False)
        self._egress = egress or EgressPolicy()
        self._attempts = max(1, attempts)
        self._backoff = backoff_seconds

    async def send(self, url: str, payload: dict[str, Any], first_attempt: int = 1) -> list[Attempt]:
        """Try up to ``attempts`` times (backoff doubling from ``backoff_seconds``); stops at success or at
        a permanent refusal. Attempts are numbered from ``first_attempt`` (earlier ticks' tries count)."""
        made: list[Attempt] = []
        for i in range(self._attempts):
            number = first_attempt + i
            try:
                response = await self._post_checked(url, payload)
                attempt = Attempt(number, response.status_code)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:  # no retry can fix the address
                made.append(Attempt(number, None, f"{type(exc).__name__}: {exc}"[:200], unusable_url=True))
                break
            except EgressRefused as exc:
                made.append(Attempt(number, None, str(exc), unusable_url=True))
                break
            except Exception as exc:  # any other failure (timeout, refused, TLS…) is retried
                attempt = Attempt(number, None, f"{type(exc).__name__}: {exc}"[:200])
            made.append(attempt)
            if attempt.delivered or attempt.permanent_failure:
                break
            if i + 1 < self._attempts:
                await asyncio.sleep(self._backoff * 2**i)
        return made

    async def _post_checked(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        return await post_to_checked_address(self._client, self._egress, url, "lakehouse-alerts/1", json=payload)

    async def close(self) -> None:
        await self._client.aclose()
