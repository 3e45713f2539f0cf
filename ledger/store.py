"""The Redis-backed ledger of account requests: the source of truth for every disconnect.

Contracts (on top of the state machine's, :mod:`ledger.machine`):

- Nothing expires. arq forgets jobs after a day and results after an hour; the ledger does not.
  Terminal requests older than ``FCD_ARCHIVE_AFTER`` move, whole, to the archive
  (:mod:`ledger.archiving`); reads fall through to it (:meth:`locate`, :meth:`locate_ref`,
  :meth:`known_disconnected`).
- One active request per account. :meth:`Ledger.submit` for an account that already has one
  merges into it (a ``disconnect.merged`` record in its history) and returns the existing id. An
  urgent submission merged into a waiting bulk request promotes it to the urgent queue.
- A request and its arq job are written by one script (``ledger/lua/create.lua``), so neither
  exists without the other.

Key layout (``P`` is the key prefix, ``fcd:`` by default):

- ``P req:<id>``            hash: the request (see ``DisconnectRequest``) without the fields reads
  restore (``request_id`` is in the key, ``updated_at`` is ``created_at`` until the first change,
  defaults are absent), plus ``job_seq`` (per-request jobs so far; absent means 0), ``claim``
  (the worker's claim token while held) and, until the request's second record,
  ``created_by``/``created_ts`` (see :mod:`ledger.records`)
- ``P req:<id>:hist``       list: compact JSON audit records, oldest first; it does not exist
  until the request's second record (``ledger/lua/prelude/materialise.lua`` writes the first one
  into it then)
- ``P acct:<fca>:active``   string: id of the account's one active request, if any
- ``P acct:<fca>:reqs``     sorted set: the account's finished requests, by creation time (written
  by the terminal transition; the active request is found through ``active``)
- ``P acct:<fca>:hist``     list: JSON audit records about the account itself (no request)
- ``P status:<status>``     sorted set: request ids in that status, by time of the last change
- ``arq:job:<job id>``, the queue sorted set: arq's own records, written exactly as arq would. A
  job is either one request's (``<request id>.<job_seq>``, payload ``{"v":1,"request_id":…}``) or
  a bulk submission's batch (``b_<hex>``, payload ``{"v":1,"request_ids":[…]}``, the requests
  recorded with that job id)

Scripts build the history key of a merged request from the prefix passed as an argument
(single-node Redis or Sentinel, not Redis Cluster).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from archive import ArchiveStore
from ledger import lua
from ledger.audit import (
    EXTERNALLY_DISCONNECTED,
    AuditTrail,
    Evidence,
    TransitionDetails,
    build_record,
)
from ledger.jobs import job_id_for
from ledger.keys import LedgerKeys
from ledger.machine import Located, StateStore
from ledger.models import (
    ACCOUNT,
    ACCOUNT_ID_RE,
    DisconnectRequest,
    RequestNotFound,
    RequestSource,
    RequestStatus,
)
from ledger.records import dump, expand_record, text
from ledger.settings import BaseServiceSettings
from ledger.submissions import (
    CreateCall,
    PreparedSubmission,
    Submission,
    create_call,
    finish,
    prepare,
)

__all__ = ["KnownDisconnected", "Ledger", "PreparedSubmission", "Submission"]

_GONE = frozenset({RequestStatus.DISCONNECTED.value, RequestStatus.ALREADY_DISCONNECTED.value})


@dataclass(frozen=True)
class KnownDisconnected:
    """Why the ledger already knows an account is disconnected (:meth:`Ledger.known_disconnected`)."""

    reason: str
    evidence: Evidence


def _ended_before(request_id: str, status: str) -> KnownDisconnected:
    reason = f"an earlier request for the account, {request_id}, ended {status}"
    return KnownDisconnected(reason, Evidence.LEDGER)


class Ledger(LedgerKeys, StateStore[DisconnectRequest, RequestStatus]):
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
        archive: ArchiveStore | None = None,
    ) -> None:
        super().__init__(
            redis,
            ACCOUNT,
            audit=audit,
            prefix=prefix,
            queue_name=queue_name,
            bulk_queue_name=bulk_queue_name,
            job_expires_seconds=job_expires_seconds,
            actor=actor,
            archive=archive,
        )
        self._create = lua.register(redis, "ledger", "create")

    @classmethod
    def from_settings(
        cls,
        redis: Redis,
        settings: BaseServiceSettings,
        audit: AuditTrail,
        *,
        actor: str | None = None,
    ) -> Ledger:
        """The ledger every process builds from its settings (``actor``: who its records name;
        default ``host:pid``), with the archive they name attached (closed by
        :meth:`close_archive`)."""
        return cls(
            redis,
            queue_name=settings.queue_name,
            bulk_queue_name=settings.bulk_queue_name,
            audit=audit,
            job_expires_seconds=settings.job_expires_seconds,
            prefix=settings.key_prefix,
            actor=actor,
            archive=settings.open_archive(),
        )

    async def close_archive(self) -> None:
        if self.archive is not None:
            await self.archive.close()

    def _active_keys(self, request: DisconnectRequest) -> list[str]:
        return [self.active_key(request.account_id), self.account_requests_key(request.account_id)]

    # -- submissions --------------------------------------------------------------------------

    async def submit(
        self,
        account_id: str,
        *,
        source: RequestSource,
        reference: str = "",
        reason: str = "",
        stripe_account: str | None = None,
        parent_id: str | None = None,
        children_key: str | None = None,
    ) -> Submission:
        """Record a new request and enqueue its job, or merge into the account's active one.

        ``children_key`` (a customer-level parent's children hash) records the answer there in
        the same step, so a parent never loses track of a child it submitted.
        """
        prepared = self.prepare_submit(
            account_id,
            source=source,
            reference=reference,
            reason=reason,
            stripe_account=stripe_account,
            parent_id=parent_id,
        )
        request_id = prepared.request.request_id
        call = create_call(
            self,
            [prepared],
            job_id=job_id_for(request_id, 1),
            job=ACCOUNT.job_record(request_id),
            expire_ms=self.job_expires_ms,
            own_job_seq=True,
            children_key=children_key,
        )
        (submission,) = await self.published(
            self.run_create(call), lambda answers: self.finish_create(call, answers)
        )
        return submission

    def prepare_submit(
        self,
        account_id: str,
        *,
        source: RequestSource,
        reference: str = "",
        reason: str = "",
        stripe_account: str | None = None,
        parent_id: str | None = None,
        listed_status: str | None = None,
        listed_at: int | None = None,
    ) -> PreparedSubmission:
        """Build (without running) one new request and its possible audit records."""
        return prepare(
            self.actor,
            account_id,
            source=source,
            reference=reference,
            reason=reason,
            stripe_account=stripe_account,
            parent_id=parent_id,
            listed_status=listed_status,
            listed_at=listed_at,
        )

    async def run_create(self, call: CreateCall, client: Any = None) -> Any:
        """Run (or, with a pipeline as ``client``, queue) the CREATE script ``call``."""
        return await self._create(keys=call.keys, args=call.args, client=client)

    def finish_create(self, call: CreateCall, answers: Any) -> list[Submission]:
        """Publish the audit records of a CREATE call's answers and say what each did."""
        results = finish(call, answers)
        for _, record in results:
            self.audit.emit(record)
        return [submission for submission, _ in results]

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
        step = self.redis.rpush(self.account_history_key(account_id), dump(record))
        await self.published(step, lambda _: self.audit.emit(record))  # type: ignore[arg-type]
        return record

    # -- account-level reads ------------------------------------------------------------------

    async def known_disconnected(
        self, account_id: str, *, besides: str, archive: bool = True
    ) -> KnownDisconnected | None:
        """What this ledger already knows of ``account_id`` being disconnected, or ``None``.

        Stripe never reconnects a Financial Connections account (linking again makes a new
        ``fca_`` id), so either of these settles a request without calling Stripe: Stripe's
        event of a disconnect someone else made, as applied (``account.externally_disconnected``
        in the account's history), or an earlier request for the account (not ``besides``)
        that ended ``disconnected`` or ``already_disconnected``, in Redis or moved to the
        archive (``archive=False`` skips the archive: for a second look within one attempt,
        since only requests finished long ago move there). One Redis round trip (and one archive
        lookup) when the account has neither (the usual case).
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self.account_history_key(account_id), 0, -1)
            pipe.zrange(self.account_requests_key(account_id), 0, -1)
            notes, finished = await pipe.execute()
        for raw in notes:
            record = json.loads(raw)
            if record.get("event") == EXTERNALLY_DISCONNECTED:
                return KnownDisconnected(str(record.get("message")), Evidence.EVENT)
        earlier = [text(member) for member in finished if text(member) != besides]
        if earlier:
            async with self.redis.pipeline(transaction=False) as pipe:
                for request_id in earlier:
                    pipe.hget(self.request_key(request_id), "status")
                statuses = await pipe.execute()
            for request_id, status in zip(earlier, statuses, strict=True):
                if status is not None and text(status) in _GONE:
                    return _ended_before(request_id, text(status))
        if not archive or self.archive is None:
            return None
        for archived in await self.archive.for_subject(account_id):  # moved out of Redis
            if archived.request_id != besides and archived.status in _GONE:
                return _ended_before(archived.request_id, archived.status)
        return None

    async def account_history(self, account_id: str) -> list[dict[str, Any]]:
        """Everything recorded about an account: its own notes and every request's history,
        in time order."""
        raw = await self.redis.lrange(self.account_history_key(account_id), 0, -1)  # type: ignore[misc]
        records = [expand_record(json.loads(item)) for item in raw]
        for request_id in await self.requests_for_account(account_id):
            records += await self.history(request_id)
        return sorted(records, key=lambda record: str(record["ts"]))

    async def requests_for_account(self, account_id: str) -> list[str]:
        """Every request id ever made for the account, oldest first: the finished ones (indexed
        when they end) and the active one, if any."""
        created = await self._created_by_request(account_id)
        return sorted(created, key=lambda request_id: (created[request_id], request_id))

    async def _created_by_request(self, account_id: str) -> dict[str, float]:
        """:meth:`requests_for_account`'s ids, each with its ``created_at``."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self.account_requests_key(account_id), 0, -1, withscores=True)
            pipe.get(self.active_key(account_id))
            finished, active = await pipe.execute()
        created = {text(member): float(score) for member, score in finished}
        if active is not None and text(active) not in created:
            raw = await self.redis.hget(self.request_key(text(active)), "created_at")  # type: ignore[misc]
            if raw is not None:
                created[text(active)] = float(raw)
        return created

    async def active_request(self, account_id: str) -> str | None:
        """The id of the account's one active request, if it has one."""
        raw = await self.redis.get(self.active_key(account_id))
        return None if raw is None else text(raw)

    async def archived_for_account(self, account_id: str) -> list[Located[DisconnectRequest]]:
        """The account's requests that moved to the archive, oldest first."""
        if self.archive is None:
            return []
        return [self.from_archive(a) for a in await self.archive.for_subject(account_id)]

    async def locate_ref(self, ref: str) -> Located[DisconnectRequest]:
        """:meth:`resolve`, falling through to the archive: a request by id, or an account's
        active (else most recent, in Redis or the archive) request by ``fca_`` id."""
        if not ACCOUNT_ID_RE.match(ref):
            return await self.locate(ref)
        active = await self.active_request(ref)
        if active is not None:
            return await self.locate(active)
        created = await self._created_by_request(ref)
        newest = max(
            created, key=lambda request_id: (created[request_id], request_id), default=None
        )
        archived = await self.archived_for_account(ref)
        if archived and (newest is None or archived[-1].request.created_at > created[newest]):
            return archived[-1]
        if newest is None:
            raise RequestNotFound(ref)
        return await self.locate(newest)

    async def resolve(self, ref: str) -> DisconnectRequest:
        """A request by id, or an account's active (else most recent) request by ``fca_`` id."""
        if not ACCOUNT_ID_RE.match(ref):
            return await self.get(ref)
        active = await self.active_request(ref)
        if active is not None:
            return await self.get(active)
        ids = await self.requests_for_account(ref)
        if not ids:
            raise RequestNotFound(ref)
        return await self.get(ids[-1])
