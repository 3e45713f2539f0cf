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

Bounds. Both streams are capped on every ``XADD`` (approximate ``MAXLEN ~``, so Redis trims whole
nodes and the length may pass the cap by up to a node, 100 entries by default): the inbox at
:data:`INBOX_MAXLEN` (only reached if no intake applies events for a long time: what is trimmed
is events not yet applied), the dead letters at :data:`DEAD_LETTER_MAXLEN` (the oldest go). Every
trimmed entry is counted in ``P metrics:streams`` (field = stream name, the
``fcd_stream_trimmed_total{stream}`` counter of :mod:`control.exposition`) and logged as
``webhooks.inbox_trimmed`` / ``webhooks.dead_letters_trimmed`` (error): on-call drains dead
letters long before the cap (``deploy/runbook.md``).

Consumers. Each intake process reads under its own consumer name (``host:pid``). When it stops
cleanly, :meth:`WebhookInbox.leave` hands every entry it still holds to the parking consumer
:data:`PARKING_CONSUMER` with their idle time set to ``claim_idle_ms`` (so the next
``XAUTOCLAIM`` of any live consumer takes them at once, the delivery count unchanged), then
deletes its consumer name (``XGROUP DELCONSUMER``), one script. A killed process leaves its name
and its entries; live consumers claim the entries, and the reconciler's
:meth:`WebhookInbox.prune_consumers` deletes every consumer that owns nothing and has been idle
longer than ``FCD_WEBHOOK_CONSUMER_IDLE_SECONDS`` (the parking consumer too, once emptied).
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
from ledger.detached import run_detached

SEEN_TTL_SECONDS: Final = 30 * 86_400
GROUP: Final = "intake"
#: About how many events the inbox keeps waiting: a million-account sweep's events while no
#: intake applies them (applied events are deleted at once; trimmed ones are counted and logged).
INBOX_MAXLEN: Final = 1_000_000
#: About how many dead letters are kept; on-call drains them long before (``deploy/runbook.md``).
DEAD_LETTER_MAXLEN: Final = 10_000
#: Who holds the entries a stopping consumer handed back until a live one claims them.
PARKING_CONSUMER: Final = "handed-back"
#: How long a stopping consumer tries to leave (Redis unreachable: the reconciler prunes it).
LEAVE_TIMEOUT_SECONDS: Final = 5.0

Apply = Callable[[dict[str, Any]], Awaitable[str]]
log = structlog.get_logger("fcd.webhooks")


class WebhookInbox:
    """Accepts verified events into Redis and applies them from there."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 5,
        maxlen: int = INBOX_MAXLEN,
        dead_letter_maxlen: int = DEAD_LETTER_MAXLEN,
    ) -> None:
        self.redis = redis
        self.stream = f"{prefix}webhook:inbox"
        self.dead_stream = f"{prefix}webhook:dead"
        #: ``control.metrics.counter_key(prefix, "streams")`` (events may not import control)
        self.trimmed_key = f"{prefix}metrics:streams"
        self.prefix = prefix
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.maxlen = maxlen
        self.dead_letter_maxlen = dead_letter_maxlen
        self._accept = lua.register(redis, "events", "accept")
        self._dead_letter = lua.register(redis, "events", "dead_letter")
        self._hand_back = lua.register(redis, "events", "hand_back")
        self._prune = lua.register(redis, "events", "prune_consumers")

    async def accept(self, event_id: str, event: dict[str, Any]) -> bool:
        """Keep ``event`` for processing; ``False`` if its id was accepted before."""
        seen = f"{self.prefix}webhook:seen:{event_id}"
        payload = json.dumps(event, separators=(",", ":"))
        fresh, trimmed = await self._accept(
            keys=[seen, self.stream, self.trimmed_key],
            args=[SEEN_TTL_SECONDS, payload, self.maxlen, "webhook:inbox"],
        )
        if trimmed:
            log.error("webhooks.inbox_trimmed", trimmed=int(trimmed), maxlen=self.maxlen)
        return bool(fresh)

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
        trimmed = await self._dead_letter(
            keys=[self.dead_stream, self.stream, self.trimmed_key],
            args=[GROUP, entry_id, raw, deliveries, self.dead_letter_maxlen, "webhook:dead"],
        )
        log.error("webhooks.dead_lettered", entry_id=str(entry_id), deliveries=deliveries)
        if trimmed:
            log.error(
                "webhooks.dead_letters_trimmed",
                trimmed=int(trimmed),
                maxlen=self.dead_letter_maxlen,
            )

    async def run(self, consumer: str, apply: Apply) -> None:
        """Process until cancelled; Redis errors and failing events are logged and retried.

        Cancelled (the process stops cleanly), it leaves the group (:meth:`leave`) before it returns.
        """
        try:
            while True:
                try:
                    await self.ensure_group()
                    while True:
                        await self.process_once(consumer, apply)
                except (RedisError, OSError) as exc:
                    log.warning("webhooks.redis_unavailable", error=type(exc).__name__)
                await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            try:
                await run_detached(self._leave_within(consumer, LEAVE_TIMEOUT_SECONDS))
            except (RedisError, OSError, TimeoutError) as exc:  # the reconciler prunes it later
                log.warning("webhooks.leave_failed", consumer=consumer, error=type(exc).__name__)
            raise

    async def _leave_within(self, consumer: str, seconds: float) -> int:
        async with asyncio.timeout(seconds):
            return await self.leave(consumer)

    async def leave(self, consumer: str) -> int:
        """Hand back what ``consumer`` holds, then delete it; return how many entries it held.

        See the module docstring: the entries go to :data:`PARKING_CONSUMER`, idle enough for
        the next ``XAUTOCLAIM`` of a live consumer, their delivery count unchanged.
        """
        if not await self.redis.exists(self.stream):
            return 0
        handed = int(
            await self._hand_back(
                keys=[self.stream], args=[GROUP, consumer, PARKING_CONSUMER, self.claim_idle_ms]
            )
        )
        log.info("webhooks.consumer_left", consumer=consumer, handed_back=handed)
        return handed

    async def prune_consumers(self, min_idle_seconds: float) -> list[str]:
        """Delete consumers that own no entry and were idle ``min_idle_seconds``; their names."""
        names = await self._prune(keys=[self.stream], args=[GROUP, int(min_idle_seconds * 1000)])
        deleted = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        if deleted:
            log.info("webhooks.consumers_pruned", consumers=deleted)
        return deleted

    async def pending(self) -> int:
        """Events accepted but not yet applied (waiting or in flight)."""
        return int(await self.redis.xlen(self.stream))

    async def dead_letters(self) -> int:
        """Events parked in the dead-letter stream (at most about ``dead_letter_maxlen``)."""
        return int(await self.redis.xlen(self.dead_stream))
