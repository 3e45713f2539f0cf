"""Building the CREATE script's calls: one new request under its own job, or a batch under one.

:func:`prepare` turns a submission into the request it would create and its two possible audit
records (created, or merged into the account's active request). :func:`create_call` puts one or
more prepared submissions into one CREATE call under one arq job: ``<id>.1`` for a single
submission (:meth:`Ledger.submit`), a batch job for a chunk of a bulk submission
(:mod:`ledger.bulk`). Either way the requests and their job are written in the same script, so
neither exists without the other; a merged submission is left out of the job's payload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger import lua
from ledger.audit import MERGED, STATUS_CHANGED
from ledger.jobs import ARQ_JOB_KEY_PREFIX
from ledger.models import (
    ACCOUNT,
    DisconnectRequest,
    RequestPriority,
    RequestSource,
    RequestStatus,
    new_request_id,
    priority_for,
)
from ledger.records import hash_fields, request_record, text

#: The ``message`` of a merge record whose submission promoted the request to the urgent queue.
PROMOTED_MESSAGE = "promoted to the urgent queue"
#: CREATE's answer for a request promoted while its attempt runs: no new job; its next enqueue
#: (a retry) goes to the urgent queue.
PROMOTED_IN_FLIGHT = "+"
_EXISTING = "__EXISTING__"

if TYPE_CHECKING:
    from ledger.store import Ledger


@dataclass(frozen=True)
class PreparedSubmission:
    """One new request ready for the CREATE script, with its two possible audit records."""

    request: DisconnectRequest
    created: dict[str, Any]  # its creation record; ``job_id`` is set by the call it goes into
    merge: dict[str, Any]  # the record if it merges instead; ``request_id`` is the existing one
    fields: dict[str, str] = field(default_factory=dict)  # the request's hash at creation


@dataclass(frozen=True)
class Submission:
    """What a submission did: the id the caller should track, and whether it merged."""

    request_id: str
    merged: bool


@dataclass(frozen=True)
class CreateCall:
    """One CREATE script call: its keys and arguments, and the submissions in it."""

    keys: list[str]
    args: list[Any]
    job_id: str
    submissions: list[PreparedSubmission]


def prepare(
    actor: str,
    account_id: str,
    *,
    source: RequestSource,
    reference: str = "",
    reason: str = "",
    stripe_account: str | None = None,
    parent_id: str | None = None,
    listed_status: str | None = None,
    listed_at: int | None = None,
) -> PreparedSubmission:
    """The request a submission creates (unless it merges), and both of its possible records."""
    now = time.time()
    request = DisconnectRequest(
        request_id=new_request_id(),
        account_id=account_id,
        stripe_account=stripe_account,
        source=source,
        reference=reference,
        reason=reason,
        status=RequestStatus.QUEUED,
        created_at=now,
        updated_at=now,
        parent_id=parent_id,
        listed_status=listed_status,
        listed_at=listed_at,
        priority=priority_for(source),
    )
    created = request_record(
        ACCOUNT, actor, STATUS_CHANGED, request, None, RequestStatus.QUEUED, None
    )
    # The merge record differs from the created one only in these fields (same instant).
    merge = {**created, "event": MERGED, "to": None, "request_id": _EXISTING}
    fields = {
        **hash_fields(request),
        "priority": request.priority.value,  # stored explicitly: promotion changes it
        "created_by": actor,
        "created_ts": created["ts"],
    }
    return PreparedSubmission(request, created, merge, fields)


def create_call(
    keys: Ledger,
    submissions: list[PreparedSubmission],
    *,
    job_id: str,
    job: dict[str, Any],
    expire_ms: int,
    own_job_seq: bool = False,
    children_key: str | None = None,
) -> CreateCall:
    """The CREATE call recording ``submissions`` under the arq job ``job_id`` (its record
    ``job``; a batch's id list is filled in by the script). ``own_job_seq``: the job is the
    request's own ``<id>.1``, so its per-request job counter starts at 1. ``children_key``: also
    record each answer in that parent's children hash. All share one source (one queue)."""
    source = submissions[0].request.source
    now = time.time()
    urgent = priority_for(source) == RequestPriority.URGENT
    call_keys = [
        keys.status_key(RequestStatus.QUEUED),
        ARQ_JOB_KEY_PREFIX + job_id,
        keys.queue_for(source),
        keys.bulk_queue_name,
    ]
    spec: dict[str, Any] = {
        "now": repr(now),
        "job_id": job_id,
        "job": job,
        "score": int(now * 1000),
        "expire_ms": expire_ms,
        "prefix": keys.prefix,
        "job_prefix": ARQ_JOB_KEY_PREFIX,
        "promote_message": PROMOTED_MESSAGE,
        "bulk_source": RequestSource.RETENTION_POLICY.value,
        "requests": [],
    }
    if urgent:
        spec["promote_job"] = ACCOUNT.job_record(_EXISTING)
    if children_key is not None:
        spec["children_key"] = children_key
    for submission in submissions:
        request = submission.request
        call_keys += [keys.active_key(request.account_id), keys.request_key(request.request_id)]
        fields = {**submission.fields, **({"job_seq": "1"} if own_job_seq else {})}
        spec["requests"].append(
            {
                "id": request.request_id,
                "account_id": request.account_id,
                "fields": fields,
                "merge": {k: v for k, v in submission.merge.items() if v is not None},
            }
        )
    return CreateCall(call_keys, [lua.params(**spec)], job_id, submissions)


def finish(call: CreateCall, answers: list[Any]) -> list[tuple[Submission, dict[str, Any]]]:
    """What each submission of ``call`` did, with the audit record to publish for it."""
    results = []
    for submission, (flag, request_id, promoted) in zip(call.submissions, answers, strict=True):
        if int(flag) == 1:
            record = {**submission.created, "job_id": call.job_id}
            results.append((Submission(text(request_id), merged=False), record))
            continue
        record = {**submission.merge, "request_id": text(request_id)}
        if text(promoted) == PROMOTED_IN_FLIGHT:
            record.update(message=PROMOTED_MESSAGE)
        elif text(promoted):
            record.update(job_id=text(promoted), message=PROMOTED_MESSAGE)
        results.append((Submission(text(request_id), merged=True), record))
    return results
