"""Operations: ``/healthz`` (alive), ``/readyz`` (Redis and not paused), ``/metrics``,
``/openapi.json``. None of them needs a token; none reveals a secret."""

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
    """200 only if Redis answers and the kill switch (``<prefix>paused``) is not set."""
    svc = services(request)
    try:
        await svc.redis.ping()
        paused = await get_pause(svc.redis, key=svc.ledger.pause_key) is not None
    except (RedisError, OSError) as exc:
        body = {"ready": False, "redis": False, "error": type(exc).__name__}
        return web.json_response(body, status=503)
    return web.json_response(
        {"ready": not paused, "redis": True, "paused": paused}, status=503 if paused else 200
    )


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
