"""``POST /webhooks/stripe``: verify, keep durably, answer 200; the ledger is updated after.

A bad or stale signature is 400 and changes nothing. A verified event is de-duplicated by id and
appended to the inbox stream before the answer (see :mod:`events.inbox`); the intake's
background task applies it (:mod:`events.apply`).
"""

from __future__ import annotations

import json

import structlog
from aiohttp import web

from events.signature import SignatureError, verify_signature
from producer.http.errors import ApiError
from producer.http.state import services

log = structlog.get_logger("fcd.webhooks")


async def stripe_webhook(request: web.Request) -> web.Response:
    """POST /webhooks/stripe"""
    svc = services(request)
    payload = await request.read()
    try:
        verify_signature(
            payload,
            request.headers.get("Stripe-Signature"),
            svc.webhook_secrets,
            tolerance_seconds=svc.settings.webhook_tolerance_seconds,
        )
    except SignatureError as exc:
        svc.counters.add("webhooks", "unknown", "bad_signature")
        raise ApiError(400, str(exc), code="bad_signature", field="Stripe-Signature") from None
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the payload is not JSON", code="invalid_json") from None
    event_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not event_id:
        raise ApiError(400, "the event has no id", code="invalid_event", field="id")
    fresh = await svc.inbox.accept(event_id, event)
    event_type = str(event.get("type"))
    svc.counters.add("webhooks", event_type, "accepted" if fresh else "duplicate")
    log.info("webhooks.received", event_id=event_id, event_type=event_type, duplicate=not fresh)
    return web.json_response({"received": True, "duplicate": not fresh})


def setup_webhook_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/stripe", stripe_webhook)
