"""A durable inbox for verified webhook events: de-duplicated by id, applied at least once.

The handler answers 2xx only after :meth:`WebhookInbox.accept` has run one Lua script that both
marks the event id as seen (``P webhook:seen:<evt_id>``, kept 30 days: Stripe retries for 3) and
appends the event to a Redis stream (``P webhook:inbox``). A background task of every intake
process reads the stream through one consumer group (``XREADGROUP``), applies each event and then
acknowledges and deletes it. If a process dies after answering 2xx, the event stays pending in the
group and another (or the restarted) process claims it with ``XAUTOCLAIM`` once it has been idle
for ``claim_idle_ms``: nothing acknowledged to Stripe is lost; an event may be applied twice,
which :mod:`.apply` tolerates (a duplicate note at worst, never a wrong status).

An event whose application keeps failing never blocks the others: each entry is applied on its
own, and after ``max_deliveries`` failed deliveries it is moved to ``P webhook:dead`` (a stream an
operator can read; logged as ``webhooks.dead_lettered``) and removed from the inbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from ledger import lua

SEEN_TTL_SECONDS: Final = 30 * 86_400
GROUP: Final = "intake"

Apply = Callable[[dict[str, Any]], Awaitable[str]]
log = structlog.get_logger("fcd.webhooks")


class WebhookInbox:
    """Accepts verified events into Redis and applies them from there."""

    def __init__(
        self, redis: Redis, prefix: str, *, claim_idle_ms: int = 60_000, max_deliveries: int = 5
    ) -> None:
        self.redis = redis
        self.stream = f"{prefix}webhook:inbox"
        self.dead_stream = f"{prefix}webhook:dead"
        self.prefix = prefix
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self._accept = lua.register(redis, "events", "accept")

    async def accept(self, event_id: str, event: dict[str, Any]) -> bool:
        """Keep ``event`` for processing; ``False`` if its id was accepted before."""
        seen = f"{self.prefix}webhook:seen:{event_id}"
        payload = json.dumps(event, separators=(",", ":"))
        return bool(await self._accept(keys=[seen, self.stream], args=[SEEN_TTL_SECONDS, payload]))

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def process_once(self, consumer: str, apply: Apply, block_ms: int = 1000) -> int:
        """Apply what is waiting (abandoned entries first); return how many were applied."""
        claimed = await self.redis.xautoclaim(
            self.stream, GROUP, consumer, self.claim_idle_ms, "0-0", count=100
        )
        entries: list[tuple[Any, dict[Any, Any]]] = list(claimed[1])
        if not entries:
            read = await self.redis.xreadgroup(
                GROUP, consumer, {self.stream: ">"}, count=100, block=block_ms
            )
            entries = [entry for _, batch in read for entry in batch]
        applied = 0
        for entry_id, fields in entries:
            raw = fields[b"event"] if b"event" in fields else fields["event"]
            try:
                await apply(json.loads(raw))
            except (RedisError, OSError):
                raise  # Redis trouble: stop the batch, the loop backs off and retries
            except Exception:
                log.exception("webhooks.apply_failed", entry_id=str(entry_id))
                await self._dead_letter_if_exhausted(entry_id, raw)
                continue
            await self._remove(entry_id)
            applied += 1
        return applied

    async def _remove(self, entry_id: Any) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()

    async def _dead_letter_if_exhausted(self, entry_id: Any, raw: Any) -> None:
        """After ``max_deliveries`` failures, park the event in the dead-letter stream."""
        info = await self.redis.xpending_range(self.stream, GROUP, entry_id, entry_id, 1)
        deliveries = int(info[0]["times_delivered"]) if info else self.max_deliveries
        if deliveries < self.max_deliveries:
            return
        await self.redis.xadd(self.dead_stream, {"event": raw, "deliveries": deliveries})
        await self._remove(entry_id)
        log.error("webhooks.dead_lettered", entry_id=str(entry_id), deliveries=deliveries)

    async def run(self, consumer: str, apply: Apply) -> None:
        """Process until cancelled; Redis errors and failing events are logged and retried."""
        while True:
            try:
                await self.ensure_group()
                while True:
                    await self.process_once(consumer, apply)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("webhooks.redis_unavailable", error=type(exc).__name__)
            await asyncio.sleep(1.0)

    async def pending(self) -> int:
        """Events accepted but not yet applied (waiting or in flight)."""
        return int(await self.redis.xlen(self.stream))
