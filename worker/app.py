"""arq wiring: the worker process's lifecycle and the thin job adapter.

Everything long-lived (Redis pool, the one ``aiohttp.ClientSession``, the ledger, the rate limiter)
is opened in :func:`startup` on one ``AsyncExitStack`` and closed in :func:`shutdown`, as is the
process's presence (heartbeat, counters, ops port: :mod:`worker.presence`). The job
functions validate their JSON payload, bind the request's (or batch's) context for logging and
call the typed cores in :mod:`worker.disconnect` and :mod:`worker.batch`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import structlog
from arq import Retry, func
from redis.asyncio import Redis

from control.metrics import CounterBuffer
from events.inbox import WebhookInbox
from ledger.audit import AuditTrail
from ledger.connection import arq_redis_settings, close_sentinels, redis_client
from ledger.customer_models import CUSTOMER_JOB
from ledger.durability import check_redis
from ledger.jobs import (
    BATCH_JOB,
    DISCONNECT_JOB,
    BatchJob,
    DisconnectJob,
    deserialize,
    serialize,
)
from ledger.migrate import ensure_migrated
from ledger.store import Ledger
from retention.jobs import SWEEP_JOB
from worker.arq_worker import ResilientWorker
from worker.batch import PAUSED, BatchDeps, run_batch
from worker.customers import build_customer_deps, disconnect_customer
from worker.disconnect import DisconnectDeps, run_disconnect
from worker.gate import CallGate, Priority
from worker.operations import housekeeping_cron_jobs
from worker.presence import Presence, start_presence
from worker.ratelimit import RateLimiter
from worker.retention import build_sweep_deps, retention_sweep, sweep_cron_jobs
from worker.retry import RetryPolicy
from worker.settings import WorkerSettings
from worker.stripe_client import StripeClient, client_timeout

log = structlog.get_logger("fcd.worker")


async def disconnect_account(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """arq job: one disconnect attempt for the request named in ``payload``.

    While the service is paused the job is deferred (same job id, no ledger write).
    """
    job = DisconnectJob.model_validate(payload)
    deps: DisconnectDeps = ctx["deps"]
    with structlog.contextvars.bound_contextvars(request_id=job.request_id, job_id=ctx["job_id"]):
        result = await run_disconnect(deps, job.request_id, ctx["job_id"])
    if result == PAUSED:
        raise Retry(defer=deps.paused_recheck_seconds)
    return result


async def disconnect_batch(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """arq job: one attempt for each request of a bulk submission's batch (see
    :mod:`worker.batch`). While the service is paused the whole batch is deferred (same job id;
    requests it already finished are skipped when it runs again)."""
    job = BatchJob.model_validate(payload)
    deps: BatchDeps = ctx["batch_deps"]
    with structlog.contextvars.bound_contextvars(job_id=ctx["job_id"]):
        results = await run_batch(deps, job.request_ids, ctx["job_id"])
    if results[PAUSED]:
        raise Retry(defer=deps.base.paused_recheck_seconds)
    return json.dumps(dict(sorted(results.items())), separators=(",", ":"))


async def startup(ctx: dict[str, Any]) -> None:
    settings: WorkerSettings = ctx["settings"]
    stack = AsyncExitStack()
    ctx["exit_stack"] = stack
    redis = redis_client(settings)
    stack.push_async_callback(redis.aclose)
    await check_redis(redis, settings, f"worker:{ctx.get('priority', 'urgent')}")
    session = await stack.enter_async_context(
        aiohttp.ClientSession(
            timeout=client_timeout(
                settings.stripe_connect_timeout_seconds, settings.stripe_timeout_seconds
            ),
            connector=aiohttp.TCPConnector(limit=settings.max_jobs * 2),
        )
    )
    audit = AuditTrail(settings.audit_log_path)
    stack.callback(audit.close)
    ledger = Ledger.from_settings(redis, settings, audit)
    stack.push_async_callback(ledger.close_archive)
    await ensure_migrated(ledger)
    gate = ctx.get("gate_factory", build_gate)(redis, settings)
    counters = CounterBuffer(redis, settings.key_prefix)
    ledger.on_terminal = counters.observe_completion
    ctx["deps"] = DisconnectDeps(
        ledger=ledger,
        stripe=StripeClient(
            session=session,
            api_base=settings.stripe_api_base,
            api_key=settings.stripe_api_key,
            api_version=settings.stripe_api_version,
        ),
        gate=gate,
        policy=RetryPolicy(
            base_seconds=settings.retry_base_seconds,
            cap_seconds=settings.retry_cap_seconds,
            max_attempts=settings.max_attempts,
            max_age_seconds=settings.max_request_age_seconds,
        ),
        precheck_account=settings.precheck_account,
        idempotency_refresh_seconds=settings.idempotency_refresh_seconds,
        lock_seconds=settings.stripe_timeout_seconds * 2 + 10,
        call_timeout_seconds=settings.stripe_timeout_seconds,
        paused_recheck_seconds=settings.paused_recheck_seconds,
        priority=ctx.get("priority", "urgent"),
        counters=counters,
    )
    ctx["batch_deps"] = BatchDeps(
        ctx["deps"], asyncio.Semaphore(settings.max_jobs), settings.job_timeout_seconds
    )
    ctx["customer_deps"] = build_customer_deps(ctx["deps"], audit, settings)
    ctx["sweep_deps"] = build_sweep_deps(ctx["deps"], audit, settings)
    ctx["inbox"] = WebhookInbox(redis, settings.key_prefix)
    presence = Presence(
        ledger.actor, ctx.get("priority", "urgent"), settings.max_jobs, ctx.get("job_tasks", {}),
        time.time(),
    )  # fmt: skip
    await start_presence(stack, ledger, presence, counters, metrics_port=settings.metrics_port)
    log.info("worker.started", max_jobs=settings.max_jobs, queue=ctx.get("queue_name"))


async def shutdown(ctx: dict[str, Any]) -> None:
    stack: AsyncExitStack | None = ctx.get("exit_stack")
    if stack is not None:
        await stack.aclose()
    if "redis" in ctx:  # arq's own pool: in Sentinel mode, its links to the Sentinels
        await close_sentinels(ctx["redis"])
    log.info("worker.stopped")


def build_gate(redis: Redis, settings: WorkerSettings) -> CallGate:
    """The shared Redis rate limiter every Stripe call of every worker waits at."""
    return RateLimiter(
        redis,
        settings.rate_budget(),
        key_prefix=f"{settings.key_prefix}rl:",
        pause_key=f"{settings.key_prefix}paused",
    )


GateFactory = Callable[[Redis, WorkerSettings], CallGate]


def build_worker(
    settings: WorkerSettings,
    *,
    burst: bool = False,
    gate_factory: GateFactory = build_gate,
    queue: Priority = "urgent",
) -> ResilientWorker:
    """An arq ``Worker`` for ``settings``; JSON serializer only (arq's default is replaced).

    ``queue="bulk"`` consumes ``FCD_BULK_QUEUE_NAME`` instead of ``FCD_QUEUE_NAME``, waits at the
    rate limiter with priority ``bulk`` (behind every urgent caller) and runs the retention
    sweeps' schedule. ``gate_factory`` exists for benchmarks that compare limiters.

    Batch jobs run up to ``max_jobs`` attempts at once across all of them, each bounded by the
    job timeout; the batch itself may take as long as a sweep (``FCD_SWEEP_TIMEOUT_SECONDS``).
    """
    bulk = queue == "bulk"
    queue_name = settings.bulk_queue_name if bulk else settings.queue_name
    crons = housekeeping_cron_jobs(settings, burst=burst)
    if bulk:
        crons += sweep_cron_jobs(settings, burst=burst)
    functions = [
        func(disconnect_account, name=DISCONNECT_JOB, max_tries=1_000),
        func(disconnect_customer, name=CUSTOMER_JOB, max_tries=1_000),
    ]
    if bulk or settings.bulk_queue_name == settings.queue_name:
        # Long-running jobs only where they are enqueued: arq keeps every in-progress key for its
        # longest function timeout, so urgent workers keep theirs short (job timeout + 10 s).
        sweep_timeout = settings.sweep_timeout_seconds
        functions += [
            func(disconnect_batch, name=BATCH_JOB, max_tries=1_000, timeout=sweep_timeout),
            func(retention_sweep, name=SWEEP_JOB, max_tries=1, timeout=sweep_timeout),
        ]
    worker = ResilientWorker(
        functions=functions,
        cron_jobs=crons,
        redis_settings=arq_redis_settings(settings),
        queue_name=queue_name,
        job_serializer=serialize,
        job_deserializer=deserialize,
        max_jobs=settings.max_jobs,
        job_timeout=settings.job_timeout_seconds,
        keep_result=3600,
        poll_delay=0.2,
        burst=burst,
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={
            "settings": settings,
            "gate_factory": gate_factory,
            "priority": queue,
            "queue_name": queue_name,
        },
        handle_signals=True,
    )
    worker.ctx["job_tasks"] = worker.job_tasks  # the heartbeat reports how many jobs run
    return worker
