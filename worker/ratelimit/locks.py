"""One Stripe call per account at a time, across every worker.

Stripe answers two concurrent requests on the same object with ``429 lock_timeout``; arq may also
run a job twice. ``AccountLock`` is redis-py's ``Lock`` on ``fcd:lock:account:<id>`` (``SET NX PX``
with a random token on entry, a compare-and-delete on exit), so a holder whose lock already
expired can never delete the lock of the worker that took it over. The TTL must outlast the
guarded work (HTTP timeout plus retries): when it does not, a second worker may start, which the
idempotency key then makes harmless.

It does not wait: a busy account raises :class:`AccountBusy` saying when the other holder's
lock expires (a killed worker's lock outlives it), and the job defers itself until then. If Redis
is unreachable the Redis error propagates and nothing is locked (fail closed).
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Final, Self

from redis.asyncio import Redis
from redis.exceptions import LockError

from ledger.detached import run_detached
from worker.ratelimit.errors import AccountBusy

ACCOUNT_LOCK_PREFIX: Final = "fcd:lock:account:"


class AccountLock:
    """Async context manager holding the lock of one account for at most ``ttl_seconds``."""

    def __init__(
        self,
        redis: Redis,
        account_id: str,
        *,
        ttl_seconds: float = 60.0,
        key_prefix: str = ACCOUNT_LOCK_PREFIX,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.account_id = account_id
        self.key = f"{key_prefix}{account_id}"
        self.ttl_seconds = ttl_seconds
        self._redis = redis
        self._lock = redis.lock(self.key, timeout=ttl_seconds)
        self._held = False

    async def acquire(self) -> None:
        """Take the lock or raise :class:`AccountBusy` at once if another holder has it."""
        if not await self._lock.acquire(blocking=False):
            remaining_ms = await self._redis.pttl(self.key)
            raise AccountBusy(self.account_id, retry_after=max(remaining_ms, 0) / 1000)
        self._held = True

    async def release(self) -> bool:
        """Release if still ours; ``False`` when the lock had expired (or was never taken)."""
        if not self._held:
            return False
        self._held = False
        with contextlib.suppress(LockError):
            await run_detached(self._lock.release())
            return True
        return False

    async def keep_for(self, seconds: float) -> bool:
        """Leave the lock to expire in ``seconds`` instead of releasing it (after a call that was
        cut off mid-flight: it may still run at Stripe); ``False`` if it was no longer ours."""
        if not self._held:
            return False
        self._held = False
        with contextlib.suppress(LockError):
            await run_detached(self._lock.extend(seconds, replace_ttl=True))
            return True
        return False

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


def account_lock(redis: Redis, account_id: str, *, ttl_seconds: float = 60.0) -> AccountLock:
    """``async with account_lock(redis, "fca_…"):`` guards one account's Stripe calls."""
    return AccountLock(redis, account_id, ttl_seconds=ttl_seconds)
