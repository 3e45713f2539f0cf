"""What a customer-level request is: its statuses and their table, its model, its kind declaration.

The job contract follows :mod:`ledger.jobs`: a tiny JSON payload (schema version and parent id),
everything else read from the ledger when the job runs. Queued jobs outlive deploys: add fields
only with defaults, never rename :data:`CUSTOMER_JOB` without an alias. The machinery that moves a
parent is shared with account requests (:mod:`ledger.kinds`); this module declares
:data:`CUSTOMER`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from ledger.kinds import LedgerError, RequestKind, RequestNotFound, TrackedRequest
from ledger.models import TERMINAL_STATUSES, new_request_id

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


class CustomerNotFound(RequestNotFound):
    """No customer-level request with that id."""


class EventIdConflict(LedgerError):
    """The caller's event id was already used with a different body."""


class CustomerJob(BaseModel):
    """Payload of a :data:`CUSTOMER_JOB` job."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    parent_id: str


def new_customer_request_id() -> str:
    """``cr_`` + the same sortable 26 characters as a ``dr_`` id."""
    return new_request_id("cr_")


class CustomerRequest(TrackedRequest):
    """One request to disconnect every account of one customer, as the ledger stores it."""

    customer_id: str
    status: CustomerStatus
    cursor: str | None = None


CUSTOMER: RequestKind[CustomerRequest, CustomerStatus] = RequestKind(
    name="customer",
    model=CustomerRequest,
    statuses=CustomerStatus,
    transitions=CUSTOMER_TRANSITIONS,
    terminal=frozenset({CustomerStatus.LISTED, CustomerStatus.FAILED}),
    waiting=frozenset({CustomerStatus.QUEUED, CustomerStatus.RETRY_SCHEDULED}),
    running=CustomerStatus.LISTING,
    initial=CustomerStatus.QUEUED,
    key_family="cust",
    status_index="cust:status",
    event_prefix="customer",
    job_function=CUSTOMER_JOB,
    job_payload_field="parent_id",
    implied=("source", "reference", "reason"),
    record_fields=lambda parent: {"message": f"customer {parent.customer_id}"},
)

_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


def derived_state(status: CustomerStatus, child_statuses: list[str]) -> str:
    """``done`` once listed and every child is terminal; ``in_progress`` while children run;
    otherwise the listing status itself (``queued``, ``listing``, ``retry_scheduled``,
    ``failed``)."""
    if status != CustomerStatus.LISTED:
        return status.value
    return "done" if all(s in _TERMINAL for s in child_statuses) else "in_progress"
