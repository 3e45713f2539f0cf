"""``DisconnectClient``: a small async client of the HTTP intake for Python services.

    async with DisconnectClient("https://fcd.internal", token) as client:
        result = await client.disconnect_account("fca_…", event_id="user-deleted-42", reason="…")

Every call is safe to retry because the intake de-duplicates by ``event_id``: the client retries
5xx answers, connection errors and timeouts (full-jitter backoff, ``max_attempts`` in all) with
the same body and ``event_id`` each time, and raises :class:`IntakeError` for any other non-2xx
answer (its ``status``, ``code`` and ``field`` come from the intake's error body).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

import aiohttp

from ledger.backoff import full_jitter


class IntakeError(Exception):
    """The intake refused the request (or every attempt failed); context as attributes."""

    def __init__(
        self, message: str, *, status: int | None, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field


class DisconnectClient:
    """Submits disconnect requests and reads their status; owns one ``aiohttp.ClientSession``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.2,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._timeout = timeout or aiohttp.ClientTimeout(total=10, connect=3)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never show the token
        return f"DisconnectClient({self.base_url!r})"

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def disconnect_account(
        self, account_id: str, *, event_id: str, reason: str, stripe_account: str | None = None
    ) -> dict[str, Any]:
        body = {"account_id": account_id, "event_id": event_id, "reason": reason}
        return await self._send(
            "POST", "/v1/disconnect-requests", _with_account(body, stripe_account)
        )

    async def disconnect_customer(
        self, customer_id: str, *, event_id: str, reason: str, stripe_account: str | None = None
    ) -> dict[str, Any]:
        body = {"customer_id": customer_id, "event_id": event_id, "reason": reason}
        return await self._send(
            "POST", "/v1/disconnect-requests", _with_account(body, stripe_account)
        )

    async def submit_batch(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._send("POST", "/v1/disconnect-requests/batch", {"items": items})

    async def status(self, request_id: str) -> dict[str, Any]:
        return await self._send("GET", f"/v1/disconnect-requests/{request_id}", None)

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("use DisconnectClient in `async with`")
        last: str = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self._session.request(method, self.base_url + path, json=body) as resp:
                    payload = await resp.json(content_type=None)
                    if resp.status < 500:
                        return _result(resp.status, payload)
                    last = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                last = type(exc).__name__
            if attempt < self.max_attempts:
                cap = self.backoff_seconds * 2 ** (self.max_attempts - 1)
                await asyncio.sleep(full_jitter(attempt, base=self.backoff_seconds, cap=cap))
        raise IntakeError(
            f"{method} {path}: gave up after {self.max_attempts} attempts ({last})", status=None
        )


def _with_account(body: dict[str, Any], stripe_account: str | None) -> dict[str, Any]:
    return {**body, "stripe_account": stripe_account} if stripe_account else body


def _result(status: int, payload: Any) -> dict[str, Any]:
    if 200 <= status < 300 and isinstance(payload, dict):
        return payload
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    raise IntakeError(
        str(error.get("message") or f"HTTP {status}"),
        status=status,
        code=error.get("code"),
        field=error.get("field"),
    )
