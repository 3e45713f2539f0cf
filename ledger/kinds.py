"""What a kind of request declares, so that one state machine serves every kind.

A kind of request (an account disconnect, :data:`ledger.models.ACCOUNT`; a customer-level
listing, :data:`ledger.customer_models.CUSTOMER`) is data: its statuses, its table of legal
transitions, which statuses are terminal, which wait for a job and which one a worker holds, its
Redis key family, its audit vocabulary and its arq job. Everything that moves a request (the one
transition script, the store :class:`ledger.machine.StateStore`, the worker's claim and give-back
in :mod:`worker.claims`, the reconciler in :mod:`ledger.reconcile`) works from the declaration,
so a new kind is a declaration plus its own Stripe logic, never a copy of the mechanism.

The errors every kind raises are here too::

    LedgerError
    ├── IllegalTransition   the kind's table does not allow the move
    ├── StaleTransition     the request is no longer as the caller saw it (status, job or claim)
    └── RequestNotFound     no such request
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

from ledger.jobs import job_record, serialize


class LedgerError(Exception):
    """Base of the ledger's errors."""


class IllegalTransition(LedgerError):
    """A status change that the kind's transition table does not allow."""

    def __init__(self, request_id: str, from_status: StrEnum | None, to: StrEnum):
        self.request_id = request_id
        self.from_status = from_status
        self.to = to
        super().__init__(f"{request_id}: illegal transition {from_status} -> {to}")


class StaleTransition(LedgerError):
    """The request is no longer in the status (or held by the job or claim) the caller expected.

    Another worker, the reconciler or an operator moved it first; the caller must re-read, never
    overwrite.
    """

    def __init__(self, request_id: str, expected: str, actual: str | None):
        self.request_id = request_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"{request_id}: expected {expected}, found {actual}")


class RequestNotFound(LedgerError):
    """No request with that id (or none for that account)."""


class RequestSource(StrEnum):
    """Who asked for the disconnect; ``reference`` on the request says which one exactly."""

    DELETION_EVENT = "deletion_event"  # reference: the publisher's event id
    RETENTION_POLICY = "retention_policy"  # reference: the policy name
    OPERATOR = "operator"  # reference: the operator's name


class TrackedRequest(BaseModel):
    """The fields every kind of request has, as the ledger stores them (one Redis hash).

    Values in the hash are strings; an absent field (or, written by older versions, an empty
    string) means the default. ``claim`` is the token of the worker's current hold on the
    request: every move into the kind's running status writes a fresh one, and every move out
    of it compares it, so an attempt that was handed back and claimed again (same job id) can
    never be moved by someone holding the older snapshot.
    """

    model_config = ConfigDict(frozen=True)

    request_id: str
    status: StrEnum
    source: RequestSource
    reference: str = ""
    reason: str = ""
    stripe_account: str | None = None
    attempts: int = 0
    created_at: float
    updated_at: float
    job_id: str | None = None
    claim: str | None = None
    last_error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _updated_at_defaults_to_created_at(cls, data: Any) -> Any:
        """The ledger leaves ``updated_at`` out of the hash until the first change."""
        if isinstance(data, dict) and "updated_at" not in data and "created_at" in data:
            data = {**data, "updated_at": data["created_at"]}
        return data

    @classmethod
    def from_redis(cls, raw: Mapping[str, str], request_id: str | None = None) -> Self:
        """Build from the Redis hash; ``request_id`` is the id in the hash's key."""
        data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
        if request_id is not None:
            data.setdefault("request_id", request_id)
        return cls.model_validate(data)


RequestT = TypeVar("RequestT", bound=TrackedRequest)
StatusT = TypeVar("StatusT", bound=StrEnum)


@dataclass(frozen=True)
class RequestKind(Generic[RequestT, StatusT]):
    """One kind of request, declared: see the module docstring."""

    name: str  # "account", "customer": in logs, reports and metrics
    model: type[RequestT]
    statuses: type[StatusT]
    #: The legal transitions; ``None`` is the state before a request exists.
    transitions: Mapping[StatusT | None, frozenset[StatusT]]
    terminal: frozenset[StatusT]
    #: Statuses in which an arq job should exist for the request (the reconciler re-enqueues it
    #: when that job is lost).
    waiting: frozenset[StatusT]
    #: The status a worker holds (claim token; the reconciler's lease).
    running: StatusT
    #: The status a new request starts in, and a handed-back one returns to.
    initial: StatusT
    #: ``P <family>:<id>`` is the request's hash, ``P <family>:<id>:hist`` its history.
    key_family: str
    #: ``P <index>:<status>`` is the sorted set of the kind's request ids in that status.
    status_index: str
    #: Audit events ``<prefix>.status_changed`` and ``<prefix>.reenqueued``.
    event_prefix: str
    #: The arq function that runs a job, and the payload field naming the request.
    job_function: str
    job_payload_field: str
    #: Record fields kept once on the request instead of in each stored history record.
    implied: tuple[str, ...]
    #: One active request per account (``P acct:<fca>:active``) and a per-account index.
    one_active_per_account: bool = False
    #: Fields every audit record of a request carries besides the common ones.
    record_fields: Callable[[RequestT], dict[str, Any]] = lambda _request: {}

    @property
    def status_changed(self) -> str:
        return f"{self.event_prefix}.status_changed"

    @property
    def reenqueued(self) -> str:
        return f"{self.event_prefix}.reenqueued"

    @property
    def active(self) -> frozenset[StatusT]:
        return frozenset(self.statuses) - self.terminal

    def check(self, request_id: str, from_status: StatusT | None, to: StatusT) -> None:
        """Raise :class:`IllegalTransition` unless ``from_status -> to`` is in the table."""
        if to not in self.transitions[from_status]:
            raise IllegalTransition(request_id, from_status, to)

    def follows_table(self, history: Sequence[Mapping[str, Any]]) -> bool:
        """Whether a request's history is legal for this kind: it starts with the creation
        record (``None -> initial``) and every later status change continues from the one before
        along the table. Used by tests, the chaos harness and anyone auditing a history."""
        changes = [r for r in history if r.get("event") == self.status_changed]
        if not changes or changes[0].get("from") is not None:
            return False
        if changes[0].get("to") != self.initial.value:
            return False
        for previous, current in itertools.pairwise(changes):
            if current.get("from") != previous.get("to"):
                return False
            try:
                before, after = self.statuses(current["from"]), self.statuses(current["to"])
            except (KeyError, ValueError):
                return False
            if after not in self.transitions[before]:
                return False
        return True

    def job_record(self, request_id: str, enqueue_time_ms: int | None = None) -> dict[str, Any]:
        """arq's record of one job for ``request_id``, as an object (see :mod:`ledger.jobs`)."""
        payload = {"v": 1, self.job_payload_field: request_id}
        return job_record(self.job_function, payload, enqueue_time_ms)

    def job_bytes(self, request_id: str, enqueue_time_ms: int | None = None) -> bytes:
        """The same record as the bytes arq stores under ``arq:job:<id>``."""
        return serialize(self.job_record(request_id, enqueue_time_ms))
