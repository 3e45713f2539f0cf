"""One state machine for every kind of request: :class:`StateStore`.

Contracts (for every kind declared as a :class:`ledger.kinds.RequestKind`):

- :meth:`StateStore.transition` is one Lua script (``ledger/lua/transition.lua``): it checks the
  expected status, job id and claim token, writes the new status and fields, moves the request
  between the kind's status indexes, appends the history record and, when asked, enqueues the
  next arq job, all or nothing. Two workers can never both move one request; the loser gets
  :class:`StaleTransition`. Illegal moves raise :class:`IllegalTransition` before anything is
  sent.
- Exactly one audit record per change, published after the script succeeded, identical to the
  one stored in the history. The script and the publication run as one unit in a task of their
  own (:meth:`StateStore.published`, :func:`ledger.detached.run_detached`): a caller cancelled
  while awaiting the script's reply still publishes.
- Moving into the kind's running status writes a fresh claim token; moving out of it compares
  the token of the caller's snapshot (older data without a token is compared on status and job).
- :meth:`StateStore.reenqueue` gives a waiting request whose job is lost a fresh one without a
  status change (``<prefix>.reenqueued``); the reconciler calls it for every kind.

Kinds add their own creation and reads on top (:class:`ledger.store.Ledger` for accounts,
:class:`ledger.customers.CustomerLedger` for customer-level requests).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis

from archive import ArchivedRequest, ArchiveStore
from ledger import lua
from ledger.audit import AuditTrail, TransitionDetails, process_name
from ledger.detached import run_detached
from ledger.jobs import ARQ_IN_PROGRESS_KEY_PREFIX, ARQ_JOB_KEY_PREFIX, batch_heartbeat_key
from ledger.kinds import (
    IllegalTransition,
    RequestKind,
    RequestNotFound,
    RequestT,
    StaleTransition,
    StatusT,
)
from ledger.records import (
    CREATION_FIELDS,
    archived_history,
    compact,
    decode_hash,
    dump,
    full_history,
    request_record,
    split_updates,
    text,
)

T = TypeVar("T")
R = TypeVar("R")

#: Where a read found a request (:meth:`StateStore.locate`).
FROM_REDIS = "redis"
FROM_ARCHIVE = "archive"


@dataclass(frozen=True)
class Located(Generic[RequestT]):
    """A request and its full history as found, and where (``stored_in``): ``redis`` or ``archive``."""

    request: RequestT
    history: list[dict[str, Any]]
    stored_in: str
    archived: ArchivedRequest | None = None


_SCAN_BATCH = 500


def new_claim_token() -> str:
    """A fresh claim token (see :class:`ledger.kinds.TrackedRequest`)."""
    return secrets.token_hex(6)


class StateStore(Generic[RequestT, StatusT]):
    """Reads and atomically changes the requests of one kind in Redis."""

    def __init__(
        self,
        redis: Redis,
        kind: RequestKind[RequestT, StatusT],
        *,
        audit: AuditTrail,
        prefix: str = "fcd:",
        queue_name: str,
        bulk_queue_name: str | None = None,
        job_expires_seconds: int = 86_400,
        actor: str | None = None,
        archive: ArchiveStore | None = None,
    ) -> None:
        self.redis = redis
        self.kind = kind
        #: Where finished requests go when they leave Redis (:mod:`ledger.archiving`); reads
        #: that miss in Redis look there (:meth:`locate`).
        self.archive = archive
        self.audit = audit
        self.prefix = prefix
        self.queue_name = queue_name
        self.bulk_queue_name = bulk_queue_name or queue_name
        self.actor = actor or process_name()
        self.job_expires_ms = job_expires_seconds * 1000
        #: Called with the moved request after every transition into a terminal status (a
        #: process's completion metrics); it must not raise or block.
        self.on_terminal: Callable[[RequestT], None] | None = None
        self._transition = lua.register(redis, "ledger", "transition")
        self._note = lua.register(redis, "ledger", "note")
        self._update_if_held = lua.register(redis, "ledger", "update_if_held")
        self._reenqueue = lua.register(redis, "ledger", "reenqueue")

    # -- keys ---------------------------------------------------------------------------------

    def request_key(self, request_id: str) -> str:
        return f"{self.prefix}{self.kind.key_family}:{request_id}"

    def history_key(self, request_id: str) -> str:
        return f"{self.prefix}{self.kind.key_family}:{request_id}:hist"

    def status_key(self, status: StatusT) -> str:
        return f"{self.prefix}{self.kind.status_index}:{status.value}"

    def queue_of(self, request: RequestT) -> str:
        """The queue of every later enqueue of ``request`` (kinds with priorities override)."""
        return self.queue_name

    def _active_keys(self, request: RequestT) -> list[str]:
        """Extra keys of kinds with one active request per account (see the transition script)."""
        return []

    # -- the one unit of write and publication ------------------------------------------------

    async def published(self, step: Awaitable[T], publish: Callable[[T], R]) -> R:
        """Await ``step`` (a script), then ``publish`` its audit records and return what that
        returns, as one unit a cancellation of the caller cannot split: the records are in the
        history once the script ran, so their audit lines must follow even if the caller no
        longer waits for the reply (it still gets its :class:`asyncio.CancelledError`)."""

        async def unit() -> R:
            return publish(await step)

        # Detached: a cancelled caller finishes the publication before honouring the
        # cancellation, so it (and a shutdown closing Redis and the audit file after it) sees a
        # settled ledger.
        return await run_detached(unit())

    # -- reads --------------------------------------------------------------------------------

    async def get(self, request_id: str) -> RequestT:
        raw = await self.redis.hgetall(self.request_key(request_id))  # type: ignore[misc]
        if not raw:
            raise self._not_found(request_id)
        return self.kind.model.from_redis(decode_hash(raw), request_id)

    def _not_found(self, request_id: str) -> Exception:
        return RequestNotFound(request_id)

    async def history(self, request_id: str) -> list[dict[str, Any]]:
        """The request's audit records, oldest first, every key of the audit contract present.

        Until its second record an account request has no history list; its creation record is
        rebuilt from the hash (see :mod:`ledger.records`), and put first whenever the hash still
        holds it. Both reads run in one MULTI, so a script writing the list meanwhile is seen
        wholly or not at all.
        """
        implied = self.kind.implied
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrange(self.history_key(request_id), 0, -1)
            pipe.hmget(self.request_key(request_id), [*implied, *CREATION_FIELDS])
            raw, own = await pipe.execute()
        return full_history(self.kind, request_id, raw, own)

    async def locate(self, request_id: str) -> Located[RequestT]:
        """The request and its history from Redis, else from the archive (``stored_in`` says
        which); raises :class:`RequestNotFound` (the kind's) when neither has it."""
        try:
            request = await self.get(request_id)
        except RequestNotFound:
            archived = await self.archived(request_id)
            if archived is None:
                raise
            return self.from_archive(archived)
        return Located(request, await self.history(request_id), FROM_REDIS)

    async def archived(self, request_id: str) -> ArchivedRequest | None:
        """The archived request of this kind with that id, if the archive has it."""
        if self.archive is None:
            return None
        found = (await self.archive.get_many([request_id])).get(request_id)
        return found if found is not None and found.kind == self.kind.name else None

    def from_archive(self, archived: ArchivedRequest) -> Located[RequestT]:
        request = self.kind.model.from_redis(archived.fields, archived.request_id)
        history = archived_history(self.kind, archived)
        return Located(request, history, FROM_ARCHIVE, archived)

    async def count_by_status(self) -> dict[StatusT, int]:
        statuses = list(self.kind.statuses)
        async with self.redis.pipeline(transaction=False) as pipe:
            for status in statuses:
                pipe.zcard(self.status_key(status))
            counts: Sequence[int] = await pipe.execute()
        return dict(zip(statuses, counts, strict=True))

    async def ids_in_status(self, status: StatusT, limit: int = 1000) -> list[str]:
        raw = await self.redis.zrange(self.status_key(status), 0, limit - 1)
        return [text(item) for item in raw]

    async def scan_status(self, status: StatusT) -> AsyncIterator[list[RequestT]]:
        """Every request in ``status``, in batches (ZSCAN: members present throughout are seen;
        a request that moved since the index was read is left out)."""
        cursor = 0
        while True:
            cursor, page = await self.redis.zscan(
                self.status_key(status), cursor, count=_SCAN_BATCH
            )
            ids = [text(raw_id) for raw_id, _score in page]
            async with self.redis.pipeline(transaction=False) as pipe:
                for request_id in ids:
                    pipe.hgetall(self.request_key(request_id))
                hashes = await pipe.execute()
            batch = [
                request
                for request_id, raw in zip(ids, hashes, strict=True)
                if raw
                and (request := self.kind.model.from_redis(decode_hash(raw), request_id)).status
                == status
            ]
            if batch:
                yield batch
            if cursor == 0:
                return

    # -- changes ------------------------------------------------------------------------------

    def record(
        self,
        event: str,
        request: RequestT,
        from_status: StatusT | None,
        to: StatusT | None,
        job_id: str | None,
        details: TransitionDetails | None = None,
        *,
        attempt: int | None = None,
    ) -> dict[str, Any]:
        """The full audit record of ``event`` for ``request``, written by this process."""
        return request_record(
            self.kind, self.actor, event, request, from_status, to, job_id,
            details=details, attempt=attempt,
        )  # fmt: skip

    def stored(self, record: dict[str, Any], request: RequestT) -> dict[str, Any]:
        """``record`` as ``request``'s history stores it (see :func:`ledger.records.compact`)."""
        return compact(self.kind, record, request)

    async def transition(
        self,
        request: RequestT,
        to: StatusT,
        details: TransitionDetails | None = None,
        *,
        expect_job: bool = True,
        attempts_delta: int = 0,
        enqueue_in: float | None = None,
        updates: dict[str, Any] | None = None,
    ) -> RequestT:
        """Move ``request`` from its current status to ``to``, atomically, and audit it once.

        ``request`` is the caller's snapshot; if the ledger no longer agrees with its status
        (or, with ``expect_job``, its job id; or its claim token when it leaves the running
        status) nothing changes and :class:`StaleTransition` is raised. ``enqueue_in`` (seconds)
        enqueues a fresh arq job due after that delay, in the same step, on the request's queue.
        ``updates`` are extra request fields to write (``None`` deletes a field). A move into
        the running status writes a fresh claim token. A terminal move of an account request
        indexes it under its account.
        """
        kind = self.kind
        kind.check(request.request_id, request.status, to)  # type: ignore[arg-type]
        now = time.time()
        attempt = request.attempts + attempts_delta
        changes = dict(updates or {})
        if to == kind.running:
            changes["claim"] = new_claim_token()
        record = self.record(
            kind.status_changed, request, request.status, to, request.job_id, details,  # type: ignore[arg-type]
            attempt=attempt,
        )  # fmt: skip
        to_set, to_unset = split_updates(changes)
        leaving_hold = request.status == kind.running
        spec: dict[str, Any] = {
            "id": request.request_id,
            "expect_status": request.status.value,
            "expect_job": (request.job_id or "") if expect_job else "",
            "expect_claim": (request.claim or "") if leaving_hold else "",
            "to": to.value,
            "now": repr(now),
            "terminal": to in kind.terminal,
            "record": self.stored(record, request),
            "attempts_delta": attempts_delta,
            "set": to_set,
            "unset": to_unset,
        }
        if enqueue_in is not None:
            spec["enqueue"] = self._enqueue_spec(request, now + enqueue_in, enqueue_in)
        keys = [
            self.request_key(request.request_id),
            self.history_key(request.request_id),
            self.status_key(request.status),  # type: ignore[arg-type]
            self.status_key(to),
            self.queue_of(request),
            self.queue_name,
            *self._active_keys(request),
        ]

        def publish(result: Any) -> Any:
            if int(result[0]) == 1:
                self.audit.emit({**record, "job_id": text(result[1]) or None})
            return result

        result = await self.published(
            self._transition(keys=keys, args=[lua.params(**spec)]), publish
        )
        self._raise_unless_done(request, to, result)
        changed = {**changes, "status": to, "updated_at": now}
        changed.update(job_id=text(result[1]) or None, attempts=attempt)
        moved = request.model_copy(update=changed)
        if to in kind.terminal and self.on_terminal is not None:
            self.on_terminal(moved)
        return moved

    def _enqueue_spec(self, request: RequestT, due: float, delay: float) -> dict[str, Any]:
        return {
            "job": self.kind.job_record(request.request_id),
            "job_prefix": ARQ_JOB_KEY_PREFIX,
            "score": int(due * 1000),
            "expire_ms": self.job_expires_ms + int(delay * 1000),
        }

    def _raise_unless_done(self, request: RequestT, to: StatusT, result: Any) -> None:
        code = int(result[0])
        if code == -1:
            raise self._not_found(request.request_id)
        if code == -2:
            raise IllegalTransition(request.request_id, request.status, to)
        if code == 0:
            raise StaleTransition(
                request.request_id, f"{request.status}/{request.job_id}", text(result[1])
            )

    async def note(
        self, request: RequestT, event: str, details: TransitionDetails | None = None
    ) -> dict[str, Any]:
        """Append an audit record that is not a status change (e.g. Stripe's confirmation)."""
        record = self.record(event, request, None, None, request.job_id, details)
        record["from"] = record["to"] = request.status.value
        keys = [self.request_key(request.request_id), self.history_key(request.request_id)]
        step = self._note(keys=keys, args=[dump(self.stored(record, request))])
        await self.published(step, lambda _: self.audit.emit(record))
        return record

    async def update_if_held(self, request: RequestT, updates: dict[str, Any]) -> bool:
        """Write ``updates`` only while ``request`` is still in its status under its claim (no
        audit record: used for bookkeeping such as the intent to post). ``False`` if it moved."""
        to_set, _ = split_updates(updates)
        spec = {
            "expect_status": request.status.value,
            "expect_claim": request.claim or "",
            "set": to_set,
        }
        written = await self._update_if_held(
            keys=[self.request_key(request.request_id)], args=[lua.params(**spec)]
        )
        return bool(written)

    async def reenqueue(
        self,
        request: RequestT,
        details: TransitionDetails | None = None,
        *,
        only_if_orphaned: bool = False,
        held_stale_before: float | None = None,
    ) -> str | None:
        """Give a waiting request a fresh arq job, due now, without changing its status.

        Atomic with its ``<prefix>.reenqueued`` history record. Returns the new job id, or
        ``None`` if the request is no longer in the status and job of the snapshot (or, with
        ``only_if_orphaned``, its job turned out to be alive; see ``ledger/lua/reenqueue.lua``).
        ``held_stale_before`` (unix s): a job of the request's own (not a batch) that a worker
        took although it was due before then counts as dead: a live worker claims the request
        within moments of taking its job, so a waiting request whose job is held that long lost
        its worker between the two (arq keeps the dead worker's hold for its longest timeout).
        """
        if request.status not in self.kind.waiting:
            raise ValueError(f"{request.request_id}: only waiting requests are re-enqueued")
        now = time.time()
        status = request.status
        record = self.record(self.kind.reenqueued, request, status, status, None, details)
        spec = {
            "id": request.request_id,
            "expect_status": request.status.value,
            "expect_job": request.job_id or "",
            "record": self.stored(record, request),
            "enqueue": self._enqueue_spec(request, now, 0.0),
            "in_progress_prefix": ARQ_IN_PROGRESS_KEY_PREFIX,
            "only_if_orphaned": only_if_orphaned,
            "heartbeat_key": batch_heartbeat_key(self.prefix, request.job_id or ""),
            "held_stale_before_ms": -1 if held_stale_before is None else held_stale_before * 1000,
        }
        keys = [
            self.request_key(request.request_id),
            self.history_key(request.request_id),
            self.queue_of(request),
        ]

        def publish(result: Any) -> str | None:
            if int(result[0]) != 1:
                return None
            self.audit.emit({**record, "job_id": text(result[1])})
            return text(result[1])

        return await self.published(self._reenqueue(keys=keys, args=[lua.params(**spec)]), publish)
