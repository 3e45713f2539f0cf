"""Periodic housekeeping in the workers: the reconciler, publishing the limiter's snapshot, the
webhook catch-up (:mod:`worker.events_catchup`) and the archive job (:func:`archive_job`, the
same kind of unique cron job; :mod:`ledger.archiving` adds its own lock).

:func:`reconcile_job` is a thin arq adapter over :func:`ledger.reconcile.reconcile` (every kind
of request), :func:`retention.runs.recover_runs` (sweep runs whose process was lost) and
:meth:`events.inbox.WebhookInbox.prune_consumers` (webhook-inbox consumer names of stopped intake
processes that own nothing, idle ``FCD_WEBHOOK_CONSUMER_IDLE_SECONDS``). It is an arq
cron job with ``unique=True``: every worker computes the same schedule and enqueues the run under
the job id ``reconcile:<scheduled unix ms>``; arq's ``enqueue_job`` refuses an id whose job (or
result) key exists, so one run per schedule happens across all workers (arq ``cron.py`` and
``worker.run_cron``; the in-progress key is kept 60 s after a cron run). The ledger's own lock
additionally keeps a run by hand (``fcd reconcile``) from overlapping.

Each run also publishes the shared rate limiter's snapshot (when the worker's call gate is the
limiter, i.e. has ``snapshot()``) for ``fcd queue`` and the dashboard, which may not import the
worker; they show it with its age.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import structlog
from arq.cron import CronJob, cron

from control.overview import publish_limiter_snapshot
from events.inbox import WebhookInbox
from ledger.archiving import Archiver
from ledger.jobs import ARQ_JOB_KEY_PREFIX
from ledger.reconcile import reconcile
from ledger.store import Ledger
from retention.runs import SweepRuns, recover_runs
from worker.disconnect import DisconnectDeps
from worker.events_catchup import EVENTS_CATCHUP_JOB, events_catchup_job
from worker.settings import WorkerSettings

RECONCILE_JOB = "reconcile"
ARCHIVE_JOB = "archive"
log = structlog.get_logger("fcd.worker")


@runtime_checkable
class SnapshotSource(Protocol):
    """What the reconciler needs of a limiter: a snapshot, a dataclass of JSON-able values."""

    async def snapshot(self) -> Any: ...


async def reconcile_job(ctx: dict[str, Any]) -> str:
    """arq cron job: one reconcile pass, then publish the limiter snapshot."""
    deps: DisconnectDeps = ctx["deps"]
    settings: WorkerSettings = ctx["settings"]
    report = await reconcile(deps.ledger, lease_seconds=settings.in_progress_lease_seconds)
    lost_runs = await recover_runs(
        SweepRuns(deps.ledger.redis, deps.ledger.prefix, deps.ledger.audit),
        job_key_prefix=ARQ_JOB_KEY_PREFIX,
    )
    inbox: WebhookInbox = ctx["inbox"]
    pruned = await inbox.prune_consumers(settings.webhook_consumer_idle_seconds)
    log.info(
        "reconcile.finished",
        scanned=report.scanned,
        repaired=len(report.repairs),
        lost_sweep_runs=len(lost_runs),
        webhook_consumers_pruned=len(pruned),
        lock_busy=report.lock_busy,
    )
    if isinstance(deps.gate, SnapshotSource):
        await publish_limiter(deps.ledger, deps.gate)
    return f"scanned={report.scanned} repaired={len(report.repairs)}"


async def archive_job(ctx: dict[str, Any]) -> str:
    """arq cron job: one archive pass (:mod:`ledger.archiving`): terminal requests older than
    ``FCD_ARCHIVE_AFTER`` move from Redis to the archive, in batches of
    ``FCD_ARCHIVE_BATCH_SIZE``."""
    deps: DisconnectDeps = ctx["deps"]
    settings: WorkerSettings = ctx["settings"]
    archive = deps.ledger.archive
    assert archive is not None  # Ledger.from_settings attaches it
    report = await Archiver(deps.ledger, archive).run(
        older_than=settings.archive_after_seconds, batch_size=settings.archive_batch_size
    )
    log.info(
        "archive.finished",
        archived=report.archived,
        kept=report.kept,
        waiting=report.waiting,
        events=report.events,
        batches=report.batches,
        lock_busy=report.lock_busy,
        archive=archive.location,
    )
    return f"archived={report.archived} kept={report.kept}"


async def publish_limiter(ledger: Ledger, limiter: SnapshotSource) -> None:
    """Store the limiter's current snapshot where producers read it."""
    snapshot = await limiter.snapshot()
    is_instance = dataclasses.is_dataclass(snapshot) and not isinstance(snapshot, type)
    values = dataclasses.asdict(snapshot) if is_instance else dict(snapshot)
    await publish_limiter_snapshot(ledger.redis, ledger.prefix, values)


def cron_schedule(interval_seconds: int) -> dict[str, Any]:
    """arq cron fields for "every ``interval_seconds``" (a divisor of 60 s, or of 60 min)."""
    if 0 < interval_seconds < 60 and 60 % interval_seconds == 0:
        return {"second": set(range(0, 60, interval_seconds))}
    minutes, rest = divmod(interval_seconds, 60)
    if interval_seconds >= 60 and rest == 0 and 60 % minutes == 0:
        return {"minute": set(range(0, 60, minutes)), "second": 0}
    raise ValueError(
        f"interval {interval_seconds}s must divide 60 s or be whole minutes dividing 60"
    )


def housekeeping_cron_jobs(settings: WorkerSettings, *, burst: bool = False) -> list[CronJob]:
    """The cron jobs of a long-running worker (none in burst mode: it only drains the queue)."""
    if burst:
        return []
    jobs = []
    if settings.reconcile_interval_seconds > 0:
        jobs.append(
            cron(
                reconcile_job,
                name=RECONCILE_JOB,
                unique=True,
                run_at_startup=True,
                timeout=300,
                **cron_schedule(settings.reconcile_interval_seconds),
            )
        )
    if settings.events_catchup_interval_seconds > 0:
        jobs.append(
            cron(
                events_catchup_job,
                name=EVENTS_CATCHUP_JOB,
                unique=True,
                run_at_startup=True,
                timeout=600,
                **cron_schedule(settings.events_catchup_interval_seconds),
            )
        )
    if settings.archive_interval_seconds > 0:
        jobs.append(
            cron(
                archive_job,
                name=ARCHIVE_JOB,
                unique=True,
                timeout=600,
                **cron_schedule(settings.archive_interval_seconds),
            )
        )
    return jobs
