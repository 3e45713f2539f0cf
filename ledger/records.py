"""How a request's audit records and its hash are laid out in Redis, and read back.

Contracts:

- A history record is stored compactly: no null fields, and none of the fields it shares with its
  request (the kind's ``implied`` fields, and ``request_id``, which the key says).
  :func:`expand_record` and the request's own fields restore the exact record the audit trail
  published.
- An account request has no history list until its second record. Its creation record is kept as
  three hash fields instead (:data:`CREATION_FIELDS`: the job id it was created with,
  ``created_by`` and ``created_ts``); every script that appends to the list first rebuilds that
  record into it and deletes ``created_by``/``created_ts`` (``ledger/lua/prelude/
  materialise.lua``), and :func:`creation_record` rebuilds the same record for a reader while the
  list does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from archive import ArchivedRequest
from ledger.audit import RECORD_KEYS, STATUS_CHANGED, TransitionDetails, build_record
from ledger.kinds import RequestKind, TrackedRequest

#: Hash fields that stand for the creation record while the request has no history list.
CREATION_FIELDS = ("job_id", "created_by", "created_ts")


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_hash(raw: dict[Any, Any]) -> dict[str, str]:
    """A Redis hash as ``str -> str``."""
    return {text(k): text(v) for k, v in raw.items()}


def request_record(
    kind: RequestKind[Any, Any],
    actor: str,
    event: str,
    request: TrackedRequest,
    from_status: Any,
    to: Any,
    job_id: str | None,
    *,
    details: TransitionDetails | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """The full audit record of ``event`` for ``request``, written by ``actor`` (host:pid)."""
    d = details or TransitionDetails()
    fields: dict[str, Any] = {
        "request_id": request.request_id,
        "source": request.source.value,
        "reference": request.reference,
        "reason": request.reason,
        **kind.record_fields(request),
    }
    given = {
        "stripe_request_id": d.stripe_request_id,
        "http_status": d.http_status,
        "stripe_error_code": d.stripe_error_code,
        "message": d.message,
        "duration_ms": None if d.duration_ms is None else round(d.duration_ms, 1),
        "operator": d.operator,
        "evidence": d.evidence.value if d.evidence is not None else None,
    }
    fields.update({key: value for key, value in given.items() if value is not None})
    return build_record(
        event,
        to=to.value if to else None,
        attempt=request.attempts if attempt is None else attempt,
        job_id=job_id,
        worker=actor,
        **fields,
        **{"from": from_status.value if from_status else None},
    )


def own_fields(kind: RequestKind[Any, Any], request: TrackedRequest) -> dict[str, Any]:
    """The record fields a request's own history records share with it."""
    own: dict[str, Any] = {"request_id": request.request_id}
    for name in kind.implied:
        value = getattr(request, name)
        own[name] = value.value if hasattr(value, "value") else value
    return own


def compact(
    kind: RequestKind[Any, Any], record: dict[str, Any], request: TrackedRequest
) -> dict[str, Any]:
    """A record of ``request``'s own history as stored: without null fields and without the
    fields it shares with the request (:meth:`StateStore.history` puts both back)."""
    own = own_fields(kind, request)
    return {k: v for k, v in record.items() if v is not None and (k not in own or own[k] != v)}


def dump(record: dict[str, Any]) -> str:
    """A history record as stored: compact JSON without its null fields (it is kept forever, one
    per status change; :func:`expand_record` restores every key of the audit contract on read)."""
    return json.dumps({k: v for k, v in record.items() if v is not None}, separators=(",", ":"))


def expand_record(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored history record with every key of :data:`RECORD_KEYS` back, absent ones null."""
    return {**dict.fromkeys(RECORD_KEYS), **stored}


def creation_record(job_id: str | None, created_by: str, created_ts: str) -> dict[str, Any]:
    """The stored form of a request's creation record, rebuilt from its hash.

    Must equal what ``ledger/lua/prelude/materialise.lua`` writes into the list.
    """
    record: dict[str, Any] = {"event": STATUS_CHANGED, "to": "queued", "attempt": 0}
    if job_id is not None:
        record["job_id"] = job_id
    return {**record, "worker": created_by, "ts": created_ts}


def full_history(
    kind: RequestKind[Any, Any], request_id: str, stored: Sequence[Any], own: Sequence[Any]
) -> list[dict[str, Any]]:
    """A request's audit records, every key present, from its stored history list (JSON texts,
    or records already decoded) and HMGET of ``[*kind.implied, *CREATION_FIELDS]`` on its hash
    (see :meth:`StateStore.history`)."""
    fields = implied_fields(kind.implied, request_id, own[: len(kind.implied)])
    records = [item if isinstance(item, dict) else json.loads(item) for item in stored]
    job_id, created_by, created_ts = own[len(kind.implied) :]
    if created_ts is not None:  # not materialised yet (or listed by an older version)
        job = None if job_id is None else text(job_id)
        records = [creation_record(job, text(created_by or b""), text(created_ts)), *records]
    return [expand_record({**fields, **record}) for record in records]


def archived_history(
    kind: RequestKind[Any, Any], archived: ArchivedRequest
) -> list[dict[str, Any]]:
    """An archived request's audit records, every key present (as :func:`full_history`)."""
    own = [archived.fields.get(name) for name in (*kind.implied, *CREATION_FIELDS)]
    return full_history(kind, archived.request_id, archived.records, own)


def implied_fields(names: Sequence[str], request_id: str, values: Sequence[Any]) -> dict[str, Any]:
    """The fields every record of ``request_id`` shares, from HMGET of ``names``."""
    implied: dict[str, Any] = {
        key: text(value) if value is not None else None
        for key, value in zip(names, values, strict=True)
    }
    implied["request_id"] = request_id
    for key in ("reference", "reason"):
        if key in implied:
            implied[key] = implied[key] or ""
    return implied


def split_updates(updates: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Field updates as (fields to set, as strings; fields to delete, given as ``None``)."""
    to_set = {key: str(value) for key, value in updates.items() if value is not None}
    return to_set, [key for key, value in updates.items() if value is None]


def hash_fields(request: TrackedRequest, *, exclude: set[str] | None = None) -> dict[str, str]:
    """The request's hash at creation, without what reads fill back in.

    Defaults (attempts 0, empty reference, ...), ``request_id`` (the key says it) and
    ``updated_at`` (equal to ``created_at`` until the first change) are left out: every pending
    request is that much smaller. ``job_id`` is written by the creating script.
    """
    data: dict[str, Any] = request.model_dump(
        mode="json",
        exclude_defaults=True,
        exclude={"job_id", "request_id", "updated_at", *(exclude or set())},
    )
    data["status"] = request.status.value
    return {key: str(value) for key, value in data.items()}
