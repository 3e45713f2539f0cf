"""``make bench-sweep``: how fast a sweep is submitted, what a pending request costs in Redis, and
whether a sweep backlog delays a user's deletion. Prints one table with the baselines beside it.

1. Bulk submit: ``ledger.bulk.submit_many`` (pipelined CREATE scripts, bulk queue) for
   ``--requests`` new requests, against arq's own ``enqueue_job`` awaited one by one (the
   baseline, measured in the same run on the same Redis; it writes only the job, no ledger).
2. Memory: ``INFO used_memory`` before and after step 1, per pending request (ledger + queue),
   plus ``MEMORY USAGE`` of one request's keys and its share of the shared ones (its batch job,
   the ``queued`` index, the bulk queue). A pending request has no history list and is not yet in
   its account's index (both are written later), so neither appears.
3. Priority: with the step-1 backlog queued, 2 bulk and 2 urgent worker processes against the
   emulator enforcing 25 calls/s per endpoint (workers set to 24/s, globally too); ``--deletions``
   user deletions submitted through the Producer API, spread over ``--spread`` seconds. Latency is
   submission to the deletion's disconnect call at the emulator (its request log ``ts``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from arq.connections import ArqRedis
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, start_emulator, worker_env
from devenv.redis_server import redis_url_for_run
from ledger.audit import AuditTrail
from ledger.bulk import BulkItem, submit_many
from ledger.jobs import DISCONNECT_JOB
from ledger.logging import configure_logging
from ledger.models import RequestSource, RequestStatus
from ledger.settings import LogFormat
from ledger.store import Ledger
from producer.api import Producer

Row = tuple[str, str, str, str]


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def arq_baseline(redis_url: str, count: int) -> float:
    """arq's enqueue_job, awaited one by one, JSON serializer: jobs/s."""
    arq = ArqRedis.from_url(redis_url)
    queue = f"bench-arq-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    for n in range(count):
        await arq.enqueue_job(
            DISCONNECT_JOB, {"v": 1, "request_id": f"dr_b{n}"}, _queue_name=queue,
            _job_id=f"bench{queue}{n}",
        )  # fmt: skip
    rate = count / (time.perf_counter() - started)
    await arq.aclose()
    return rate


async def bulk_submit(ledger: Ledger, count: int) -> tuple[float, float, dict[str, int]]:
    """Submit ``count`` sweep requests; return (requests/s, bytes per request, what one pending
    request's keys cost: its own keys whole, its share of its batch job and of the two sorted
    sets it is an entry of)."""
    listed_at = int(time.time())  # as a sweep's requests carry their listing (issue 13)
    items = [
        BulkItem(f"fca_bench{n}", "bench retention", "bench", None, "active", listed_at)
        for n in range(count)
    ]
    before = await used_memory(ledger.redis)
    started = time.perf_counter()
    result = await submit_many(ledger, items)
    rate = result.submitted / (time.perf_counter() - started)
    per_request = (await used_memory(ledger.redis) - before) / count
    request = await ledger.resolve("fca_bench0")
    job = f"arq:job:{request.job_id}"
    batch = len(json.loads(await ledger.redis.get(job) or b"{}")["a"][0]["request_ids"])
    queued = ledger.status_key(RequestStatus.QUEUED)
    usage = {
        "req:<id> (hash)": ledger.request_key(request.request_id),
        "acct:<fca>:active": ledger.active_key("fca_bench0"),
        f"arq:job:b_… /{batch}": job,
        "status:queued entry": queued,
        "bulk queue share": ledger.bulk_queue_name,
    }
    shares = {job: batch, queued: count, ledger.bulk_queue_name: count}
    sizes = {
        name: round(int(await ledger.redis.memory_usage(key) or 0) / shares.get(key, 1))
        for name, key in usage.items()
    }
    absent = [ledger.history_key(request.request_id), ledger.account_requests_key("fca_bench0")]
    assert not await ledger.redis.exists(*absent), "a pending request has no list or index yet"
    return rate, per_request, sizes


async def deletion_latency(
    ledger: Ledger, redis_url: str, args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    group = ProcessGroup(workdir / "logs")
    try:
        base = start_emulator(
            group, accounts=0, extra=["--rate-limit", "25", "--latency", "fixed:50"]
        )
        env = worker_env(
            redis_url, base, key_prefix=ledger.prefix, queue_name=ledger.queue_name,
            bulk_queue_name=ledger.bulk_queue_name, stripe_rate_limit="24",
            stripe_read_rate_limit="24", stripe_global_rate_limit="24",
            reconcile_interval_seconds="0", log_level="WARNING",
        )  # fmt: skip
        for n in range(2):
            group.start(f"urgent{n}", ["-m", "worker"], env)
            group.start(f"bulk{n}", ["-m", "worker", "--queue", "bulk"], env)
        async with aiohttp.ClientSession() as http:
            body = {"count": args.deletions, "status": "active"}
            async with http.post(f"{base}/_emulator/accounts", json=body) as resp:
                accounts = [a["id"] for a in (await resp.json())["data"]]
            await asyncio.sleep(3.0)  # workers up, the backlog flowing
            submitted = await _submit_deletions(ledger, accounts, args.spread)
            calls = await _wait_for_calls(http, base, submitted)
            async with http.get(f"{base}/_emulator/requests") as resp:
                log = (await resp.json())["data"]
        latencies = sorted(calls[a] - t for a, t in submitted.items())
        window = [r for r in log if r["ts"] >= min(submitted.values()) and r["status"] != 429]
        span = max(r["ts"] for r in window) - min(r["ts"] for r in window)
        return {
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "max": latencies[-1],
            "calls_per_s": len(window) / max(span, 1e-9),
            "rate_limited": sum(1 for r in log if r["status"] == 429),
            "bulk_left": await ledger.redis.zcard(ledger.status_key(RequestStatus.QUEUED)),
        }
    finally:
        group.stop_all()


async def _submit_deletions(ledger: Ledger, accounts: list[str], spread: float) -> dict[str, float]:
    producer = Producer(ledger)
    submitted = {}
    for account in accounts:
        submitted[account] = time.time()
        await producer.submit(account, source=RequestSource.DELETION_EVENT, reference="bench")
        await asyncio.sleep(spread / len(accounts))
    return submitted


async def _wait_for_calls(
    http: aiohttp.ClientSession, base: str, submitted: dict[str, float]
) -> dict[str, float]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        async with http.get(f"{base}/_emulator/requests") as resp:
            log = (await resp.json())["data"]
        calls = {
            r["account_id"]: r["ts"]
            for r in log
            if r["method"] == "POST" and r["account_id"] in submitted and r["status"] == 200
        }
        if len(calls) == len(submitted):
            return calls
        await asyncio.sleep(0.5)
    raise TimeoutError("not every user deletion reached the emulator within 120 s")


async def run(args: argparse.Namespace, redis_url: str) -> list[Row]:
    redis = Redis.from_url(redis_url)
    prefix = f"benchsweep{uuid.uuid4().hex[:6]}:"
    ledger = Ledger(
        redis, queue_name=prefix + "urgent", bulk_queue_name=prefix + "bulk",
        audit=AuditTrail(), prefix=prefix,
    )  # fmt: skip
    try:
        print("arq baseline ...", flush=True)
        baseline = await arq_baseline(redis_url, args.baseline_jobs)
        print("bulk submit ...", flush=True)
        rate, per_request, sizes = await bulk_submit(ledger, args.requests)
        rows: list[Row] = [
            ("bulk submit (ledger + queue)", f"{rate:,.0f} req/s", "≥ 20,000 req/s",
             f"arq enqueue_job one by one: {baseline:,.0f} jobs/s ({rate / baseline:.1f}x)"),
            ("Redis per pending request", f"{per_request:,.0f} B", "≤ 1,024 B",
             "MEMORY USAGE: " + ", ".join(f"{k} {v}" for k, v in sizes.items())),
        ]  # fmt: skip
        if not args.skip_latency:
            print(f"user deletions behind {args.requests:,} sweep requests ...", flush=True)
            with tempfile.TemporaryDirectory(prefix="fcd-bench-sweep-") as tmp:
                lat = await deletion_latency(ledger, redis_url, args, Path(tmp))
            rows.append(
                ("deletion -> disconnect call, p99", f"{lat['p99']:.2f} s", "< 2 s",
                 (f"p50 {lat['p50']:.2f} s, max {lat['max']:.2f} s over {args.deletions} "
                  f"deletions; emulator served {lat['calls_per_s']:.1f} calls/s, "
                  f"{lat['rate_limited']} 429s; {lat['bulk_left']:,} sweep requests still queued"))
            )  # fmt: skip
        return rows
    finally:
        await redis.aclose()


def print_table(rows: list[Row]) -> None:
    header = ("measure", "result", "target", "baseline / detail")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    line = f"{{:<{widths[0]}}}  {{:>{widths[1]}}}  {{:<{widths[2]}}}  {{}}"
    print(line.format(*header))
    print("-" * (sum(widths) + 30))
    for row in rows:
        print(line.format(*row))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--baseline-jobs", type=int, default=5_000)
    parser.add_argument("--deletions", type=int, default=30)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds over which to submit")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    configure_logging(LogFormat.JSON, "WARNING")
    with redis_url_for_run() as redis_url:
        print_table(asyncio.run(run(args, redis_url)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
