"""Operations: ``/healthz`` (alive), ``/readyz`` (can accept and store a request), ``/metrics``,
``/openapi.json``. None of them needs a token; none reveals a secret.

Readiness means "Redis answers, so a request sent here is stored": a pause (``fcd pause`` or the
circuit breaker) only stops the workers, so the intake stays ready while paused (other services
keep queueing deletions, which wait; the dashboard that shows the pause stays reachable) and
reports the pause in the body and in ``fcd_paused`` / ``fcd_breaker_tripped``.
"""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError

from control.pause import get_pause
from producer.http.metrics import render_metrics
from producer.http.openapi import build_openapi
from producer.http.state import services


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """200 while Redis answers, paused or not (the body says which); 503 otherwise."""
    svc = services(request)
    try:
        await svc.redis.ping()
        pause = await get_pause(svc.redis, key=svc.ledger.pause_key)
    except (RedisError, OSError) as exc:
        failed = {"ready": False, "redis": False, "error": type(exc).__name__}
        return web.json_response(failed, status=503)
    body: dict[str, object] = {"ready": True, "redis": True, "paused": pause is not None}
    body["durability"] = svc.checks.describe()
    if pause is not None:
        body["pause"] = {"source": pause.source, "at": pause.at.isoformat()}  # no reason: public
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    text = await render_metrics(services(request))
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi())


def setup_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/openapi.json", openapi, allow_head=False)
