"""What a Redis must be before a process trusts it with the ledger, and when a write is stored.

:func:`check_redis` runs at start-up (workers, intake, ``fcd submit``):

- **Eviction**: a Redis whose ``maxmemory-policy`` is not ``noeviction`` may drop a ledger key
  under memory pressure, which is a deletion lost without a trace. Workers and the intake refuse
  to start (:class:`RedisRefused`, naming the setting and the fix). The policy is read with
  ``CONFIG GET``; where that is not permitted (managed Redis, ACLs) from ``INFO memory``'s
  ``maxmemory_policy``; if neither answers, a ``redis.maxmemory_policy_unknown`` warning is
  logged and the process starts.
- **Durability** (``FCD_DURABILITY``): ``everysec`` acknowledges a submission once Redis has it
  in memory (with ``appendfsync everysec`` a ``kill -9`` can lose about the last second).
  ``fsync`` acknowledges it only once it is on disk or on a replica, by the first of these that
  applies to the server: ``WAITAOF 1 0`` (Redis ≥ 7.2 with ``appendonly yes``), ``WAIT 1``
  (a replica attached), or nothing to wait for (``appendonly yes`` with ``appendfsync always``:
  Redis fsyncs before it replies). If none applies the process refuses to start.
- **Fail-over** (Sentinel mode): a ``min-replicas-to-write`` of 0 is logged as a warning:
  without it the old primary keeps accepting writes after its replica was promoted, and those
  are lost when it rejoins as a replica.

:meth:`DurableWrites.confirm` waits after a submission. ``WAIT``/``WAITAOF`` count a
connection's own writes, and a pool may have used another connection for the submission, so
confirm writes a probe key and waits on that connection: replication and the AOF keep order,
so once the probe is confirmed, everything acknowledged before it is too.

Logged once: ``redis.durability`` (mode, method). No message here contains a password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from ledger.connection import error_code
from ledger.settings import BaseServiceSettings, Durability

log = structlog.get_logger("fcd.redis")

#: How a submission is confirmed: nothing beyond the reply (everysec), ``WAITAOF``, ``WAIT``,
#: or the server's own ``appendfsync always``.
METHOD_NONE = "reply"
METHOD_WAITAOF = "waitaof"
METHOD_WAIT = "wait"
METHOD_ALWAYS = "appendfsync-always"


class RedisRefused(RuntimeError):
    """This Redis is not fit for the ledger as configured; the message says what to change."""


class NotDurable(RuntimeError):
    """A submission reached Redis but could not be confirmed on disk or a replica in time.

    The caller answers 503 / exits non-zero with ``request_ids`` so the submitter retries;
    a resubmission is merged into the same requests.
    """

    def __init__(self, request_ids: list[str], detail: str) -> None:
        super().__init__(
            f"not confirmed durable within the timeout ({detail}); retry: a resubmission is "
            f"merged into {', '.join(request_ids) or 'the same requests'}"
        )
        self.request_ids = request_ids
        self.detail = detail


@dataclass(frozen=True)
class DurableWrites:
    """The durability mode in force and how :meth:`confirm` waits."""

    mode: Durability
    method: str
    timeout_seconds: float
    probe_key: str

    def describe(self) -> dict[str, str]:
        """For ``/readyz`` and the start-up log line."""
        return {"mode": self.mode.value, "method": self.method}

    async def confirm(self, redis: Redis, request_ids: list[str]) -> None:
        """Return once everything this process wrote before the call is on disk or a replica
        (``fsync`` mode); at once in ``everysec`` mode or with ``appendfsync always``.
        Raises :class:`NotDurable` if that is not confirmed within the timeout."""
        if self.method in (METHOD_NONE, METHOD_ALWAYS):
            return
        timeout_ms = max(int(self.timeout_seconds * 1000), 1)
        async with redis.pipeline(transaction=False) as pipe:  # one connection for both
            pipe.incr(self.probe_key)
            if self.method == METHOD_WAITAOF:
                pipe.execute_command("WAITAOF", 1, 0, timeout_ms)
            else:
                pipe.execute_command("WAIT", 1, timeout_ms)
            try:
                _, answer = await pipe.execute()
            except ResponseError as exc:  # e.g. NOREPLICAS on a primary that lost its replica
                raise NotDurable(request_ids, error_code(exc)) from None
        if self.method == METHOD_WAITAOF:
            local = int(answer[0])
            if local < 1:
                raise NotDurable(request_ids, "WAITAOF: not fsynced locally")
        elif int(answer) < 1:
            raise NotDurable(request_ids, "WAIT: no replica acknowledged")


class RedisChecks:
    """:func:`check_redis` for a long-running server (the intake): run at start-up if Redis
    answers, else deferred to the first use, so an intake started while Redis is away still
    starts (and ``/readyz`` says 503) instead of exiting. A refusal found then is raised to the
    caller (the intake answers 503 with its message and logs ``redis.refused``)."""

    def __init__(self, redis: Redis, settings: BaseServiceSettings, role: str) -> None:
        self.redis = redis
        self.settings = settings
        self.role = role
        self.plan: DurableWrites | None = None

    async def start(self) -> None:
        """Check now; :class:`RedisRefused` propagates (the process must not start), an
        unreachable Redis only defers the check."""
        try:
            self.plan = await check_redis(self.redis, self.settings, self.role)
        except (RedisError, OSError) as exc:
            log.warning("redis.check_deferred", role=self.role, error=type(exc).__name__)

    async def durable(self) -> DurableWrites:
        """The plan, checking first if that has not happened yet."""
        if self.plan is None:
            try:
                self.plan = await check_redis(self.redis, self.settings, self.role)
            except RedisRefused as exc:
                log.error("redis.refused", role=self.role, message=str(exc))
                raise
        return self.plan

    def describe(self) -> dict[str, str]:
        """For ``/readyz``: the plan, or the mode with ``method: unchecked`` before the check."""
        if self.plan is None:
            return {"mode": self.settings.durability.value, "method": "unchecked"}
        return self.plan.describe()


def choose_method(
    version: str, appendonly: str | None, appendfsync: str | None, replicas: int
) -> str | None:
    """How ``fsync`` mode confirms a write on this server, or None if it cannot."""
    if appendonly == "yes" and _version_tuple(version) >= (7, 2):
        return METHOD_WAITAOF
    if replicas >= 1:
        return METHOD_WAIT
    if appendonly == "yes" and appendfsync == "always":
        return METHOD_ALWAYS
    return None


async def check_redis(
    redis: Redis, settings: BaseServiceSettings, role: str, *, eviction: bool = True
) -> DurableWrites:
    """The start-up checks above; raise :class:`RedisRefused` or return the durability plan.

    ``eviction=False`` skips the ``maxmemory-policy`` refusal (``fcd submit`` only submits).
    """
    if eviction:
        await _check_eviction(redis, role)
    if settings.sentinel_addresses():
        min_replicas = await _config(redis, "min-replicas-to-write")
        if min_replicas == "0":
            log.warning(
                "redis.failover_may_lose_writes",
                role=role,
                message="the primary has min-replicas-to-write 0: after a Sentinel fail-over "
                "the old primary keeps accepting writes until it is reconfigured, and they are "
                "lost; set min-replicas-to-write 1 (and min-replicas-max-lag 10) on every server",
            )
    plan = await _durability_plan(redis, settings)
    log.info("redis.durability", role=role, **plan.describe())
    return plan


async def _check_eviction(redis: Redis, role: str) -> None:
    policy = await _config(redis, "maxmemory-policy")
    source = "CONFIG GET"
    if policy is None:
        policy = (await _info(redis, "memory")).get("maxmemory_policy")
        source = "INFO memory"
    if policy is None:
        log.warning(
            "redis.maxmemory_policy_unknown",
            role=role,
            message="cannot read maxmemory-policy (CONFIG GET and INFO memory refused): make "
            "sure it is noeviction, or an evicted ledger key is a lost deletion",
        )
        return
    if str(policy) != "noeviction":
        raise RedisRefused(
            f"Redis maxmemory-policy is {policy} (read with {source}): it may evict ledger "
            "keys, and an evicted key is a lost deletion. Set maxmemory-policy noeviction "
            "(redis.conf, or CONFIG SET maxmemory-policy noeviction; on a managed Redis, its "
            "parameter group) and give it enough memory"
        )


async def _durability_plan(redis: Redis, settings: BaseServiceSettings) -> DurableWrites:
    probe = f"{settings.key_prefix}durability:probe"
    timeout = settings.durability_timeout_seconds
    if settings.durability == Durability.EVERYSEC:
        return DurableWrites(settings.durability, METHOD_NONE, timeout, probe)
    server = await _info(redis, "server")
    replication = await _info(redis, "replication")
    appendonly = await _config(redis, "appendonly")
    appendfsync = await _config(redis, "appendfsync")
    if appendonly is None:
        enabled = (await _info(redis, "persistence")).get("aof_enabled")
        appendonly = None if enabled is None else ("yes" if str(enabled) == "1" else "no")
    version = str(server.get("redis_version", "0"))
    replicas = int(replication.get("connected_slaves", 0) or 0)
    method = choose_method(version, appendonly, appendfsync, replicas)
    if method is None:
        raise RedisRefused(
            f"FCD_DURABILITY=fsync cannot be honoured by this Redis ({version}, appendonly "
            f"{appendonly or 'unknown'}, appendfsync {appendfsync or 'unknown'}, {replicas} "
            "replicas): it has no WAITAOF (Redis >= 7.2 with appendonly yes), no replica for "
            "WAIT, and does not fsync before replying. Attach a replica, or set appendonly yes "
            "and appendfsync always, or upgrade to Redis 7.2+ with appendonly yes; or set "
            "FCD_DURABILITY=everysec"
        )
    return DurableWrites(settings.durability, method, timeout, probe)


async def _config(redis: Redis, name: str) -> str | None:
    """A ``CONFIG GET`` value, or None where the command is refused (ACL, renamed, managed)."""
    try:
        answer: dict[Any, Any] = await redis.config_get(name)
    except ResponseError:  # NOPERM is a ResponseError too; "unknown command" on managed Redis
        return None
    value = answer.get(name, answer.get(name.encode()))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def _info(redis: Redis, section: str) -> dict[str, Any]:
    try:
        info: dict[str, Any] = await redis.info(section)
    except ResponseError:
        return {}
    return info


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
