"""Retention sweeps in the bulk workers: the schedule (arq cron) and sweeps the CLI asked for.

Only workers started with ``--queue bulk`` register these. Each policy with a ``schedule`` is an
arq cron job named ``retention:<policy>`` with ``unique=True``: every bulk worker computes the
same times and enqueues under the job id ``retention:<policy>:<scheduled unix ms>``, which arq
refuses to enqueue twice. On top of that the run claims its slot in Redis
(``SweepRuns.claim_slot``) and takes the policy's lock, so one run per scheduled time happens
across all workers and hosts, and a sweep still running when the next time comes makes that next
run record ``failed`` (skipped) rather than run twice at once. A scheduled run is a dry run
unless its policy says ``scheduled_apply = true``; then it applies (subject to the blast-radius
guard, never forced). A bulk worker without policies, or whose policies have no schedule, logs
``retention.schedule_off`` ("no retention policies: schedule off") once at start-up.

Stripe is listed through :func:`stripe_page_fetcher`: every page is one call inside the shared
rate limiter's ``slot("list", priority="bulk")``, counted and timed like every other Stripe call
(:func:`worker.calls.metered_call`); transient errors are retried with the worker's backoff a
few times, then the run fails. A policy naming connected accounts (``stripe_accounts``, or
``"all"``: every account ``GET /v1/accounts`` lists, paged through the same ``list`` budget)
lists each of them with its ``Stripe-Account`` after the key's own accounts
(:func:`scoped_pages`); the budgets stay the fleet's. A connected account answering 403
(platform access revoked) is skipped and named in the run's summary; the others are swept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog
from arq.cron import CronJob, cron
from arq.typing import WorkerCoroutine

from ledger.audit import AuditTrail
from retention.jobs import SweepJob
from retention.policy import PolicyError, RetentionPolicy, get_policy, load_policies
from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id
from retention.sources import (
    PAGE_SIZE,
    AccountPage,
    PageFetcher,
    ScopedPage,
    file_pages,
    stripe_pages,
)
from retention.sweep import SweepOptions, run_guarded
from worker.calls import metered_call
from worker.claims import JobResult
from worker.disconnect import DisconnectDeps
from worker.outcomes import is_account_forbidden, is_transient
from worker.settings import WorkerSettings
from worker.stripe_client import StripeAPIError, StripeError, StripeResult

log = structlog.get_logger("fcd.worker")
LIST_ATTEMPTS = 5


@dataclass(frozen=True)
class SweepDeps:
    """What a sweep needs in a worker: the disconnect deps (ledger, Stripe, gate) and runs."""

    base: DisconnectDeps
    runs: SweepRuns
    settings: WorkerSettings


def build_sweep_deps(
    deps: DisconnectDeps, audit: AuditTrail, settings: WorkerSettings
) -> SweepDeps:
    return SweepDeps(deps, SweepRuns(deps.ledger.redis, deps.ledger.prefix, audit), settings)


async def bulk_list_call(
    deps: DisconnectDeps, call: Callable[[], Awaitable[StripeResult]]
) -> tuple[list[dict[str, Any]], bool]:
    """One list call in the limiter's ``list`` budget at priority ``bulk``, retried with the
    worker's backoff while the error is transient: the page's objects and ``has_more``."""
    for attempt in range(1, LIST_ATTEMPTS + 1):
        try:
            async with deps.gate.slot("list", priority="bulk"):
                result = await metered_call(deps, "list", call)
        except StripeError as exc:
            if attempt == LIST_ATTEMPTS or not is_transient(exc):
                raise
            if isinstance(exc, StripeAPIError) and exc.is_rate_limit:
                await deps.gate.report_rate_limited("list", exc.meta.rate_limited_reason)
            await asyncio.sleep(deps.policy.backoff(attempt))
            continue
        data = result.body.get("data")
        objects = [a for a in data if isinstance(a, dict)] if isinstance(data, list) else []
        return objects, bool(result.body.get("has_more"))
    raise AssertionError("unreachable")


def stripe_page_fetcher(deps: DisconnectDeps, stripe_account: str | None = None) -> PageFetcher:
    """Pages of ``GET /v1/financial_connections/accounts`` (as ``stripe_account`` if given)."""

    async def fetch(starting_after: str | None) -> AccountPage:
        accounts, has_more = await bulk_list_call(
            deps,
            lambda: deps.stripe.list_accounts(
                limit=PAGE_SIZE, starting_after=starting_after, stripe_account=stripe_account
            ),
        )
        return AccountPage(accounts, has_more)

    return fetch


async def connected_account_ids(deps: DisconnectDeps) -> list[str]:
    """Every connected account ``GET /v1/accounts`` lists, paged (newest first)."""

    async def fetch(starting_after: str | None) -> AccountPage:
        accounts, has_more = await bulk_list_call(
            deps,
            lambda: deps.stripe.list_connected_accounts(
                limit=PAGE_SIZE, starting_after=starting_after
            ),
        )
        return AccountPage(accounts, has_more)

    ids = []
    async for page in stripe_pages(fetch):
        ids += [a["id"] for a in page if isinstance(a.get("id"), str)]
    return ids


async def scoped_pages(deps: DisconnectDeps, policy: RetentionPolicy) -> AsyncIterator[ScopedPage]:
    """The key's own accounts (unless ``include_platform = false``), then each connected
    account's, every page tagged with the account it was listed as."""
    if policy.include_platform:
        async for page in stripe_pages(stripe_page_fetcher(deps)):
            yield ScopedPage(page, listed_at=int(time.time()))
    named = policy.stripe_accounts
    if named is None:
        return
    connected = await connected_account_ids(deps) if named == "all" else list(named)
    for stripe_account in connected:
        try:
            async for page in stripe_pages(stripe_page_fetcher(deps, stripe_account)):
                yield ScopedPage(page, stripe_account, listed_at=int(time.time()))
        except StripeAPIError as exc:
            if not is_account_forbidden(exc, stripe_account):
                raise
            log.warning("sweep.account_unreachable", stripe_account=stripe_account)
            yield ScopedPage([], stripe_account, unreachable=f"HTTP 403: {exc.message}")


async def execute(deps: SweepDeps, run: SweepRun, policy: RetentionPolicy, force: bool) -> str:
    """Run one sweep (an apply under the policy's lock); return the run's final status."""
    pages: AsyncIterator[list[dict[str, Any]]] | AsyncIterator[ScopedPage]
    if policy.source == "file" and policy.file is not None:
        pages = file_pages(policy.file)
    else:
        pages = scoped_pages(deps.base, policy)
    options = SweepOptions(
        apply=run.apply, force=force, max_queue_depth=deps.settings.bulk_queue_max_depth
    )
    done = await run_guarded(
        deps.base.ledger, deps.runs, run, policy, pages, options,
        lock_seconds=deps.settings.sweep_timeout_seconds,
    )  # fmt: skip
    return done.status.value


async def retention_sweep(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """arq job: run the sweep ``fcd sweep`` recorded as ``requested``."""
    job = SweepJob.model_validate(payload)
    deps: SweepDeps = ctx["sweep_deps"]
    run = await deps.runs.get(job.run_id)
    if run.status != SweepStatus.REQUESTED:
        log.info("sweep.not_requested", run_id=run.run_id, status=run.status.value)
        return JobResult.SKIPPED
    try:
        policy = get_policy(deps.settings.retention_policies, run.policy)
    except PolicyError as exc:
        await deps.runs.finish(run, SweepStatus.FAILED, str(exc))
        return SweepStatus.FAILED.value
    if policy.digest != run.policy_digest:
        message = "the worker's policy file differs from the one the operator used; not run"
        await deps.runs.finish(run, SweepStatus.FAILED, message)
        return SweepStatus.FAILED.value
    with structlog.contextvars.bound_contextvars(sweep_id=run.run_id, policy=run.policy):
        return await execute(deps, run, policy, run.forced)


async def scheduled_sweep(ctx: dict[str, Any], policy_name: str) -> str:
    """One scheduled run of ``policy_name`` (at most one per scheduled time, fleet-wide)."""
    deps: SweepDeps = ctx["sweep_deps"]
    slot_ms = _slot_ms(str(ctx.get("job_id", "")))
    if not await deps.runs.claim_slot(policy_name, slot_ms):
        return JobResult.DUPLICATE
    policy = get_policy(deps.settings.retention_policies, policy_name)
    run = await deps.runs.create(
        SweepRun(
            run_id=new_sweep_id(),
            policy=policy.name,
            policy_digest=policy.digest,
            trigger="schedule",
            apply=policy.scheduled_apply,
            source=policy.source,
            status=SweepStatus.LISTING,
            scheduled_at=slot_ms / 1000,
            started_at=time.time(),
        )
    )
    with structlog.contextvars.bound_contextvars(sweep_id=run.run_id, policy=policy.name):
        return await execute(deps, run, policy, force=False)


def _slot_ms(job_id: str) -> int:
    """The scheduled time arq put in a unique cron job's id (``name:<unix ms>``)."""
    tail = job_id.rpartition(":")[2]
    return int(tail) if tail.isdigit() else int(time.time() * 1000)


def _scheduled_job(policy_name: str) -> WorkerCoroutine:
    async def run_policy(ctx: dict[str, Any]) -> str:
        return await scheduled_sweep(ctx, policy_name)

    run_policy.__qualname__ = f"retention_{policy_name}"
    return cast(WorkerCoroutine, run_policy)


def sweep_cron_jobs(settings: WorkerSettings, *, burst: bool = False) -> list[CronJob]:
    """One unique arq cron job per scheduled policy (none in burst mode or without a file)."""
    if burst:
        return []
    if settings.retention_policies is None:
        log.info("retention.schedule_off", message="no retention policies: schedule off")
        return []
    policies = load_policies(settings.retention_policies)
    if not any(policy.schedule for policy in policies.values()):
        log.info("retention.schedule_off", message="no scheduled retention policy: schedule off")
    return [
        cron(
            _scheduled_job(name),
            name=f"retention:{name}",
            unique=True,
            run_at_startup=False,
            timeout=settings.sweep_timeout_seconds,
            max_tries=1,
            **fields.as_kwargs(),
        )
        for name, policy in sorted(policies.items())
        if (fields := policy.cron_fields) is not None
    ]
