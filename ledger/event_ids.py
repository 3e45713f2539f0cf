"""Callers' event ids: the same event answers the same result; a different body is a conflict.

Each calling service names its events (``event_id``). The intake stores, per service and event,
the hash of the normalised body and the JSON result it answered, in one hash that never expires
(``P intake:<service>:<event_id>``: ``h`` body hash, ``r`` result, ``at`` unix seconds). Event ids
are the callers' idempotency keys for the life of the ledger, like the ledger's own records.

An account submission is three atomic steps: :meth:`EventRegistry.claim` (store the hash, or say
what is already there), the ledger's own submit script, then :meth:`EventRegistry.finish` (store
the result unless one is already stored, and return the stored one). A conflicting body is refused
at the claim, before anything is written. If the process dies between claim and finish the claim
stays *pending*; the caller's retry with the same body finds it pending, submits again (the ledger
merges it into the account's active request) and finishes it.

Records of requests moved to the archive (:mod:`ledger.archiving`) move with them; the intake
looks there when Redis has none (:meth:`producer.intake.IntakeService.submit`), so "for the life
of the ledger" includes the archive.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis

from ledger import lua


class ClaimState(StrEnum):
    NEW = "new"  # first time: go ahead
    PENDING = "pending"  # same body claimed before but never answered (a crash): go ahead
    ANSWERED = "answered"  # same body answered before: answer the stored result
    CONFLICT = "conflict"  # a different body used this event id: refuse, write nothing


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    result: dict[str, Any] | None = None


def body_hash(normalised: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a normalised body (key order and spacing do not count)."""
    canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class EventRegistry:
    """Per-service event ids and the results answered for them."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._claim = lua.register(redis, "ledger", "claim_event")
        self._finish = lua.register(redis, "ledger", "finish_event")
        self._release = lua.register(redis, "ledger", "release_event")

    def key(self, service: str, event_id: str) -> str:
        return f"{self.prefix}intake:{service}:{event_id}"

    async def claim(self, service: str, event_id: str, digest: str) -> Claim:
        raw = await self._claim(keys=[self.key(service, event_id)], args=[digest, time.time()])
        code = int(raw[0])
        if code == 1:
            return Claim(ClaimState.NEW)
        if code == 0:
            return Claim(ClaimState.PENDING)
        if code == -1:
            return Claim(ClaimState.CONFLICT)
        return Claim(ClaimState.ANSWERED, json.loads(raw[1]))

    async def release(self, service: str, event_id: str, digest: str) -> bool:
        """Drop our unanswered claim (e.g. the event was answered long ago and is archived)."""
        return bool(await self._release(keys=[self.key(service, event_id)], args=[digest]))

    async def finish(
        self,
        service: str,
        event_id: str,
        digest: str,
        result: dict[str, Any],
        *,
        replacing: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Store ``result`` unless one is stored; the stored result, or ``None`` on conflict.

        ``replacing``: the result the caller read; it is replaced by ``result`` only if it is
        still the one stored (compare-and-set), e.g. when the request it named no longer serves
        the event.
        """
        dumped = json.dumps(result, separators=(",", ":"))
        old = "" if replacing is None else json.dumps(replacing, separators=(",", ":"))
        key = self.key(service, event_id)
        raw = await self._finish(keys=[key], args=[digest, dumped, old])
        if raw is None:
            return None
        stored: dict[str, Any] = json.loads(raw)
        return stored
