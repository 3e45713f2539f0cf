"""Issue 13's rows of ``make bench-ratelimit``: what a disconnect costs in Stripe calls, and how
close to the setting the fleet runs, as a user would run it (``bench/ratelimit.py`` runs these
after its limiter rows and prints both tables).

Each scenario starts a fresh emulator (``--latency realistic``; 25/s per endpoint and 25/s global
for test keys, 100/s for live keys) and worker processes set to ``FCD_STRIPE_RATE_LIMIT=24``,
everything else at its default (the global budget too: a sandbox's whole 25/s, 80/s live):

1. a retention sweep of ``--requests`` active accounts, test key, 4 bulk workers: the sweep is
   requested as ``fcd sweep --apply`` does and a bulk worker lists the accounts through the
   limiter, then the 4 workers run its batches;
2. the same with ``FCD_PRECHECK_ACCOUNT=true`` (the old default: a retrieve before each POST),
   the baseline;
3. ``--requests`` single requests (user deletions), live key, 4 urgent workers;
4. user deletions submitted while a sweep runs (3 bulk workers and 1 urgent: 4 processes).

Call counts come from the emulator's own request log (``/_emulator/requests``): the disconnect
rate is successful POSTs per second from the first to the last, ``calls/disc.`` is every call
(POST, retrieve, list, events) per request that ended disconnected, limiter 429s are 429s
carrying ``Stripe-Rate-Limited-Reason``. Latency is submit to terminal status (the ledger's
record time; same host).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, start_emulator, worker_env
from ledger.audit import STATUS_CHANGED, AuditTrail
from ledger.models import TERMINAL_STATUSES, RequestSource, RequestStatus
from ledger.store import Ledger
from producer.api import Producer
from retention.jobs import enqueue_sweep_job
from retention.policy import get_policy
from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id

SETTING = 24.0
LIVE_KEY = "sk_live_fcd_bench"
POLICY = "bench-stale"
_TERMINAL = {status.value for status in TERMINAL_STATUSES}


@dataclass(frozen=True)
class CallsScenario:
    name: str
    sweep: bool
    live: bool = False
    precheck: bool = False
    bulk_workers: int = 4
    urgent_workers: int = 0
    deletions: int = 0


@dataclass
class CallsResult:
    scenario: CallsScenario
    requests: int
    rate: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    disconnected: int = 0
    limiter_429: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


SCENARIOS = [
    CallsScenario("sweep, test key", sweep=True),
    CallsScenario("sweep, precheck on (baseline)", sweep=True, precheck=True),
    CallsScenario("single requests, live key", sweep=False, live=True, bulk_workers=0,
                  urgent_workers=4),
    CallsScenario("user deletions during a sweep", sweep=True, bulk_workers=3, urgent_workers=1,
                  deletions=100),
]  # fmt: skip


def write_policy(path: Path, requests: int) -> Path:
    path.write_text(
        f'[policies.{POLICY}]\nsource = "stripe"\nmax_disconnects = {requests}\n'
        'max_fraction = 1.0\n'
        f'[[policies.{POLICY}.rules]]\nreason = "bench: stale link"\nstatus = ["active"]\n'
    )  # fmt: skip
    return path


async def create_accounts(http: aiohttp.ClientSession, base: str, count: int) -> list[str]:
    async with http.post(f"{base}/_emulator/accounts", json={"count": count}) as resp:
        return [a["id"] for a in (await resp.json())["data"]]


async def request_sweep(ledger: Ledger, policies: Path) -> str:
    """Record an apply run as ``fcd sweep --apply`` does and enqueue it for a bulk worker."""
    policy = get_policy(policies, POLICY)
    runs = SweepRuns(ledger.redis, ledger.prefix, ledger.audit)
    run = await runs.create(
        SweepRun(
            run_id=new_sweep_id(), policy=policy.name, policy_digest=policy.digest,
            trigger="cli", apply=True, operator="bench", source="stripe",
            status=SweepStatus.REQUESTED, started_at=time.time(),
        )
    )  # fmt: skip
    await enqueue_sweep_job(ledger.redis, ledger.bulk_queue_name, run.run_id)
    return run.run_id


async def wait_terminal(ledger: Ledger, count: int) -> int:
    """Wait until ``count`` requests are terminal (the ledger's counts: polled, they change in
    the workers); return how many failed."""
    while True:
        counts = await ledger.count_by_status()
        if sum(n for status, n in counts.items() if status.is_terminal) >= count:
            return counts[RequestStatus.FAILED]
        await asyncio.sleep(1.0)


async def deletions_during_sweep(
    ledger: Ledger, http: aiohttp.ClientSession, base: str, count: int, spread: float
) -> dict[str, float]:
    """Once the sweep's disconnects flow, ``count`` user deletions over ``spread`` seconds."""
    while (await ledger.count_by_status())[RequestStatus.DISCONNECTED] < 200:  # noqa: ASYNC110
        await asyncio.sleep(0.5)  # the counts change in the workers: polled
    accounts = await create_accounts(http, base, count)  # after the listing: not swept
    producer = Producer(ledger)
    submitted: dict[str, float] = {}
    for account in accounts:
        submitted_at = time.time()
        submission = await producer.submit(
            account, source=RequestSource.DELETION_EVENT, reference="bench", reason="user deleted"
        )
        submitted[submission.request_id] = submitted_at
        await asyncio.sleep(spread / count)
    return submitted


async def terminal_latencies(ledger: Ledger, submitted: dict[str, float]) -> list[float]:
    """Submit to the record of each request's terminal status, sorted."""
    latencies = []
    for request_id, submitted_at in submitted.items():
        history = await ledger.history(request_id)
        [end] = [h for h in history if h["event"] == STATUS_CHANGED and h["to"] in _TERMINAL]
        ended = datetime.fromisoformat(str(end["ts"])).timestamp()
        latencies.append(ended - submitted_at)
    return sorted(latencies)


async def run_calls_scenario(
    scenario: CallsScenario, redis_url: str, requests: int, workdir: Path
) -> CallsResult:
    slug = scenario.name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    group = ProcessGroup(workdir / slug)
    prefix = f"bench13{int(time.time() * 1000)}:"
    redis = Redis.from_url(redis_url)
    ledger = Ledger(
        redis, queue_name=prefix + "urgent", bulk_queue_name=prefix + "bulk",
        audit=AuditTrail(), prefix=prefix,
    )  # fmt: skip
    result = CallsResult(scenario, requests)
    try:
        extra = ["--rate-limit", "25", "--latency", "realistic"]
        extra += ["--api-key", LIVE_KEY] if scenario.live else []
        base = start_emulator(group, accounts=0, extra=extra)
        policies = write_policy(workdir / f"{slug}.toml", requests)
        env = worker_env(
            redis_url, base, key_prefix=prefix, queue_name=ledger.queue_name,
            bulk_queue_name=ledger.bulk_queue_name, stripe_rate_limit=str(SETTING),
            precheck_account=str(scenario.precheck).lower(), retention_policies=str(policies),
            retry_base_seconds="0.5", retry_cap_seconds="5", log_level="WARNING",
            **({"stripe_api_key": LIVE_KEY} if scenario.live else {}),
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            accounts = await create_accounts(http, base, requests)
            if not scenario.sweep:
                for account in accounts:
                    await ledger.submit(account, source=RequestSource.DELETION_EVENT)
            names = [f"bulk{n}" for n in range(scenario.bulk_workers)]
            for name in names:
                group.start(name, ["-m", "worker", "--queue", "bulk"], env)
            names += [f"urgent{n}" for n in range(scenario.urgent_workers)]
            for name in names[scenario.bulk_workers :]:
                group.start(name, ["-m", "worker"], env)
            started = time.monotonic()
            run_id = await request_sweep(ledger, policies) if scenario.sweep else None
            submitted: dict[str, float] = {}
            if scenario.deletions:
                submitted = await deletions_during_sweep(
                    ledger, http, base, scenario.deletions, spread=40.0
                )
            async with asyncio.timeout(1800):
                result.failed = await wait_terminal(ledger, requests + len(submitted))
            result.seconds = time.monotonic() - started
            if run_id is not None:
                run = await SweepRuns(redis, prefix, ledger.audit).get(run_id)
                assert run.status == SweepStatus.FINISHED and run.submitted == requests, run
            async with http.get(f"{base}/_emulator/requests") as resp:
                log = (await resp.json())["data"]
        result.latencies = await terminal_latencies(ledger, submitted)
        result.disconnected = (await ledger.count_by_status())[RequestStatus.DISCONNECTED]
        summarise(result, log)
        return result
    finally:
        group.stop_all()
        await redis.aclose()


def endpoint_of(entry: dict[str, Any]) -> str:
    if entry["method"] == "POST":
        return "disconnect"
    return "retrieve" if entry["account_id"] else "list"


def summarise(result: CallsResult, log: list[dict[str, Any]]) -> None:
    result.calls = Counter(endpoint_of(entry) for entry in log)
    ok = sorted(e["ts"] for e in log if endpoint_of(e) == "disconnect" and e["status"] == 200)
    result.rate = (len(ok) - 1) / (ok[-1] - ok[0]) if len(ok) > 1 else 0.0
    result.limiter_429 = sum(1 for e in log if e["status"] == 429 and e["limiter"])


def p99(values: list[float]) -> float:
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def verdict(result: CallsResult) -> str:
    """The issue's goal for the row, and whether it was met."""
    scenario = result.scenario
    per_disconnect = result.calls.total() / max(result.disconnected, 1)
    if scenario.deletions:
        met = bool(result.latencies) and p99(result.latencies) < 2.0
        return f"p99 < 2 s: {'met' if met else 'MISSED'}"
    if scenario.precheck:
        return "baseline"
    target = 0.95 * min(SETTING, 25.0)
    checks = [result.rate >= target]
    if scenario.sweep:
        checks += [result.limiter_429 == 0, per_disconnect <= 1.05]
        goal = f">= {target:.1f}/s, 0 limiter 429s, <= 1.05 calls"
    else:
        goal = f">= {target:.1f}/s"
    return f"{goal}: {'met' if all(checks) else 'MISSED'}"


def print_calls_table(results: list[CallsResult]) -> None:
    header = (
        f"{'scenario':<31} {'requests':>9} {'disc/s':>6} {'% of 24':>7} {'POST':>5} {'GET acct':>8} "
        f"{'lists':>5} {'calls/disc.':>11} {'lim 429':>7} {'failed':>6} {'wall s':>6}  "
        "latency / goal"
    )
    print(header)
    print("-" * (len(header) + 30))
    for r in results:
        per_disconnect = r.calls.total() / max(r.disconnected, 1)
        count = f"{r.requests}+{len(r.latencies)}" if r.latencies else str(r.requests)
        latency = ""
        if r.latencies:
            latency = (
                f"{len(r.latencies)} deletions: p50 {statistics.median(r.latencies):.2f} s, "
                f"p99 {p99(r.latencies):.2f} s, max {r.latencies[-1]:.2f} s; "
            )
        print(
            f"{r.scenario.name:<31} {count:>9} {r.rate:>6.2f} "
            f"{100 * r.rate / SETTING:>6.1f}% {r.calls['disconnect']:>5} "
            f"{r.calls['retrieve']:>8} {r.calls['list']:>5} {per_disconnect:>11.3f} "
            f"{r.limiter_429:>7} {r.failed:>6} {r.seconds:>6.0f}  {latency}{verdict(r)}"
        )
    print(
        "(FCD_STRIPE_RATE_LIMIT=24, other settings default; emulator: 25/s per endpoint, 25/s "
        "global test / 100/s live, realistic latency)"
    )
