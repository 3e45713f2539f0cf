"""The Redis-backed ledger: the source of truth for every disconnect request.

Contracts:

- Nothing expires. arq forgets jobs after a day and results after an hour; the ledger does not.
- One active request per account. :meth:`Ledger.submit` for an account that already has one
  merges into it (a ``disconnect.merged`` record in its history) and returns the existing id. An
  urgent submission merged into a waiting bulk request promotes it to the urgent queue.
- :meth:`Ledger.transition` is one Lua script: it checks the expected status (and job), writes
  the new status, appends the history record and, when asked, enqueues the next arq job, all or
  nothing. Two workers can never both move one request; the loser gets :class:`StaleTransition`.
- Exactly one audit record per change, published after the script succeeded, identical to the
  one stored in the request's history. The script and the publication run as one unit under
  :func:`asyncio.shield`: a caller cancelled while awaiting the script's reply still publishes.

The layout is in :mod:`ledger.scripts`, reads in :mod:`ledger.reads`, record helpers in
:mod:`ledger.records`, and the CREATE call's construction in :mod:`ledger.submissions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis

from ledger import scripts
from ledger.audit import STATUS_CHANGED, AuditTrail, TransitionDetails, build_record, process_name
from ledger.jobs import ARQ_JOB_KEY_PREFIX, arq_job_record, job_id_for
from ledger.models import (
    DisconnectRequest,
    IllegalTransition,
    RequestNotFound,
    RequestSource,
    RequestStatus,
    StaleTransition,
    check_transition,
)
from ledger.reads import LedgerReads
from ledger.records import dump, flatten, request_record, stored, text
from ledger.settings import BaseServiceSettings
from ledger.submissions import (
    CreateCall,
    PreparedSubmission,
    Submission,
    create_call,
    finish,
    prepare,
)

__all__ = ["Ledger", "PreparedSubmission", "Submission"]

_JOB_PLACEHOLDER = "__JOB__"
T = TypeVar("T")
R = TypeVar("R")


class Ledger(LedgerReads):
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
        self.job_expires_ms = job_expires_seconds * 1000
        self._create = redis.register_script(scripts.CREATE)
        self._transition = redis.register_script(scripts.TRANSITION)
        self._note = redis.register_script(scripts.NOTE)
        #: Called with the moved request after every transition into a terminal status (a
        #: process's completion metrics); it must not raise or block.
        self.on_terminal: Callable[[DisconnectRequest], None] | None = None

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
        default ``host:pid``)."""
        return cls(
            redis,
            queue_name=settings.queue_name,
            bulk_queue_name=settings.bulk_queue_name,
            audit=audit,
            job_expires_seconds=settings.job_expires_seconds,
            prefix=settings.key_prefix,
            actor=actor,
        )

    async def published(self, step: Awaitable[T], publish: Callable[[T], R]) -> R:
        """Await ``step`` (a script), then ``publish`` its audit records and return what that
        returns, as one unit a cancellation of the caller cannot split: the records are in the
        history once the script ran, so their audit lines must follow even if the caller no
        longer waits for the reply (it still gets its :class:`asyncio.CancelledError`)."""

        async def unit() -> R:
            return publish(await step)

        task = asyncio.ensure_future(unit())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Finish the write's publication before honouring the cancellation, so the caller
            # (and a shutdown closing Redis and the audit file after it) sees a settled ledger.
            with contextlib.suppress(Exception):
                await task
            raise

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
        request_id = prepared.request.request_id
        call = create_call(
            self,
            [prepared],
            job_id=job_id_for(request_id, 1),
            job_bytes=arq_job_record(request_id),
            expire_ms=self.job_expires_ms,
            own_job_seq=True,
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

    # -- changes ------------------------------------------------------------------------------

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
        ``enqueue_in`` (seconds) enqueues a fresh arq job due after that delay, in the same step,
        on the request's queue (its stored priority). ``updates`` are extra request fields to
        write (``None`` clears a field). A terminal move indexes the request under its account.
        """
        check_transition(request.request_id, request.status, to)
        now = time.time()
        attempt = request.attempts + attempts_delta
        job = _JOB_PLACEHOLDER if enqueue_in is not None else request.job_id
        record = request_record(
            self.actor, STATUS_CHANGED, request, request.status, to, job, details=details,
            attempt=attempt,
        )  # fmt: skip
        keys = [
            self.request_key(request.request_id),
            self.history_key(request.request_id),
            self.status_key(request.status),
            self.status_key(to),
            self.active_key(request.account_id),
            self.queue_of(request),
            self.account_requests_key(request.account_id),
            self.queue_name,
        ]
        expected_job = (request.job_id or "") if expect_job else ""
        args: list[Any] = [request.request_id, request.status.value, expected_job, to.value, now]
        args += [stored(record, request), "1" if to.is_terminal else "0", attempts_delta]
        args += self._enqueue_args(request, now, enqueue_in)
        args += flatten(updates or {})

        def publish(result: Any) -> Any:
            if int(result[0]) == 1:
                self.audit.emit({**record, "job_id": text(result[1])})
            return result

        result = await self.published(self._transition(keys=keys, args=args), publish)
        _raise_unless_done(request, to, result)
        changed = {**(updates or {}), "status": to, "updated_at": now}
        changed.update(job_id=text(result[1]), attempts=attempt)
        moved = request.model_copy(update=changed)
        if to.is_terminal and self.on_terminal is not None:
            self.on_terminal(moved)
        return moved

    def _enqueue_args(
        self, request: DisconnectRequest, now: float, enqueue_in: float | None
    ) -> list[Any]:
        """TRANSITION's enqueue arguments: flag, job bytes, due score (ms), expiry (ms), prefix."""
        delay = enqueue_in or 0.0
        job = arq_job_record(request.request_id) if enqueue_in is not None else b""
        flag = "1" if enqueue_in is not None else "0"
        expire_ms = self.job_expires_ms + int(delay * 1000)
        return [flag, job, int((now + delay) * 1000), expire_ms, ARQ_JOB_KEY_PREFIX]

    async def note(
        self, request: DisconnectRequest, event: str, details: TransitionDetails | None = None
    ) -> dict[str, Any]:
        """Append an audit record that is not a status change (e.g. Stripe's confirmation)."""
        record = request_record(
            self.actor, event, request, None, None, request.job_id, details=details
        )
        record["from"] = record["to"] = request.status.value
        keys = [self.request_key(request.request_id), self.history_key(request.request_id)]
        step = self._note(keys=keys, args=[stored(record, request)])
        await self.published(step, lambda _: self.audit.emit(record))
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
        step = self.redis.rpush(self.account_history_key(account_id), dump(record))
        await self.published(step, lambda _: self.audit.emit(record))  # type: ignore[arg-type]
        return record


def _raise_unless_done(request: DisconnectRequest, to: RequestStatus, result: Any) -> None:
    code = int(result[0])
    if code == -1:
        raise RequestNotFound(request.request_id)
    if code == -2:
        raise IllegalTransition(request.request_id, request.status, to)
    if code == 0:
        raise StaleTransition(
            request.request_id, f"{request.status}/{request.job_id}", text(result[1])
        )
