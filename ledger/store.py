"""The Redis-backed ledger: the source of truth for every disconnect request.

Contracts:

- Nothing expires. arq forgets jobs after a day and results after an hour; the ledger does not.
- One active request per account. :meth:`Ledger.submit` for an account that already has one
  merges into it (a ``disconnect.merged`` record in its history) and returns the existing id.
- :meth:`Ledger.transition` is one Lua script: it checks the expected status (and job), writes
  the new status, appends the history record and, when asked, enqueues the next arq job, all or
  nothing. Two workers can never both move one request; the loser gets :class:`StaleTransition`.
- Exactly one ``disconnect.status_changed`` audit record per status change, published after the
  script succeeded, identical to the one stored in the request's history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ledger import scripts
from ledger.audit import (
    MERGED,
    RECORD_KEYS,
    STATUS_CHANGED,
    AuditTrail,
    TransitionDetails,
    build_record,
    process_name,
)
from ledger.jobs import ARQ_JOB_KEY_PREFIX, arq_job_record, job_id_for
from ledger.models import (
    ACCOUNT_ID_RE,
    DisconnectRequest,
    IllegalTransition,
    RequestNotFound,
    RequestSource,
    RequestStatus,
    StaleTransition,
    check_transition,
    new_request_id,
)
from ledger.settings import BaseServiceSettings

_JOB_PLACEHOLDER = "__JOB__"


@dataclass(frozen=True)
class PreparedSubmission:
    """The CREATE script's keys and arguments for one new request, and its two possible records.

    Built by :meth:`Ledger.prepare_submit`; run one at a time by :meth:`Ledger.submit` or many to
    a pipeline by :mod:`ledger.bulk`.
    """

    keys: list[str]
    args: list[Any]
    created: dict[str, Any]
    merge: dict[str, Any]


@dataclass(frozen=True)
class Submission:
    """What :meth:`Ledger.submit` did: the id the caller should track, and whether it merged."""

    request_id: str
    merged: bool


class Ledger:
    """Reads and atomically changes disconnect requests in Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str,
        audit: AuditTrail,
        bulk_queue_name: str | None = None,
        job_expires_seconds: int = 86_400,
        prefix: str = "fcd:",
        actor: str | None = None,
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.bulk_queue_name = bulk_queue_name or queue_name
        self.prefix = prefix
        self.audit = audit
        self.actor = actor or process_name()
        self._job_expires_ms = job_expires_seconds * 1000
        self._create = redis.register_script(scripts.CREATE)
        self._transition = redis.register_script(scripts.TRANSITION)

    @classmethod
    def from_settings(
        cls, redis: Redis, settings: BaseServiceSettings, audit: AuditTrail
    ) -> Ledger:
        """The ledger every process builds from its settings."""
        return cls(
            redis,
            queue_name=settings.queue_name,
            bulk_queue_name=settings.bulk_queue_name,
            audit=audit,
            job_expires_seconds=settings.job_expires_seconds,
            prefix=settings.key_prefix,
        )

    def queue_for(self, source: RequestSource) -> str:
        """The arq queue of a request: retention sweeps wait in the bulk queue, all else is urgent.

        Derived from the request's source (which never changes), so every enqueue of a request,
        first or later, goes to the same queue.
        """
        return self.bulk_queue_name if source == RequestSource.RETENTION_POLICY else self.queue_name

    @property
    def queue_names(self) -> tuple[str, ...]:
        """Every arq queue this ledger enqueues to (one if the bulk queue is the urgent one)."""
        return tuple(dict.fromkeys((self.queue_name, self.bulk_queue_name)))

    # -- keys ---------------------------------------------------------------------------------

    def request_key(self, request_id: str) -> str:
        return f"{self.prefix}req:{request_id}"

    def history_key(self, request_id: str) -> str:
        return f"{self.prefix}req:{request_id}:hist"

    def active_key(self, account_id: str) -> str:
        return f"{self.prefix}acct:{account_id}:active"

    def account_requests_key(self, account_id: str) -> str:
        return f"{self.prefix}acct:{account_id}:reqs"

    def status_key(self, status: RequestStatus) -> str:
        return f"{self.prefix}status:{status.value}"

    @property
    def pause_key(self) -> str:
        """The kill switch (see :mod:`ledger.pause`): ``fcd:paused`` with the default prefix."""
        return f"{self.prefix}paused"

    def account_history_key(self, account_id: str) -> str:
        return f"{self.prefix}acct:{account_id}:hist"

    # -- writes -------------------------------------------------------------------------------

    async def submit(
        self,
        account_id: str,
        *,
        source: RequestSource,
        reference: str = "",
        reason: str = "",
        stripe_account: str | None = None,
        parent_id: str | None = None,
    ) -> Submission:
        """Record a new request and enqueue its job, or merge into the account's active one."""
        prepared = self.prepare_submit(
            account_id,
            source=source,
            reference=reference,
            reason=reason,
            stripe_account=stripe_account,
            parent_id=parent_id,
        )
        flag, request_id = await self._create(keys=prepared.keys, args=prepared.args)
        return self.finish_submit(prepared, flag, request_id)

    def prepare_submit(
        self,
        account_id: str,
        *,
        source: RequestSource,
        reference: str = "",
        reason: str = "",
        stripe_account: str | None = None,
        parent_id: str | None = None,
    ) -> PreparedSubmission:
        """Build (without running) the CREATE script call for one new request."""
        now = time.time()
        request = DisconnectRequest(
            request_id=new_request_id(),
            account_id=account_id,
            stripe_account=stripe_account,
            source=source,
            reference=reference,
            reason=reason,
            status=RequestStatus.QUEUED,
            created_at=now,
            updated_at=now,
            parent_id=parent_id,
        )
        job_id = job_id_for(request.request_id, 1)
        created = self._record(STATUS_CHANGED, request, None, RequestStatus.QUEUED, job_id)
        # The merge record differs from the created one only in these fields (same instant).
        merge = {**created, "event": MERGED, "to": None, "job_id": None}
        merge["request_id"] = "__EXISTING__"
        fields = _hash_fields(request)
        keys = [
            self.active_key(account_id),
            self.request_key(request.request_id),
            self.history_key(request.request_id),
            self.account_requests_key(account_id),
            self.status_key(RequestStatus.QUEUED),
            ARQ_JOB_KEY_PREFIX + job_id,
            self.queue_for(source),
        ]
        args: list[Any] = [request.request_id, now, _stored(created, request), _dump(merge), job_id]
        args += [arq_job_record(request.request_id), int(now * 1000), self._job_expires_ms]
        args += [self.prefix, json.dumps(fields, separators=(",", ":"))]
        return PreparedSubmission(keys, args, created, merge)

    async def run_create(self, prepared: PreparedSubmission, client: Any = None) -> Any:
        """Run (or, with a pipeline as ``client``, queue) the CREATE script for ``prepared``."""
        return await self._create(keys=prepared.keys, args=prepared.args, client=client)

    def finish_submit(self, prepared: PreparedSubmission, flag: Any, request_id: Any) -> Submission:
        """Publish the audit record of a CREATE script's answer and say what it did."""
        request_id = _text(request_id)
        if int(flag) == 1:
            self.audit.emit(prepared.created)
            return Submission(request_id, merged=False)
        self.audit.emit({**prepared.merge, "request_id": request_id})
        return Submission(request_id, merged=True)

    async def transition(
        self,
        request: DisconnectRequest,
        to: RequestStatus,
        details: TransitionDetails | None = None,
        *,
        expect_job: bool = True,
        attempts_delta: int = 0,
        enqueue_in: float | None = None,
        updates: dict[str, Any] | None = None,
    ) -> DisconnectRequest:
        """Move ``request`` from its current status to ``to``, atomically, and audit it once.

        ``request`` is the caller's snapshot; if the ledger no longer agrees with its status (or,
        with ``expect_job``, its job id) nothing changes and :class:`StaleTransition` is raised.
        ``enqueue_in`` (seconds) enqueues a fresh arq job due after that delay, in the same step.
        ``updates`` are extra request fields to write (``None`` clears a field).
        """
        check_transition(request.request_id, request.status, to)
        details = details or TransitionDetails()
        now = time.time()
        new_job = enqueue_in is not None
        attempt = request.attempts + attempts_delta
        record = self._record(
            STATUS_CHANGED,
            request,
            request.status,
            to,
            _JOB_PLACEHOLDER if new_job else request.job_id,
            details=details,
            attempt=attempt,
        )
        keys = [
            self.request_key(request.request_id),
            self.history_key(request.request_id),
            self.status_key(request.status),
            self.status_key(to),
            self.active_key(request.account_id),
            self.queue_for(request.source),
        ]
        score = int((now + (enqueue_in or 0.0)) * 1000)
        args: list[Any] = [
            request.request_id,
            request.status.value,
            (request.job_id or "") if expect_job else "",
            to.value,
            now,
            _stored(record, request),
            "1" if to.is_terminal else "0",
            attempts_delta,
            "1" if new_job else "0",
            arq_job_record(request.request_id) if new_job else b"",
            score,
            self._job_expires_ms + int((enqueue_in or 0.0) * 1000),
            ARQ_JOB_KEY_PREFIX,
            *_flatten(updates or {}),
        ]
        result = await self._transition(keys=keys, args=args)
        code = int(result[0])
        if code == -1:
            raise RequestNotFound(request.request_id)
        if code == -2:
            raise IllegalTransition(request.request_id, request.status, to)
        if code == 0:
            raise StaleTransition(
                request.request_id, f"{request.status}/{request.job_id}", _text(result[1])
            )
        job_id = _text(result[1])
        self.audit.emit({**record, "job_id": job_id})
        changed = {**(updates or {}), "status": to, "updated_at": now, "job_id": job_id}
        changed["attempts"] = attempt
        return request.model_copy(update=changed)

    async def note(
        self, request: DisconnectRequest, event: str, details: TransitionDetails | None = None
    ) -> dict[str, Any]:
        """Append an audit record that is not a status change (e.g. Stripe's confirmation)."""
        record = self._record(
            event, request, None, None, request.job_id, details=details or TransitionDetails()
        )
        record["from"] = record["to"] = request.status.value
        await self.redis.rpush(self.history_key(request.request_id), _stored(record, request))  # type: ignore[misc]
        self.audit.emit(record)
        return record

    async def note_account(
        self, account_id: str, event: str, details: TransitionDetails | None = None
    ) -> dict[str, Any]:
        """Append an audit record to an account's own history (no request involved)."""
        d = details or TransitionDetails()
        record = build_record(
            event,
            account_id=account_id,
            worker=self.actor,
            stripe_request_id=d.stripe_request_id,
            message=d.message,
            operator=d.operator,
        )
        await self.redis.rpush(self.account_history_key(account_id), _dump(record))  # type: ignore[misc]
        self.audit.emit(record)
        return record

    # -- reads --------------------------------------------------------------------------------

    async def get(self, request_id: str) -> DisconnectRequest:
        raw = await self.redis.hgetall(self.request_key(request_id))  # type: ignore[misc]
        if not raw:
            raise RequestNotFound(request_id)
        return DisconnectRequest.from_redis({_text(k): _text(v) for k, v in raw.items()})

    async def history(self, request_id: str) -> list[dict[str, Any]]:
        """The request's audit records, oldest first, every key of the audit contract present."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self.history_key(request_id), 0, -1)
            pipe.hmget(self.request_key(request_id), list(_IMPLIED))
            raw, own = await pipe.execute()
        implied = {
            key: _text(value) if value is not None else None
            for key, value in zip(_IMPLIED, own, strict=True)
        }
        implied["request_id"] = request_id
        for key in ("reference", "reason"):
            implied[key] = implied[key] or ""
        return [expand_record({**implied, **json.loads(item)}) for item in raw]

    async def account_history(self, account_id: str) -> list[dict[str, Any]]:
        """Everything recorded about an account: its own notes and every request's history,
        in time order."""
        raw = await self.redis.lrange(self.account_history_key(account_id), 0, -1)  # type: ignore[misc]
        records = [expand_record(json.loads(item)) for item in raw]
        for request_id in await self.requests_for_account(account_id):
            records += await self.history(request_id)
        return sorted(records, key=lambda record: str(record["ts"]))

    async def requests_for_account(self, account_id: str) -> list[str]:
        """Every request id ever made for the account, oldest first."""
        raw = await self.redis.zrange(self.account_requests_key(account_id), 0, -1)
        return [_text(item) for item in raw]

    async def resolve(self, ref: str) -> DisconnectRequest:
        """A request by id, or an account's active (else most recent) request by ``fca_`` id."""
        if not ACCOUNT_ID_RE.match(ref):
            return await self.get(ref)
        active = await self.redis.get(self.active_key(ref))
        if active is not None:
            return await self.get(_text(active))
        ids = await self.requests_for_account(ref)
        if not ids:
            raise RequestNotFound(ref)
        return await self.get(ids[-1])

    async def count_by_status(self) -> dict[RequestStatus, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in RequestStatus:
                pipe.zcard(self.status_key(status))
            counts: Sequence[int] = await pipe.execute()
        return dict(zip(RequestStatus, counts, strict=True))

    async def ids_in_status(self, status: RequestStatus, limit: int = 1000) -> list[str]:
        raw = await self.redis.zrange(self.status_key(status), 0, limit - 1)
        return [_text(item) for item in raw]

    # -- helpers ------------------------------------------------------------------------------

    def _record(
        self,
        event: str,
        request: DisconnectRequest,
        from_status: RequestStatus | None,
        to: RequestStatus | None,
        job_id: str | None,
        *,
        details: TransitionDetails | None = None,
        attempt: int | None = None,
    ) -> dict[str, Any]:
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
            worker=self.actor,
            stripe_request_id=d.stripe_request_id,
            http_status=d.http_status,
            stripe_error_code=d.stripe_error_code,
            message=d.message,
            duration_ms=None if d.duration_ms is None else round(d.duration_ms, 1),
            operator=d.operator,
            **{"from": from_status.value if from_status else None},
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


#: Fields a request's own history records share with the request; stored only where they differ.
_IMPLIED = ("request_id", "account_id", "source", "reference", "reason")


def _stored(record: dict[str, Any], request: DisconnectRequest) -> str:
    """A record of ``request``'s own history as stored: without null fields and without the
    fields it shares with the request (:meth:`Ledger.history` puts both back)."""
    own = {
        "request_id": request.request_id,
        "account_id": request.account_id,
        "source": request.source.value,
        "reference": request.reference,
        "reason": request.reason,
    }
    return _dump({k: v for k, v in record.items() if k not in own or own[k] != v})


def _dump(record: dict[str, Any]) -> str:
    """A history record as stored: compact JSON without its null fields (it is kept forever, one
    per status change; :func:`expand_record` restores every key of the audit contract on read)."""
    return json.dumps({k: v for k, v in record.items() if v is not None}, separators=(",", ":"))


def expand_record(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored history record with every key of :data:`RECORD_KEYS` back, absent ones null."""
    return {**dict.fromkeys(RECORD_KEYS), **stored}


def _flatten(updates: dict[str, Any]) -> list[str]:
    flat: list[str] = []
    for key, value in updates.items():
        flat += [key, "" if value is None else str(value)]
    return flat


def _hash_fields(request: DisconnectRequest) -> list[str]:
    # Defaults (attempts 0, empty reference, ...) are left out: reads fill them in, HINCRBY
    # starts from 0, and every pending request is smaller.
    data = request.model_dump(mode="json", exclude_defaults=True, exclude={"job_id"})
    return _flatten(data)
