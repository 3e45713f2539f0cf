"""Benchmark: sustained requests/s through the HTTP intake into the ledger, one producer process.

    python bench/intake.py [--requests 20000] [--concurrency 64]

Starts a private redis-server and `python -m producer` (INFO logging to a file, as deployed),
then drives it from a separate load process (aiohttp, `--concurrency` requests in flight).
Every request has a fresh account and event id, so each one is a real submission: event-id claim,
the ledger's create script (request + history + indexes + arq job) and the event-id result.
Rows:

- `GET /healthz (ceiling)`: a bare handler; what aiohttp and this client allow on this machine.
- `POST single, keep-alive`: the intake as a service should call it (pooled connections).
- `POST single, new connection each`: the naive client: a TCP connection per request.
- `POST batch of 100`: the batch endpoint; the rate is items/s.

After each row the ledger's request count is compared with the number of accepted requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devenv.redis_server import free_port, start_redis

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a throw-away local token)
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    requests: int
    concurrency: int
    new_connection: bool = False
    batch: int = 0  # 0: single body; n: batch of n items


@dataclass
class Outcome:
    latencies_ms: list[float]
    accepted: int
    seconds: float


def _body(scenario: Scenario, tag: str, index: int) -> dict[str, Any] | None:
    if scenario.path == "/healthz":
        return None
    if scenario.batch:
        return {"items": [_item(tag, index * scenario.batch + i) for i in range(scenario.batch)]}
    return _item(tag, index)


def _item(tag: str, n: int) -> dict[str, str]:
    return {"account_id": f"fca_{tag}{n}", "event_id": f"{tag}-{n}", "reason": "bench"}


async def _drive(base: str, scenario: Scenario) -> Outcome:
    tag = uuid.uuid4().hex[:8]
    connector = aiohttp.TCPConnector(
        limit=scenario.concurrency, force_close=scenario.new_connection
    )
    latencies: list[float] = []
    accepted = 0
    counter = iter(range(scenario.requests))
    async with aiohttp.ClientSession(base, connector=connector, headers=HEADERS) as session:

        async def one_worker() -> None:
            nonlocal accepted
            for index in counter:
                body = _body(scenario, tag, index)
                started = time.perf_counter()
                if body is None:
                    async with session.get(scenario.path) as resp:
                        await resp.read()
                        accepted += resp.status == 200
                else:
                    async with session.post(scenario.path, json=body) as resp:
                        payload: Any = await resp.json()
                        if scenario.batch:
                            accepted += int(payload["accepted"])
                        elif resp.status == 202:
                            accepted += 1
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(one_worker() for _ in range(scenario.concurrency)))
        seconds = time.perf_counter() - began
    return Outcome(latencies, accepted, seconds)


def _load_process(base: str, scenario: Scenario, queue: multiprocessing.Queue[Outcome]) -> None:
    queue.put(asyncio.run(_drive(base, scenario)))


def run_load(base: str, scenario: Scenario) -> Outcome:
    """Run one scenario from a separate process (so the load does not share the intake's loop)."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[Outcome] = ctx.Queue()
    process = ctx.Process(target=_load_process, args=(base, scenario, queue))
    process.start()
    outcome = queue.get(timeout=600)
    process.join(30)
    return outcome


def ledger_count(redis_url: str) -> int:
    """Requests in the ledger: the sum of the status index sets."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        total = 0
        for key in client.scan_iter(match="fcd:status:*"):
            count: Any = client.zcard(key)
            total += int(count)
        return total
    finally:
        client.close()


def start_intake(redis_url: str, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "FCD_REDIS_URL": redis_url,
        "FCD_API_TOKENS": json.dumps({"bench": TOKEN}),
        "FCD_STRIPE_WEBHOOK_SECRETS": "whsec_bench0123456789",
        "FCD_HTTP_HOST": "127.0.0.1",
        "FCD_HTTP_PORT": str(port),
        "FCD_LOG_FORMAT": "json",
    }
    log = (log_dir / "intake.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "producer"], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    log.close()
    deadline = time.monotonic() + 20
    while "listening on" not in (log_dir / "intake.log").read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((log_dir / "intake.log").read_text(errors="replace"))
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    scenarios = [
        Scenario("GET /healthz (ceiling)", "/healthz", n, c),
        Scenario("POST single, keep-alive", "/v1/disconnect-requests", n, c),
        Scenario("POST single, new connection each", "/v1/disconnect-requests", n // 4, c, True),
        Scenario(
            "POST batch of 100 (items/s)", "/v1/disconnect-requests/batch", n // 200, 4, batch=100
        ),
    ]
    redis_server = start_redis()
    log_dir = Path(tempfile.mkdtemp(prefix="fcd-bench-intake-"))
    intake, base = start_intake(redis_server.url, log_dir)
    rows = []
    try:
        for scenario in scenarios:
            before = ledger_count(redis_server.url)
            outcome = run_load(base, scenario)
            added = ledger_count(redis_server.url) - before
            rows.append((scenario, outcome, added))
    finally:
        intake.terminate()
        intake.wait(15)
        redis_server.stop()
    print_table(rows)
    ok = all(added == outcome.accepted for s, outcome, added in rows if s.path != "/healthz")
    return 0 if ok else 1


def print_table(rows: list[tuple[Scenario, Outcome, int]]) -> None:
    load1, load5, _ = os.getloadavg()
    print(
        f"\nintake benchmark: 1 producer process, {os.cpu_count()} CPUs, "
        f"load average {load1:.2f}/{load5:.2f} (1/5 min, at the end)"
    )
    header = f"{'scenario':36} {'calls':>7} {'rate/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'accepted':>9} {'in ledger':>9}"
    print(header)
    print("-" * len(header))
    for scenario, outcome, added in rows:
        items = outcome.accepted if scenario.batch else len(outcome.latencies_ms)
        rate = items / outcome.seconds
        lat = sorted(outcome.latencies_ms)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        in_ledger = "-" if scenario.path == "/healthz" else str(added)
        print(
            f"{scenario.name:36} {len(lat):>7} {rate:>9.0f} {p50:>8.1f} {p99:>8.1f} "
            f"{outcome.accepted:>9} {in_ledger:>9}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
