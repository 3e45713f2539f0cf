"""How the shared limiter splits the global budget between reads and writes by priority (issue 13).

Every assertion is on what the limiter booked (``Permit.booked_at``, Redis's clock, and the delay
it returned), never on how fast the test's coroutines ran: a busy machine makes callers late,
which changes neither the order of the classes nor what a read may take from a disconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from tests.worker.ratelimit_load import achieved_rate, hammer, max_in_window
from tests.worker.ratelimit_support import (  # noqa: F401 - fixtures register by import
    book_global_budget_until,
    rl_redis_fixture,
    rl_server_fixture,
)
from worker.ratelimit import Permit, Priority, RateBudget, RateLimiter


def budget(*, disconnect: float, reads: float, global_rate: float) -> RateBudget:
    """The worker's three endpoints; ``disconnect`` is the protected one (the default)."""
    return RateBudget(
        endpoint_rates={"disconnect": disconnect, "retrieve": reads, "list": reads},
        global_rate=global_rate,
        max_in_flight=200,
    )


@dataclass(frozen=True)
class Grant:
    label: str
    permit: Permit

    @property
    def at(self) -> float:
        assert self.permit.booked_at is not None
        return self.permit.booked_at


async def test_a_read_granted_just_before_costs_an_urgent_disconnect_nothing(
    rl_redis: Redis,
) -> None:
    """At 2 calls/s globally a read takes the global slot now; an urgent disconnect asking right
    after is still booked at once (delay 0), where a bulk disconnect in its place waits out the
    global interval behind the read."""
    limiter = RateLimiter(rl_redis, budget(disconnect=50, reads=50, global_rate=2))
    read = await limiter.acquire("list", priority="bulk")
    urgent = await limiter.acquire("disconnect", priority="urgent")
    assert read.booked_at is not None and urgent.booked_at is not None
    assert urgent.waited_seconds == 0.0
    assert urgent.booked_at - read.booked_at < 0.5  # sooner than the global budget's 1/2 s

    await rl_redis.flushdb()
    read = await limiter.acquire("list", priority="bulk")
    bulk = await limiter.acquire("disconnect", priority="bulk")
    assert read.booked_at is not None and bulk.booked_at is not None
    assert bulk.booked_at - read.booked_at >= 0.5 - 1e-6
    for permit in (read, urgent, bulk):
        await permit.release()


async def test_reads_of_both_priorities_never_delay_an_urgent_disconnect(rl_redis: Redis) -> None:
    """Readers of both priorities keep a 20/s global budget full for 2 s while an urgent
    disconnect asks every 150 ms: every one of them is booked the moment it asks (the limiter
    returned no delay and no refusal), the readers still get the rest of the budget, and the
    booked calls of every class together stay within the global rate (+2: the one slot an
    urgent disconnect may take early)."""
    limiter = RateLimiter(rl_redis, budget(disconnect=10, reads=50, global_rate=20))
    urgent: list[Permit] = []

    async def disconnects() -> None:
        stop_at = time.time() + 2.0
        while time.time() < stop_at:
            permit = await limiter.acquire("disconnect", priority="urgent")
            urgent.append(permit)
            await permit.release()
            await asyncio.sleep(0.15)

    _, bulk_reads, urgent_reads = await asyncio.gather(
        disconnects(),
        hammer(limiter, "list", workers=6, duration=2.0, priority="bulk", booked=True),
        hammer(limiter, "retrieve", workers=6, duration=2.0, priority="urgent", booked=True),
    )
    print(
        f"\n{len(urgent)} urgent disconnects, {len(bulk_reads)} bulk and {len(urgent_reads)} "
        "urgent reads"
    )
    assert len(urgent) >= 5
    assert all(permit.waited_seconds == 0.0 for permit in urgent), [
        p.waited_seconds for p in urgent
    ]
    reads = sorted(bulk_reads + urgent_reads)
    assert achieved_rate(reads) >= 0.6 * 20  # the readers had the budget the disconnects left
    booked = sorted(reads + [p.booked_at for p in urgent if p.booked_at is not None])
    assert max_in_window(booked, 1.0) <= 20 + 2


async def test_the_global_budget_serves_classes_in_priority_order(rl_redis: Redis) -> None:
    """With the global budget used up for the next 0.6 s, bulk disconnects and bulk reads queue
    first, urgent reads later, urgent disconnects last: the limiter books the urgent disconnects
    first, then the urgent reads, then the two bulk classes taking turns."""
    limiter = RateLimiter(rl_redis, budget(disconnect=100, reads=100, global_rate=20))
    await book_global_budget_until(rl_redis, 0.6)
    grants: list[Grant] = []

    async def caller(label: str, endpoint: str, priority: Priority) -> None:
        permit = await limiter.acquire(endpoint, priority=priority)
        grants.append(Grant(label, permit))
        await permit.release()

    def start(label: str, endpoint: str, priority: Priority) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(caller(label, endpoint, priority)) for _ in range(4)]

    tasks = start("bulk disconnect", "disconnect", "bulk") + start("bulk read", "list", "bulk")
    await asyncio.sleep(0.1)
    tasks += start("urgent read", "retrieve", "urgent")
    await asyncio.sleep(0.1)
    tasks += start("urgent disconnect", "disconnect", "urgent")
    await asyncio.gather(*tasks)
    order = [grant.label for grant in sorted(grants, key=lambda grant: grant.at)]
    assert order[:8] == ["urgent disconnect"] * 4 + ["urgent read"] * 4, order
    bulk = order[8:]
    assert sorted(bulk) == ["bulk disconnect"] * 4 + ["bulk read"] * 4
    assert all(a != b for a, b in itertools.pairwise(bulk)), bulk  # strictly taking turns


async def test_bulk_reads_and_disconnects_share_the_global_budget_fairly(rl_redis: Redis) -> None:
    """Bulk disconnects and bulk reads, each able to use more than the 40/s global budget, are
    booked within it between them, and each class gets at least 40 % of it."""
    limiter = RateLimiter(rl_redis, budget(disconnect=50, reads=50, global_rate=40))
    disconnects, reads = await asyncio.gather(
        hammer(limiter, "disconnect", workers=10, duration=2.0, priority="bulk", booked=True),
        hammer(limiter, "list", workers=10, duration=2.0, priority="bulk", booked=True),
    )
    times = sorted(disconnects + reads)
    span = times[-1] - times[0]
    print(f"\nbulk split: {len(disconnects)} disconnects, {len(reads)} reads in {span:.2f} s")
    assert max_in_window(times, 1.0) <= 40 + 1
    assert achieved_rate(times) >= 0.75 * 40  # a floor; the bench shows the figure
    assert min(len(disconnects), len(reads)) >= 0.4 * len(times)


async def test_urgent_disconnects_come_before_every_read(rl_redis: Redis) -> None:
    """While urgent disconnects alone can fill the 20/s global budget, they get it all (at their
    full endpoint rate would exceed it: they are booked at the global rate) and urgent reads wait
    until they stop: a read never takes a disconnect's place."""
    limiter = RateLimiter(rl_redis, budget(disconnect=50, reads=50, global_rate=20))
    disconnects, reads = await asyncio.gather(
        hammer(limiter, "disconnect", workers=10, duration=1.5, booked=True),
        hammer(limiter, "list", workers=4, duration=1.5, priority="urgent", booked=True),
    )
    assert achieved_rate(disconnects) >= 0.75 * 20  # a floor; the bench shows the figure
    last_disconnect = max(disconnects)
    assert sum(1 for t in reads if t < last_disconnect - 0.1) <= 1
    assert max_in_window(sorted(disconnects), 1.0) <= 20 + 2
