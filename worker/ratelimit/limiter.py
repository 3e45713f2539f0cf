"""``RateLimiter``: the one budget all worker processes share, kept in Redis.

See the package docstring for the design; this module is the client side of the scripts in
:mod:`worker.ratelimit.scripts`: it turns their answers into sleeps, retries while Redis is
unreachable (never granting without it), and waits out a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from control.pause import PAUSE_KEY, PauseState
from ledger import lua
from ledger.backoff import full_jitter
from ledger.detached import run_detached
from worker.ratelimit import scripts
from worker.ratelimit.budget import LimiterSnapshot, Permit, Priority, RateBudget
from worker.ratelimit.errors import LimiterPaused, LimiterTimeout, UnknownEndpoint

# Errors meaning "Redis cannot answer now": retried, never turned into a permit. Anything else
# (a script error, say) is a bug and propagates.
_UNAVAILABLE: Final = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    OSError,
)
_MICRO: Final = 1_000_000
_PACKAGE: Final = "worker.ratelimit"

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Decision:
    status: int
    seconds: float
    booked_at: float | None = None  # GRANTED: the slot booked, unix seconds on Redis's clock


class RateLimiter:
    """Grants permits for Stripe calls within one shared :class:`RateBudget`.

    Every process constructed with the same Redis, budget and ``key_prefix`` shares one limiter.
    Tuning that is about this client rather than the budget: ``pause_poll_seconds`` (how often a
    paused process re-reads the flag, one reader per process), ``busy_retry_seconds`` (how soon to
    ask again when every in-flight slot is taken), ``max_backoff_seconds`` (the longest sleep
    between attempts while Redis is unreachable), ``waiter_grace_seconds`` (how long a
    waiter's queue entry outlives its expected retry, so a dead waiter stops holding others back).
    """

    def __init__(
        self,
        redis: Redis,
        budget: RateBudget,
        *,
        key_prefix: str = "fcd:rl:",
        pause_key: str = PAUSE_KEY,
        pause_poll_seconds: float = 1.0,
        busy_retry_seconds: float = 0.05,
        max_backoff_seconds: float = 5.0,
        waiter_grace_seconds: float = 1.0,
    ) -> None:
        self.budget = budget
        self._redis = redis
        self._prefix = key_prefix
        self._pause_key = pause_key
        self._pause_poll = pause_poll_seconds
        self._busy_retry = busy_retry_seconds
        self._max_backoff = max_backoff_seconds
        self._waiter_grace = waiter_grace_seconds
        self._acquire_script = lua.register(redis, _PACKAGE, "acquire")
        self._report_script = lua.register(redis, _PACKAGE, "report_rate_limited")
        self._snapshot_script = lua.register(redis, _PACKAGE, "snapshot")
        self._pause_watch = asyncio.Lock()
        # The class queues in the order the global budget serves them (see acquire.lua), then
        # the expiry index. ``wait:urgent``/``wait:bulk`` keep their names from before reads had
        # queues of their own, so a worker of the previous version still ranks consistently.
        self._waiter_keys = (
            self._key("wait:urgent"),
            self._key("wait:urgent:read"),
            self._key("wait:bulk"),
            self._key("wait:bulk:read"),
            self._key("wait:expiry"),
        )

    def _key(self, name: str) -> str:
        return f"{self._prefix}{name}"

    async def acquire(
        self,
        endpoint: str,
        *,
        priority: Priority = "urgent",
        timeout: float | None = None,  # noqa: ASYNC109 - part of the contract, see below
        wait_if_paused: bool = True,
    ) -> Permit:
        """Wait until ``endpoint`` may be called, then return a :class:`Permit` holding a lease.

        Never returns without Redis having recorded the grant against the endpoint, global and
        in-flight budgets. Sleeps (no connection held, no polling) for as long as the script says,
        waits while paused, and while Redis is unreachable retries with capped backoff. A caller
        waits while a class served before its own is waiting (urgent disconnects, urgent reads,
        then bulk disconnects and reads taking turns; package docstring). Raises :class:`LimiterTimeout` if
        ``timeout`` seconds pass first (wrapping the call in ``asyncio.timeout`` works the same,
        raising plain ``TimeoutError``); on timeout or cancellation no lease is left behind.
        With ``wait_if_paused=False`` a pause raises :class:`LimiterPaused` instead of waiting
        (a job then hands its request back rather than holding it while paused).
        """
        if endpoint not in self.budget.endpoint_rates:
            raise UnknownEndpoint(endpoint, tuple(self.budget.endpoint_rates))
        lease_id = uuid.uuid4().hex
        try:
            async with asyncio.timeout(timeout):
                return await self._acquire(endpoint, priority, lease_id, wait_if_paused)
        except TimeoutError as exc:
            await run_detached(self._forget(lease_id))
            raise LimiterTimeout(endpoint, timeout) from exc
        except BaseException:
            await run_detached(self._forget(lease_id))
            raise

    @contextlib.asynccontextmanager
    async def slot(
        self,
        endpoint: str,
        *,
        priority: Priority = "urgent",
        timeout: float | None = None,  # noqa: ASYNC109 - passed on to acquire
        wait_if_paused: bool = True,
    ) -> AsyncIterator[None]:
        """``async with limiter.slot("disconnect"):`` wraps one call: acquire, then release.

        Yields nothing, so the limiter satisfies ``worker.gate.CallGate``; use :meth:`acquire`
        when the permit itself is wanted.
        """
        permit = await self.acquire(
            endpoint, priority=priority, timeout=timeout, wait_if_paused=wait_if_paused
        )
        async with permit:
            yield

    async def _acquire(
        self, endpoint: str, priority: Priority, lease_id: str, wait_if_paused: bool
    ) -> Permit:
        failures = 0
        waited = 0.0
        while True:
            try:
                decision = await self._decide(endpoint, priority, lease_id)
                if decision.status == scripts.PAUSED:
                    if not wait_if_paused:
                        raise LimiterPaused(endpoint)
                    await self._wait_while_paused()
                    continue
            except _UNAVAILABLE as exc:
                failures += 1
                await self._back_off(endpoint, failures, exc)
                continue
            failures = 0
            if decision.status == scripts.GRANTED:
                # The slot is booked: sleep exactly until it, no jitter needed.
                await asyncio.sleep(decision.seconds)
                waited += decision.seconds
                return Permit(
                    endpoint, lease_id, waited, self._release, booked_at=decision.booked_at
                )
            sleep_for = decision.seconds + random.uniform(0, min(0.1 * decision.seconds, 0.25))
            await asyncio.sleep(sleep_for)
            waited += sleep_for

    async def _decide(self, endpoint: str, priority: Priority, lease_id: str) -> _Decision:
        budget = self.budget
        protected = budget.protected_endpoint
        keys = [
            self._key(f"tat:ep:{endpoint}"),
            self._key("tat:global"),
            self._key("leases"),
            self._key("adaptive"),
            *self._waiter_keys,
            self._key("stats"),
            self._pause_key,
            self._key(f"tat:ep:{protected}"),
            self._key("turn:bulk"),
        ]
        protected_rate = budget.endpoint_rates.get(protected or "")
        spec = lua.params(
            endpoint_interval=_MICRO / budget.endpoint_rates[endpoint],
            global_interval=_MICRO / budget.global_rate,
            protected_interval=_MICRO / protected_rate if protected_rate else 0,
            burst=budget.burst,
            max_in_flight=budget.max_in_flight,
            lease_us=round(budget.lease_seconds * _MICRO),
            id=lease_id,
            urgent=priority == "urgent",
            protected=endpoint == protected,
            honour_pause=endpoint not in budget.pause_exempt_endpoints,
            reserve_ahead=round(budget.reserve_ahead_seconds * _MICRO),
            recovery_per_us=budget.recovery_per_second / _MICRO,
            busy_retry_us=round(self._busy_retry * _MICRO),
            waiter_grace_us=round(self._waiter_grace * _MICRO),
        )
        answer = await self._acquire_script(keys=keys, args=[spec])
        booked = int(answer[2]) / _MICRO if len(answer) > 2 else None
        return _Decision(int(answer[0]), int(answer[1]) / _MICRO, booked)

    async def _wait_while_paused(self) -> None:
        # One coroutine per process polls the flag; the others queue on the lock and re-check
        # once each when it is lifted, so a paused fleet costs one EXISTS per process per poll.
        async with self._pause_watch:
            paused = await self._redis.exists(self._pause_key)
            while paused:
                await asyncio.sleep(self._pause_poll)
                paused = await self._redis.exists(self._pause_key)

    async def _back_off(self, endpoint: str, failures: int, exc: BaseException) -> None:
        delay = full_jitter(failures, base=0.1, cap=self._max_backoff)
        _log.warning(
            "limiter.redis_unavailable",
            endpoint=endpoint,
            attempt=failures,
            retry_in=round(delay, 3),
            error=repr(exc),
        )
        await asyncio.sleep(delay)

    async def _release(self, lease_id: str) -> None:
        try:
            await run_detached(self._redis.zrem(self._key("leases"), lease_id))
        except (redis_errors.RedisError, OSError) as exc:
            # The lease expires on its own after lease_seconds; nothing else to do.
            _log.warning("limiter.release_failed", lease_id=lease_id, error=repr(exc))

    async def _forget(self, lease_id: str) -> None:
        """Best effort after timeout/cancellation: drop any lease or queue entry we may hold."""
        with contextlib.suppress(redis_errors.RedisError, OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in (self._key("leases"), *self._waiter_keys):
                        pipe.zrem(key, lease_id)
                    await pipe.execute()

    async def report_rate_limited(self, endpoint: str, reason: str | None = None) -> float:
        """Record a Stripe rate-limit 429; return the shared rate factor now in force.

        Multiplies the factor by ``decrease_factor`` (floored at ``min_rate_factor``) unless
        another worker already did so within ``decrease_cooldown_seconds``: one burst of 429s
        seen by many workers is one decrease. Recovery is additive and computed from the time
        since the decrease, so it needs no background task. Redis errors propagate.
        """
        if endpoint not in self.budget.endpoint_rates:
            raise UnknownEndpoint(endpoint, tuple(self.budget.endpoint_rates))
        budget = self.budget
        decreased, factor_text = await self._report_script(
            keys=[self._key("adaptive"), self._key("stats")],
            args=[
                budget.decrease_factor,
                budget.min_rate_factor,
                budget.recovery_per_second / _MICRO,
                round(budget.decrease_cooldown_seconds * _MICRO),
            ],
        )
        factor = float(factor_text)
        _log.warning(
            "limiter.rate_limited",
            endpoint=endpoint,
            reason=reason,
            decreased=bool(decreased),
            rate_factor=factor,
        )
        return factor

    async def snapshot(self) -> LimiterSnapshot:
        """Read the shared state (rate factor, in flight, waits, pause) without changing it."""
        keys = [self._key("adaptive"), self._key("leases"), *self._waiter_keys, self._key("stats")]
        raw = await self._snapshot_script(
            keys=[*keys, self._pause_key], args=[self.budget.recovery_per_second / _MICRO]
        )
        factor_text, in_flight, urgent, bulk, grants, waits, wait_us, limited, *rest = raw
        paused_raw = rest[0] if rest else None
        factor = float(factor_text)
        return LimiterSnapshot(
            rate_factor=factor,
            effective_global_rate=self.budget.global_rate * factor,
            effective_endpoint_rates={
                name: rate * factor for name, rate in self.budget.endpoint_rates.items()
            },
            in_flight=int(in_flight),
            urgent_waiting=int(urgent),
            bulk_waiting=int(bulk),
            grants=int(grants),
            waits=int(waits),
            wait_seconds=int(wait_us) / _MICRO,
            rate_limited_reports=int(limited),
            paused=None if paused_raw is None else PauseState.from_json(paused_raw),
        )
