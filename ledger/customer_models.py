"""What a customer-level request is: its statuses and their table, its model and its JSON job.

The job contract follows :mod:`ledger.jobs`: a tiny JSON payload (schema version and parent id),
everything else read from the ledger when the job runs. Queued jobs outlive deploys: add fields
only with defaults, never rename :data:`CUSTOMER_JOB` without an alias.
"""

from __future__ import annotations

import time
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ledger.jobs import serialize
from ledger.models import TERMINAL_STATUSES, LedgerError, RequestSource, new_request_id

CUSTOMER_JOB = "disconnect_customer"
CUSTOMER_STATUS_CHANGED = "customer.status_changed"
CUSTOMER_CHILDREN_ADDED = "customer.children_added"


class CustomerStatus(StrEnum):
    """Where the listing of a customer's accounts is."""

    QUEUED = "queued"  # recorded; a list job is waiting
    LISTING = "listing"  # a worker is listing accounts and submitting child requests
    RETRY_SCHEDULED = "retry_scheduled"  # a list call failed transiently; a deferred job exists
    LISTED = "listed"  # every account has a child; done once every child is terminal
    FAILED = "failed"  # listing stopped for good; children submitted so far still run


CUSTOMER_TRANSITIONS: dict[CustomerStatus | None, frozenset[CustomerStatus]] = {
    None: frozenset({CustomerStatus.QUEUED}),
    CustomerStatus.QUEUED: frozenset({CustomerStatus.LISTING}),
    CustomerStatus.RETRY_SCHEDULED: frozenset({CustomerStatus.LISTING}),
    CustomerStatus.LISTING: frozenset(
        {
            CustomerStatus.LISTED,
            CustomerStatus.RETRY_SCHEDULED,
            CustomerStatus.FAILED,
            CustomerStatus.QUEUED,
        }
    ),
    CustomerStatus.LISTED: frozenset(),
    CustomerStatus.FAILED: frozenset(),
}


class CustomerNotFound(LedgerError):
    """No customer-level request with that id."""


class EventIdConflict(LedgerError):
    """The caller's event id was already used with a different body."""


class CustomerJob(BaseModel):
    """Payload of a :data:`CUSTOMER_JOB` job."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    parent_id: str


def customer_job_record(parent_id: str, enqueue_time_ms: int | None = None) -> bytes:
    """The bytes arq stores under ``arq:job:<id>`` for a customer job (JSON, as arq would)."""
    payload = CustomerJob(parent_id=parent_id).model_dump()
    et = enqueue_time_ms if enqueue_time_ms is not None else int(time.time() * 1000)
    return serialize({"t": None, "f": CUSTOMER_JOB, "a": [payload], "k": {}, "et": et})


def new_customer_request_id() -> str:
    """``cr_`` + the same sortable 26 characters as a ``dr_`` id."""
    return "cr_" + new_request_id()[3:]


class CustomerRequest(BaseModel):
    """One request to disconnect every account of one customer, as the ledger stores it."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    customer_id: str
    stripe_account: str | None = None
    source: RequestSource
    reference: str = ""
    reason: str = ""
    status: CustomerStatus
    attempts: int = 0
    created_at: float
    updated_at: float
    job_id: str | None = None
    cursor: str | None = None
    last_error: str | None = None

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> CustomerRequest:
        return cls.model_validate({k: v for k, v in raw.items() if v != ""})


_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


def derived_state(status: CustomerStatus, child_statuses: list[str]) -> str:
    """``done`` once listed and every child is terminal; ``in_progress`` while children run;
    otherwise the listing status itself (``queued``, ``listing``, ``retry_scheduled``,
    ``failed``)."""
    if status != CustomerStatus.LISTED:
        return status.value
    return "done" if all(s in _TERMINAL for s in child_statuses) else "in_progress"
