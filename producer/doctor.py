"""``fcd doctor``'s checks: is this deployment able to talk to Stripe and keep its ledger?

Each check gives a :class:`Finding` (``ok``, ``warn`` or ``problem``) with a one-line detail; no
detail ever contains a secret (the key shows as its mode prefix and last four characters).

- ``stripe key``: ``GET /v1/financial_connections/accounts?limit=1`` with the key. 200 is fine;
  401 (bad key) and 403 (a restricted key without Financial Connections access) are problems.
- ``api version``: the answer's ``Stripe-Version`` must be the pinned one
  (``FCD_STRIPE_API_VERSION``); Stripe answers an unknown version with a 400.
- ``webhook secrets``: every secret in ``FCD_STRIPE_WEBHOOK_SECRETS`` is a ``whsec_`` secret and
  the intake's own verifier (:func:`events.signature.verify_signature`) accepts a payload signed
  with it; with ``--webhook-payload`` and ``--webhook-signature`` a real delivery (copied from
  Stripe's dashboard or a log) must match one of them.
- ``redis persistence``: the ledger is the source of truth, so Redis must persist
  (``appendonly yes`` or a ``save`` schedule) and never evict (``maxmemory-policy noeviction``).
  A Redis that refuses ``CONFIG GET`` (some managed services) is a warning: check by hand.

Why the Stripe call lives here and not in the worker's client: the producer must not import the
worker (import contracts), and the CLI is deliberately unable to disconnect anything. This module
makes one read-only GET with its own short-lived session; it shares no code path with the
worker's write calls, so a CLI with a key can still never post a disconnect.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp
from pydantic import Field, SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from archive.sqlite import FILE_NAME as SQLITE_FILE
from events.signature import SignatureError, sign_payload, verify_signature
from ledger.settings import DEFAULT_STRIPE_API_VERSION, BaseServiceSettings

Verdict = Literal["ok", "warn", "problem"]
ACCOUNTS_PATH = "/v1/financial_connections/accounts"


class DoctorSettings(BaseServiceSettings):
    """What ``fcd doctor`` reads: the worker's Stripe settings and the intake's webhook secrets
    (the same ``FCD_*`` variables, documented with the worker and the intake)."""

    stripe_api_key: SecretStr = Field(description="Stripe secret key (sk_test_… / sk_live_…).")
    stripe_api_base: str = Field(default="https://api.stripe.com")
    stripe_api_version: str = Field(default=DEFAULT_STRIPE_API_VERSION)
    stripe_webhook_secrets: SecretStr | None = Field(default=None)


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: Verdict
    detail: str


def masked(key: SecretStr) -> str:
    raw = key.get_secret_value()
    prefix = raw[:8] if raw.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")) else ""
    return f"{prefix}…{raw[-4:]}"


async def check_stripe(settings: DoctorSettings, timeout_seconds: float = 10.0) -> list[Finding]:
    """The key and the pinned API version, from one read-only list call."""
    url = settings.stripe_api_base.rstrip("/") + ACCOUNTS_PATH
    headers = {
        "Authorization": f"Bearer {settings.stripe_api_key.get_secret_value()}",
        "Stripe-Version": settings.stripe_api_version,
    }
    key = masked(settings.stripe_api_key)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds)) as session,
            session.get(url, headers=headers, params={"limit": "1"}) as resp,
        ):
            status, answered = resp.status, resp.headers.get("Stripe-Version")
            request_id = resp.headers.get("Request-Id", "?")
            try:
                body = json.loads(await resp.read())
            except ValueError:
                body = {}
    except (aiohttp.ClientError, TimeoutError) as exc:
        detail = f"cannot reach {settings.stripe_api_base}: {type(exc).__name__}"
        return [Finding("stripe key", "problem", detail)]
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message", "") if isinstance(error, dict) else ""
    message = message.replace(settings.stripe_api_key.get_secret_value(), key)
    return [
        _key_finding(key, status, message, request_id, body),
        _version_finding(settings, status, message, answered),
    ]


def _key_finding(key: str, status: int, message: str, request_id: str, body: object) -> Finding:
    if status == 200:
        livemode = isinstance(body, dict) and any(
            isinstance(a, dict) and a.get("livemode") for a in body.get("data") or []
        )
        mode = "live" if key.startswith(("sk_live_", "rk_live_")) or livemode else "test"
        return Finding("stripe key", "ok", f"{key} accepted ({mode} mode; request {request_id})")
    if status == 401:
        return Finding("stripe key", "problem", f"{key} rejected (HTTP 401): {message}")
    if status == 403:
        detail = (
            f"{key} may not read Financial Connections accounts (HTTP 403): {message}; a "
            "restricted key needs Financial Connections read and write"
        )
        return Finding("stripe key", "problem", detail)
    if status == 400 and "version" in message.lower():
        return Finding("stripe key", "warn", "not checked: the API version was refused first")
    return Finding("stripe key", "problem", f"HTTP {status} (request {request_id}): {message}")


def _version_finding(
    settings: DoctorSettings, status: int, message: str, answered: str | None
) -> Finding:
    pinned = settings.stripe_api_version
    if status == 400 and "version" in message.lower():
        return Finding("api version", "problem", f"{pinned} refused by Stripe: {message}")
    if status != 200:
        return Finding("api version", "warn", f"{pinned}: not checked (the key was refused)")
    if answered != pinned:
        return Finding("api version", "problem", f"pinned {pinned}, Stripe answered {answered}")
    return Finding("api version", "ok", f"{pinned} (Stripe answered with it)")


def check_webhook_secrets(
    settings: DoctorSettings, payload: bytes | None = None, signature: str | None = None
) -> Finding:
    """Each secret signs and verifies a test payload; optionally a real delivery must match."""
    raw = settings.stripe_webhook_secrets
    secrets = [s.strip() for s in (raw.get_secret_value() if raw else "").split(",") if s.strip()]
    if not secrets:
        return Finding("webhook secrets", "problem", "FCD_STRIPE_WEBHOOK_SECRETS is not set")
    malformed = [n for n, s in enumerate(secrets, 1) if not s.startswith("whsec_")]
    if malformed:
        detail = f"secret #{malformed[0]} of {len(secrets)} does not start with whsec_"
        return Finding("webhook secrets", "problem", detail)
    wrapped = [SecretStr(s) for s in secrets]
    now = int(time.time())
    test = json.dumps({"id": "evt_doctor", "object": "event", "type": "doctor.test"}).encode()
    for n, secret in enumerate(wrapped, 1):
        try:
            verify_signature(test, sign_payload(test, secret, now), [secret], now=now)
        except SignatureError as exc:
            return Finding("webhook secrets", "problem", f"secret #{n}: {exc}")
    detail = f"{len(secrets)} secret(s) sign and verify a test payload"
    if payload is None or signature is None:
        return Finding("webhook secrets", "ok", detail)
    matching = []
    for n, secret in enumerate(wrapped, 1):
        try:
            verify_signature(payload, signature, [secret], tolerance_seconds=10**9)
        except SignatureError:
            continue
        matching.append(n)
    if not matching:
        return Finding("webhook secrets", "problem", "the delivery matches no configured secret")
    return Finding("webhook secrets", "ok", f"{detail}; the delivery matches secret #{matching[0]}")


async def check_redis(redis: Redis) -> list[Finding]:
    """Persistence (AOF or RDB snapshots) and the eviction policy of the ledger's Redis."""
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        return [
            Finding("redis persistence", "problem", f"cannot reach Redis: {type(exc).__name__}")
        ]
    try:
        config: dict[str, str] = {}
        for name in ("appendonly", "save", "maxmemory-policy"):
            config.update({_text(k): _text(v) for k, v in (await redis.config_get(name)).items()})
    except ResponseError as exc:
        detail = f"CONFIG GET refused ({exc}); check persistence and eviction with your provider"
        return [Finding("redis persistence", "warn", detail)]
    findings = []
    aof, save = config.get("appendonly", "no"), config.get("save", "")
    if aof != "yes" and not save.strip():
        detail = "appendonly no and no save schedule: a restart loses the ledger"
        findings.append(Finding("redis persistence", "problem", detail))
    else:
        detail = f"appendonly {aof}, save {save.strip() or '(none)'}"
        findings.append(Finding("redis persistence", "ok", detail))
    policy = config.get("maxmemory-policy", "?")
    verdict: Verdict = "ok" if policy == "noeviction" else "problem"
    detail = f"maxmemory-policy {policy}" + (
        "" if verdict == "ok" else ": Redis may evict ledger keys; set noeviction"
    )
    findings.append(Finding("redis eviction", verdict, detail))
    return findings


async def check_archive(settings: BaseServiceSettings) -> Finding:
    """The archive finished requests move to: PostgreSQL reachable (its schema migrated), or
    the SQLite file's directory usable. Never shows the DSN (it may hold a password)."""
    if settings.archive_dsn is None:
        return _sqlite_finding(settings.archive_dir)
    store = settings.open_archive()
    try:
        version = await store.schema_version()
        counts = await store.counts()
    except Exception as exc:  # noqa: BLE001 (any failure is the finding; the DSN is not shown)
        return Finding("archive", "problem", f"{store.location} unreachable: {type(exc).__name__}")
    finally:
        await store.close()
    return Finding(
        "archive", "ok", f"{store.location}, schema {version}, {counts.requests} requests"
    )


def _sqlite_finding(directory: Path) -> Finding:
    path = directory / SQLITE_FILE
    if path.is_file():
        return Finding("archive", "ok", f"sqlite:{path} (WAL), {path.stat().st_size} bytes")
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK):
        detail = f"sqlite:{path} not written yet; its first write creates it"
        return Finding("archive", "ok", detail)
    detail = f"{directory} cannot be created or written: the archive job cannot move requests"
    return Finding("archive", "problem", detail)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_checks(
    settings: DoctorSettings, redis: Redis, payload: bytes | None, signature: str | None
) -> list[Finding]:
    """Every check, in the order the table shows them (``payload``: a real delivery's body)."""
    findings = await check_stripe(settings)
    findings.append(check_webhook_secrets(settings, payload, signature))
    findings += await check_redis(redis)
    findings.append(await check_archive(settings))
    return findings
