"""Customer-level requests: one parent per "disconnect every account of customer cus_…".

A worker job lists the customer's accounts through Stripe and submits one ordinary account request
per account (``parent_id`` links it back). The parent's own status covers the listing only::

    queued -> listing -> listed            (every account has a child request)
                      -> retry_scheduled -> listing ...   (a transient list error, backoff)
                      -> failed            (a permanent list error, or the budget ran out)
                      -> queued            (the job was cancelled mid-listing; attempt not spent)

Whether the whole thing is finished is derived when read (:meth:`CustomerLedger.summary`): a
listed parent is ``done`` once every child request is terminal, and the summary counts the
children per status. Deriving it keeps the disconnect path untouched: no child has to update its
parent. The parent is recorded and its JSON job enqueued in one Lua script, together with the
caller's event id (see :mod:`ledger.customer_scripts`); each status change is one script that
appends a ``customer.status_changed`` audit record; each page of children is one MULTI/EXEC.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from ledger import customer_scripts
from ledger.audit import AuditTrail, TransitionDetails, build_record, process_name
from ledger.customer_models import (
    CUSTOMER_CHILDREN_ADDED,
    CUSTOMER_STATUS_CHANGED,
    CUSTOMER_TRANSITIONS,
    CustomerNotFound,
    CustomerRequest,
    CustomerStatus,
    EventIdConflict,
    customer_job_record,
    derived_state,
)
from ledger.jobs import ARQ_JOB_KEY_PREFIX, job_id_for
from ledger.models import StaleTransition
from ledger.store import Ledger


class CustomerLedger:
    """Reads and atomically changes customer-level requests; children live in :class:`Ledger`."""

    def __init__(
        self, ledger: Ledger, audit: AuditTrail, job_expires_seconds: int = 86_400
    ) -> None:
        self.ledger = ledger
        self.redis: Redis = ledger.redis
        self.prefix = ledger.prefix
        self._audit = audit
        self._actor = process_name()
        self._expire_ms = job_expires_seconds * 1000
        self._create = self.redis.register_script(customer_scripts.CREATE_CUSTOMER)
        self._transition = self.redis.register_script(customer_scripts.CUSTOMER_TRANSITION)

    def key(self, parent_id: str) -> str:
        return f"{self.prefix}cust:{parent_id}"

    def history_key(self, parent_id: str) -> str:
        return f"{self.prefix}cust:{parent_id}:hist"

    def children_key(self, parent_id: str) -> str:
        return f"{self.prefix}cust:{parent_id}:children"

    def customer_key(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}:reqs"

    async def create(
        self,
        parent: CustomerRequest,
        *,
        event_key: str,
        digest: str,
        result: dict[str, Any],
    ) -> tuple[bool, dict[str, Any]]:
        """Record ``parent`` and enqueue its job, unless the event id was answered already.

        Returns ``(created, result)``: the result stored for the event id (``result`` if
        created). Raises :class:`EventIdConflict` (nothing written) if the event id holds another
        body.
        """
        job_id = job_id_for(parent.request_id, 1)
        record = self._record(parent, None, CustomerStatus.QUEUED, job_id, TransitionDetails())
        now_ms = int(parent.created_at * 1000)
        keys = [
            event_key,
            self.key(parent.request_id),
            self.history_key(parent.request_id),
            self.customer_key(parent.customer_id),
            ARQ_JOB_KEY_PREFIX + job_id,
            self.ledger.queue_name,
        ]
        args: list[Any] = [parent.request_id, parent.created_at, digest, _dump(result)]
        args += [_dump(record), job_id, customer_job_record(parent.request_id, now_ms)]
        args += [now_ms, self._expire_ms, *_fields(parent)]
        raw = await self._create(keys=keys, args=args)
        if int(raw[0]) == -1:
            raise EventIdConflict(event_key)
        if int(raw[0]) == 1:
            self._audit.emit(record)
        stored: dict[str, Any] = json.loads(raw[1])
        return int(raw[0]) == 1, stored

    async def transition(
        self,
        parent: CustomerRequest,
        to: CustomerStatus,
        details: TransitionDetails | None = None,
        *,
        attempts_delta: int = 0,
        enqueue_in: float | None = None,
        updates: dict[str, Any] | None = None,
    ) -> CustomerRequest:
        """Move ``parent`` to ``to`` if it is still as the caller saw it; audit it once."""
        if to not in CUSTOMER_TRANSITIONS[parent.status]:
            raise ValueError(f"{parent.request_id}: illegal transition {parent.status} -> {to}")
        now = time.time()
        new_job = enqueue_in is not None
        attempt = parent.attempts + attempts_delta
        job = "__JOB__" if new_job else parent.job_id
        record = self._record(parent, parent.status, to, job, details or TransitionDetails())
        record["attempt"] = attempt
        args: list[Any] = [parent.request_id, parent.status.value, parent.job_id or "", to.value]
        args += [now, _dump(record), attempts_delta, "1" if new_job else "0"]
        args += [customer_job_record(parent.request_id) if new_job else b""]
        args += [int((now + (enqueue_in or 0.0)) * 1000), self._expire_ms, ARQ_JOB_KEY_PREFIX]
        args += _flatten(updates or {})
        keys = [self.key(parent.request_id), self.history_key(parent.request_id)]
        raw = await self._transition(keys=[*keys, self.ledger.queue_name], args=args)
        if int(raw[0]) == -1:
            raise CustomerNotFound(parent.request_id)
        if int(raw[0]) == 0:
            raise StaleTransition(parent.request_id, parent.status.value, _text(raw[1]))
        job_id = _text(raw[1])
        self._audit.emit({**record, "job_id": job_id})
        changed = {**(updates or {}), "status": to, "updated_at": now, "job_id": job_id}
        return parent.model_copy(update={**changed, "attempts": attempt})

    async def add_children(
        self, parent: CustomerRequest, children: dict[str, str], cursor: str | None
    ) -> CustomerRequest:
        """Record one page of children (account id -> request id) and the list cursor at once."""
        message = f"customer {parent.customer_id}: {len(children)} account request(s) submitted"
        record = self._record(parent, None, None, parent.job_id, TransitionDetails(message=message))
        record["event"] = CUSTOMER_CHILDREN_ADDED
        record["from"] = record["to"] = parent.status.value
        async with self.redis.pipeline(transaction=True) as pipe:
            if children:
                pipe.hset(self.children_key(parent.request_id), mapping=children)
            pipe.hset(self.key(parent.request_id), mapping={"cursor": cursor or ""})
            pipe.rpush(self.history_key(parent.request_id), _dump(record))
            await pipe.execute()
        self._audit.emit(record)
        return parent.model_copy(update={"cursor": cursor})

    async def get(self, parent_id: str) -> CustomerRequest:
        raw = await self.redis.hgetall(self.key(parent_id))  # type: ignore[misc]
        if not raw:
            raise CustomerNotFound(parent_id)
        return CustomerRequest.from_redis({_text(k): _text(v) for k, v in raw.items()})

    async def history(self, parent_id: str) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.history_key(parent_id), 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    async def children(self, parent_id: str) -> dict[str, str]:
        """Account id -> child request id."""
        raw = await self.redis.hgetall(self.children_key(parent_id))  # type: ignore[misc]
        return {_text(k): _text(v) for k, v in raw.items()}

    async def summary(self, parent: CustomerRequest) -> dict[str, Any]:
        """The parent as callers see it: overall state, counts per child status, child ids."""
        children = await self.children(parent.request_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for request_id in children.values():
                pipe.hget(self.ledger.request_key(request_id), "status")
            statuses = [_text(s) for s in await pipe.execute()]
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        return {
            "state": derived_state(parent.status, statuses),
            "children": {"total": len(children), "by_status": counts},
            "child_request_ids": sorted(children.values()),
        }

    def _record(
        self,
        parent: CustomerRequest,
        from_status: CustomerStatus | None,
        to: CustomerStatus | None,
        job_id: str | None,
        details: TransitionDetails,
    ) -> dict[str, Any]:
        message = details.message or f"customer {parent.customer_id}"
        return build_record(
            CUSTOMER_STATUS_CHANGED,
            request_id=parent.request_id,
            to=to.value if to else None,
            attempt=parent.attempts,
            source=parent.source.value,
            reference=parent.reference,
            reason=parent.reason,
            job_id=job_id,
            worker=self._actor,
            stripe_request_id=details.stripe_request_id,
            http_status=details.http_status,
            stripe_error_code=details.stripe_error_code,
            message=message,
            duration_ms=None if details.duration_ms is None else round(details.duration_ms, 1),
            **{"from": from_status.value if from_status else None},
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _flatten(updates: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for key, value in updates.items():
        flat += [key, "" if value is None else str(value)]
    return flat


def _fields(parent: CustomerRequest) -> list[str]:
    return _flatten(parent.model_dump(mode="json", exclude_none=True, exclude={"job_id"}))
