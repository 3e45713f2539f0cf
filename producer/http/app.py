"""The intake's aiohttp application: ``create_app(settings)``.

Lifecycle in one place: :func:`_services_ctx` (a ``cleanup_ctx``) opens the process's one Redis
client and builds the ledger, the intake core and the webhook inbox on it, starts two background
tasks (flushing counters to Redis each second; applying webhook events from the inbox) and undoes
all of it in reverse on shutdown. Routes are added by the ``setup_*`` callables in
:data:`ROUTE_SETUPS`; add yours there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from control.metrics import CounterBuffer
from events.apply import apply_event
from events.inbox import WebhookInbox
from ledger.audit import AuditTrail, process_name
from ledger.connection import redis_client
from ledger.customers import CustomerLedger
from ledger.detached import run_detached
from ledger.durability import RedisChecks
from ledger.event_ids import EventRegistry
from ledger.store import Ledger
from producer.dashboard import setup_dashboard
from producer.http.errors import error_middleware
from producer.http.routes_ops import setup_ops_routes
from producer.http.routes_requests import setup_request_routes
from producer.http.routes_webhooks import setup_webhook_routes
from producer.http.settings import IntakeSettings
from producer.http.state import SERVICES, SETTINGS, Services
from producer.intake import IntakeService

MAX_BODY_BYTES = 1024 * 1024
log = structlog.get_logger("fcd.http")

RouteSetup = Callable[[web.Application], None]

# ---- Route setups: every group of routes registers itself here. ------------------------------
# Each callable receives the application (its settings at ``app[SETTINGS]``; the shared
# ``Services`` at ``app[SERVICES]`` once started) and adds routes. Append new ones (e.g. a
# dashboard) to this list; routes outside /v1 and the ops paths should be listed in
# ``producer.http.openapi.UNDOCUMENTED_PREFIXES`` or documented there.
ROUTE_SETUPS: list[RouteSetup] = [
    setup_request_routes,
    setup_webhook_routes,
    setup_ops_routes,
    setup_dashboard,
]
# -----------------------------------------------------------------------------------------------


def create_app(
    settings: IntakeSettings, *, extra_setups: list[RouteSetup] | None = None
) -> web.Application:
    """A new intake application; nothing connects until it starts."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[_count_responses, error_middleware]
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_services_ctx)
    for setup in [*ROUTE_SETUPS, *(extra_setups or [])]:
        setup(app)
    return app


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    tokens = settings.service_tokens()
    # A blocking pool: at the cap a request waits for a connection instead of failing.
    redis = redis_client(
        settings, max_connections=settings.redis_max_connections, blocking_timeout=10
    )
    checks = RedisChecks(redis, settings, "intake")
    try:
        await checks.start()  # refuses an evicting Redis, or fsync mode it cannot honour
    except BaseException:
        await redis.aclose()
        raise
    audit = AuditTrail(settings.audit_log_path)
    ledger = Ledger.from_settings(redis, settings, audit)
    customers = CustomerLedger(ledger, audit, settings.job_expires_seconds)
    counters = CounterBuffer(redis, settings.key_prefix)
    ledger.on_terminal = counters.observe_completion  # webhook and dashboard cancels
    inbox = WebhookInbox(redis, settings.key_prefix)
    intake = IntakeService(
        ledger, customers, EventRegistry(redis, settings.key_prefix), counters, checks
    )
    app[SERVICES] = Services(
        settings=settings,
        redis=redis,
        ledger=ledger,
        customers=customers,
        intake=intake,
        inbox=inbox,
        counters=counters,
        checks=checks,
        tokens=tokens,
        webhook_secrets=settings.webhook_secrets(),
        reading_all=settings.services_reading_all(),
    )

    async def apply(event: dict[str, Any]) -> str:
        result = await apply_event(ledger, event)
        counters.add("webhooks", str(event.get("type")), result)
        return result

    tasks = [
        asyncio.create_task(_flush_every(counters, 1.0), name="fcd-counters"),
        asyncio.create_task(inbox.run(process_name(), apply), name="fcd-webhooks"),
    ]
    log.info("intake.started", services=sorted(tokens), port=settings.http_port)
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await run_detached(counters.flush())  # this task is cancelled at shutdown
        await redis.aclose()
        await ledger.close_archive()
        audit.close()


async def _flush_every(counters: CounterBuffer, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await counters.flush()
        except (RedisError, OSError) as exc:  # kept for the next flush; never stop counting
            log.warning("metrics.flush_failed", error=type(exc).__name__)


@web.middleware
async def _count_responses(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    services = request.app.get(SERVICES)
    if services is not None:
        services.counters.add("http", str(response.status))
    return response
