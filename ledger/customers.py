"""Customer-level requests: one parent per "disconnect every account of customer cus_…".

A worker job lists the customer's accounts through Stripe and submits one ordinary account request
per account (``parent_id`` links it back). The parent's own status covers the listing only::

    queued -> listing -> listed            (every account has a child request)
                      -> retry_scheduled -> listing ...   (a transient list error, backoff)
                      -> failed            (a permanent list error, or the budget ran out)
                      -> queued            (handed back: cancelled, paused, or lost mid-listing)

It moves through the same state machine as account requests (:mod:`ledger.machine`, kind
:data:`ledger.customer_models.CUSTOMER`): compare-and-set with claim tokens, one audited script
per change, a status index the reconciler scans. Whether the whole thing is finished is derived
when read (:meth:`CustomerLedger.summary`): a listed parent is ``done`` once every child request
is terminal. Each child is recorded on its parent by the same script that submits it, so a
listing cut off at any point never loses a child it made, and a resumed listing skips it.

Key layout (``P`` is the key prefix), beside the account ledger's (see :mod:`ledger.store`):

- ``P cust:<cr_id>``             hash: the parent request (see ``CustomerRequest``), plus ``job_seq``
- ``P cust:<cr_id>:hist``        list: JSON audit records, oldest first
- ``P cust:<cr_id>:children``    hash: account id -> child request id (``dr_…``)
- ``P cust:status:<status>``     sorted set: parent ids in that status, by time of the last change
- ``P customer:<cus_id>:reqs``   sorted set: every parent id for the customer, by creation time
- ``P intake:<service>:<event>`` hash: the caller's event id (see :mod:`ledger.event_ids`)
"""

from __future__ import annotations

import json
from typing import Any

from archive import ArchivedRequest
from ledger import lua
from ledger.audit import AuditTrail, TransitionDetails
from ledger.customer_models import (
    CUSTOMER,
    CUSTOMER_CHILDREN_ADDED,
    CustomerNotFound,
    CustomerRequest,
    CustomerStatus,
    EventIdConflict,
    derived_state,
)
from ledger.jobs import ARQ_JOB_KEY_PREFIX, job_id_for
from ledger.machine import StateStore
from ledger.records import dump, hash_fields, text
from ledger.store import Ledger


class CustomerLedger(StateStore[CustomerRequest, CustomerStatus]):
    """Reads and atomically changes customer-level requests; children live in :class:`Ledger`."""

    def __init__(
        self, ledger: Ledger, audit: AuditTrail, job_expires_seconds: int = 86_400
    ) -> None:
        super().__init__(
            ledger.redis,
            CUSTOMER,
            audit=audit,
            prefix=ledger.prefix,
            queue_name=ledger.queue_name,
            job_expires_seconds=job_expires_seconds,
            actor=ledger.actor,
            archive=ledger.archive,
        )
        self.ledger = ledger
        self._create = lua.register(ledger.redis, "ledger", "create_customer")

    def _not_found(self, request_id: str) -> Exception:
        return CustomerNotFound(request_id)

    def key(self, parent_id: str) -> str:
        return self.request_key(parent_id)

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
        record = self.record(CUSTOMER.status_changed, parent, None, CustomerStatus.QUEUED, job_id)
        now_ms = int(parent.created_at * 1000)
        keys = [
            event_key,
            self.key(parent.request_id),
            self.history_key(parent.request_id),
            self.customer_key(parent.customer_id),
            ARQ_JOB_KEY_PREFIX + job_id,
            self.queue_name,
            self.status_key(CustomerStatus.QUEUED),
        ]
        spec = {
            "id": parent.request_id,
            "now": repr(parent.created_at),
            "digest": digest,
            "result": json.dumps(result, separators=(",", ":")),
            "record": self.stored(record, parent),
            "job_id": job_id,
            "job": CUSTOMER.job_record(parent.request_id, now_ms),
            "score": now_ms,
            "expire_ms": self.job_expires_ms,
            "fields": hash_fields(parent),
        }

        def publish(raw: Any) -> Any:
            if int(raw[0]) == 1:
                self.audit.emit(record)
            return raw

        raw = await self.published(self._create(keys=keys, args=[lua.params(**spec)]), publish)
        if int(raw[0]) == -1:
            raise EventIdConflict(event_key)
        stored: dict[str, Any] = json.loads(raw[1])
        return int(raw[0]) == 1, stored

    async def add_children(
        self, parent: CustomerRequest, children: dict[str, str], cursor: str | None
    ) -> CustomerRequest:
        """Record the list cursor after a page, with one ``customer.children_added`` record.

        The page's children (account id -> request id) were recorded on the parent by the
        scripts that submitted them; ``children`` only gives the count for the record.
        """
        message = f"customer {parent.customer_id}: {len(children)} account request(s) submitted"
        record = self.record(
            CUSTOMER_CHILDREN_ADDED, parent, None, None, parent.job_id,
            TransitionDetails(message=message),
        )  # fmt: skip
        record["from"] = record["to"] = parent.status.value
        async with self.redis.pipeline(transaction=True) as pipe:
            if cursor:
                pipe.hset(self.key(parent.request_id), "cursor", cursor)
            pipe.rpush(self.history_key(parent.request_id), dump(self.stored(record, parent)))
            await pipe.execute()
        self.audit.emit(record)
        return parent.model_copy(update={"cursor": cursor})

    async def children(self, parent_id: str) -> dict[str, str]:
        """Account id -> child request id."""
        raw = await self.redis.hgetall(self.children_key(parent_id))  # type: ignore[misc]
        return {text(k): text(v) for k, v in raw.items()}

    async def summary(
        self, parent: CustomerRequest, archived: ArchivedRequest | None = None
    ) -> dict[str, Any]:
        """The parent as callers see it: overall state, counts per child status, child ids.

        ``archived``: the parent as the archive holds it (its children moved with it)."""
        if archived is not None:
            children = archived.children
            found = await self.archive.get_many(list(children.values())) if self.archive else {}
            statuses = [found[c].status if c in found else "" for c in children.values()]
        else:
            children = await self.children(parent.request_id)
            async with self.redis.pipeline(transaction=False) as pipe:
                for request_id in children.values():
                    pipe.hget(self.ledger.request_key(request_id), "status")
                statuses = [text(s) for s in await pipe.execute()]
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        return {
            "state": derived_state(parent.status, statuses),
            "children": {"total": len(children), "by_status": counts},
            "child_request_ids": sorted(children.values()),
        }
