"""The intake core: other services' disconnect requests, idempotent per (service, event id).

Free of HTTP: :mod:`producer.http` parses and renders, this module decides and writes. A request
names exactly one of an account (``fca_…``: one ledger request) or a customer (``cus_…``: a parent
whose worker job lists the customer's accounts, see :mod:`ledger.customers`). The caller's service
name and event id become the request's reference, ``<service>:<event_id>``, with source
``deletion_event``. Replaying an event id with the same body answers the stored result; with a
different body raises :class:`EventIdConflict` and writes nothing (see :mod:`ledger.event_ids`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from control.metrics import CounterBuffer
from ledger.customer_models import CustomerRequest, CustomerStatus, EventIdConflict
from ledger.customer_models import new_customer_request_id as new_parent_id
from ledger.customers import CustomerLedger
from ledger.durability import DurableWrites, NotDurable, RedisChecks
from ledger.event_ids import ClaimState, EventRegistry, body_hash
from ledger.models import (
    ACCOUNT_ID_RE,
    CONNECTED_ACCOUNT_RE,
    CUSTOMER_ID_RE,
    RequestNotFound,
    RequestSource,
    RequestStatus,
)
from ledger.store import Ledger

MAX_BATCH_ITEMS = 1000
STATUS_PATH = "/v1/disconnect-requests/"


class InvalidInput(ValueError):
    """A body the intake refuses; ``code`` and ``field`` go to the caller as they are."""

    def __init__(self, message: str, field: str | None, code: str = "invalid_field") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class IntakeBody(BaseModel):
    """One disconnect request as a calling service sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str | None = Field(default=None, pattern=ACCOUNT_ID_RE.pattern)
    customer_id: str | None = Field(default=None, pattern=CUSTOMER_ID_RE.pattern)
    event_id: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    reason: str = Field(min_length=1, max_length=500)
    stripe_account: str | None = Field(default=None, pattern=CONNECTED_ACCOUNT_RE.pattern)

    @model_validator(mode="after")
    def _exactly_one_target(self) -> IntakeBody:
        if (self.account_id is None) == (self.customer_id is None):
            raise ValueError("give exactly one of account_id and customer_id")
        return self

    def normalised(self) -> dict[str, Any]:
        """What identifies the request's meaning (the event id is the key, not the body)."""
        return self.model_dump(exclude={"event_id"}, exclude_none=True)


def parse_body(raw: Any) -> IntakeBody:
    """Validate one decoded JSON body; raise :class:`InvalidInput` naming the first bad field."""
    if not isinstance(raw, dict):
        raise InvalidInput("the body must be a JSON object", None, "invalid_body")
    try:
        return IntakeBody.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = [str(part) for part in error["loc"]]
        field = location[0] if location else "account_id"
        code = "missing_field" if error["type"] == "missing" else "invalid_field"
        if error["type"] == "extra_forbidden":
            code = "unknown_field"
        message = f"{field}: {error['msg']}" if location else str(error["msg"])
        raise InvalidInput(message, field, code) from None


@dataclass(frozen=True)
class IntakeResult:
    """What to answer: the stored result for the event id, and whether it was a replay."""

    body: dict[str, Any]
    replayed: bool


class IntakeService:
    """Accepts requests into the ledger on behalf of authenticated calling services."""

    def __init__(
        self,
        ledger: Ledger,
        customers: CustomerLedger,
        events: EventRegistry,
        counters: CounterBuffer,
        checks: RedisChecks | None = None,
    ) -> None:
        self.ledger = ledger
        self.customers = customers
        self.events = events
        self.counters = counters
        self.checks = checks

    async def submit(self, service: str, body: IntakeBody) -> IntakeResult:
        """Accept one request; raise :class:`EventIdConflict` if the event id holds another,
        :class:`~ledger.durability.NotDurable` (with the request ids) if ``FCD_DURABILITY=fsync``
        could not confirm it in time (a replayed answer is confirmed too: the write it
        replays may be the one that was not)."""
        durable = await self._durable()  # a deferred start-up check refuses before any write
        result = await self._submit_one(service, body)
        await self._confirm(durable, service, result.body["request_ids"])
        return result

    async def _submit_one(self, service: str, body: IntakeBody) -> IntakeResult:
        try:
            if body.account_id is not None:
                result = await self._submit_account(service, body, body.account_id)
            else:
                result = await self._submit_customer(service, body)
        except EventIdConflict:
            self.counters.add("intake", service, "conflict")
            raise
        self.counters.add("intake", service, "replayed" if result.replayed else "accepted")
        return result

    async def _durable(self) -> DurableWrites | None:
        return None if self.checks is None else await self.checks.durable()

    async def _confirm(
        self, durable: DurableWrites | None, service: str, request_ids: list[str]
    ) -> None:
        if durable is None:
            return
        try:
            await durable.confirm(self.ledger.redis, request_ids)
        except NotDurable:
            self.counters.add("intake", service, "not_durable")
            raise

    async def submit_batch(self, service: str, items: list[Any]) -> list[dict[str, Any]]:
        """One result per item, in order; valid items are accepted whatever the others are.
        In ``fsync`` mode the batch is confirmed once, after every item: if that fails the
        whole call raises :class:`~ledger.durability.NotDurable` naming every request id."""
        durable = await self._durable()
        results: list[dict[str, Any]] = []
        for index, raw in enumerate(items):
            try:
                outcome = await self._submit_one(service, parse_body(raw))
            except InvalidInput as exc:
                self.counters.add("intake", service, "rejected")
                error = {"code": exc.code, "message": exc.message, "field": exc.field}
                results.append({"index": index, "status": 422, "error": error})
            except EventIdConflict:
                results.append({"index": index, "status": 409, "error": conflict_error(raw)})
            else:
                entry = {"index": index, "status": 202, "result": outcome.body}
                results.append({**entry, "replayed": outcome.replayed})
        ids = [i for r in results if r["status"] == 202 for i in r["result"]["request_ids"]]
        await self._confirm(durable, service, ids)
        return results

    async def _submit_account(
        self, service: str, body: IntakeBody, account_id: str
    ) -> IntakeResult:
        digest = body_hash(body.normalised())
        claim = await self.events.claim(service, body.event_id, digest)
        if claim.state == ClaimState.CONFLICT:
            raise EventIdConflict(body.event_id)
        if claim.state == ClaimState.NEW:
            archived = await self._archived_answer(service, body.event_id, digest)
            if archived is not None:
                await self.events.release(service, body.event_id, digest)
                return archived
        answered = claim.state == ClaimState.ANSWERED and claim.result is not None
        if answered and not await self._no_longer_serves(claim.result or {}):
            return IntakeResult(claim.result or {}, replayed=True)
        # Else, if answered: the event merged into a request that was cancelled under it (an
        # operator forced a cancel of another caller's request): its deletion is submitted again.
        reference = f"{service}:{body.event_id}"
        earlier = None
        if claim.state == ClaimState.PENDING:  # a crash after submitting must not submit twice
            earlier = await self._request_with_reference(account_id, reference)
        if earlier is not None:
            result = _result(body.event_id, "account", earlier, merged=False)
        else:
            submission = await self.ledger.submit(
                account_id,
                source=RequestSource.DELETION_EVENT,
                reference=reference,
                reason=body.reason,
                stripe_account=body.stripe_account,
            )
            result = _result(body.event_id, "account", submission.request_id, submission.merged)
        replacing = claim.result if claim.state == ClaimState.ANSWERED else None
        stored = await self.events.finish(
            service, body.event_id, digest, result, replacing=replacing
        )
        if stored is None:
            raise EventIdConflict(body.event_id)
        return IntakeResult(stored, replayed=stored != result)

    async def _archived_answer(
        self, service: str, event_id: str, digest: str
    ) -> IntakeResult | None:
        """The answer stored for an event whose request moved to the archive, if any (a very
        late replay); :class:`EventIdConflict` if it was used there with another body."""
        if self.ledger.archive is None:
            return None
        event = await self.ledger.archive.event(f"{service}:{event_id}")
        if event is None:
            return None
        if event.digest != digest:
            await self.events.release(service, event_id, digest)
            raise EventIdConflict(event_id)
        return IntakeResult(json.loads(event.result), replayed=True)

    async def _no_longer_serves(self, result: dict[str, Any]) -> bool:
        """A stored answer naming a request the event was merged into that is now cancelled:
        answering it again would tell the caller its deletion is in hand when it is not."""
        if not result.get("merged") or result.get("kind") != "account":
            return False
        (request_id,) = result["request_ids"]
        try:
            request = await self.ledger.get(request_id)
        except RequestNotFound:
            return False
        return request.status == RequestStatus.CANCELLED

    async def _request_with_reference(self, account_id: str, reference: str) -> str | None:
        """The account's request created for this event before a crash, if there is one."""
        for request_id in reversed(await self.ledger.requests_for_account(account_id)):
            if (await self.ledger.get(request_id)).reference == reference:
                return request_id
        return None

    async def _submit_customer(self, service: str, body: IntakeBody) -> IntakeResult:
        assert body.customer_id is not None
        archived = await self._archived_answer(service, body.event_id, body_hash(body.normalised()))
        if archived is not None:
            return archived
        now = time.time()
        parent = CustomerRequest(
            request_id=new_parent_id(),
            customer_id=body.customer_id,
            stripe_account=body.stripe_account,
            source=RequestSource.DELETION_EVENT,
            reference=f"{service}:{body.event_id}",
            reason=body.reason,
            status=CustomerStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        result = _result(body.event_id, "customer", parent.request_id, merged=False)
        created, stored = await self.customers.create(
            parent,
            event_key=self.events.key(service, body.event_id),
            digest=body_hash(body.normalised()),
            result=result,
        )
        return IntakeResult(stored, replayed=not created)


def _result(event_id: str, kind: str, request_id: str, merged: bool) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "kind": kind,
        "request_ids": [request_id],
        "status_url": STATUS_PATH + request_id,
        "merged": merged,
    }


def conflict_error(raw: Any) -> dict[str, Any]:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    return {
        "code": "event_id_conflict",
        "message": f"event_id {event_id!r} was already used with a different body",
        "field": "event_id",
    }
