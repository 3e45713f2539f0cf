"""How a request's audit records and its hash are laid out in Redis, and read back.

Contracts:

- A history record is stored compactly: no null fields, and none of the fields it shares with its
  request (:data:`IMPLIED`). :func:`expand_record` and the request's own fields restore the exact
  record the audit trail published.
- A request has no history list until its second record. Its creation record is kept as three
  hash fields instead (:data:`CREATION_FIELDS`: the job id it was created with, ``created_by``
  and ``created_ts``); every script that appends to the list first rebuilds that record into it
  and deletes ``created_by``/``created_ts`` (``ledger.scripts.MATERIALISE``), and
  :func:`creation_record` rebuilds the same record for a reader while the list does not exist.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.audit import RECORD_KEYS, STATUS_CHANGED, TransitionDetails, build_record
from ledger.models import DisconnectRequest, RequestStatus

#: Fields a request's own history records share with the request; stored only where they differ.
IMPLIED = ("account_id", "source", "reference", "reason")
#: Hash fields that stand for the creation record while the request has no history list.
CREATION_FIELDS = ("job_id", "created_by", "created_ts")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def request_record(
    actor: str,
    event: str,
    request: DisconnectRequest,
    from_status: RequestStatus | None,
    to: RequestStatus | None,
    job_id: str | None,
    *,
    details: TransitionDetails | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """The full audit record of ``event`` for ``request``, written by ``actor`` (host:pid)."""
    d = details or TransitionDetails()
    return build_record(
        event,
        request_id=request.request_id,
        account_id=request.account_id,
        to=to.value if to else None,
        attempt=request.attempts if attempt is None else attempt,
        source=request.source.value,
        reference=request.reference,
        reason=request.reason,
        job_id=job_id,
        worker=actor,
        stripe_request_id=d.stripe_request_id,
        http_status=d.http_status,
        stripe_error_code=d.stripe_error_code,
        message=d.message,
        duration_ms=None if d.duration_ms is None else round(d.duration_ms, 1),
        operator=d.operator,
        **{"from": from_status.value if from_status else None},
    )


def stored(record: dict[str, Any], request: DisconnectRequest) -> str:
    """A record of ``request``'s own history as stored: without null fields and without the
    fields it shares with the request (:meth:`Ledger.history` puts both back)."""
    own = {
        "request_id": request.request_id,
        "account_id": request.account_id,
        "source": request.source.value,
        "reference": request.reference,
        "reason": request.reason,
    }
    return dump({k: v for k, v in record.items() if k not in own or own[k] != v})


def dump(record: dict[str, Any]) -> str:
    """A history record as stored: compact JSON without its null fields (it is kept forever, one
    per status change; :func:`expand_record` restores every key of the audit contract on read)."""
    return json.dumps({k: v for k, v in record.items() if v is not None}, separators=(",", ":"))


def expand_record(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored history record with every key of :data:`RECORD_KEYS` back, absent ones null."""
    return {**dict.fromkeys(RECORD_KEYS), **stored}


def creation_record(job_id: str | None, created_by: str, created_ts: str) -> dict[str, Any]:
    """The stored form of a request's creation record, rebuilt from its hash.

    Must equal what ``ledger.scripts.MATERIALISE`` writes into the list (same keys and values).
    """
    record = {"event": STATUS_CHANGED, "to": RequestStatus.QUEUED.value, "attempt": 0}
    return {**record, "job_id": job_id, "worker": created_by, "ts": created_ts}


def implied_fields(request_id: str, values: list[Any]) -> dict[str, Any]:
    """The fields every record of ``request_id`` shares, from HMGET of :data:`IMPLIED`."""
    implied: dict[str, Any] = {
        key: text(value) if value is not None else None
        for key, value in zip(IMPLIED, values, strict=True)
    }
    implied["request_id"] = request_id
    for key in ("reference", "reason"):
        implied[key] = implied[key] or ""
    return implied


def flatten(updates: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for key, value in updates.items():
        flat += [key, "" if value is None else str(value)]
    return flat


def hash_fields(request: DisconnectRequest) -> dict[str, Any]:
    """The request's hash at creation, without what reads fill back in.

    Defaults (attempts 0, empty reference, ...), ``request_id`` (the key says it) and
    ``updated_at`` (equal to ``created_at`` until the first change) are left out: every pending
    request is that much smaller. ``job_id`` is written by the CREATE script.
    """
    data: dict[str, Any] = request.model_dump(
        mode="json", exclude_defaults=True, exclude={"job_id", "request_id", "updated_at"}
    )
    data["priority"] = request.priority.value  # stored explicitly: promotion changes it
    return data
