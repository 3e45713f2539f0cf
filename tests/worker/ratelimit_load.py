"""Load helpers for the limiter tests; also runnable as one process of the two-process test.

``python -m tests.worker.ratelimit_load URL START_AT DURATION RATE`` waits until wall-clock
``START_AT``, hammers the ``disconnect`` budget of a shared limiter for ``DURATION`` seconds and
prints the slots the limiter booked for it (unix seconds on Redis's clock) as a JSON list.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from worker.ratelimit import Priority, RateBudget, RateLimiter


async def hammer(
    limiter: RateLimiter,
    endpoint: str,
    *,
    workers: int,
    duration: float,
    priority: Priority = "urgent",
    booked: bool = False,
) -> list[float]:
    """Acquire-and-release from ``workers`` coroutines for ``duration`` s; sorted grant times
    (client clock), or with ``booked`` the slots the limiter booked (Redis clock)."""
    grants: list[float] = []
    stop_at = time.time() + duration

    async def worker() -> None:
        while time.time() < stop_at:
            async with await limiter.acquire(endpoint, priority=priority) as permit:
                assert permit.booked_at is not None
                grants.append(permit.booked_at if booked else time.time())

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sorted(grants)


def max_in_window(times: Sequence[float], width: float) -> int:
    """The most grants in any half-open window ``[t, t + width)`` of the sorted ``times``."""
    return max(
        (bisect.bisect_left(times, start + width) - i for i, start in enumerate(times)), default=0
    )


def achieved_rate(times: Sequence[float]) -> float:
    """Grants per second between the first and the last grant."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def shared_budget(rate: float) -> RateBudget:
    """The budget both processes of the two-process test use."""
    return RateBudget(endpoint_rates={"disconnect": rate}, global_rate=1000.0, max_in_flight=100)


async def _run(url: str, start_at: float, duration: float, rate: float) -> list[float]:
    client = Redis.from_url(url)
    try:
        limiter = RateLimiter(client, shared_budget(rate))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return await hammer(limiter, "disconnect", workers=10, duration=duration, booked=True)
    finally:
        await client.aclose()


def main(argv: Sequence[str]) -> None:
    """Entry point of one hammering process."""
    url, start_at, duration, rate = argv[0], float(argv[1]), float(argv[2]), float(argv[3])
    print(json.dumps(asyncio.run(_run(url, start_at, duration, rate))))


if __name__ == "__main__":
    main(sys.argv[1:])
