"""Taking a request for one attempt and handing it back: one helper for every kind of request.

Contract (for any :class:`ledger.machine.StateStore` and the kind it serves):

- :func:`claim` acts only if ``job_id`` is the request's current job and the request is waiting,
  or was in the kind's running status under this very job when its worker died (arq re-runs such
  jobs; the attempt then resumes, audited as such). The claim is one transition into the running
  status with ``attempts + 1`` and a fresh claim token; every later move of this attempt compares
  that token, so the reconciler (or anyone holding an older snapshot) can never move it.
- If the caller is cancelled while the claim is in flight, a claim that went through is handed
  back before the cancellation propagates.
- :func:`give_back` returns a held request to the kind's initial status under a fresh job, the
  attempt not spent (a shutdown, a job timeout, a pause).
- A lost race (:class:`ledger.kinds.StaleTransition`) is logged and answered with ``None``: the
  request belongs to someone else now; the job stops.

Job functions return a :class:`JobResult` or the request's new status (both strings to arq).
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Any, TypeVar

import structlog

from ledger.audit import TransitionDetails
from ledger.detached import run_detached
from ledger.kinds import StaleTransition, TrackedRequest
from ledger.machine import StateStore

log = structlog.get_logger("fcd.worker")

R = TypeVar("R", bound=TrackedRequest)


class JobResult(StrEnum):
    """What a job did when it did not move a request to a new status."""

    SKIPPED = "skipped"  # not this job's to do (stale job id, not waiting, lost a race)
    PAUSED = "paused"  # the service is paused: nothing done; the adapter defers the job
    TIMED_OUT = "timed_out"  # one request of a batch ran out of time and was handed back
    ERROR = "error"  # one request of a batch crashed; the reconciler repairs it
    DUPLICATE = "duplicate"  # a scheduled run another worker already claimed


async def claim(
    store: StateStore[R, Any],
    request: R,
    job_id: str,
    *,
    resume_note: str,
    updates: dict[str, Any] | None = None,
) -> R | None:
    """Take ``request`` for one attempt as job ``job_id`` (see the module docstring)."""
    try:
        return await _claim(store, request, job_id, resume_note, updates)
    except asyncio.CancelledError:
        await run_detached(give_back_if_claimed(store, request.request_id, job_id))
        raise


async def _claim(
    store: StateStore[R, Any],
    request: R,
    job_id: str,
    resume_note: str,
    updates: dict[str, Any] | None,
) -> R | None:
    kind = store.kind
    if request.job_id != job_id:
        log.info("job.stale", current_job_id=request.job_id)
        return None
    try:
        if request.status == kind.running:
            request = await store.transition(
                request, kind.initial, TransitionDetails(message=resume_note)
            )
        if request.status not in kind.waiting:
            log.info("job.not_waiting", status=request.status.value)
            return None
        return await store.transition(
            request, kind.running, attempts_delta=1, updates=updates or {}
        )
    except StaleTransition as exc:
        log.info("job.lost_race", actual=exc.actual)
        return None


async def give_back(
    store: StateStore[R, Any],
    request: R,
    details: TransitionDetails,
    *,
    delay: float = 0.0,
    updates: dict[str, Any] | None = None,
) -> R | None:
    """Return a held request to the kind's initial status under a fresh job due after
    ``delay`` seconds, the attempt not spent; ``None`` if it had moved meanwhile."""
    try:
        return await store.transition(
            request,
            store.kind.initial,
            details,
            attempts_delta=-1,
            enqueue_in=delay,
            updates=updates,
        )
    except StaleTransition:
        log.warning("job.give_back_lost_race")
        return None


CANCELLED_NOTE = "job cancelled mid-attempt (worker shutdown or job timeout); attempt not spent"


async def give_back_if_claimed(store: StateStore[Any, Any], request_id: str, job_id: str) -> None:
    """Cancelled while claiming: if the claim went through, hand the request straight back."""
    request = await store.get(request_id)
    if request.status == store.kind.running and request.job_id == job_id:
        await give_back(store, request, TransitionDetails(message=CANCELLED_NOTE))
