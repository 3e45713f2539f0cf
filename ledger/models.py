"""The disconnect request, its statuses and the one table of legal transitions.

A request moves ``queued -> in_progress -> (terminal | retry_scheduled -> in_progress ...)``.
Operators may cancel anything not yet finished and re-queue a ``failed`` request. Every other move
raises :class:`IllegalTransition`; the table below is the only place that decides.
"""

from __future__ import annotations

import re
import secrets
import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

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


class LedgerError(Exception):
    """Base of the ledger's errors."""


class IllegalTransition(LedgerError):
    """A status change that the transition table does not allow."""

    def __init__(self, request_id: str, from_status: RequestStatus | None, to: RequestStatus):
        self.request_id = request_id
        self.from_status = from_status
        self.to = to
        super().__init__(f"{request_id}: illegal transition {from_status} -> {to}")


class StaleTransition(LedgerError):
    """The request is no longer in the status (or held by the job) the caller expected.

    Another worker or an operator moved it first; the caller must re-read, never overwrite.
    """

    def __init__(self, request_id: str, expected: str, actual: str | None):
        self.request_id = request_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"{request_id}: expected {expected}, found {actual}")


class RequestNotFound(LedgerError):
    """No request with that id (or none for that account)."""


def check_transition(request_id: str, from_status: RequestStatus | None, to: RequestStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``from_status -> to`` is in :data:`TRANSITIONS`."""
    if to not in TRANSITIONS[from_status]:
        raise IllegalTransition(request_id, from_status, to)


class RequestSource(StrEnum):
    """Who asked for the disconnect; ``reference`` on the request says which one exactly."""

    DELETION_EVENT = "deletion_event"  # reference: the publisher's event id
    RETENTION_POLICY = "retention_policy"  # reference: the policy name
    OPERATOR = "operator"  # reference: the operator's name


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


def new_request_id() -> str:
    """A sortable request id: ``dr_`` + 10 chars of milliseconds + 16 random chars (Crockford)."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_BASE32[value & 31])
        value >>= 5
    return "dr_" + "".join(reversed(chars))


class DisconnectRequest(BaseModel):
    """One request to disconnect one Financial Connections account, as the ledger stores it."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    account_id: AccountId
    stripe_account: ConnectedAccountId | None = None
    source: RequestSource
    reference: str = ""
    reason: str = ""
    status: RequestStatus
    attempts: int = 0
    created_at: float = Field(description="unix seconds")
    updated_at: float
    first_attempt_at: float | None = None
    #: When a disconnect POST for this request was last sent (its outcome may be unknown).
    last_posted_at: float | None = None
    job_id: str | None = None
    idempotency_generation: int = 0
    last_error: str | None = None
    last_error_code: str | None = None
    last_stripe_request_id: str | None = None
    parent_id: str | None = None
    #: Stored at creation; an urgent submission merged into a waiting bulk request promotes it.
    #: Requests recorded before the field existed take it from their source.
    priority: RequestPriority = RequestPriority.URGENT

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, data: Any) -> Any:
        """Fields the ledger leaves out of the hash when they follow from others."""
        if isinstance(data, dict):
            if "priority" not in data and "source" in data:
                data = {**data, "priority": priority_for(RequestSource(data["source"]))}
            if "updated_at" not in data and "created_at" in data:
                data = {**data, "updated_at": data["created_at"]}
        return data

    @property
    def idempotency_key(self) -> str:
        """The key for the next disconnect POST; a new generation means Stripe sees a new call."""
        return f"fcd-{self.request_id}-{self.idempotency_generation}"

    @classmethod
    def from_redis(cls, raw: dict[str, str], request_id: str | None = None) -> DisconnectRequest:
        """Build from the Redis hash (all values strings, empty string meaning absent).

        ``request_id`` is the id in the hash's key: the hash itself need not repeat it.
        """
        data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
        if request_id is not None:
            data.setdefault("request_id", request_id)
        return cls.model_validate(data)
