"""Audit events: a fixed vocabulary, written to structlog, the request's history and a file.

Vocabulary (the ``event`` field):

- ``disconnect.status_changed``: a request moved from one status to another (exactly one per move).
- ``disconnect.merged``: a new submission for an account that already had an active request was
  folded into it; the caller got the existing id.
- ``service.paused`` / ``service.resumed``: the kill switch was set (by ``fcd pause`` or by the
  circuit breaker after a 401/403, logged at error level) or lifted; ``operator`` and ``message``
  say who and why.
- ``disconnect.confirmed``: Stripe's ``financial_connections.account.disconnected`` event (a
  webhook, or the events catch-up) for a disconnect this service made (it names our
  ``Idempotency-Key``, or names no request and was created after our first call); in the
  request's history, ``evidence`` = ``event``.
- ``disconnect.contradicted``: that event shows the account was disconnected *before* the first
  call of a request recorded ``disconnected`` (Stripe answers 200 to an already-disconnected
  account too): the request was in fact already disconnected. Terminal statuses never change, so
  this note is the correction; ``evidence`` = ``event``.
- ``account.externally_disconnected``: that event for a disconnect someone else made (e.g. the
  user at their bank); in the account's history. A waiting request for it is then cancelled, and
  a later request for the account ends ``already_disconnected`` without calling Stripe.
- ``customer.status_changed`` / ``customer.children_added``: a customer-level request (``cr_…``)
  moved, or one page of its accounts got child requests (``message`` names the customer and
  count); in the parent's history (see ``ledger.customers``).
- ``disconnect.reenqueued``: the reconciler gave a waiting request whose arq job was lost a fresh
  job, without a status change (``message`` says what was wrong; see ``ledger.reconcile``).
  Operator re-queues and cancels are ``disconnect.status_changed`` records with ``operator`` set.
- ``sweep.started`` / ``sweep.selected`` / ``sweep.refused`` / ``sweep.finished`` /
  ``sweep.failed``: a retention sweep run (``request_id`` is the ``sw_…`` run id, ``reference``
  the policy, ``message`` the counts or the blast-radius guard's reason); in the run's own history
  (see ``retention.runs``).

A request's history is stored compactly (no null fields, none of the request's own fields), and
:meth:`Ledger.history` restores every key. Every record carries the same keys (absent values are
``null``) so that machines can query the file:
request_id, account_id, from, to, attempt, source, reference, reason, job_id, worker,
stripe_request_id, http_status, stripe_error_code, message, evidence, duration_ms, operator, ts.

``evidence`` (issue 13) says how an outcome was established; it is set on the records that
decide one (a terminal status from a worker, a confirmation or contradiction from an event) and
null elsewhere, and in every record stored before the field existed (reads fill absent keys with
null, so older histories read back unchanged). Its values are :class:`Evidence`.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import structlog

STATUS_CHANGED = "disconnect.status_changed"
MERGED = "disconnect.merged"
CONFIRMED = "disconnect.confirmed"
CONTRADICTED = "disconnect.contradicted"
EXTERNALLY_DISCONNECTED = "account.externally_disconnected"


class Evidence(StrEnum):
    """How an outcome was established: the ``evidence`` field of the record that states it."""

    #: The sweep listing the request came from said ``disconnected``: no call was made.
    LISTING = "listing"
    #: An earlier request of ours for the account ended ``disconnected`` or
    #: ``already_disconnected`` (Stripe never reconnects an account): no call was made.
    LEDGER = "ledger"
    #: Stripe's answer to the disconnect call itself (a 200, a 404, a 400 whose code says why).
    ANSWER = "answer"
    #: A retrieve of the account (after a 5xx, a replayed error, an unrecognised 400, a key
    #: older than the idempotency window, or because ``FCD_PRECHECK_ACCOUNT`` forces one).
    RETRIEVE = "retrieve"
    #: Stripe's ``financial_connections.account.disconnected`` event (webhook or catch-up),
    #: as it arrived, or as applied earlier (``account.externally_disconnected``: no call).
    EVENT = "event"


RECORD_KEYS = (
    "event",
    "request_id",
    "account_id",
    "from",
    "to",
    "attempt",
    "source",
    "reference",
    "reason",
    "job_id",
    "worker",
    "stripe_request_id",
    "http_status",
    "stripe_error_code",
    "message",
    "evidence",
    "duration_ms",
    "operator",
    "ts",
)

_SECRET_PATTERNS = re.compile(
    r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9]+|Bearer\s+\S+",
    re.IGNORECASE,
)
MAX_MESSAGE_CHARS = 500


def sanitize_message(message: str | None) -> str | None:
    """Remove anything that looks like a Stripe key, webhook secret or bearer token; cap length."""
    if message is None:
        return None
    cleaned = _SECRET_PATTERNS.sub("[redacted]", message)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_MESSAGE_CHARS:
        cleaned = cleaned[: MAX_MESSAGE_CHARS - 1] + "…"
    return cleaned


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def process_name() -> str:
    """``host:pid`` of this process, as audit records name the worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TransitionDetails:
    """What the caller knows about why a status changed; all optional."""

    message: str | None = None
    stripe_request_id: str | None = None
    http_status: int | None = None
    stripe_error_code: str | None = None
    duration_ms: float | None = None
    operator: str | None = None
    evidence: Evidence | None = None


def build_record(event: str, **fields: Any) -> dict[str, Any]:
    """A record with every key of :data:`RECORD_KEYS` present, in that order."""
    unknown = set(fields) - set(RECORD_KEYS)
    if unknown:
        raise ValueError(f"unknown audit fields: {sorted(unknown)}")
    record = {key: fields.get(key) for key in RECORD_KEYS}
    record["event"] = event
    record["message"] = sanitize_message(record["message"])
    if record["ts"] is None:
        record["ts"] = utc_now_iso()
    return record


class AuditTrail:
    """Writes audit records to structlog and, if configured, a JSON-lines file.

    The Redis history is written by the ledger's scripts in the same atomic step as the status
    change; this class only publishes the record once that step has succeeded.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._log = structlog.get_logger("fcd.audit")
        self._file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8", buffering=1)

    def emit(self, record: dict[str, Any], level: str = "info") -> None:
        fields = {k: v for k, v in record.items() if k != "event"}
        getattr(self._log, level)(record["event"], **fields)
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
