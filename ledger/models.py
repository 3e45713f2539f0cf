"""The disconnect request: its statuses, its one table of legal transitions, its kind declaration.

A request moves ``queued -> in_progress -> (terminal | retry_scheduled -> in_progress ...)``.
Operators may cancel anything not yet finished and re-queue a ``failed`` request. Every other move
raises :class:`IllegalTransition`; the table below is the only place that decides. The machinery
that moves it is shared with every other kind of request (:mod:`ledger.kinds`): this module only
declares :data:`ACCOUNT`.
"""

from __future__ import annotations

import re
import secrets
import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator

from ledger.jobs import DISCONNECT_JOB
from ledger.kinds import (
    IllegalTransition,
    LedgerError,
    RequestKind,
    RequestNotFound,
    RequestSource,
    StaleTransition,
    TrackedRequest,
)

__all__ = [
    "ACCOUNT",
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "DisconnectRequest",
    "IllegalTransition",
    "LedgerError",
    "RequestNotFound",
    "RequestPriority",
    "RequestSource",
    "RequestStatus",
    "StaleTransition",
    "check_transition",
    "new_request_id",
    "priority_for",
]

ACCOUNT_ID_RE = re.compile(r"^fca_[A-Za-z0-9]{1,250}$")
CONNECTED_ACCOUNT_RE = re.compile(r"^acct_[A-Za-z0-9]{1,250}$")
CUSTOMER_ID_RE = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")
REQUEST_ID_RE = re.compile(r"^dr_[0-9a-z]{26}$")

AccountId = Annotated[str, StringConstraints(pattern=ACCOUNT_ID_RE.pattern)]
ConnectedAccountId = Annotated[str, StringConstraints(pattern=CONNECTED_ACCOUNT_RE.pattern)]


class RequestStatus(StrEnum):
    """Where a disconnect request is in its life."""

    QUEUED = "queued"  # recorded, an arq job is (or should be) waiting for it
    IN_PROGRESS = "in_progress"  # a worker holds it and is talking to Stripe
    RETRY_SCHEDULED = "retry_scheduled"  # an attempt failed transiently; a deferred job exists
    DISCONNECTED = "disconnected"  # terminal: Stripe disconnected the account for us
    ALREADY_DISCONNECTED = "already_disconnected"  # terminal: it was disconnected before we came
    NOT_FOUND = "not_found"  # terminal: Stripe has no such account (404 resource_missing)
    FAILED = "failed"  # terminal until an operator re-queues it; the reason is recorded
    CANCELLED = "cancelled"  # terminal: an operator or an external disconnect made it moot

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        RequestStatus.DISCONNECTED,
        RequestStatus.ALREADY_DISCONNECTED,
        RequestStatus.NOT_FOUND,
        RequestStatus.FAILED,
        RequestStatus.CANCELLED,
    }
)
ACTIVE_STATUSES = frozenset(RequestStatus) - TERMINAL_STATUSES

_OUTCOMES = frozenset(
    {
        RequestStatus.DISCONNECTED,
        RequestStatus.ALREADY_DISCONNECTED,
        RequestStatus.NOT_FOUND,
        RequestStatus.FAILED,
        RequestStatus.RETRY_SCHEDULED,
    }
)

#: The legal transitions. ``None`` is the state before a request exists.
#: in_progress -> queued: a worker shut down (or its lease ran out) mid-attempt, the service is
#: paused, or the circuit breaker tripped; the request waits for a fresh job.
#: failed -> queued: an operator re-queued it with a reason.
TRANSITIONS: dict[RequestStatus | None, frozenset[RequestStatus]] = {
    None: frozenset({RequestStatus.QUEUED}),
    RequestStatus.QUEUED: frozenset({RequestStatus.IN_PROGRESS, RequestStatus.CANCELLED}),
    RequestStatus.IN_PROGRESS: _OUTCOMES | {RequestStatus.QUEUED},
    RequestStatus.RETRY_SCHEDULED: frozenset({RequestStatus.IN_PROGRESS, RequestStatus.CANCELLED}),
    RequestStatus.FAILED: frozenset({RequestStatus.QUEUED}),
    RequestStatus.DISCONNECTED: frozenset(),
    RequestStatus.ALREADY_DISCONNECTED: frozenset(),
    RequestStatus.NOT_FOUND: frozenset(),
    RequestStatus.CANCELLED: frozenset(),
}


def check_transition(request_id: str, from_status: RequestStatus | None, to: RequestStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``from_status -> to`` is in :data:`TRANSITIONS`."""
    ACCOUNT.check(request_id, from_status, to)


class RequestPriority(StrEnum):
    """Which arq queue a request's jobs go to (and how its worker waits at the rate limiter)."""

    URGENT = "urgent"  # FCD_QUEUE_NAME: user deletions, operators
    BULK = "bulk"  # FCD_BULK_QUEUE_NAME: retention sweeps, served after every urgent caller


def priority_for(source: RequestSource) -> RequestPriority:
    """A new request's priority: retention sweeps are bulk, everything else is urgent."""
    return (
        RequestPriority.BULK if source == RequestSource.RETENTION_POLICY else RequestPriority.URGENT
    )


_BASE32 = "0123456789abcdefghjkmnpqrstvwxyz"


def new_request_id(prefix: str = "dr_") -> str:
    """A sortable id: ``prefix`` + 10 chars of milliseconds + 16 random chars (Crockford)."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_BASE32[value & 31])
        value >>= 5
    return prefix + "".join(reversed(chars))


class DisconnectRequest(TrackedRequest):
    """One request to disconnect one Financial Connections account, as the ledger stores it."""

    account_id: AccountId
    stripe_account: ConnectedAccountId | None = None
    status: RequestStatus
    created_at: float = Field(description="unix seconds")
    first_attempt_at: float | None = None
    #: When a disconnect POST for this request was last about to be sent (written before the
    #: POST goes out, so an attempt cut off mid-call still counts as having posted).
    last_posted_at: float | None = None
    idempotency_generation: int = 0
    last_error_code: str | None = None
    last_stripe_request_id: str | None = None
    parent_id: str | None = None
    #: A sweep request's account ``status`` in the listing (or file) it was selected from, and
    #: when that page was read (unix seconds; absent for a file). ``disconnected`` ends the
    #: request ``already_disconnected`` without a call; anything else is posted without a
    #: retrieve. Absent on every other request.
    listed_status: str | None = None
    listed_at: int | None = None
    #: Stored at creation; an urgent submission merged into a waiting bulk request promotes it.
    #: Requests recorded before the field existed take it from their source.
    priority: RequestPriority = RequestPriority.URGENT

    @model_validator(mode="before")
    @classmethod
    def _priority_defaults_to_the_sources(cls, data: Any) -> Any:
        """Requests recorded before ``priority`` existed take it from their source."""
        if isinstance(data, dict) and "priority" not in data and "source" in data:
            data = {**data, "priority": priority_for(RequestSource(data["source"]))}
        return data

    @property
    def idempotency_key(self) -> str:
        """The key for the next disconnect POST; a new generation means Stripe sees a new call."""
        return f"fcd-{self.request_id}-{self.idempotency_generation}"


ACCOUNT: RequestKind[DisconnectRequest, RequestStatus] = RequestKind(
    name="account",
    model=DisconnectRequest,
    statuses=RequestStatus,
    transitions=TRANSITIONS,
    terminal=TERMINAL_STATUSES,
    waiting=frozenset({RequestStatus.QUEUED, RequestStatus.RETRY_SCHEDULED}),
    running=RequestStatus.IN_PROGRESS,
    initial=RequestStatus.QUEUED,
    key_family="req",
    status_index="status",
    event_prefix="disconnect",
    job_function=DISCONNECT_JOB,
    job_payload_field="request_id",
    implied=("account_id", "source", "reference", "reason"),
    one_active_per_account=True,
    record_fields=lambda request: {"account_id": request.account_id},
)
