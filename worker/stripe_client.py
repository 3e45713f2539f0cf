"""A small Stripe client for the calls this service makes: retrieve, list and disconnect a
Financial Connections account, list the platform's connected accounts (``GET /v1/accounts``)
and list events (``GET /v1/events``, for the webhook catch-up).

Exceptions (shallow on purpose; each carries context as attributes)::

    StripeError                     base: anything that stopped a call from giving an object
    ├── StripeAPIError              Stripe answered with a non-2xx status
    └── StripeTransportError        no usable answer: connect/reset/protocol error, bad body
        └── StripeTimeout           no answer within the client's timeout

Every ``aiohttp.ClientError``, ``asyncio.TimeoutError`` and undecodable body is mapped at this
boundary; nothing else escapes :meth:`StripeClient._call`. The API key is only ever placed in the
``Authorization`` header: it is never logged, never in an error message or ``repr``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pydantic import SecretStr

ACCOUNTS_PATH = "/v1/financial_connections/accounts"


@dataclass(frozen=True)
class StripeMeta:
    """What every Stripe response tells us besides the body."""

    http_status: int | None = None
    request_id: str | None = None
    should_retry: bool | None = None
    rate_limited_reason: str | None = None
    idempotent_replayed: bool = False
    duration_ms: float = 0.0


@dataclass(frozen=True)
class StripeResult:
    """A successful response: the decoded object and its metadata."""

    body: dict[str, Any]
    meta: StripeMeta


class StripeError(Exception):
    """Base of this client's errors."""

    def __init__(self, message: str, meta: StripeMeta | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.meta = meta or StripeMeta()

    @property
    def http_status(self) -> int | None:
        return self.meta.http_status

    @property
    def stripe_request_id(self) -> str | None:
        return self.meta.request_id

    @property
    def should_retry(self) -> bool | None:
        return self.meta.should_retry


class StripeAPIError(StripeError):
    """Stripe answered with an error envelope ``{"error": {type, code, message, ...}}``."""

    def __init__(self, message: str, meta: StripeMeta, *, type_: str | None, code: str | None):
        super().__init__(message, meta)
        self.type = type_
        self.code = code

    @property
    def is_rate_limit(self) -> bool:
        """A limiter 429 (not a ``lock_timeout`` on one object)."""
        return self.meta.http_status == 429 and self.meta.rate_limited_reason is not None


class StripeTransportError(StripeError):
    """The call may or may not have reached Stripe; no answer could be used."""


class StripeTimeout(StripeTransportError):
    """No complete answer within the configured timeout."""


@dataclass
class StripeClient:
    """Bearer-authenticated, version-pinned calls over one shared ``aiohttp.ClientSession``."""

    session: aiohttp.ClientSession
    api_base: str
    api_key: SecretStr = field(repr=False)
    api_version: str

    async def retrieve_account(
        self, account_id: str, *, stripe_account: str | None = None
    ) -> StripeResult:
        return await self._call("GET", f"{ACCOUNTS_PATH}/{account_id}", stripe_account)

    async def disconnect_account(
        self, account_id: str, *, idempotency_key: str, stripe_account: str | None = None
    ) -> StripeResult:
        path = f"{ACCOUNTS_PATH}/{account_id}/disconnect"
        return await self._call("POST", path, stripe_account, idempotency_key=idempotency_key)

    async def list_accounts(
        self,
        *,
        customer: str | None = None,
        account: str | None = None,
        limit: int = 100,
        starting_after: str | None = None,
        stripe_account: str | None = None,
    ) -> StripeResult:
        params = {"limit": str(limit)}
        if customer:
            params["account_holder[customer]"] = customer
        if account:
            params["account_holder[account]"] = account
        if starting_after:
            params["starting_after"] = starting_after
        return await self._call("GET", ACCOUNTS_PATH, stripe_account, params=params)

    async def list_connected_accounts(
        self, *, limit: int = 100, starting_after: str | None = None
    ) -> StripeResult:
        """``GET /v1/accounts``: the platform's connected accounts, newest first."""
        params = {"limit": str(limit)}
        if starting_after:
            params["starting_after"] = starting_after
        return await self._call("GET", "/v1/accounts", None, params=params)

    async def list_events(
        self,
        *,
        event_type: str,
        created_gte: int | None = None,
        limit: int = 100,
        starting_after: str | None = None,
    ) -> StripeResult:
        """``GET /v1/events?type=…``: events of the last 30 days, newest first."""
        params = {"type": event_type, "limit": str(limit)}
        if created_gte is not None:
            params["created[gte]"] = str(created_gte)
        if starting_after:
            params["starting_after"] = starting_after
        return await self._call("GET", "/v1/events", None, params=params)

    def _headers(self, stripe_account: str | None, idempotency_key: str | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key.get_secret_value()}",
            "Stripe-Version": self.api_version,
        }
        if stripe_account:
            headers["Stripe-Account"] = stripe_account
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        stripe_account: str | None,
        *,
        idempotency_key: str | None = None,
        params: dict[str, str] | None = None,
    ) -> StripeResult:
        """Make one call; return the object or raise a :class:`StripeError` subclass."""
        started = time.monotonic()
        url = self.api_base.rstrip("/") + path
        headers = self._headers(stripe_account, idempotency_key)
        try:
            async with self.session.request(method, url, headers=headers, params=params) as resp:
                raw = await resp.read()
                meta = _meta(resp, started)
        except TimeoutError as exc:
            raise StripeTimeout(f"{method} {path}: timed out", _elapsed(started)) from exc
        except aiohttp.ClientError as exc:
            name = type(exc).__name__
            raise StripeTransportError(f"{method} {path}: {name}", _elapsed(started)) from exc
        body = _decode(raw, meta, method, path)
        if 200 <= resp.status < 300:
            return StripeResult(body, meta)
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        assert isinstance(error, dict)
        raise StripeAPIError(
            str(error.get("message") or f"HTTP {resp.status}"),
            meta,
            type_=error.get("type"),
            code=error.get("code"),
        )


def _elapsed(started: float) -> StripeMeta:
    return StripeMeta(duration_ms=(time.monotonic() - started) * 1000)


def _meta(resp: aiohttp.ClientResponse, started: float) -> StripeMeta:
    should_retry = resp.headers.get("Stripe-Should-Retry")
    return StripeMeta(
        http_status=resp.status,
        request_id=resp.headers.get("Request-Id"),
        should_retry=None if should_retry is None else should_retry.lower() == "true",
        rate_limited_reason=resp.headers.get("Stripe-Rate-Limited-Reason"),
        idempotent_replayed=resp.headers.get("Idempotent-Replayed", "").lower() == "true",
        duration_ms=(time.monotonic() - started) * 1000,
    )


def _decode(raw: bytes, meta: StripeMeta, method: str, path: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise StripeTransportError(
            f"{method} {path}: HTTP {meta.http_status} with a body that is not JSON", meta
        ) from exc
    if not isinstance(body, dict):
        raise StripeTransportError(f"{method} {path}: body is not a JSON object", meta)
    return body


def client_timeout(connect_seconds: float, total_seconds: float) -> aiohttp.ClientTimeout:
    """The explicit timeouts every Stripe session uses."""
    return aiohttp.ClientTimeout(
        total=total_seconds, connect=connect_seconds, sock_connect=connect_seconds
    )


__all__ = [
    "StripeAPIError",
    "StripeClient",
    "StripeError",
    "StripeMeta",
    "StripeResult",
    "StripeTimeout",
    "StripeTransportError",
    "client_timeout",
]
