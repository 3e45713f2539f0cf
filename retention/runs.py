"""Sweep-run records: what each retention sweep did, kept in Redis and shown by ``fcd sweeps``.

Keys (``P`` is the key prefix):

- ``P sweep:<sw_id>``         hash: the run (:class:`SweepRun`), counters updated as it goes
- ``P sweep:<sw_id>:hist``    list: the run's audit records (JSON), oldest first
- ``P sweeps``                sorted set: run ids by start time
- ``P sweeps:active``         sorted set: the runs not yet terminal, by start time (the
  reconciler's index: :func:`recover_runs`)
- ``P sweep:<sw_id>:alive``   string: the heartbeat of a running run, refreshed every
  :data:`HEARTBEAT_SECONDS` by whoever runs it, expiring after :data:`HEARTBEAT_TTL_SECONDS`
- ``P sweep:lock:<policy>``   string: held while a sweep of the policy runs (one at a time;
  the run records the lock's token as ``lock_token``, so a lost run's lock can be released)
- ``P sweep:slot:<policy>:<ms>``  string: a scheduled run claimed its slot (one run per slot)

Every write of a run's status and its audit record is one script (``retention/lua/
write_run.lua``), one round trip.

Lost runs: a run whose process was killed stops beating. :func:`recover_runs` (called by the
reconciler pass of every worker and by ``fcd reconcile``) fails a ``listing``/``submitting`` run
whose heartbeat is gone, with the reason, and releases its policy lock; and fails a
``requested`` run whose arq job is gone before any bulk worker picked it up. Re-running a policy
after that is safe: accounts already submitted merge into their active requests, and finished
ones are listed as ``disconnected`` and not selected again.

Audit events (same record shape as every other; ``request_id`` is the run id, ``reference`` the
policy): ``sweep.started``, ``sweep.selected`` (counts and the guard's verdict in ``message``),
``sweep.refused`` (the blast-radius guard said no), ``sweep.finished``, ``sweep.failed``,
``sweep.cancelled`` (an operator stopped it, with ``operator`` and the reason).

Once a run is terminal its record no longer changes: that script does nothing to a terminal run,
so a cancel cannot be overwritten by the sweep still running, which notices it within a second
and stops (``retention.sweep``).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from ledger import lua
from ledger.audit import AuditTrail, build_record, process_name
from ledger.detached import run_detached
from ledger.models import RequestSource, new_request_id

SWEEP_STARTED = "sweep.started"
SWEEP_SELECTED = "sweep.selected"
SWEEP_REFUSED = "sweep.refused"
SWEEP_FINISHED = "sweep.finished"
SWEEP_FAILED = "sweep.failed"
SWEEP_CANCELLED = "sweep.cancelled"


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
RUNNING_SWEEP = frozenset({SweepStatus.LISTING, SweepStatus.SUBMITTING})
HEARTBEAT_SECONDS = 10.0
HEARTBEAT_TTL_SECONDS = 45.0


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
    lock_token: str = ""

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
        self._write_script = lua.register(redis, "retention", "write_run")

    def key(self, run_id: str) -> str:
        return f"{self.prefix}sweep:{run_id}"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}sweeps"

    @property
    def active_key(self) -> str:
        return f"{self.prefix}sweeps:active"

    def heartbeat_key(self, run_id: str) -> str:
        return f"{self.prefix}sweep:{run_id}:alive"

    async def create(self, run: SweepRun) -> SweepRun:
        """Store a new run (its status as given) and audit ``sweep.started``, in one step."""
        fields = run.model_dump(mode="json", exclude_none=True, exclude={"summary"})
        mode = "apply" if run.apply else "dry run"
        record = self._record(run, SWEEP_STARTED, f"{mode} of policy {run.policy} ({run.trigger})")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key(run.run_id), mapping={k: _redis_value(v) for k, v in fields.items()})
            pipe.zadd(self.index_key, {run.run_id: run.started_at})
            pipe.zadd(self.active_key, {run.run_id: run.started_at})
            pipe.rpush(self._history_key(run.run_id), _dump(record))
            await pipe.execute()
        self.audit.emit(record)
        return run

    async def update(self, run_id: str, **fields: Any) -> bool:
        """Write counters or status (progress is read from here by ``fcd sweep``); nothing is
        written to a terminal run (then ``False``)."""
        return await self._store(run_id, fields)

    async def _store(
        self,
        run_id: str,
        fields: dict[str, Any],
        record: dict[str, Any] | None = None,
        *,
        finished: bool = False,
    ) -> bool:
        spec: dict[str, Any] = {"set": {k: str(_redis_value(v)) for k, v in fields.items()}}
        if record is not None:
            spec["record"] = _dump(record)
        spec["finished"] = finished
        keys = [self.key(run_id), self._history_key(run_id)]
        keys += [self.active_key, self.heartbeat_key(run_id)]
        return bool(await self._write_script(keys=keys, args=[lua.params(**spec)]))

    async def beat(self, run_id: str) -> None:
        """Refresh the run's heartbeat (its runner is alive)."""
        ttl_ms = int(HEARTBEAT_TTL_SECONDS * 1000)
        await self.redis.set(self.heartbeat_key(run_id), self.actor, px=ttl_ms)

    async def selected(self, run: SweepRun, summary: dict[str, Any], refusal: str | None) -> None:
        """Record the selection summary and audit ``sweep.selected``, in one step."""
        verdict = refusal or "within the blast-radius guard"
        message = f"{summary['selected']} of {summary['scanned']} accounts selected; {verdict}"
        fields = {
            "scanned": summary["scanned"],
            "selected": summary["selected"],
            "summary": json.dumps(summary, separators=(",", ":")),
        }
        await self._write(run, fields, self._record(run, SWEEP_SELECTED, message))

    async def finish(self, run: SweepRun, status: SweepStatus, message: str) -> SweepRun:
        """Move the run to a terminal status and audit it (at error level when it failed), in
        one step; the run leaves the active index and its heartbeat stops counting."""
        event = {
            SweepStatus.REFUSED: SWEEP_REFUSED,
            SweepStatus.FAILED: SWEEP_FAILED,
        }.get(status, SWEEP_FINISHED)
        fields = {"status": status.value, "finished_at": time.time(), "message": message}
        level = "info" if status == SweepStatus.FINISHED else "error"
        await self._write(
            run, fields, self._record(run, event, message), finished=True, level=level
        )
        return await self.get(run.run_id)

    async def _write(
        self,
        run: SweepRun,
        fields: dict[str, Any],
        record: dict[str, Any],
        *,
        finished: bool = False,
        level: str = "info",
    ) -> bool:
        """Write ``fields`` and the audit ``record`` in one step, and publish the record, unless
        the run is terminal already (then nothing happens: ``False``)."""
        written = await self._store(run.run_id, fields, record, finished=finished)
        if written:
            self.audit.emit(record, level)
        return written

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
        fields = {"status": SweepStatus.CANCELLED.value, "finished_at": time.time()}
        cancelled = run.model_copy(update={"operator": operator.strip()})
        record = self._record(cancelled, SWEEP_CANCELLED, message)
        fields["message"] = message
        if not await self._write(run, fields, record, finished=True, level="warning"):
            current = await self.get(run_id)
            raise CannotCancel(f"{run_id} is already {current.status.value}; nothing to cancel")
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
        raw = await self.redis.lrange(self._history_key(run_id), 0, -1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    async def claim_slot(self, policy: str, slot_ms: int, ttl_seconds: int = 86_400) -> bool:
        """True for the first caller of a scheduled slot; every other caller gets False."""
        key = f"{self.prefix}sweep:slot:{policy}:{slot_ms}"
        return bool(await self.redis.set(key, self.actor, nx=True, ex=ttl_seconds))

    def policy_lock(self, policy: str, ttl_seconds: float | None = None) -> Lock:
        """The policy's lock (one sweep of a policy at a time, across every process): redis-py's
        ``Lock`` on ``P sweep:lock:<policy>``, expiring after ``ttl_seconds``."""
        return self.redis.lock(f"{self.prefix}sweep:lock:{policy}", timeout=ttl_seconds)

    async def lock(self, policy: str, ttl_seconds: float) -> str | None:
        """Take the policy's lock; its token, or ``None`` if another sweep holds it."""
        token = secrets.token_hex(8)
        taken = await self.policy_lock(policy, ttl_seconds).acquire(blocking=False, token=token)
        return token if taken else None

    async def unlock(self, policy: str, token: str) -> bool:
        """Release the policy's lock if ``token`` still holds it (``False`` if it expired or was
        taken over meanwhile)."""
        lock = self.policy_lock(policy)
        lock.local.token = token.encode()
        try:
            await lock.release()
        except LockError:
            return False
        return True

    def _history_key(self, run_id: str) -> str:
        return f"{self.key(run_id)}:hist"

    def _record(self, run: SweepRun, event: str, message: str) -> dict[str, Any]:
        return build_record(
            event,
            request_id=run.run_id,
            source=RequestSource.RETENTION_POLICY.value,
            reference=run.policy,
            worker=self.actor,
            message=message,
            operator=run.operator or None,
        )


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


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


@dataclass(frozen=True)
class RunRecovery:
    """A sweep run the reconciler found lost, and what it did about it."""

    run_id: str
    policy: str
    status: SweepStatus
    problem: str
    lock_released: bool = False


async def recover_runs(
    runs: SweepRuns, *, job_key_prefix: str, dry_run: bool = False, now: float | None = None
) -> list[RunRecovery]:
    """Fail every run whose process was lost (see the module docstring); release its lock.

    ``job_key_prefix`` is arq's job key prefix (``arq:job:``): a ``requested`` run's job has the
    run's id. Runs younger than the heartbeat's time to live are left alone (their runner may
    not have beaten yet).
    """
    now = time.time() if now is None else now
    found: list[RunRecovery] = []
    lock = runs.redis.lock(f"{runs.prefix}sweeps:recover:lock", timeout=120)
    if not await lock.acquire(blocking=False):
        return found  # another process is recovering right now
    try:
        await _recover(runs, job_key_prefix, dry_run, now, found)
    finally:
        with contextlib.suppress(LockError):
            await run_detached(lock.release())
    return found


async def _recover(
    runs: SweepRuns, job_key_prefix: str, dry_run: bool, now: float, found: list[RunRecovery]
) -> None:
    for raw_id in await runs.redis.zrange(runs.active_key, 0, -1):
        run_id = _text(raw_id)
        try:
            run = await runs.get(run_id)
        except KeyError:
            await runs.redis.zrem(runs.active_key, run_id)
            continue
        problem = await _lost(runs, run, job_key_prefix, now)
        if problem is None:
            continue
        recovery = RunRecovery(run.run_id, run.policy, run.status, problem)
        if not dry_run:
            await runs.finish(run, SweepStatus.FAILED, f"lost: {problem}; run the policy again")
            released = bool(run.lock_token) and await runs.unlock(run.policy, run.lock_token)
            recovery = RunRecovery(run.run_id, run.policy, run.status, problem, released)
        found.append(recovery)


async def _lost(runs: SweepRuns, run: SweepRun, job_key_prefix: str, now: float) -> str | None:
    if run.status in TERMINAL_SWEEP:
        await runs.redis.zrem(runs.active_key, run.run_id)  # a finish interrupted mid-way
        return None
    if now - run.started_at < HEARTBEAT_TTL_SECONDS or await runs.redis.exists(
        runs.heartbeat_key(run.run_id)
    ):
        return None
    if run.status == SweepStatus.REQUESTED:
        if await runs.redis.exists(job_key_prefix + run.run_id):
            return None  # still waiting for a bulk worker
        return "its job expired or was lost before any bulk worker picked it up"
    return f"{run.status.value} with no heartbeat for {HEARTBEAT_TTL_SECONDS:.0f}s (worker lost)"
