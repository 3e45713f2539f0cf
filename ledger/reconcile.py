"""The reconciler: put back every unfinished request that no arq job will ever run.

arq forgets: a job key expires (``FCD_JOB_EXPIRES_SECONDS``), Redis can lose writes on failover,
a worker can die, or a job can end without moving its request. The ledger does not forget, so this
pass compares the two and repairs the ledger's side, one audited step per request:

- ``queued`` / ``retry_scheduled`` whose job is *orphaned* (no ``arq:job:<id>``, or a job that is
  neither in the queue nor held by a worker via ``arq:in-progress:<id>``): re-enqueued under a
  fresh job id without a status change, audited as ``disconnect.reenqueued``. The check and the
  repair are one Lua script, so a job that a worker is picking up at that moment is never doubled.
  A request recorded under a bulk submission's batch job is covered by the same check on that
  job: while ``arq:job:b_…`` exists and is queued or held it is alive; once it is gone (finished,
  failed, expired) every request still naming it is orphaned and gets a job of its own.
- ``in_progress`` for longer than the lease: moved back to ``queued`` with a fresh job (a
  ``disconnect.status_changed`` record). arq's ``in-progress`` key is not trusted here: a killed
  worker's key lives for arq's longest function timeout (a day, because of sweeps), while every
  attempt is cut off after ``FCD_JOB_TIMEOUT_SECONDS`` (the lease must be longer; the worker's
  settings check it), so an attempt older than the lease has no live worker. The attempt stays
  counted (the lost worker may have called Stripe); the next attempt reuses the same
  Idempotency-Key, and a late write by a frozen worker fails its compare-and-set.

One pass at a time across all processes: a Redis lock (``P reconcile:lock``) guards it, on top of
arq's ``unique`` cron jobs (one enqueue per schedule across workers), so ``fcd reconcile`` run by
hand and the cron never overlap. :func:`reconcile` needs no arq; ``worker.operations`` schedules it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from ledger.audit import TransitionDetails
from ledger.jobs import (
    ARQ_IN_PROGRESS_KEY_PREFIX,
    ARQ_JOB_KEY_PREFIX,
    arq_job_record,
    batch_heartbeat_key,
)
from ledger.models import DisconnectRequest, RequestStatus, StaleTransition
from ledger.records import request_record, stored, text
from ledger.scripts import MATERIALISE
from ledger.store import Ledger

REENQUEUED = "disconnect.reenqueued"
WAITING = (RequestStatus.QUEUED, RequestStatus.RETRY_SCHEDULED)
_BATCH = 500

# KEYS: req, hist, queue. ARGV: request_id, expected_status, expected_job, record, job_bytes,
#   score_ms, expire_ms, job_prefix, in_progress_prefix, only_if_orphaned ("1"/"0"),
#   batch_heartbeat_key ('' unless the job is a batch: then "held" also needs the heartbeat).
# Returns {1, new_job} on success, {0, status, job} if the request moved or its job is alive.
REENQUEUE = (
    MATERIALISE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {0, '', ''} end
local job = redis.call('HGET', KEYS[1], 'job_id') or ''
if status ~= ARGV[2] or job ~= ARGV[3] then return {0, status, job} end
if ARGV[10] == '1' and job ~= '' and redis.call('EXISTS', ARGV[8] .. job) == 1 then
  local held = redis.call('EXISTS', ARGV[9] .. job) == 1
  if held and ARGV[11] ~= '' then held = redis.call('EXISTS', ARGV[11]) == 1 end
  if redis.call('ZSCORE', KEYS[3], job) or held then
    return {0, status, job}
  end
end
materialise(KEYS[1], KEYS[2])
local seq = redis.call('HINCRBY', KEYS[1], 'job_seq', 1)
local new_job = ARGV[1] .. '.' .. seq
redis.call('HSET', KEYS[1], 'job_id', new_job)
redis.call('SET', ARGV[8] .. new_job, ARGV[5], 'PX', ARGV[7])
redis.call('ZADD', KEYS[3], ARGV[6], new_job)
local record = string.gsub(ARGV[4], '"job_id":"__JOB__"', '"job_id":"' .. new_job .. '"', 1)
redis.call('RPUSH', KEYS[2], record)
return {1, new_job}
"""
)

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Repair:
    """One request the pass found without a live job, and what was (or would be) done."""

    request_id: str
    account_id: str
    status: RequestStatus
    old_job_id: str | None
    problem: str
    new_job_id: str | None = None  # None on a dry run, or if the request moved meanwhile


@dataclass
class ReconcileReport:
    """What one pass saw and did."""

    scanned: int = 0
    repairs: list[Repair] = field(default_factory=list)
    lock_busy: bool = False  # another pass was running; this one did nothing
    dry_run: bool = False


@dataclass(frozen=True)
class _JobState:
    exists: bool
    queued: bool
    held: bool  # a worker holds it (arq:in-progress)

    @property
    def alive(self) -> bool:
        return self.exists and (self.queued or self.held)

    def describe(self, job_id: str | None) -> str:
        if not job_id:
            return "no job id recorded"
        if not self.exists:
            return f"arq job {job_id} is gone (expired or lost)"
        return f"arq job {job_id} is neither queued nor held by a worker"


async def reconcile(
    ledger: Ledger,
    *,
    lease_seconds: float,
    dry_run: bool = False,
    operator: str | None = None,
    lock_seconds: float = 300.0,
) -> ReconcileReport:
    """One pass over every unfinished request; see the module docstring for the rules."""
    report = ReconcileReport(dry_run=dry_run)
    lock_key = f"{ledger.prefix}reconcile:lock"
    token = secrets.token_hex(8)
    if not await ledger.redis.set(lock_key, token, nx=True, px=int(lock_seconds * 1000)):
        report.lock_busy = True
        return report
    try:
        for status in (*WAITING, RequestStatus.IN_PROGRESS):
            async for batch in _requests_in(ledger, status):
                report.scanned += len(batch)
                states = await _job_states(ledger, batch)
                for request, state in zip(batch, states, strict=True):
                    repair = await _consider(
                        ledger, request, state, lease_seconds, dry_run, operator
                    )
                    if repair is not None:
                        report.repairs.append(repair)
    finally:
        await ledger.redis.eval(RELEASE_LOCK, 1, lock_key, token)  # type: ignore[misc]
    return report


async def _requests_in(
    ledger: Ledger, status: RequestStatus
) -> AsyncIterator[list[DisconnectRequest]]:
    """Every request in ``status``, in batches (ZSCAN: members present throughout are seen)."""
    cursor = 0
    while True:
        cursor, page = await ledger.redis.zscan(ledger.status_key(status), cursor, count=_BATCH)
        async with ledger.redis.pipeline(transaction=False) as pipe:
            ids = [text(raw_id) for raw_id, _score in page]
            for request_id in ids:
                pipe.hgetall(ledger.request_key(request_id))
            hashes = await pipe.execute()
        batch = [
            request
            for request_id, raw in zip(ids, hashes, strict=True)
            if raw
            and (request := DisconnectRequest.from_redis(_decode(raw), request_id)).status == status
        ]
        if batch:
            yield batch
        if cursor == 0:
            return


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


async def _job_states(ledger: Ledger, batch: list[DisconnectRequest]) -> list[_JobState]:
    async with ledger.redis.pipeline(transaction=False) as pipe:
        for request in batch:
            job = request.job_id or ""
            pipe.exists(ARQ_JOB_KEY_PREFIX + job)
            pipe.zscore(ledger.queue_of(request), job)
            pipe.exists(ARQ_IN_PROGRESS_KEY_PREFIX + job)
            pipe.exists(batch_heartbeat_key(ledger.prefix, job) or ARQ_IN_PROGRESS_KEY_PREFIX + job)
        raw = await pipe.execute()
    states = []
    for index, request in enumerate(batch):
        exists, score, in_progress, beating = raw[4 * index : 4 * index + 4]
        held = bool(in_progress) and bool(beating)  # a batch's arq key alone may be a dead one's
        has_job = bool(request.job_id)
        states.append(
            _JobState(has_job and bool(exists), score is not None, has_job and bool(held))
        )
    return states


async def _consider(
    ledger: Ledger,
    request: DisconnectRequest,
    state: _JobState,
    lease_seconds: float,
    dry_run: bool,
    operator: str | None,
) -> Repair | None:
    if request.status == RequestStatus.IN_PROGRESS:
        age = time.time() - request.updated_at
        if age <= lease_seconds:
            return None
        holder = "its worker was lost" if not state.held else "arq still marks it held (stale)"
        problem = f"in_progress for {age:.0f}s (lease {lease_seconds:.0f}s); {holder}"
    elif state.alive:
        return None
    else:
        problem = state.describe(request.job_id)
    repair = Repair(request.request_id, request.account_id, request.status, request.job_id, problem)
    if dry_run:
        return repair
    details = TransitionDetails(message=f"reconciler: {problem}", operator=operator)
    if request.status == RequestStatus.IN_PROGRESS:
        new_job = await _requeue_stuck(ledger, request, details)
    else:
        new_job = await reenqueue(ledger, request, details, only_if_orphaned=True)
    return replace(repair, new_job_id=new_job)


async def _requeue_stuck(
    ledger: Ledger, request: DisconnectRequest, details: TransitionDetails
) -> str | None:
    try:
        moved = await ledger.transition(request, RequestStatus.QUEUED, details, enqueue_in=0.0)
    except StaleTransition:
        return None
    return moved.job_id


async def reenqueue(
    ledger: Ledger,
    request: DisconnectRequest,
    details: TransitionDetails | None = None,
    *,
    only_if_orphaned: bool = False,
) -> str | None:
    """Give a waiting request a fresh arq job, due now, without changing its status.

    Atomic with its ``disconnect.reenqueued`` history record. Returns the new job id, or ``None``
    if the request is no longer in the status and job of the snapshot (or, with
    ``only_if_orphaned``, its job turned out to be alive).
    """
    if request.status not in WAITING:
        raise ValueError(f"{request.request_id}: only waiting requests are re-enqueued")
    now = time.time()
    record = request_record(
        ledger.actor,
        REENQUEUED,
        request,
        request.status,
        request.status,
        "__JOB__",
        details=details,
    )
    keys = [ledger.request_key(request.request_id), ledger.history_key(request.request_id)]
    args: list[Any] = [request.request_id, request.status.value, request.job_id or ""]
    args += [stored(record, request), arq_job_record(request.request_id), int(now * 1000)]
    args += [ledger.job_expires_ms, ARQ_JOB_KEY_PREFIX, ARQ_IN_PROGRESS_KEY_PREFIX]
    args.append("1" if only_if_orphaned else "0")
    args.append(batch_heartbeat_key(ledger.prefix, request.job_id or ""))
    script = ledger.redis.register_script(REENQUEUE)

    def publish(result: Any) -> str | None:
        if int(result[0]) != 1:
            return None
        ledger.audit.emit({**record, "job_id": text(result[1])})
        return text(result[1])

    return await ledger.published(
        script(keys=[*keys, ledger.queue_of(request)], args=args), publish
    )
