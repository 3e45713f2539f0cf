"""A worker process's presence: its heartbeat in the registry, its counters, its ops port.

Started from the worker's start-up on its ``AsyncExitStack`` (:func:`start_presence`), so it
ends with the process:

- a background task that flushes this process's counters (:class:`control.metrics.CounterBuffer`:
  completion times, Stripe calls) every second and beats in the worker registry (:mod:`control.workers`) every
  :data:`control.workers.HEARTBEAT_SECONDS` with the number of jobs running; a clean stop leaves
  the registry at once, a killed process's entry expires;
- an HTTP server on ``FCD_METRICS_PORT`` (0: none) with ``/healthz`` (the process is alive),
  ``/readyz`` (200 while Redis answers, like the intake; a pause does not make it unready) and
  ``/metrics`` (the same fleet-wide text as the intake's, :mod:`control.exposition`). A port
  already taken is logged loudly (``worker.metrics_port_in_use``) and the worker runs on without
  it: the work matters more than its metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sized
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from control.exposition import render_metrics
from control.metrics import CounterBuffer
from control.workers import HEARTBEAT_SECONDS, WorkerRegistry
from events.inbox import WebhookInbox
from ledger.store import Ledger

log = structlog.get_logger("fcd.worker")
LEDGER = web.AppKey("ledger", Ledger)
COUNTERS = web.AppKey("counters", CounterBuffer)


@dataclass(frozen=True)
class Presence:
    """What one worker process reports about itself."""

    worker_id: str
    queue: str  # "urgent" or "bulk"
    max_jobs: int
    jobs: Sized  # arq's running job tasks (its ``job_tasks`` dict)
    started_at: float


async def start_presence(
    stack: AsyncExitStack,
    ledger: Ledger,
    presence: Presence,
    counters: CounterBuffer,
    *,
    metrics_port: int,
) -> None:
    """Start the heartbeat task and the ops server; both are undone when ``stack`` closes."""
    registry = WorkerRegistry(ledger.redis, ledger.prefix)
    await _beat(registry, presence)  # in the registry before the first job runs
    task = asyncio.create_task(_run(registry, presence, counters), name="fcd-presence")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await counters.flush()
            await registry.remove(presence.worker_id)

    stack.push_async_callback(stop)
    if metrics_port:
        runner = await _serve(ledger, counters, metrics_port)
        if runner is not None:
            stack.push_async_callback(runner.cleanup)


async def _run(registry: WorkerRegistry, presence: Presence, counters: CounterBuffer) -> None:
    last_beat = time.monotonic()
    while True:
        await asyncio.sleep(1.0)
        try:
            await counters.flush()
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                await _beat(registry, presence)
                last_beat = time.monotonic()
        except (RedisError, OSError) as exc:  # Redis away: keep counting, beat again later
            log.warning("worker.heartbeat_failed", error=type(exc).__name__)


async def _beat(registry: WorkerRegistry, presence: Presence) -> None:
    await registry.beat(
        presence.worker_id,
        queue=presence.queue,
        jobs_running=len(presence.jobs),
        max_jobs=presence.max_jobs,
        started_at=presence.started_at,
    )


def ops_app(ledger: Ledger, counters: CounterBuffer) -> web.Application:
    """``/healthz``, ``/readyz`` and ``/metrics`` of a worker process (``/metrics`` flushes the
    process's ``counters`` first, so its own scrape is never behind its own calls)."""
    app = web.Application()
    app[LEDGER] = ledger
    app[COUNTERS] = counters
    app.router.add_get("/healthz", _healthz, allow_head=False)
    app.router.add_get("/readyz", _readyz, allow_head=False)
    app.router.add_get("/metrics", _metrics, allow_head=False)
    return app


async def _serve(ledger: Ledger, counters: CounterBuffer, port: int) -> web.AppRunner | None:
    runner = web.AppRunner(ops_app(ledger, counters), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "0.0.0.0", port).start()
    except OSError as exc:
        log.error("worker.metrics_port_in_use", port=port, error=str(exc))
        await runner.cleanup()
        return None
    log.info("worker.metrics_listening", port=port)
    return runner


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _readyz(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    try:
        await ledger.redis.ping()
    except (RedisError, OSError) as exc:
        return web.json_response({"ready": False, "error": type(exc).__name__}, status=503)
    return web.json_response({"ready": True})


async def _metrics(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    await request.app[COUNTERS].flush()
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    text = await render_metrics(
        ledger, webhook_inbox=await inbox.pending(), webhook_dead_letters=await inbox.dead_letters()
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")
