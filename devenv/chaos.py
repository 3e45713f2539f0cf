"""The chaos harness (``make chaos``; ``bench/chaos.py``): everything at once, then the invariants.

One command, bounded in time, loopback only, starting everything it needs in a temporary
directory: a private redis-server with AOF on (``appendfsync everysec``), the Stripe emulator
(limits on, faults switched at run time through its admin API), the HTTP intake (``python -m
producer``), 4 urgent and 2 bulk ``python -m worker`` processes (audit files of their own) with
the reconciler every 2 s. It submits a mix over HTTP (single accounts, duplicates, unknown and
already-disconnected accounts, customer fan-outs) and runs a retention sweep through the bulk
workers, while a seeded schedule

- SIGKILLs a random worker every few seconds and starts a new one (and, once each, the workers
  while a customer parent is listing and both bulk workers while the sweep runs);
- SIGTERMs workers (the graceful hand-back);
- restarts Redis gracefully (AOF replay) and with ``kill -9`` (same port, same AOF directory);
- runs Stripe fault storms (20 % 500s with ``Stripe-Should-Retry: false``, 5 % calls hung past
  the client timeout), a 429 burst (the emulator's limits cut for a few seconds: real
  rate-limit 429s with ``Stripe-Rate-Limited-Reason``) and a window of refused connections.

Then it stops the faults, waits for quiescence and checks the invariants
(:mod:`devenv.chaos_checks`) from the ledger, the audit files and the emulator's request log.
:func:`run` returns a :class:`ChaosResult`; the short variant (:func:`short_config`) is what
``tests/chaos`` runs in ``make test``.

Producers behave as real ones: a submission refused or cut off (Redis restarting, the intake
busy) is retried; after a Redis restart every accepted request is looked up and one the
restarted Redis lacks is re-submitted with the same event id (counted: "re-submitted after
kill -9").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from devenv.chaos_checks import (
    Accepted,
    Findings,
    Invariant,
    Kill,
    RequestFacts,
    broken_histories,
    compare_audit,
    handed_back_attempts,
    lost_acceptances,
    max_in_window,
    not_disconnected,
    not_terminal,
    overlapping_posts,
    read_audit,
    transient_failures,
)
from devenv.processes import ProcessGroup, start_emulator, worker_env
from devenv.redis_server import find_redis_server, free_port, start_redis
from devenv.sentinel import SentinelCluster, start_sentinel_cluster
from ledger.audit import AuditTrail
from ledger.connection import redis_client
from ledger.customer_models import CUSTOMER
from ledger.customers import CustomerLedger
from ledger.machine import StateStore
from ledger.store import Ledger
from producer.settings import ProducerSettings
from retention.jobs import enqueue_sweep_job
from retention.policy import get_policy
from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id

TOKEN = "tok_chaos_0123456789abcdef"  # noqa: S105 (a throw-away token of a local run)
POLICY = "chaos-sweep"
RESUBMITTED = "re-submitted: accepted (202), then lost by a Redis restart"
CLIENT_TIMEOUT = 2.0
HANG_SECONDS = 4.0
#: Grants are spaced for (1 - margin) x the rate. On this 2-core machine, with eleven busy
#: processes, a granted call can leave tens of milliseconds late, so the default 2.5 % let a
#: sliding second at the emulator see 62 calls for a setting of 60 (first full run); 10 % is
#: what a host this loaded needs (FCD_LIMITER_PACING_MARGIN, the deployment's own choice).
PACING_MARGIN = 0.1
URGENT_WORKERS = 4
BULK_WORKERS = 2


@dataclass(frozen=True)
class ChaosConfig:
    """Sizes and the schedule; :func:`full_config` and :func:`short_config` are the two runs."""

    name: str
    seed: int
    singles: int  # active accounts submitted one by one over HTTP
    already_disconnected: int
    unknown: int
    duplicates: int  # a second event (new event id) for an account submitted before
    replays: int  # the same event sent again (the intake answers its stored reply)
    customers: int
    accounts_per_customer: int
    sweep_accounts: int
    chaos_seconds: float  # how long the schedule runs
    kill_every: tuple[float, float]  # seconds between kills (uniform)
    sigterm_share: float  # of the kill actions, this share is a SIGTERM instead
    redis_graceful: bool
    redis_kill9: bool
    burst_seconds: float
    refuse_seconds: float
    kill_in_sweep: bool  # kill both bulk workers while the sweep lists (45 s to detect)
    failover: bool  # Redis behind Sentinel (primary + replica + 3), SENTINEL FAILOVER mid-run
    rate: float  # the workers' limiter setting (calls/s, every class and global)
    emulator_rate: float
    drain_seconds: float  # failure bound for quiescence after the schedule


def full_config(seed: int = 12) -> ChaosConfig:
    """``make chaos``: >= 10,000 requests, >= 30 kills, both Redis restarts, 30 s refusals."""
    return ChaosConfig(
        name="full", seed=seed, singles=4300, already_disconnected=150, unknown=150,
        duplicates=300, replays=100, customers=40, accounts_per_customer=10,
        sweep_accounts=5000, chaos_seconds=260.0, kill_every=(4.0, 8.0), sigterm_share=0.15,
        redis_graceful=True, redis_kill9=True, burst_seconds=5.0, refuse_seconds=30.0,
        kill_in_sweep=True, failover=True, rate=60.0, emulator_rate=100.0, drain_seconds=420.0,
    )  # fmt: skip


def short_config(seed: int = 12, *, failover: bool = False) -> ChaosConfig:
    """The variant ``make test`` runs (well under 2 minutes): a few kills, one Redis kill -9
    (``failover``: Redis behind Sentinel, both restarts and a fail-over, as the full run)."""
    return ChaosConfig(
        name="short", seed=seed, singles=260, already_disconnected=15, unknown=15,
        duplicates=20, replays=10, customers=4, accounts_per_customer=5, sweep_accounts=200,
        chaos_seconds=22.0, kill_every=(3.0, 5.0), sigterm_share=0.2, redis_graceful=False,
        redis_kill9=True, burst_seconds=2.0, refuse_seconds=4.0, kill_in_sweep=False,
        failover=failover,
        rate=60.0, emulator_rate=100.0, drain_seconds=80.0,
    )  # fmt: skip


@dataclass
class ChaosResult:
    config: ChaosConfig
    findings: Findings
    faults: dict[str, int]
    figures: dict[str, int]
    seconds: float
    workdir: Path

    @property
    def ok(self) -> bool:
        return self.findings.ok


class DurableRedis:
    """A private redis-server with AOF (``appendfsync everysec``) that can be restarted in place:
    same port, same directory, so a restart replays the AOF."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = find_redis_server()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def env(self) -> dict[str, str]:
        """The ``FCD_*`` variables pointing a process at this Redis."""
        return {"FCD_REDIS_URL": self.url}

    def settings(self) -> ProducerSettings:
        return ProducerSettings(redis_url=self.url)

    def failover(self) -> None:
        raise RuntimeError("a single Redis has no replica to fail over to")

    def start(self, timeout: float = 30.0) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir)]
        args += ["--daemonize", "no", "--loglevel", "warning", "--maxmemory-policy", "noeviction"]
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", self.port), 0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):  # not -LOADING: the AOF is replayed
                        return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not answer within {timeout}s")

    def restart(self, *, hard: bool) -> None:
        """``hard``: SIGKILL (acknowledged writes of the last second may be lost); else SIGTERM,
        which makes Redis fsync the AOF and exit cleanly. Then start again in place."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        self.process.wait(30)
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class SentinelRedis:
    """Redis as a primary, a replica and three Sentinels (:mod:`devenv.sentinel`), both data
    servers with AOF (``appendfsync everysec``); processes connect through the Sentinels.
    :meth:`restart` restarts the current primary in place (same port, same AOF directory),
    which must still be the first server (the schedule restarts before it fails over);
    :meth:`failover` is ``SENTINEL FAILOVER``."""

    SERVER_ARGS: tuple[str, ...] = ("--appendonly", "yes", "--appendfsync", "everysec")
    SERVER_ARGS += ("--maxmemory-policy", "noeviction")

    def __init__(self) -> None:
        self.cluster: SentinelCluster | None = None

    def start(self) -> None:
        # A restart with AOF replay may take a few seconds under load: Sentinel must not take
        # it for a dead primary (the fail-over is the schedule's own, by SENTINEL FAILOVER).
        self.cluster = start_sentinel_cluster(server_args=self.SERVER_ARGS, down_after_ms=8000)

    def env(self) -> dict[str, str]:
        assert self.cluster is not None
        return self.cluster.env()

    def settings(self) -> ProducerSettings:
        assert self.cluster is not None
        return ProducerSettings(
            redis_url="",
            redis_sentinels=self.cluster.sentinel_addresses,
            redis_sentinel_master=self.cluster.master_name,
        )

    def restart(self, *, hard: bool) -> None:
        assert self.cluster is not None
        primary = self.cluster.servers[0]
        if self.cluster.primary_port() != primary.port:
            raise RuntimeError("the schedule restarts the first primary before the fail-over")
        primary.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        primary.process.wait(30)
        args: tuple[str, ...] = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")
        args += ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
        restarted = start_redis(
            primary.port, 60.0, extra_args=(*args, *self.SERVER_ARGS), workdir=primary.workdir
        )
        self.cluster.servers[0] = restarted
        self.cluster.wait_ready(60.0)

    def failover(self) -> None:
        assert self.cluster is not None
        self.cluster.failover()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()


@dataclass
class Fleet:
    """The worker processes: each start gets a new name and audit file; kills are counted."""

    group: ProcessGroup
    env: dict[str, str]
    audit_dir: Path
    counts: Counter[str] = field(default_factory=Counter)
    live: dict[str, str] = field(default_factory=dict)  # name -> queue
    kills: list[Kill] = field(default_factory=list)
    expected_exit: set[str] = field(default_factory=set)
    serial: int = 0

    def start(self, queue: str) -> str:
        self.serial += 1
        name = f"{queue}-{self.serial}"
        env = {**self.env, "FCD_AUDIT_LOG_PATH": str(self.audit_dir / f"{name}.jsonl")}
        args = ["-m", "worker"] + (["--queue", "bulk"] if queue == "bulk" else [])
        self.group.start(name, args, env)
        self.live[name] = queue
        return name

    def kill(self, name: str, signum: int) -> None:
        queue = self.live.pop(name)
        self.expected_exit.add(name)
        self.group.signal(name, signum)
        self.counts["SIGKILL" if signum == signal.SIGKILL else "SIGTERM"] += 1
        if signum == signal.SIGKILL:
            self.kills.append(Kill(self.group.processes[name].pid, time.time()))
            self.group.processes[name].wait(10)
            self.start(queue)

    def supervise(self) -> None:
        """Replace workers that exited (a SIGTERMed one once it is done; any other is counted
        as having died on its own)."""
        for name, process in list(self.group.processes.items()):
            if not name.startswith(("urgent-", "bulk-")) or process.poll() is None:
                continue
            if name in self.expected_exit:
                self.expected_exit.discard(name)
                if name not in self.live and self.counts_queue(name):
                    self.start(name.split("-")[0])
                continue
            if name in self.live:
                queue = self.live.pop(name)
                self.counts["exited on their own"] += 1
                self.start(queue)

    def counts_queue(self, name: str) -> bool:
        queue = name.split("-")[0]
        wanted = URGENT_WORKERS if queue == "urgent" else BULK_WORKERS
        return sum(1 for q in self.live.values() if q == queue) < wanted

    def of(self, queue: str) -> list[str]:
        return sorted(n for n, q in self.live.items() if q == queue)


class Harness:
    def __init__(self, config: ChaosConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.rng = random.Random(config.seed)
        self.redis_server: DurableRedis | SentinelRedis = (
            SentinelRedis() if config.failover else DurableRedis(workdir / "redis")
        )
        self.group = ProcessGroup(workdir / "logs")
        self.audit_dir = workdir / "audit"
        self.audit_dir.mkdir(parents=True, exist_ok=True)
        self.accepted: dict[str, Accepted] = {}
        self.faults: Counter[str] = Counter()
        self.figures: Counter[str] = Counter()
        self.figures[RESUBMITTED] = 0
        self.kill9_times: list[float] = []
        self.sweep_accounts: list[str] = []
        self.sweep_runs: list[str] = []
        self.stop_chaos = asyncio.Event()
        self.submitting_done = asyncio.Event()
        self.emulator = ""
        self.intake = ""
        self.fleet: Fleet | None = None

    # -- setup -----------------------------------------------------------------------------

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the emulator's admin API; while it refuses connections, wait and try again."""
        deadline = time.monotonic() + self.config.refuse_seconds + 30
        url = f"{self.emulator}/_emulator{path}"
        while True:
            try:
                async with self.http.request(method, url, json=body) as r:
                    r.raise_for_status()
                    return await r.json()
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def create_accounts(
        self, count: int, status: str = "active", *, one_holder: bool = False
    ) -> list[dict[str, Any]]:
        """``count`` accounts at the emulator (in chunks of 1,000, each chunk a new customer
        unless ``one_holder``: then all belong to the first chunk's customer)."""
        made: list[dict[str, Any]] = []
        while len(made) < count:
            body: dict[str, Any] = {"count": min(1000, count - len(made)), "status": status}
            if one_holder and made:
                body["customer"] = made[0]["account_holder"]["customer"]
            made += (await self.admin("POST", "/accounts", body))["data"]
        return made

    def write_policy(self, customer: str) -> None:
        self.policy_path = self.workdir / "policies.toml"
        self.policy_path.write_text(
            f'[policies.{POLICY}]\nsource = "stripe"\nmax_disconnects = 1000000\n'
            f'max_fraction = 1.0\n[[policies.{POLICY}.rules]]\nreason = "chaos sweep"\n'
            f'customers = ["{customer}"]\n'
        )

    # -- producers -------------------------------------------------------------------------

    async def post(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST one request, retrying what a real producer would retry; None if refused."""
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for attempt in range(600):
            try:
                async with self.http.post(
                    f"{self.intake}/v1/disconnect-requests", json=body, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:  # fmt: skip
                    if resp.status == 202:
                        answer: dict[str, Any] = await resp.json()
                        return answer
                    if resp.status < 500 and resp.status != 429:
                        self.figures[f"submissions refused ({resp.status})"] += 1
                        return None
                    self.figures["submission retries (intake 5xx)"] += 1
            except (aiohttp.ClientError, TimeoutError):
                self.figures["submission retries (intake unreachable)"] += 1
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        raise RuntimeError(f"the intake never accepted {body}")

    async def submit(self, event_id: str, target: str, expect: str) -> None:
        kind = "customer" if target.startswith("cus_") else "account"
        body = {"event_id": event_id, "reason": "chaos", f"{kind}_id": target}
        answer = await self.post(body)
        if answer is not None:
            ids = tuple(answer["request_ids"])
            self.accepted[event_id] = Accepted(event_id, kind, target, ids, expect)

    async def producers(self, plan: list[tuple[str, str, str]], spread: float) -> None:
        """Submit ``plan`` (event id, target, expectation) spread over ``spread`` seconds."""
        semaphore = asyncio.Semaphore(8)
        started = time.monotonic()

        async def one(n: int, item: tuple[str, str, str]) -> None:
            due = started + spread * n / max(len(plan), 1)
            await asyncio.sleep(max(due - time.monotonic(), 0))
            async with semaphore:
                await self.submit(*item)

        await asyncio.gather(*(one(n, item) for n, item in enumerate(plan)))
        self.submitting_done.set()

    async def resubmit_lost(self) -> None:
        """After a Redis restart: re-submit every accepted request the ledger lacks, as a
        producer retrying would (same event id)."""
        lost = []
        for item in list(self.accepted.values()):
            keys = [self.key_of(request_id) for request_id in item.request_ids]
            if not all(await asyncio.gather(*(self.redis.exists(k) for k in keys))):
                lost.append(item)
        for item in lost:
            self.figures[RESUBMITTED] += 1
            del self.accepted[item.event_id]
            await self.submit(item.event_id, item.target, item.expect)

    def key_of(self, request_id: str) -> str:
        if request_id.startswith("cr_"):
            return self.customers.request_key(request_id)
        return self.ledger.request_key(request_id)

    # -- the sweep -------------------------------------------------------------------------

    async def start_sweep(self) -> str:
        policy = get_policy(self.policy_path, POLICY)
        run = SweepRun(
            run_id=new_sweep_id(), policy=POLICY, policy_digest=policy.digest, trigger="cli",
            apply=True, forced=True, operator="chaos", source="stripe",
            status=SweepStatus.REQUESTED, started_at=time.time(),
        )  # fmt: skip
        await self.runs.create(run)
        await enqueue_sweep_job(self.redis, self.ledger.bulk_queue_name, run.run_id)
        self.sweep_runs.append(run.run_id)
        return run.run_id

    async def sweep_driver(self) -> None:
        """Run the policy until a run finishes; a run lost with its worker is run again."""
        run_id = await self.start_sweep()
        killed = False
        while True:
            await asyncio.sleep(0.3)
            try:
                run = await self.runs.get(run_id)
            except (RedisError, OSError, KeyError):  # Redis restarting, or the run lost
                if not await self.safe(self.redis.exists(self.runs.key(run_id))):
                    await asyncio.sleep(1.0)
                    if not await self.safe(self.redis.exists(self.runs.key(run_id))):
                        run_id = await self.start_sweep()
                continue
            if run.status == SweepStatus.FINISHED:
                return
            if run.status in (SweepStatus.FAILED, SweepStatus.CANCELLED, SweepStatus.REFUSED):
                self.figures["sweep runs lost and run again"] += 1
                run_id = await self.start_sweep()
                continue
            if (
                self.config.kill_in_sweep and not killed and run.status == SweepStatus.SUBMITTING
            ) and self.fleet is not None:
                killed = True
                for name in self.fleet.of("bulk"):
                    self.fleet.kill(name, signal.SIGKILL)
                    self.faults["SIGKILL inside a sweep"] += 1

    async def safe(self, step: Awaitable[Any]) -> Any:
        """``step``'s result, or None while Redis is restarting."""
        try:
            return await step
        except (RedisError, OSError):
            return None

    # -- the schedule ----------------------------------------------------------------------

    async def set_faults(self, **faults: Any) -> None:
        await self.admin("POST", "/config", {"faults": faults})

    async def storm(self, start: float, length: float) -> None:
        await asyncio.sleep(start)
        self.faults["500/hang storms"] += 1
        await self.set_faults(error_rates={"500": 0.2}, hang_rate=0.05, hang_seconds=HANG_SECONDS)
        await asyncio.sleep(length)
        await self.set_faults()

    async def burst(self, start: float) -> None:
        await asyncio.sleep(start)
        self.faults["429 bursts"] += 1
        low = {"endpoint_rate": 5.0, "global_rate_test": 5.0, "max_concurrency": 64}
        await self.admin("POST", "/config", {"limits": low})
        await asyncio.sleep(self.config.burst_seconds)
        rate = self.config.emulator_rate
        normal = {"endpoint_rate": rate, "global_rate_test": rate, "max_concurrency": 64}
        await self.admin("POST", "/config", {"limits": normal})

    async def refuse(self, start: float) -> None:
        await asyncio.sleep(start)
        self.faults["connection-refusal windows"] += 1
        self.faults["connection refusals, seconds"] += int(self.config.refuse_seconds)
        answer = await self.admin(
            "POST", "/refuse-connections", {"seconds": self.config.refuse_seconds}
        )
        await asyncio.sleep(max(float(answer["until"]) - time.time(), 0) + 0.5)

    async def redis_restart(self, start: float, *, hard: bool) -> None:
        await asyncio.sleep(start)
        if hard:
            self.kill9_times.append(time.time())
            self.faults["Redis kill -9 (restart, AOF replay)"] += 1
        else:
            self.faults["Redis graceful restart (AOF replay)"] += 1
        await asyncio.to_thread(self.redis_server.restart, hard=hard)
        await asyncio.sleep(1.0)
        await self.resubmit_lost()

    async def fail_over(self, start: float) -> None:
        """``SENTINEL FAILOVER`` while everything runs: the replica is promoted, every process
        follows through the Sentinels."""
        await asyncio.sleep(start)
        self.kill9_times.append(time.time())  # writes not yet replicated may be lost too
        self.faults["Sentinel fail-over (replica promoted)"] += 1
        await asyncio.to_thread(self.redis_server.failover)
        await asyncio.sleep(1.0)
        await self.resubmit_lost()

    async def killer(self) -> None:
        fleet = self.fleet
        assert fleet is not None
        low, high = self.config.kill_every
        targeted_listing = False
        deadline = time.monotonic() + self.config.chaos_seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(self.rng.uniform(low, high))
            listing = await self.safe(self.redis.zcard(self.customers.status_key(_LISTING)))
            if listing and not targeted_listing:
                targeted_listing = True
                name = self.rng.choice(fleet.of("urgent"))
                fleet.kill(name, signal.SIGKILL)
                self.faults["SIGKILL inside customer listing"] += 1
                continue
            names = sorted(fleet.live)
            if not names:
                continue
            name = self.rng.choice(names)
            in_batch = fleet.live[name] == "bulk"
            if self.rng.random() < self.config.sigterm_share:
                fleet.kill(name, signal.SIGTERM)
            else:
                fleet.kill(name, signal.SIGKILL)
                if in_batch:
                    self.faults["SIGKILL of a bulk worker (batch jobs)"] += 1

    async def supervisor(self) -> None:
        assert self.fleet is not None
        while not self.stop_chaos.is_set():
            self.fleet.supervise()
            if self.group.processes["intake"].poll() is not None:
                self.figures["intake restarts (it exited)"] += 1
                self.group.start("intake", ["-m", "producer"], self.intake_env)
            await asyncio.sleep(0.5)

    # -- the run ---------------------------------------------------------------------------

    def plan(self, active: list[str], disconnected: list[str], customers: list[str]) -> list[Any]:
        config = self.config
        items = [(f"single-{n}", a, "disconnected") for n, a in enumerate(active)]
        items += [(f"gone-{n}", a, "already_disconnected") for n, a in enumerate(disconnected)]
        unknown = [f"fca_chaosUnknown{n:05d}" for n in range(config.unknown)]
        items += [(f"unknown-{n}", a, "not_found") for n, a in enumerate(unknown)]
        items += [(f"customer-{n}", c, "customer") for n, c in enumerate(customers)]
        self.rng.shuffle(items)
        dupes = self.rng.sample(active, config.duplicates)
        # Later in the stream: a second event for an account, and an event sent again.
        for n, account in enumerate(dupes):
            items.insert(self.rng.randrange(len(items) // 2, len(items)), (f"dup-{n}", account,
                         "disconnected"))  # fmt: skip
        for _ in range(config.replays):
            event_id, target, expect = items[self.rng.randrange(len(items) // 2)]
            items.insert(self.rng.randrange(len(items) // 2, len(items)), (event_id, target,
                         expect))  # fmt: skip
            self.figures["events sent twice (replayed by the intake)"] += 1
        return items

    async def run(self) -> ChaosResult:
        started = time.monotonic()
        config = self.config
        async with aiohttp.ClientSession() as self.http:
            # The emulator first (accounts), then Redis, intake, workers.
            self.write_policy("cus_pending")
            rate = str(config.emulator_rate)
            self.emulator = start_emulator(
                self.group, accounts=0, seed=config.seed,
                extra=["--already-disconnected-mode", "400", "--rate-limit", rate,
                       "--global-rate-limit", rate, "--max-concurrency", "64",
                       "--hang-seconds", str(HANG_SECONDS)],
            )  # fmt: skip
            active = [a["id"] for a in await self.create_accounts(config.singles)]
            gone = await self.create_accounts(config.already_disconnected, "disconnected")
            customers = []
            for _ in range(config.customers):
                made = await self.admin(
                    "POST", "/accounts", {"count": config.accounts_per_customer}
                )
                customers.append(made["data"][0]["account_holder"]["customer"])
            sweep = await self.create_accounts(config.sweep_accounts, one_holder=True)
            self.sweep_accounts = [a["id"] for a in sweep]
            self.write_policy(sweep[0]["account_holder"]["customer"])
            await self.admin("DELETE", "/requests")
            self._start_rest()
            settings = self.redis_server.settings()
            self.redis = redis_client(settings)
            audit = AuditTrail(self.audit_dir / "harness.jsonl")
            self.ledger = Ledger.from_settings(self.redis, settings, audit)
            self.customers = CustomerLedger(self.ledger, audit)
            self.runs = SweepRuns(self.redis, self.ledger.prefix, audit)
            try:
                await self._chaos(active, [a["id"] for a in gone], customers)
                findings = await self._quiesce_and_check()
            finally:
                self.stop_chaos.set()
                await self.redis.aclose()
                audit.close()
                self.group.stop_all()
                self.redis_server.stop()
        assert self.fleet is not None
        faults = dict(self.faults)
        faults["worker SIGKILLs"] = self.fleet.counts["SIGKILL"]
        faults["worker SIGTERMs"] = self.fleet.counts["SIGTERM"]
        faults["worker exits not caused by the harness (restarted)"] = self.fleet.counts[
            "exited on their own"
        ]
        return ChaosResult(
            config, findings, faults, dict(self.figures), time.monotonic() - started, self.workdir
        )

    def _start_rest(self) -> None:
        """Redis, the intake and the workers (the emulator is already up)."""
        config = self.config
        self.redis_server.start()
        redis_env = self.redis_server.env()
        port = free_port()
        self.intake = f"http://127.0.0.1:{port}"
        self.intake_env = {
            **redis_env, "FCD_DEMO": "1", "FCD_LOG_FORMAT": "json",
            "FCD_LOG_LEVEL": "WARNING", "FCD_HTTP_HOST": "127.0.0.1", "FCD_HTTP_PORT": str(port),
            "FCD_API_TOKENS": json.dumps({"chaos": TOKEN}),
            "FCD_STRIPE_WEBHOOK_SECRETS": "whsec_chaos_0123456789abcdef",
            "FCD_AUDIT_LOG_PATH": str(self.audit_dir / "intake.jsonl"),
        }  # fmt: skip
        self.group.start("intake", ["-m", "producer"], self.intake_env)
        self.group.wait_for_line("intake", "listening on")
        setting = str(config.rate)
        env = worker_env(
            redis_env["FCD_REDIS_URL"], self.emulator, log_level="WARNING",
            reconcile_interval_seconds="2", events_catchup_interval_seconds="0",
            job_timeout_seconds="10", in_progress_lease_seconds="15",
            stripe_timeout_seconds=str(CLIENT_TIMEOUT), stripe_connect_timeout_seconds="1",
            retry_base_seconds="0.5", retry_cap_seconds="5", max_attempts="40",
            stripe_rate_limit=setting, stripe_read_rate_limit=setting,
            stripe_global_rate_limit=setting, stripe_max_in_flight="32",
            limiter_pacing_margin=str(PACING_MARGIN),
            retention_policies=str(self.policy_path),
        )  # fmt: skip
        self.fleet = Fleet(self.group, {**env, **redis_env}, self.audit_dir)
        for _ in range(URGENT_WORKERS):
            self.fleet.start("urgent")
        for _ in range(BULK_WORKERS):
            self.fleet.start("bulk")

    async def _chaos(self, active: list[str], gone: list[str], customers: list[str]) -> None:
        config = self.config
        length = config.chaos_seconds
        plan = self.plan(active, gone, customers)
        self.figures["submissions planned (HTTP)"] = len(plan)
        tasks: list[Callable[[], Awaitable[None]]] = [
            lambda: self.producers(plan, length * 0.8),
            lambda: self.storm(length * 0.05, length * 0.3),
            lambda: self.burst(length * 0.4),
            lambda: self.refuse(length * 0.5),
            lambda: self.storm(length * 0.65, length * 0.3),
            self.killer,
        ]
        if config.failover:  # restarts first: they restart the first primary in place
            tasks.append(lambda: self.redis_restart(length * 0.2, hard=False))
            tasks.append(lambda: self.redis_restart(length * 0.4, hard=True))
            tasks.append(lambda: self.fail_over(length * 0.7))
        else:
            if config.redis_graceful:
                tasks.append(lambda: self.redis_restart(length * 0.3, hard=False))
            if config.redis_kill9:
                tasks.append(lambda: self.redis_restart(length * 0.75, hard=True))
        supervisor = asyncio.create_task(self.supervisor())
        sweep = asyncio.create_task(self._delayed(length * 0.1, self.sweep_driver))
        try:
            await asyncio.gather(*(task() for task in tasks))
            await self.set_faults()
            await asyncio.wait_for(sweep, config.drain_seconds)
        finally:
            self.stop_chaos.set()
            sweep.cancel()
            await asyncio.gather(supervisor, sweep, return_exceptions=True)
        self.stop_chaos.clear()
        self._keeper = asyncio.create_task(self.supervisor())

    async def _delayed(self, delay: float, step: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        await step()

    async def _quiesce_and_check(self) -> Findings:
        """Faults off; wait (bounded) until nothing in the ledger is active, then check."""
        await self.resubmit_lost()
        deadline = time.monotonic() + self.config.drain_seconds
        while time.monotonic() < deadline:
            active = 0
            for store in (self.ledger, self.customers):
                counts = await store.count_by_status()
                active += sum(n for s, n in counts.items() if s not in store.kind.terminal)
            if active == 0:
                break
            await asyncio.sleep(1.0)
        self.stop_chaos.set()
        await asyncio.gather(self._keeper, return_exceptions=True)
        self.group.stop([n for n in self.group.processes if n != "emulator"])
        return await self._check()

    async def _facts(self) -> dict[str, RequestFacts]:
        facts: dict[str, RequestFacts] = {}
        stores: list[StateStore[Any, Any]] = [self.ledger, self.customers]
        for store in stores:
            for status in store.kind.statuses:
                for raw in await self.redis.zrange(store.status_key(status), 0, -1):
                    request_id = raw.decode()
                    history = await store.history(request_id)
                    request = await store.get(request_id)
                    facts[request_id] = RequestFacts(
                        request_id, store.kind.name, str(request.status),
                        getattr(request, "account_id", None), history,
                    )  # fmt: skip
        return facts

    async def _check(self) -> Findings:
        facts = await self._facts()
        log = (await self.admin("GET", "/requests"))["data"]
        (self.workdir / "emulator-requests.json").write_text(json.dumps(log))
        accounts = await self.admin("GET", "/accounts?limit=0")
        statuses = {a["id"]: a["status"] for a in accounts["data"]}
        audit = read_audit(sorted(self.audit_dir.glob("*.jsonl")))
        findings = Findings()
        accepted = list(self.accepted.values())
        findings.add("accepted but absent from the ledger", lost_acceptances(accepted, facts))
        findings.add("requests not terminal", not_terminal(facts))
        findings.add(
            "existing accounts submitted, not disconnected at the emulator",
            not_disconnected(accepted, self.sweep_accounts, statuses),
        )
        findings.add("failed requests with a transient cause", transient_failures(facts))
        findings.add(
            "two disconnect POSTs for one account overlapping",
            overlapping_posts(log, CLIENT_TIMEOUT),
        )
        assert self.fleet is not None
        compared = compare_audit(facts, audit, self.kill9_times, self.fleet.kills)
        findings.add("requests whose audit events differ from their history", compared.mismatched)
        findings.add("histories breaking the transition table", broken_histories(facts))
        times = sorted(float(e["ts"]) for e in log if str(e["path"]).startswith("/v1"))
        peak = max_in_window(times, 1.0) if times else 0
        findings.invariants.append(_peak_invariant(peak, int(self.config.rate)))
        before, after = handed_back_attempts(facts, log)
        unexpected, ambiguous = [], 0
        for item in accepted:
            if item.kind != "account" or item.expect not in ("not_found", "already_disconnected"):
                continue
            for request_id in item.request_ids:
                fact = facts.get(request_id)
                if fact is None or fact.status == item.expect:
                    continue
                if item.expect == "already_disconnected" and _after_ambiguous_error(fact):
                    ambiguous += 1  # a 5xx may have acted: the retrieve cannot say who did
                    continue
                unexpected.append(f"{item.event_id}: {fact.status}, expected {item.expect}")
        findings.add("unknown / already-disconnected accounts ending otherwise", unexpected)
        self.figures[
            "already-disconnected accounts recorded disconnected after an ambiguous 5xx"
        ] = ambiguous
        counts = Counter(f.status for f in facts.values() if f.kind == "account")
        self.figures["requests in the ledger (account)"] = sum(counts.values())
        self.figures["customer-level parents"] = sum(
            1 for f in facts.values() if f.kind == "customer"
        )
        for status, n in sorted(counts.items()):
            self.figures[f"  ended {status}"] = n
        self.figures["accepted submissions (202)"] = len(accepted)
        self.figures["sweep runs"] = len(self.sweep_runs)
        self.figures["audit events of writes lost with Redis kill -9 / fail-over"] = (
            compared.lost_with_kill9
        )
        self.figures["history records whose audit line died with a SIGKILLed worker"] = (
            compared.died_with_worker
        )
        self.figures["attempts handed back by the reconciler, POST not yet sent"] = before
        self.figures["attempts handed back by the reconciler, POST sent"] = after
        self.faults["Stripe 500s injected"] = sum(1 for e in log if e.get("fault") == "500")
        self.faults["Stripe calls hung past the client timeout"] = sum(
            1 for e in log if e.get("fault") == "hang"
        )
        self.faults["Stripe 429s (rate limited)"] = sum(1 for e in log if e["status"] == 429)
        self.figures["Stripe calls (emulator log)"] = len(log)
        self.figures["peak calls in a sliding 1 s"] = peak
        return findings


_LISTING = CUSTOMER.running


def _after_ambiguous_error(fact: RequestFacts) -> bool:
    """Recorded ``disconnected`` on a retrieve after an error that may have acted (a 5xx): the
    README's documented answer (Stripe may have disconnected it; only its event could tell)."""
    last = fact.history[-1] if fact.history else {}
    return fact.status == "disconnected" and last.get("evidence") == "retrieve"


def _peak_invariant(peak: int, setting: int) -> Invariant:
    return Invariant(f"peak sliding-1 s calls at the emulator (setting {setting}/s)", peak, setting)


async def run(config: ChaosConfig, workdir: Path) -> ChaosResult:
    """Run the harness in ``workdir`` (logs, audit files, Redis's AOF stay there)."""
    os.environ.pop("FCD_REDIS_URL", None)  # the harness's own Redis, never one it was given
    return await Harness(config, workdir).run()
