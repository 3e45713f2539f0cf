"""Sweep-run records: what each retention sweep did, kept in Redis and shown by ``fcd sweeps``.

Keys (``P`` is the key prefix):

- ``P sweep:<sw_id>``         hash: the run (:class:`SweepRun`), counters updated as it goes
- ``P sweep:<sw_id>:hist``    list: the run's audit records (JSON), oldest first
- ``P sweeps``                sorted set: run ids by start time
- ``P sweep:lock:<policy>``   string: held while a sweep of the policy runs (one at a time)
- ``P sweep:slot:<policy>:<ms>``  string: a scheduled run claimed its slot (one run per slot)

Audit events (same record shape as every other; ``request_id`` is the run id, ``reference`` the
policy): ``sweep.started``, ``sweep.selected`` (counts and the guard's verdict in ``message``),
``sweep.refused`` (the blast-radius guard said no), ``sweep.finished``, ``sweep.failed``,
``sweep.cancelled`` (an operator stopped it, with ``operator`` and the reason).

Once a run is terminal its record no longer changes: every write goes through one script that
does nothing to a terminal run (:data:`WRITE_UNLESS_TERMINAL`), so a cancel cannot be overwritten
by the sweep still running, which notices it within a second and stops (``retention.sweep``).
"""

from __future__ import annotations

import json
import secrets
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis

from ledger.audit import AuditTrail, build_record, process_name
from ledger.models import RequestSource, new_request_id
from ledger.reconcile import RELEASE_LOCK

SWEEP_STARTED = "sweep.started"
SWEEP_SELECTED = "sweep.selected"
SWEEP_REFUSED = "sweep.refused"
SWEEP_FINISHED = "sweep.finished"
SWEEP_FAILED = "sweep.failed"
SWEEP_CANCELLED = "sweep.cancelled"

# KEYS: the run's hash. ARGV: field/value pairs. Writes them unless the run is terminal; 1 if done.
WRITE_UNLESS_TERMINAL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'refused' or status == 'finished' or status == 'failed' or status == 'cancelled' then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


class SweepStatus(StrEnum):
    """Where a sweep run is."""

    REQUESTED = "requested"  # the CLI asked a bulk worker to run it; not picked up yet
    LISTING = "listing"  # reading accounts and selecting
    SUBMITTING = "submitting"  # the guard passed; submitting requests (paced by queue depth)
    REFUSED = "refused"  # terminal: the blast-radius guard refused (nothing submitted)
    FINISHED = "finished"  # terminal: a dry run reported, or every selected account submitted
    FAILED = "failed"  # terminal: listing or submitting stopped on an error
    CANCELLED = "cancelled"  # terminal: an operator cancelled it (requests already submitted stay)


TERMINAL_SWEEP = frozenset(
    {SweepStatus.REFUSED, SweepStatus.FINISHED, SweepStatus.FAILED, SweepStatus.CANCELLED}
)


class CannotCancel(ValueError):
    """The run is already terminal (or unknown); the message says which."""


class SweepRun(BaseModel):
    """One sweep run as stored."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    policy: str
    policy_digest: str = ""
    trigger: str  # "schedule" or "cli"
    apply: bool = False  # False: a dry run
    forced: bool = False
    operator: str = ""
    source: str = ""
    status: SweepStatus
    scheduled_at: float | None = None
    started_at: float
    finished_at: float | None = None
    scanned: int = 0
    selected: int = 0
    submitted: int = 0
    merged: int = 0
    waited_seconds: float = 0.0
    message: str = ""
    summary: dict[str, Any] | None = None

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> SweepRun:
        data: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
        if "summary" in data:
            data["summary"] = json.loads(data["summary"])
        return cls.model_validate(data)


def new_sweep_id() -> str:
    return "sw_" + new_request_id()[3:]


class SweepRuns:
    """Reads and writes sweep-run records and their audit trail."""

    def __init__(self, redis: Redis, prefix: str, audit: AuditTrail) -> None:
        self.redis = redis
        self.prefix = prefix
        self.audit = audit
        self.actor = process_name()
        self._write = redis.register_script(WRITE_UNLESS_TERMINAL)

    def key(self, run_id: str) -> str:
        return f"{self.prefix}sweep:{run_id}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}sweeps"

    async def create(self, run: SweepRun) -> SweepRun:
        """Store a new run (its status as given) and audit ``sweep.started``."""
        fields = run.model_dump(mode="json", exclude_none=True, exclude={"summary"})
        flat = {k: (int(v) if isinstance(v, bool) else v) for k, v in fields.items()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(run.run_id), mapping=flat)
            pipe.zadd(self.index_key, {run.run_id: run.started_at})
            await pipe.execute()
        mode = "apply" if run.apply else "dry run"
        await self._audit(run, SWEEP_STARTED, f"{mode} of policy {run.policy} ({run.trigger})")
        return run

    async def update(self, run_id: str, **fields: Any) -> bool:
        """Write counters or status (progress is read from here by ``fcd sweep``); nothing is
        written to a terminal run (then ``False``)."""
        args: list[str | int | float] = []
        for name, value in fields.items():
            args += [name, _redis_value(value)]
        return bool(await self._write(keys=[self.key(run_id)], args=args))

    async def selected(self, run: SweepRun, summary: dict[str, Any], refusal: str | None) -> None:
        """Record the selection summary and audit ``sweep.selected``."""
        await self.update(
            run.run_id,
            scanned=summary["scanned"],
            selected=summary["selected"],
            summary=json.dumps(summary, separators=(",", ":")),
        )
        verdict = refusal or "within the blast-radius guard"
        message = f"{summary['selected']} of {summary['scanned']} accounts selected; {verdict}"
        await self._audit(run, SWEEP_SELECTED, message)

    async def finish(self, run: SweepRun, status: SweepStatus, message: str) -> SweepRun:
        """Move the run to a terminal status and audit it (at error level when it failed)."""
        event = {
            SweepStatus.REFUSED: SWEEP_REFUSED,
            SweepStatus.FAILED: SWEEP_FAILED,
        }.get(status, SWEEP_FINISHED)
        now = time.time()
        if await self.update(run.run_id, status=status.value, finished_at=now, message=message):
            level = "info" if status == SweepStatus.FINISHED else "error"
            await self._audit(run, event, message, level)
        return await self.get(run.run_id)

    async def cancel(self, run_id: str, *, operator: str, reason: str) -> SweepRun:
        """Cancel a run that is not terminal: it becomes ``cancelled`` at once (a ``requested``
        run is then skipped by the bulk worker; a running one stops within a second).
        Requests it already submitted stay; the message says how many. Raises
        :class:`CannotCancel` for a terminal or unknown run, :class:`ValueError` without an
        operator and a reason (both are audited)."""
        if not operator.strip() or not reason.strip():
            raise ValueError("an operator name and a reason are required")
        try:
            run = await self.get(run_id)
        except KeyError:
            raise CannotCancel(f"no sweep run {run_id}") from None
        message = f"cancelled by {operator.strip()}: {reason.strip()}"
        if run.submitted + run.merged:
            message += f" ({run.submitted + run.merged:,} requests submitted before stay queued)"
        now = time.time()
        written = await self.update(
            run_id, status=SweepStatus.CANCELLED.value, finished_at=now, message=message
        )
        if not written:
            current = await self.get(run_id)
            raise CannotCancel(f"{run_id} is already {current.status.value}; nothing to cancel")
        cancelled = run.model_copy(update={"operator": operator.strip()})
        await self._audit(cancelled, SWEEP_CANCELLED, message, "warning")
        return await self.get(run_id)

    async def is_cancelled(self, run_id: str) -> bool:
        status = await self.redis.hget(self.key(run_id), "status")  # type: ignore[misc]
        return status is not None and _text(status) == SweepStatus.CANCELLED.value

    async def get(self, run_id: str) -> SweepRun:
        raw = await self.redis.hgetall(self.key(run_id))  # type: ignore[misc]
        if not raw:
            raise KeyError(run_id)
        return SweepRun.from_redis({_text(k): _text(v) for k, v in raw.items()})

    async def recent(self, limit: int = 20) -> list[SweepRun]:
        """The latest runs, newest first."""
        ids = await self.redis.zrevrange(self.index_key, 0, limit - 1)
        return [await self.get(_text(run_id)) for run_id in ids]

    async def history(self, run_id: str) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(f"{self.key(run_id)}:hist", 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    async def claim_slot(self, policy: str, slot_ms: int, ttl_seconds: int = 86_400) -> bool:
        """True for the first caller of a scheduled slot; every other caller gets False."""
        key = f"{self.prefix}sweep:slot:{policy}:{slot_ms}"
        return bool(await self.redis.set(key, self.actor, nx=True, ex=ttl_seconds))

    async def lock(self, policy: str, ttl_seconds: float) -> str | None:
        """Take the policy's lock (one sweep of a policy at a time); ``None`` if it is held."""
        token = secrets.token_hex(8)
        key = f"{self.prefix}sweep:lock:{policy}"
        taken = await self.redis.set(key, token, nx=True, px=int(ttl_seconds * 1000))
        return token if taken else None

    async def unlock(self, policy: str, token: str) -> None:
        key = f"{self.prefix}sweep:lock:{policy}"
        await self.redis.eval(RELEASE_LOCK, 1, key, token)  # type: ignore[misc]

    async def _audit(self, run: SweepRun, event: str, message: str, level: str = "info") -> None:
        record = build_record(
            event,
            request_id=run.run_id,
            source=RequestSource.RETENTION_POLICY.value,
            reference=run.policy,
            worker=self.actor,
            message=message,
            operator=run.operator or None,
        )
        await self.redis.rpush(  # type: ignore[misc]
            f"{self.key(run.run_id)}:hist", json.dumps(record, separators=(",", ":"))
        )
        self.audit.emit(record, level)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_value(value: Any) -> str | int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, int | float | str):
        return value
    return json.dumps(value, separators=(",", ":"))
