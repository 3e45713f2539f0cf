"""What the handlers share, built once per process in :func:`producer.http.app.create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from pydantic import SecretStr
from redis.asyncio import Redis

from control.metrics import CounterBuffer
from events.inbox import WebhookInbox
from ledger.customers import CustomerLedger
from ledger.durability import RedisChecks
from ledger.store import Ledger
from producer.http.settings import IntakeSettings
from producer.intake import IntakeService


@dataclass(frozen=True)
class Services:
    """The process's one Redis client and everything built on it."""

    settings: IntakeSettings
    redis: Redis
    ledger: Ledger
    customers: CustomerLedger
    intake: IntakeService
    inbox: WebhookInbox
    counters: CounterBuffer
    #: The start-up checks and ``FCD_DURABILITY`` in force (``/readyz`` shows the mode).
    checks: RedisChecks
    tokens: dict[str, SecretStr] = field(repr=False)
    webhook_secrets: list[SecretStr] = field(repr=False)
    #: Services whose token may read every request (scope ``read:all``); others read their own.
    reading_all: frozenset[str] = frozenset()


SETTINGS = web.AppKey("settings", IntakeSettings)
SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
