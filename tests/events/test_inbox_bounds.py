"""The webhook inbox's bounds on a real Redis: capped streams whose trimming is counted and
logged, and consumer names that leave with their process without dropping what they held."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from control.metrics import counter_key, read_counters
from events.inbox import GROUP, PARKING_CONSUMER, WebhookInbox
from ledger.store import Ledger

pytestmark = pytest.mark.integration

# Approximate MAXLEN trims whole stream nodes (stream-node-max-entries, 100 by default).
NODE = 100


def _event(n: int) -> dict[str, Any]:
    return {"id": f"evt_{n}", "type": "ping", "data": {"object": {"id": f"fca_{n}"}}}


async def _consumers(inbox: WebhookInbox) -> dict[str, int]:
    """Consumer name -> entries it owns."""
    infos = await inbox.redis.xinfo_consumers(inbox.stream, GROUP)
    return {
        (i["name"].decode() if isinstance(i["name"], bytes) else i["name"]): int(i["pending"])
        for i in infos
    }


async def test_the_trimmed_counter_is_the_metrics_family_streams(ledger: Ledger) -> None:
    """The inbox writes the counter control reads (events may not import control)."""
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    assert inbox.trimmed_key == counter_key(ledger.prefix, "streams")


async def test_the_inbox_is_capped_and_every_trimmed_event_is_counted_and_logged(
    ledger: Ledger,
) -> None:
    """600 events into an inbox capped at 50: it stays within the cap plus one node, and the
    events trimmed are exactly the ones counted (and logged)."""
    inbox = WebhookInbox(ledger.redis, ledger.prefix, maxlen=50)
    await inbox.ensure_group()
    with capture_logs() as logs:
        for n in range(600):
            assert await inbox.accept(f"evt_{n}", _event(n))
    length = await inbox.pending()
    assert 50 <= length <= 50 + NODE
    counters = await read_counters(ledger.redis, ledger.prefix)
    assert counters["streams"] == {"webhook:inbox": 600 - length}
    logged = sum(e["trimmed"] for e in logs if e["event"] == "webhooks.inbox_trimmed")
    assert logged == 600 - length


async def test_dead_letters_are_capped_and_trimming_is_counted_and_logged(ledger: Ledger) -> None:
    """300 events failing once each with one delivery allowed: all leave the inbox, the
    dead-letter stream keeps about its cap, and what it trimmed is counted and logged."""
    inbox = WebhookInbox(
        ledger.redis, ledger.prefix, claim_idle_ms=0, max_deliveries=1, dead_letter_maxlen=5
    )
    await inbox.ensure_group()
    for n in range(300):
        await inbox.accept(f"evt_{n}", _event(n))

    async def failing(event: dict[str, Any]) -> str:
        raise ValueError("cannot apply")

    with capture_logs() as logs:
        while await inbox.pending():
            assert await inbox.process_once("c1", failing, block_ms=10) == 0
    dead = await inbox.dead_letters()
    assert dead == await ledger.redis.xlen(inbox.dead_stream)
    assert 5 <= dead <= 5 + NODE
    counters = await read_counters(ledger.redis, ledger.prefix)
    assert counters["streams"] == {"webhook:dead": 300 - dead}
    logged = sum(e["trimmed"] for e in logs if e["event"] == "webhooks.dead_letters_trimmed")
    assert logged == 300 - dead
    assert sum(e["event"] == "webhooks.dead_lettered" for e in logs) == 300
    newest = await ledger.redis.xrevrange(inbox.dead_stream, count=1)
    assert json.loads(newest[0][1][b"event"])["id"] == "evt_299"  # the oldest went first


async def test_a_leaving_consumer_hands_back_what_it_holds_then_is_deleted(
    ledger: Ledger,
) -> None:
    """A consumer holding three entries leaves: its name is gone, the entries wait under the
    parking consumer with their delivery count unchanged, and a live consumer whose claim
    threshold is a minute takes them on its next pass."""
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    await inbox.ensure_group()
    for n in range(3):
        await inbox.accept(f"evt_{n}", _event(n))
    await ledger.redis.xreadgroup(GROUP, "host:1", {inbox.stream: ">"}, count=10)
    assert await _consumers(inbox) == {"host:1": 3}

    assert await inbox.leave("host:1") == 3
    assert await _consumers(inbox) == {PARKING_CONSUMER: 3}
    held = await ledger.redis.xpending_range(inbox.stream, GROUP, "-", "+", 10)
    assert [int(h["times_delivered"]) for h in held] == [1, 1, 1]

    applied: list[str] = []

    async def apply(event: dict[str, Any]) -> str:
        applied.append(event["id"])
        return "ok"

    assert await inbox.process_once("host:2", apply, block_ms=10) == 3
    assert applied == ["evt_0", "evt_1", "evt_2"]
    assert await inbox.pending() == 0
    assert await inbox.leave("host:2") == 0


async def test_the_reconciler_prunes_only_idle_consumers_that_own_nothing(
    ledger: Ledger,
) -> None:
    """A killed consumer keeps its name while it owns an entry; once a live consumer has
    claimed it away, the next prune deletes it. Consumers idle less than the threshold stay."""
    inbox = WebhookInbox(ledger.redis, ledger.prefix, claim_idle_ms=0)
    await inbox.ensure_group()
    await inbox.accept("evt_1", _event(1))
    await ledger.redis.xreadgroup(GROUP, "killed:1", {inbox.stream: ">"}, count=10)
    await ledger.redis.xgroup_createconsumer(inbox.stream, GROUP, "empty:2")
    assert await inbox.prune_consumers(3600) == []
    assert await inbox.prune_consumers(0) == ["empty:2"]
    assert await _consumers(inbox) == {"killed:1": 1}

    async def apply(event: dict[str, Any]) -> str:
        return "ok"

    assert await inbox.process_once("alive:3", apply, block_ms=10) == 1
    assert await _consumers(inbox) == {"killed:1": 0, "alive:3": 0}
    assert sorted(await inbox.prune_consumers(0)) == ["alive:3", "killed:1"]
    assert await _consumers(inbox) == {}


async def test_pruning_before_the_inbox_exists_does_nothing(ledger: Ledger) -> None:
    inbox = WebhookInbox(ledger.redis, ledger.prefix)
    assert await inbox.prune_consumers(0) == []
    assert await inbox.leave("host:1") == 0
