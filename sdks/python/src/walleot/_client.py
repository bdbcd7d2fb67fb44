"""A small async client of the Walleot service's `/v1` API.

Every call has a timeout. POSTs carry an `Idempotency-Key`, so that network failures
and 5xx answers are retried with backoff without doing anything twice. A 429 is not
retried here: its `Retry-After` is carried in the error for the caller to report.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import quote

import httpx2

#: The longest wait the service accepts on a session read.
MAX_WAIT_SECONDS = 60


class ServiceError(Exception):
    """A call to the service that did not succeed. `status` is None when the service
    could not be reached; the message may name the service's address, so it goes to
    logs, never to MCP clients."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        kind: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.retry_after = retry_after


def _retry_after(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return max(int(value.strip()), 0)
    except ValueError:
        return None


class ServiceClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        max_retries: int = 2,
        initial_backoff: float = 0.2,
    ) -> None:
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        if not base.startswith(("http://", "https://")):
            raise ValueError("the Walleot base URL must start with http:// or https://")
        self.base = base + "/v1/"
        self._key = api_key
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self._http: httpx2.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx2.AsyncClient:
        # One connection pool per event loop (a process may run several in turn).
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx2.AsyncClient(follow_redirects=False)
            self._loop = loop
        return self._http

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        total = self.timeout if timeout is None else timeout
        limits = httpx2.Timeout(total, connect=min(self.connect_timeout, total))
        repeatable = method == "GET" or idempotency_key is not None
        attempt = 0
        while True:
            try:
                answer = await self._client().request(
                    method, self.base + path, json=body, params=params, headers=headers, timeout=limits
                )
                error = None
            except httpx2.HTTPError as e:  # unreachable, reset, timed out
                answer, error = None, ServiceError(f"{method} {self.base}{path}: {e!r}")
            if answer is not None:
                if answer.status_code < 300:
                    try:
                        return answer.json()
                    except ValueError:
                        error = ServiceError("the service answered something other than JSON", answer.status_code)
                else:
                    error = self._api_error(answer)
            retryable = error.status is None or error.status in (500, 502, 503, 504)
            if repeatable and retryable and attempt < self.max_retries:
                await asyncio.sleep(self.initial_backoff * 2**attempt)
                attempt += 1
                continue
            raise error

    @staticmethod
    def _api_error(answer: httpx2.Response) -> ServiceError:
        kind, message = None, f"HTTP {answer.status_code}"
        try:
            detail = answer.json().get("error") or {}
            kind, message = detail.get("type"), detail.get("message") or message
        except (ValueError, AttributeError):
            pass
        return ServiceError(
            message, answer.status_code, kind, _retry_after(answer.headers.get("retry-after"))
        )

    async def create_session(
        self,
        amount: int,
        currency: str,
        description: str | None,
        expires_in: int,
        idempotency_key: str | None = None,
        metadata: dict[str, str] | None = None,
        customer: str | None = None,
    ) -> dict[str, Any]:
        """A manual-capture session. Naming a `customer` lets a mandate the payer granted
        for it pay the session at creation: it then answers `paid`, with its `mandateId`."""
        body: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "expiresIn": expires_in,
            "captureMethod": "manual",
        }
        if metadata:
            body["metadata"] = metadata
        if description:
            body["description"] = description
        if customer:
            body["customer"] = customer
        return await self._call(
            "POST", "sessions", body=body, idempotency_key=idempotency_key or str(uuid.uuid4())
        )

    async def get_session(self, session_id: str) -> dict[str, Any]:
        return await self._call("GET", f"sessions/{quote(session_id, safe='')}")

    async def wait_session(self, session_id: str, wait: float) -> dict[str, Any]:
        """A long poll: answers as soon as the session leaves `pending`, else after
        `wait` seconds (at most 60)."""
        seconds = max(0, min(int(wait), MAX_WAIT_SECONDS))
        return await self._call(
            "GET",
            f"sessions/{quote(session_id, safe='')}",
            params={"wait": seconds},
            timeout=self.timeout + seconds,
        )

    async def _post(self, session_id: str, action: str, idempotency_key: str | None) -> dict[str, Any]:
        return await self._call(
            "POST",
            f"sessions/{quote(session_id, safe='')}/{action}",
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )

    async def capture_session(self, session_id: str, idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._post(session_id, "capture", idempotency_key)

    async def release_session(self, session_id: str, idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._post(session_id, "release", idempotency_key)

    async def cancel_session(self, session_id: str, idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._post(session_id, "cancel", idempotency_key)
