"""What an on-call operator does to requests: list failures, re-queue them, cancel waiting ones.

Shared by the ``fcd`` commands and the dashboard, so both act identically. Every action is one
ledger transition (atomic compare-and-set on status and job id) whose audit record carries the
operator's name and reason, and reports what happened as an :class:`ActionOutcome` instead of
raising, so a batch of ids can be worked through and summarised.

Contracts:

- **Re-queue** (``failed -> queued``): attempts go back to 0, a fresh arq job id
  ``<request>.<n>`` is enqueued in the same step (so a result arq still holds under an earlier
  job id cannot swallow it), and the ``Idempotency-Key`` generation is bumped with the
  first-attempt clock cleared, because Stripe replays a stored response for a reused key for 24 h.
  It is refused if the account meanwhile got another active request (one per account).
- **Cancel** (``queued | retry_scheduled -> cancelled``): the waiting arq job is withdrawn
  afterwards (if a worker picks it up first, it finds the request cancelled and does nothing),
  unless it is a bulk submission's batch job: that one still serves the batch's other requests.
  A request that also serves submissions merged into it from another source or reference (a
  user's deletion merged into a sweep's request, say) is **refused** unless ``force``: the
  refusal lists them, because cancelling would drop their deletions too. A forced cancel names
  the dropped submissions in its record; a caller replaying such an event id gets a new request
  (see ``producer.intake``).
  An ``in_progress`` request is **refused**: a Stripe call may be on the wire and cannot be
  recalled; the operator waits for the attempt to end and cancels it if it is waiting to retry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ledger.audit import MERGED, TransitionDetails
from ledger.jobs import ARQ_IN_PROGRESS_KEY_PREFIX, ARQ_JOB_KEY_PREFIX, is_batch_job_id
from ledger.models import (
    DisconnectRequest,
    IllegalTransition,
    RequestNotFound,
    RequestStatus,
    StaleTransition,
)
from ledger.store import Ledger

CANCELLABLE = frozenset({RequestStatus.QUEUED, RequestStatus.RETRY_SCHEDULED})


class ActionResult(StrEnum):
    """How one operator action on one request ended."""

    DONE = "done"  # the transition happened
    WOULD_DO = "would_do"  # dry run: it would happen now
    REFUSED = "refused"  # not allowed (wrong status, in flight, account busy, changed meanwhile)
    NOT_FOUND = "not_found"  # no such request


@dataclass(frozen=True)
class ActionOutcome:
    """One request's result, with a sentence an operator can act on."""

    request_id: str
    result: ActionResult
    message: str
    request: DisconnectRequest | None = None

    @property
    def ok(self) -> bool:
        return self.result in (ActionResult.DONE, ActionResult.WOULD_DO)


class MissingReason(ValueError):
    """Operator actions must say who and why; the audit trail is useless otherwise."""


@dataclass(frozen=True)
class Failure:
    """A failed request with the HTTP status of its last attempt (from its failing record)."""

    request: DisconnectRequest
    http_status: int | None

    @property
    def cause(self) -> str:
        """What on-call groups by: ``HTTP 409 idempotency_key_in_use``, ``HTTP 401``, a code."""
        code = self.request.last_error_code or ""
        if self.http_status is None:
            return code or "unknown"
        http = f"HTTP {self.http_status}"
        return http if code in ("", str(self.http_status)) else f"{http} {code}"

    def matches(self, code: str) -> bool:
        """``code`` is the Stripe error code or the HTTP status, whichever the operator saw."""
        wanted = code.strip()
        return wanted in (self.request.last_error_code, str(self.http_status))


async def find_failures(
    ledger: Ledger,
    *,
    since_seconds: float | None = None,
    code: str | None = None,
    limit: int = 500,
) -> list[Failure]:
    """Failed requests, newest failure first; ``since_seconds`` bounds the failure time.

    ``code`` matches a Stripe error code (``idempotency_key_in_use``) or an HTTP status
    (``409``): either is shown for each failure, so either finds it.
    """
    low = "-inf" if since_seconds is None else time.time() - since_seconds
    ids = await ledger.redis.zrevrangebyscore(ledger.status_key(RequestStatus.FAILED), "+inf", low)
    found: list[Failure] = []
    for raw_id in ids:
        request_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        try:
            request = await ledger.get(request_id)
        except RequestNotFound:
            continue
        if request.status != RequestStatus.FAILED:
            continue  # moved since the index was read
        failure = Failure(request, await _failing_http_status(ledger, request_id))
        if code is not None and not failure.matches(code):
            continue
        found.append(failure)
        if len(found) >= limit:
            break
    return found


async def find_failed(
    ledger: Ledger,
    *,
    since_seconds: float | None = None,
    code: str | None = None,
    limit: int = 500,
) -> list[DisconnectRequest]:
    """The requests of :func:`find_failures`."""
    failures = await find_failures(ledger, since_seconds=since_seconds, code=code, limit=limit)
    return [failure.request for failure in failures]


def count_causes(failures: Sequence[Failure]) -> list[tuple[str, int]]:
    """(cause, count), most frequent first: the first thing on-call wants to know."""
    counts: dict[str, int] = {}
    for failure in failures:
        counts[failure.cause] = counts.get(failure.cause, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


async def _failing_http_status(ledger: Ledger, request_id: str) -> int | None:
    """The HTTP status on the record that moved the request to ``failed``."""
    for record in reversed(await ledger.history(request_id)):
        if record.get("to") == RequestStatus.FAILED.value and record.get("from") != "failed":
            status = record.get("http_status")
            return int(status) if status is not None else None
    return None


def _check_who(operator: str, reason: str, *, dry_run: bool = False) -> TransitionDetails:
    """Who and why, required for a change; a dry run changes nothing and needs neither."""
    if not dry_run and (not operator.strip() or not reason.strip()):
        raise MissingReason("an operator name and a reason are required")
    return TransitionDetails(operator=operator.strip(), message=reason.strip())


async def _load(ledger: Ledger, request_id: str) -> DisconnectRequest | ActionOutcome:
    """The request, or the NOT_FOUND outcome to answer with."""
    try:
        return await ledger.get(request_id)
    except RequestNotFound:
        return ActionOutcome(request_id, ActionResult.NOT_FOUND, "no such request")


async def requeue(
    ledger: Ledger, request_id: str, *, operator: str, reason: str, dry_run: bool = False
) -> ActionOutcome:
    """Move a ``failed`` request back to ``queued`` with a fresh job and a full attempt budget."""
    details = _check_who(operator, reason, dry_run=dry_run)
    request = await _load(ledger, request_id)
    if isinstance(request, ActionOutcome):
        return request
    if request.status != RequestStatus.FAILED:
        message = f"is {request.status.value}; only failed requests can be re-queued"
        return ActionOutcome(request_id, ActionResult.REFUSED, message, request)
    holder = await _active_holder(ledger, request)
    if holder is not None:
        return _account_busy(request, holder)
    if dry_run:
        return ActionOutcome(request_id, ActionResult.WOULD_DO, "would re-queue", request)
    updates = {
        "idempotency_generation": request.idempotency_generation + 1,
        "first_attempt_at": None,
    }
    try:
        moved = await ledger.transition(
            request,
            RequestStatus.QUEUED,
            TransitionDetails(operator=details.operator, message=f"re-queued: {details.message}"),
            attempts_delta=-request.attempts,
            enqueue_in=0.0,
            updates=updates,
        )
    except IllegalTransition:
        holder = await _active_holder(ledger, request)
        return _account_busy(request, holder or "another request")
    except StaleTransition as exc:
        return _changed(request, exc)
    return ActionOutcome(request_id, ActionResult.DONE, f"re-queued as job {moved.job_id}", moved)


async def other_submissions(ledger: Ledger, request: DisconnectRequest) -> list[dict[str, Any]]:
    """The submissions merged into ``request`` from another source or reference (oldest
    first): the other callers whose deletion this request also carries out."""
    own = (request.source.value, request.reference)
    return [
        record
        for record in await ledger.history(request.request_id)
        if record["event"] == MERGED and (record["source"], record["reference"]) != own
    ]


def _describe(submissions: Sequence[dict[str, Any]]) -> str:
    shown = ", ".join(f"{r['source']} {r['reference'] or '-'}" for r in submissions[:5])
    more = f" and {len(submissions) - 5} more" if len(submissions) > 5 else ""
    return shown + more


async def cancel(
    ledger: Ledger,
    request_id: str,
    *,
    operator: str,
    reason: str,
    dry_run: bool = False,
    force: bool = False,
) -> ActionOutcome:
    """Cancel a waiting request; refuse an in-flight or finished one, or one that also serves
    other callers' merged submissions (unless ``force``), saying why."""
    details = _check_who(operator, reason, dry_run=dry_run)
    request = await _load(ledger, request_id)
    if isinstance(request, ActionOutcome):
        return request
    if request.status == RequestStatus.IN_PROGRESS:
        message = (
            f"in flight: a worker is calling Stripe for it now (attempt {request.attempts}, "
            f"job {request.job_id}); a call on the wire cannot be recalled. Wait for the attempt "
            "to end, then cancel it if it is retry_scheduled"
        )
        return ActionOutcome(request_id, ActionResult.REFUSED, message, request)
    if request.status not in CANCELLABLE:
        message = f"is already {request.status.value}; nothing to cancel"
        return ActionOutcome(request_id, ActionResult.REFUSED, message, request)
    others = await other_submissions(ledger, request)
    if others and not force:
        message = (
            f"also serves {len(others)} merged submission(s) from other callers "
            f"({_describe(others)}); cancelling would drop their deletions too. Use --force "
            "to cancel anyway"
        )
        return ActionOutcome(request_id, ActionResult.REFUSED, message, request)
    dropped = f"; dropped merged submissions: {_describe(others)}" if others else ""
    if dry_run:
        return ActionOutcome(request_id, ActionResult.WOULD_DO, f"would cancel{dropped}", request)
    try:
        moved = await ledger.transition(
            request,
            RequestStatus.CANCELLED,
            TransitionDetails(
                operator=details.operator, message=f"cancelled: {details.message}{dropped}"
            ),
        )
    except StaleTransition as exc:
        return _changed(request, exc)
    await _withdraw_job(ledger, request.job_id)
    return ActionOutcome(request_id, ActionResult.DONE, f"cancelled{dropped}", moved)


async def requeue_many(
    ledger: Ledger, request_ids: Sequence[str], *, operator: str, reason: str, dry_run: bool
) -> list[ActionOutcome]:
    """:func:`requeue` each id in order; one refusal does not stop the others."""
    return [
        await requeue(ledger, rid, operator=operator, reason=reason, dry_run=dry_run)
        for rid in request_ids
    ]


async def _active_holder(ledger: Ledger, request: DisconnectRequest) -> str | None:
    holder = await ledger.active_request(request.account_id)
    return None if holder == request.request_id else holder


def _account_busy(request: DisconnectRequest, holder: str) -> ActionOutcome:
    message = f"account {request.account_id} already has an active request {holder}"
    return ActionOutcome(request.request_id, ActionResult.REFUSED, message, request)


def _changed(request: DisconnectRequest, exc: StaleTransition) -> ActionOutcome:
    message = f"changed meanwhile (now {exc.actual}); look again and retry"
    return ActionOutcome(request.request_id, ActionResult.REFUSED, message, request)


async def _withdraw_job(ledger: Ledger, job_id: str | None) -> None:
    """Take a cancelled request's arq job off the queue unless a worker already holds it or it
    is a batch job (shared with other requests; it skips the cancelled one)."""
    if job_id is None or is_batch_job_id(job_id):
        return
    if await ledger.redis.exists(ARQ_IN_PROGRESS_KEY_PREFIX + job_id):
        return
    for queue in ledger.queue_names:
        await ledger.redis.zrem(queue, job_id)
    await ledger.redis.delete(ARQ_JOB_KEY_PREFIX + job_id)
