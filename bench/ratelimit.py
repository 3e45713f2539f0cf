"""``make bench-ratelimit``: does the shared limiter keep every worker under Stripe's limit while
using nearly all of it, and what does a disconnect cost in Stripe calls? One command, one run,
two tables; ``uptime`` is printed before and after (the machine is shared).

The limiter (each scenario with a fresh emulator enforcing 25 disconnects/s on the endpoint,
realistic latency, 4 worker processes, ``--requests`` user deletions, every call a disconnect):

1. the shared GCRA limiter set to 24/s;
2. a naive fixed-window counter (INCR per wall-clock second) set to 24/s, run the same way;
3. the shared limiter set to 40/s against the emulator's 25/s (its adaptive decrease must find
   the real limit).

Figures come from the emulator's own request log: achieved rate of successful disconnects, 429
count, and the most calls in any sliding 1 s and 100 ms window.

One call per disconnect (issue 13; scenarios 4-7, see ``bench/ratelimit_calls.py``): a sweep with
a test key, the same with the old precheck as the baseline, single requests with a live key, and
user deletions during a sweep.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from ratelimit_calls import SCENARIOS, CallsResult, print_calls_table, run_calls_scenario
from redis.asyncio import Redis

from devenv.chaos_checks import max_in_window
from devenv.processes import ProcessGroup, start_emulator, worker_env
from devenv.redis_server import redis_url_for_run
from ledger.audit import AuditTrail
from ledger.logging import configure_logging
from ledger.models import RequestSource, RequestStatus
from ledger.settings import LogFormat
from ledger.store import Ledger
from worker.app import build_worker
from worker.gate import CallGate, Priority
from worker.settings import WorkerSettings

EMULATOR_RATE = 25


class FixedWindowGate:
    """The naive baseline: at most ``rate`` grants per wall-clock second, counted with INCR."""

    def __init__(self, redis: Redis, rate: float, prefix: str) -> None:
        self.redis = redis
        self.rate = rate
        self.prefix = prefix

    @asynccontextmanager
    async def slot(
        self,
        endpoint: str,
        *,
        priority: Priority = "urgent",
        timeout: float | None = None,  # noqa: ASYNC109 - the CallGate signature
        wait_if_paused: bool = True,
    ) -> AsyncIterator[None]:
        while True:
            window = int(time.time())
            key = f"{self.prefix}fw:{endpoint}:{window}"
            count = await self.redis.incr(key)
            await self.redis.expire(key, 5)
            if count <= self.rate:
                break
            await asyncio.sleep(window + 1 - time.time())
        yield

    async def report_rate_limited(self, endpoint: str, reason: str | None = None) -> float:
        return 1.0


def naive_gate(redis: Redis, settings: WorkerSettings) -> CallGate:
    return FixedWindowGate(redis, settings.stripe_rate_limit, settings.key_prefix)


@dataclass(frozen=True)
class Scenario:
    name: str
    limiter: str  # "gcra" or "naive"
    rate: float


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    achieved: float
    calls: int
    rate_limited: int
    max_1s: int
    max_100ms: int
    failed: int
    seconds: float


async def run_scenario(
    scenario: Scenario, redis_url: str, requests: int, workers: int, workdir: Path
) -> Result:
    group = ProcessGroup(workdir / scenario.name.replace(" ", "_"))
    prefix = f"bench{int(time.time() * 1000)}:"
    redis = Redis.from_url(redis_url)
    ledger = Ledger(redis, queue_name=prefix + "queue", audit=AuditTrail(), prefix=prefix)
    try:
        extra = ["--rate-limit", str(EMULATOR_RATE), "--latency", "realistic"]
        base = start_emulator(group, accounts=0, extra=extra)
        async with aiohttp.ClientSession() as http:
            ids = await submit(ledger, http, base, requests)
            env = worker_env(
                redis_url,
                base,
                key_prefix=prefix,
                queue_name=ledger.queue_name,
                bulk_queue_name=prefix + "bulk",
                precheck_account="false",
                stripe_rate_limit=str(scenario.rate),
                stripe_global_rate_limit=str(scenario.rate),
                stripe_max_in_flight="20",
                retry_base_seconds="0.5",
                retry_cap_seconds="5",
                max_attempts="50",
                log_level="WARNING",
            )
            started = time.monotonic()
            for n in range(workers):
                group.start(f"w{n}", [__file__, "--worker", scenario.limiter], env)
            failed = await wait_terminal(ledger, ids)
            seconds = time.monotonic() - started
            async with http.get(f"{base}/_emulator/requests") as resp:
                log = (await resp.json())["data"]
        return summarise(scenario, log, failed, seconds)
    finally:
        group.stop_all()
        await redis.aclose()


async def submit(ledger: Ledger, http: aiohttp.ClientSession, base: str, n: int) -> list[str]:
    body = {"count": n, "status": "active"}
    async with http.post(f"{base}/_emulator/accounts", json=body) as resp:
        accounts = [a["id"] for a in (await resp.json())["data"]]
    ids = []
    for account in accounts:
        submitted = await ledger.submit(account, source=RequestSource.DELETION_EVENT)
        ids.append(submitted.request_id)
    return ids


async def wait_terminal(ledger: Ledger, ids: list[str]) -> int:
    """Wait until every request is terminal; return how many failed."""
    while True:
        counts = await ledger.count_by_status()
        if sum(n for s, n in counts.items() if s.is_terminal) >= len(ids):
            return counts[RequestStatus.FAILED]
        await asyncio.sleep(1.0)


def summarise(scenario: Scenario, log: list[dict[str, Any]], failed: int, secs: float) -> Result:
    calls = sorted(
        (r for r in log if r["method"] == "POST" and r["path"].endswith("/disconnect")),
        key=lambda r: r["ts"],
    )
    times = [r["ts"] for r in calls]
    ok = [r["ts"] for r in calls if r["status"] == 200]
    span = (ok[-1] - ok[0]) if len(ok) > 1 else 1.0
    return Result(
        scenario=scenario,
        achieved=(len(ok) - 1) / span,
        calls=len(calls),
        rate_limited=sum(r["status"] == 429 for r in calls),
        max_1s=max_in_window(times, 1.0),
        max_100ms=max_in_window(times, 0.1),
        failed=failed,
        seconds=secs,
    )


def print_table(results: list[Result]) -> None:
    header = (
        f"{'scenario':<28} {'set':>5} {'achieved/s':>10} {'% of cap':>8} {'calls':>6} "
        f"{'429s':>5} {'429 %':>6} {'max 1s':>6} {'max 100ms':>9} {'failed':>6} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        cap = min(r.scenario.rate, EMULATOR_RATE)
        print(
            f"{r.scenario.name:<28} {r.scenario.rate:>5.0f} {r.achieved:>10.2f} "
            f"{100 * r.achieved / cap:>7.1f}% {r.calls:>6} {r.rate_limited:>5} "
            f"{100 * r.rate_limited / max(r.calls, 1):>5.2f}% {r.max_1s:>6} {r.max_100ms:>9} "
            f"{r.failed:>6} {r.seconds:>7.1f}"
        )
    print(
        f"(emulator enforces {EMULATOR_RATE}/s on the disconnect endpoint; '% of cap' is of "
        "min(setting, emulator limit))"
    )


async def run_all(
    args: argparse.Namespace, redis_url: str
) -> tuple[list[Result], list[CallsResult]]:
    scenarios = [
        Scenario("shared GCRA limiter", "gcra", args.rate),
        Scenario("naive fixed window (baseline)", "naive", args.rate),
        Scenario("shared GCRA, set too high", "gcra", args.overload_rate),
    ]
    chosen = [n for n in range(1, len(scenarios) + len(SCENARIOS) + 1) if n in (args.only or [n])]
    with tempfile.TemporaryDirectory(prefix="fcd-bench-") as tmp:
        results = []
        for scenario in (s for n, s in enumerate(scenarios, start=1) if n in chosen):
            print(f"running: {scenario.name} at {scenario.rate}/s ...", flush=True)
            result = await run_scenario(scenario, redis_url, args.requests, args.workers, Path(tmp))
            results.append(result)
            print_table([result])  # as it happens; the full table follows at the end
        calls = []
        for n, call_scenario in enumerate(SCENARIOS, start=len(scenarios) + 1):
            if n not in chosen:
                continue
            print(f"running: {call_scenario.name} ...", flush=True)
            calls.append(
                await run_calls_scenario(call_scenario, redis_url, args.requests, Path(tmp))
            )
            print_calls_table(calls[-1:])
        return results, calls


def run_worker(limiter: str) -> int:
    settings = WorkerSettings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.set_event_loop(asyncio.new_event_loop())
    factory = {"naive": naive_gate}.get(limiter)
    worker = build_worker(settings, gate_factory=factory) if factory else build_worker(settings)
    worker.run()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=24.0)
    parser.add_argument("--overload-rate", type=float, default=40.0)
    parser.add_argument("--only", type=int, nargs="*", help="run only these scenario numbers")
    parser.add_argument("--worker", choices=["gcra", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker)
    configure_logging(LogFormat.JSON, "WARNING")
    print("uptime before:", uptime(), flush=True)
    with redis_url_for_run() as redis_url:
        results, calls = asyncio.run(run_all(args, redis_url))
    print("\nuptime after:", uptime())
    if results:
        print_table(results)
    if calls:
        print()
        print_calls_table(calls)
    return 0


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
