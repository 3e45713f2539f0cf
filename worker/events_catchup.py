"""Catch up on missed webhooks: read Stripe's event list into the same inbox webhooks feed.

Stripe keeps events for 30 days (``GET /v1/events``: "List events, going back up to 30 days").
A webhook endpoint that was down, misconfigured or rotated its secret badly loses deliveries once
Stripe's own retries (about three days) give up; a user who disconnected at their bank would then
never cancel our waiting request. :func:`catch_up` reads
``GET /v1/events?type=financial_connections.account.disconnected`` and hands every event to
:meth:`events.inbox.WebhookInbox.accept`, the step a verified webhook takes: the inbox
de-duplicates by event id (30 days), so an event received both ways is applied once, and the
intake's inbox consumer applies it as it applies webhooks.

Where it starts. The cursor ``P events:catchup:cursor`` (a hash: ``created``, ``id`` of the newest
event seen, and ``at``) is written after a pass has handed every listed event to the inbox. A
pass lists ``created[gte] = cursor - FCD_EVENTS_CATCHUP_OVERLAP_SECONDS`` (events are not always
listable the instant they are created; the overlap re-reads a few minutes, which the inbox
de-duplicates), newest first, paging with ``starting_after``; the first pass, without a cursor,
starts ``FCD_EVENTS_CATCHUP_LOOKBACK_SECONDS`` ago, and no pass asks for more than Stripe keeps.
Bounding by ``created`` rather than by the cursor event's id means an event Stripe has since
dropped never makes the list call fail. A pass cut short (crash, timeout) leaves the cursor where
it was: the next pass reads the same events again and the inbox drops the duplicates.

Budget. Each page is one call inside the shared limiter's ``list`` slot at priority ``bulk``
(:func:`worker.retention.bulk_list_call`, with its retries): ``/v1/events`` is its own endpoint at
Stripe, but a pass is a handful of calls every few minutes, so it shares the list budget rather
than adding an ``events`` budget that would only carve the same global budget finer.

Schedule. :func:`events_catchup_job` is an arq cron job (``unique=True``, like the reconciler)
in every long-running worker, plus a Redis lock (``P lock:events-catchup``): one pass at a time
across the fleet. Only the platform's own events are read (a connected account's events carry
``account`` and are listed only with its ``Stripe-Account``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
from redis.exceptions import RedisError

from control.metrics import counter_key
from events.apply import DISCONNECTED_EVENT
from events.inbox import WebhookInbox
from worker.disconnect import DisconnectDeps
from worker.ratelimit import AccountBusy, AccountLock
from worker.retention import bulk_list_call

EVENTS_CATCHUP_JOB = "events_catchup"
STRIPE_RETENTION_SECONDS = 30 * 86_400
_RETENTION_MARGIN_SECONDS = 3_600  # never ask for the edge of what Stripe keeps
log = structlog.get_logger("fcd.worker")


@dataclass(frozen=True)
class CatchupReport:
    """What one pass did: events listed, new to the inbox, already there, the cursor after."""

    listed: int = 0
    accepted: int = 0
    duplicates: int = 0
    cursor_created: int | None = None
    busy: bool = False


def cursor_key(prefix: str) -> str:
    return f"{prefix}events:catchup:cursor"


async def catch_up(
    deps: DisconnectDeps,
    inbox: WebhookInbox,
    *,
    lookback_seconds: float,
    overlap_seconds: float,
    lock_seconds: float = 600.0,
    now: float | None = None,
) -> CatchupReport:
    """One pass (see the module docstring); ``busy`` if another worker's pass holds the lock."""
    redis, prefix = deps.ledger.redis, deps.ledger.prefix
    try:
        async with AccountLock(
            redis, "events-catchup", ttl_seconds=lock_seconds, key_prefix=f"{prefix}lock:"
        ):
            return await _pass(deps, inbox, lookback_seconds, overlap_seconds, now or time.time())
    except AccountBusy:
        return CatchupReport(busy=True)


async def _pass(
    deps: DisconnectDeps,
    inbox: WebhookInbox,
    lookback_seconds: float,
    overlap_seconds: float,
    now: float,
) -> CatchupReport:
    redis, key = deps.ledger.redis, cursor_key(deps.ledger.prefix)
    raw = await redis.hget(key, "created")  # type: ignore[misc]
    cursor = int(raw) if raw is not None else None
    since = cursor - overlap_seconds if cursor is not None else now - lookback_seconds
    since = max(since, now - STRIPE_RETENTION_SECONDS + _RETENTION_MARGIN_SECONDS)
    listed = accepted = 0
    newest: dict[str, Any] | None = None
    starting_after: str | None = None
    while True:
        fetch = partial(
            deps.stripe.list_events,
            event_type=DISCONNECTED_EVENT,
            created_gte=int(since),
            starting_after=starting_after,
        )
        page, has_more = await bulk_list_call(deps, fetch)
        for event in page:
            event_id = event.get("id")
            if not isinstance(event_id, str) or not event_id:
                continue
            listed += 1
            accepted += int(await inbox.accept(event_id, event))
            if newest is None or int(event.get("created") or 0) > int(newest.get("created") or 0):
                newest = event
        if not has_more or not page:
            break
        starting_after = str(page[-1].get("id"))
    cursor_after = max(cursor or 0, int(newest.get("created") or 0)) if newest else cursor
    if cursor_after is not None:
        fields = {"created": cursor_after, "at": int(now)}
        if newest is not None:
            fields["id"] = newest["id"]
        await redis.hset(key, mapping=fields)  # type: ignore[misc]
    await _count(deps, accepted, listed - accepted)
    return CatchupReport(listed, accepted, listed - accepted, cursor_after)


async def _count(deps: DisconnectDeps, accepted: int, duplicates: int) -> None:
    """``fcd_webhooks_total{type, result="caught_up"|"caught_up_duplicate"}``; best effort."""
    key = counter_key(deps.ledger.prefix, "webhooks")
    with contextlib.suppress(RedisError, OSError):
        async with deps.ledger.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, f"{DISCONNECTED_EVENT}|caught_up", accepted)
            pipe.hincrby(key, f"{DISCONNECTED_EVENT}|caught_up_duplicate", duplicates)
            await pipe.execute()


async def events_catchup_job(ctx: dict[str, Any]) -> str:
    """arq cron job: one catch-up pass (see the module docstring)."""
    deps: DisconnectDeps = ctx["deps"]
    settings = ctx["settings"]
    report = await catch_up(
        deps,
        ctx["inbox"],
        lookback_seconds=settings.events_catchup_lookback_seconds,
        overlap_seconds=settings.events_catchup_overlap_seconds,
    )
    log.info(
        "events.caught_up",
        listed=report.listed,
        accepted=report.accepted,
        duplicates=report.duplicates,
        busy=report.busy,
    )
    return f"listed={report.listed} accepted={report.accepted} busy={report.busy}"
