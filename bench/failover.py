"""Benchmark: what a Sentinel fail-over does to acknowledged writes, with and without
``min-replicas-to-write 1`` on the Redis servers.

    python bench/failover.py [--runs 1]

For each configuration it starts a private deployment (devenv.sentinel: a primary, a replica,
three Sentinels), writes one unique entry after another through the service's own Sentinel
client (ledger.connection.redis_client) while ``SENTINEL FAILOVER`` promotes the replica, then
counts on the new primary which acknowledged entries are still there. The naive baseline is the
deployment as Redis ships it (``min-replicas-to-write 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.exceptions import RedisError

from devenv.sentinel import SentinelCluster, sentinel_cluster
from ledger.connection import redis_client
from ledger.settings import BaseServiceSettings

KEY = "fcd-bench:failover"


@dataclass
class Row:
    config: str
    acknowledged: int
    refused: int
    lost: int
    longest_pause_s: float
    failover_s: float


async def measure(cluster: SentinelCluster, config: str) -> Row:
    settings = BaseServiceSettings(
        redis_url="",
        redis_sentinels=cluster.sentinel_addresses,
        redis_sentinel_master=cluster.master_name,
    )
    redis = redis_client(settings)
    acknowledged: list[int] = []
    refused = 0
    longest = 0.0
    last_ok = time.monotonic()
    done = threading.Event()
    timing: dict[str, float] = {}

    def failover() -> None:
        start = time.monotonic()
        cluster.failover()
        timing["failover"] = time.monotonic() - start
        done.set()

    try:
        for n in range(50):  # some writes before the fail-over
            await redis.rpush(KEY, n)  # type: ignore[misc]
            acknowledged.append(n)
        thread = threading.Thread(target=failover)
        thread.start()
        n = len(acknowledged)
        while not done.is_set():
            try:
                await redis.rpush(KEY, n)  # type: ignore[misc]
            except (RedisError, OSError):
                refused += 1
                await asyncio.sleep(0.02)
            else:
                acknowledged.append(n)
                now = time.monotonic()
                longest = max(longest, now - last_ok)
                last_ok = now
            n += 1
            await asyncio.sleep(0.005)
        thread.join()
        direct = redis_client(
            BaseServiceSettings(redis_url=cluster.server_url(cluster.primary_port()))
        )
        try:
            stored = {int(v) for v in await direct.lrange(KEY, 0, -1)}  # type: ignore[misc]
        finally:
            await direct.aclose()
    finally:
        await redis.aclose()
    lost = sum(1 for entry in acknowledged if entry not in stored)
    return Row(config, len(acknowledged), refused, lost, longest, timing["failover"])


def run(min_replicas: int) -> Row:
    config = f"min-replicas-to-write {min_replicas}" + (" (naive)" if min_replicas == 0 else "")
    with sentinel_cluster(min_replicas_to_write=min_replicas) as cluster:
        return asyncio.run(measure(cluster, config))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="fail-overs per configuration")
    args = parser.parse_args()
    rows = [run(m) for m in (0, 1) for _ in range(args.runs)]
    header = ("config", "acknowledged", "refused", "lost", "longest pause s", "fail-over s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = (r.config, r.acknowledged, r.refused, r.lost, f"{r.longest_pause_s:.1f}", f"{r.failover_s:.1f}")  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return 1 if any(r.lost for r in rows if "naive" not in r.config) else 0


if __name__ == "__main__":
    raise SystemExit(main())
