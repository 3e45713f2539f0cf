"""The reconciler: put back every unfinished request that no arq job will ever run, of every kind.

arq forgets: a job key expires (``FCD_JOB_EXPIRES_SECONDS``), Redis can lose writes on failover,
a worker can die, or a job can end without moving its request. The ledger does not forget, so this
pass walks every kind's in-flight indexes (account requests and customer-level parents alike:
:data:`ledger.models.ACCOUNT`, :data:`ledger.customer_models.CUSTOMER`) and repairs the ledger's
side, one audited step per request:

- a *waiting* status (``queued`` / ``retry_scheduled``) whose job is *orphaned* (no
  ``arq:job:<id>``, or a job that is neither in the queue nor held by a worker via
  ``arq:in-progress:<id>``; or its own job held although it was due more than the lease ago:
  a worker that took the job and died before claiming the request, whose hold arq keeps for its
  longest function timeout): re-enqueued under a fresh job id without a status change, audited as
  ``<kind>.reenqueued``. The check and the repair are one Lua script, so a job that a worker is
  picking up at that moment is never doubled. A request recorded under a bulk submission's batch
  job is covered by that job while it is queued and not started, or held with its heartbeat
  alive (arq keeps a dead worker's batch in the queue and its in-progress key for a day: a held
  batch without a heartbeat is dead); otherwise it gets a job of its own.
- the *running* status (``in_progress`` / ``listing``) for longer than the lease: moved back to
  ``queued`` with a fresh job (a ``<kind>.status_changed`` record). arq's ``in-progress`` key is
  not trusted here: a killed worker's key lives for arq's longest function timeout (a day,
  because of sweeps), while every attempt is cut off after ``FCD_JOB_TIMEOUT_SECONDS`` (the lease
  must be longer; the worker's settings check it), so an attempt older than the lease has no live
  worker. The move compares the claim token the pass read, so an attempt that was claimed again
  meanwhile (even under the same job id) is never handed back. The attempt stays counted (the
  lost worker may have called Stripe); the next one reuses the same Idempotency-Key.

One pass at a time across all processes: a Redis lock (``P reconcile:lock``, redis-py's
``Lock``) guards it, on top of arq's ``unique`` cron jobs, so ``fcd reconcile`` run by hand and
the cron never overlap. :func:`reconcile` needs no arq; ``worker.operations`` schedules it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from redis.exceptions import LockError

from ledger.audit import TransitionDetails
from ledger.customers import CustomerLedger
from ledger.detached import run_detached
from ledger.jobs import ARQ_IN_PROGRESS_KEY_PREFIX, ARQ_JOB_KEY_PREFIX, batch_heartbeat_key
from ledger.kinds import StaleTransition
from ledger.machine import StateStore
from ledger.store import Ledger

REENQUEUED = "disconnect.reenqueued"


@dataclass(frozen=True)
class Repair:
    """One request the pass found without a live job, and what was (or would be) done."""

    request_id: str
    account_id: str | None
    status: StrEnum
    old_job_id: str | None
    problem: str
    new_job_id: str | None = None  # None on a dry run, or if the request moved meanwhile
    kind: str = "account"


@dataclass
class ReconcileReport:
    """What one pass saw and did."""

    scanned: int = 0
    repairs: list[Repair] = field(default_factory=list)
    lock_busy: bool = False  # another pass was running; this one did nothing
    dry_run: bool = False


@dataclass(frozen=True)
class _JobState:
    exists: bool  # arq:job:<id> is there
    queued: bool  # the job is in its queue's sorted set (arq leaves a running job there too)
    started: bool  # arq:in-progress:<id> is there (a worker took it, alive or not)
    held: bool  # started, and for a batch its heartbeat is alive
    batch: bool
    #: A job of the request's own, started although it was due more than the lease ago while
    #: the request still waits: its worker was lost between taking the job and claiming it.
    stale_hold: bool = False

    @property
    def alive(self) -> bool:
        if not self.exists:
            return False
        if self.batch:  # a started batch lives by its heartbeat alone (see the module docstring)
            return self.held or (self.queued and not self.started)
        return (self.queued or self.held) and not self.stale_hold

    def describe(self, job_id: str | None) -> str:
        if not job_id:
            return "no job id recorded"
        if not self.exists:
            return f"arq job {job_id} is gone (expired or lost)"
        if self.batch and self.started:
            return f"batch job {job_id} was started but its heartbeat stopped (worker lost)"
        if self.stale_hold:
            return f"arq job {job_id} was taken by a worker that never claimed it (worker lost)"
        return f"arq job {job_id} is neither queued nor held by a worker"


def stores_of(ledger: Ledger) -> list[StateStore[Any, Any]]:
    """The store of every kind of request, on ``ledger``'s Redis and prefix."""
    customers = CustomerLedger(ledger, ledger.audit, ledger.job_expires_ms // 1000)
    return [ledger, customers]


async def reconcile(
    ledger: Ledger,
    *,
    lease_seconds: float,
    dry_run: bool = False,
    operator: str | None = None,
    lock_seconds: float = 300.0,
) -> ReconcileReport:
    """One pass over every unfinished request of every kind; see the module docstring."""
    report = ReconcileReport(dry_run=dry_run)
    lock = ledger.redis.lock(f"{ledger.prefix}reconcile:lock", timeout=lock_seconds)
    if not await lock.acquire(blocking=False):
        report.lock_busy = True
        return report
    try:
        for store in stores_of(ledger):
            await _reconcile_kind(store, report, lease_seconds, operator)
    finally:
        with contextlib.suppress(LockError):  # expired meanwhile: nothing to release
            await run_detached(lock.release())
    return report


async def _reconcile_kind(
    store: StateStore[Any, Any],
    report: ReconcileReport,
    lease_seconds: float,
    operator: str | None,
) -> None:
    kind = store.kind
    for status in (*sorted(kind.waiting), kind.running):
        async for batch in store.scan_status(status):
            report.scanned += len(batch)
            states = await _job_states(store, batch, time.time() - lease_seconds)
            for request, state in zip(batch, states, strict=True):
                repair = await _consider(store, request, state, lease_seconds, report, operator)
                if repair is not None:
                    report.repairs.append(repair)


async def _job_states(
    store: StateStore[Any, Any], batch: list[Any], held_stale_before: float
) -> list[_JobState]:
    async with store.redis.pipeline(transaction=False) as pipe:
        for request in batch:
            job = request.job_id or ""
            heartbeat = batch_heartbeat_key(store.prefix, job)
            pipe.exists(ARQ_JOB_KEY_PREFIX + job)
            pipe.zscore(store.queue_of(request), job)
            pipe.exists(ARQ_IN_PROGRESS_KEY_PREFIX + job)
            pipe.exists(heartbeat or ARQ_IN_PROGRESS_KEY_PREFIX + job)
        raw = await pipe.execute()
    states = []
    for index, request in enumerate(batch):
        exists, score, in_progress, beating = raw[4 * index : 4 * index + 4]
        has_job = bool(request.job_id)
        batch_job = bool(batch_heartbeat_key(store.prefix, request.job_id or ""))
        stale = (
            not batch_job
            and request.status in store.kind.waiting
            and bool(in_progress)
            and score is not None
            and float(score) < held_stale_before * 1000
        )
        states.append(
            _JobState(
                exists=has_job and bool(exists),
                queued=score is not None,
                started=bool(in_progress),
                held=has_job and bool(in_progress) and bool(beating),
                batch=batch_job,
                stale_hold=stale,
            )
        )
    return states


async def _consider(
    store: StateStore[Any, Any],
    request: Any,
    state: _JobState,
    lease_seconds: float,
    report: ReconcileReport,
    operator: str | None,
) -> Repair | None:
    kind = store.kind
    if request.status == kind.running:
        age = time.time() - request.updated_at
        if age <= lease_seconds:
            return None
        holder = "its worker was lost" if not state.held else "arq still marks it held (stale)"
        problem = f"{request.status} for {age:.0f}s (lease {lease_seconds:.0f}s); {holder}"
    elif state.alive:
        return None
    else:
        problem = state.describe(request.job_id)
    repair = Repair(
        request.request_id,
        getattr(request, "account_id", None),
        request.status,
        request.job_id,
        problem,
        kind=kind.name,
    )
    if report.dry_run:
        return repair
    details = TransitionDetails(message=f"reconciler: {problem}", operator=operator)
    if request.status == kind.running:
        new_job = await _requeue_stuck(store, request, details)
    else:
        new_job = await store.reenqueue(
            request,
            details,
            only_if_orphaned=True,
            held_stale_before=time.time() - lease_seconds,
        )
    return replace(repair, new_job_id=new_job)


async def _requeue_stuck(
    store: StateStore[Any, Any], request: Any, details: TransitionDetails
) -> str | None:
    try:
        moved = await store.transition(request, store.kind.initial, details, enqueue_in=0.0)
    except StaleTransition:
        return None  # claimed again or moved meanwhile: its worker is alive
    job_id: str | None = moved.job_id
    return job_id


async def reenqueue(
    ledger: Ledger,
    request: Any,
    details: TransitionDetails | None = None,
    *,
    only_if_orphaned: bool = False,
) -> str | None:
    """:meth:`StateStore.reenqueue` on the account ledger (kept for callers of the old API)."""
    return await ledger.reenqueue(request, details, only_if_orphaned=only_if_orphaned)
