"""Benchmark: how many disconnects a second one emulator process serves over loopback.

    python bench/emulator.py [--accounts 1000000] [--requests 60000] [--load-procs 1]

Starts `python -m stripe_emulator --no-limits` (latency off) in a subprocess on a free port and
drives it with aiohttp from `--load-procs` load processes (keep-alive, `--concurrency`
connections each). The account ids are computed locally from the same seed and reference time,
which also shows the data set is deterministic. Rows:

- `health (baseline)`: `GET /_emulator/health`, a bare aiohttp handler in the same process;
  the ceiling the framework and this client allow, so the other rows show the pipeline's cost.
- `retrieve`: `GET .../accounts/{id}` through auth, limiter checks, faults and the request log.
- `disconnect`: `POST .../disconnect` of distinct accounts (state change, event, cached JSON).
- `disconnect + Idempotency-Key`: the same with a fresh key per call (the worker's usage).
- `disconnect, log off`: as above with `--request-log-size 0`, the log's cost.

Columns: throughput and latency seen by the load processes (which share the machine's cores
with the server, so they vary with other load), then the server's own CPU time per request
(from /proc) and the rate one core could serve at that cost, which is steadier.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stripe_emulator import DEFAULT_API_KEY, free_port
from stripe_emulator.accounts import AccountStore

SEED, REFERENCE = 1, 1_780_000_000
HEADERS = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


@dataclass(frozen=True)
class Server:
    """A running emulator process."""

    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far (Linux /proc; 0 elsewhere)."""
        stat = Path(f"/proc/{self.pid}/stat")
        if not stat.exists():
            return 0.0
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Job:
    """One load process's share of a scenario."""

    base: str
    kind: str
    ids: list[str]
    concurrency: int


def _rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MB (Linux /proc; 0 elsewhere)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return 0.0
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def emulator(accounts: int, log_size: int) -> Iterator[Server]:
    """Run the emulator as a process; yield its base URL after reporting start time and RSS."""
    port = free_port()
    command = [
        sys.executable, "-m", "stripe_emulator", "--port", str(port), "--accounts", str(accounts),
        "--seed", str(SEED), "--reference-time", str(REFERENCE), "--no-limits",
        "--request-log-size", str(log_size),
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        ready = time.perf_counter() - started
        print(f"  (emulator ready in {ready:.2f} s, RSS {_rss_mb(process.pid):.0f} MB)")
        yield Server(f"http://127.0.0.1:{port}", process.pid)
        print(f"  (emulator RSS after the runs: {_rss_mb(process.pid):.0f} MB)")
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _drive(job: Job) -> tuple[float, float, list[float]]:
    """Send the job's calls; return wall-clock start and end, and each call's latency."""
    latencies: list[float] = []
    queue = iter(enumerate(job.ids))
    connector = aiohttp.TCPConnector(limit=job.concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def worker() -> None:
            for n, account_id in queue:
                started = time.perf_counter()
                await _one(session, job, n, account_id)
                latencies.append(time.perf_counter() - started)

        began = time.time()
        await asyncio.gather(*(worker() for _ in range(job.concurrency)))
        return began, time.time(), latencies


async def _one(session: aiohttp.ClientSession, job: Job, n: int, account_id: str) -> None:
    path = f"{job.base}/v1/financial_connections/accounts/{account_id}"
    if job.kind == "health":
        request = session.get(f"{job.base}/_emulator/health")
    elif job.kind == "retrieve":
        request = session.get(path)
    elif job.kind == "idempotent":
        request = session.post(
            f"{path}/disconnect", headers={"Idempotency-Key": f"b-{n}-{account_id}"}
        )
    else:
        request = session.post(f"{path}/disconnect")
    async with request as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{job.kind}: HTTP {resp.status}")


def _load_process(job: Job) -> tuple[float, float, list[float]]:
    return asyncio.run(_drive(job))


def run_scenario(server: Server, kind: str, ids: list[str], procs: int, concurrency: int) -> str:
    """Drive one scenario; return its table row."""
    jobs = [Job(server.base, kind, ids[i::procs], concurrency) for i in range(procs)]
    cpu_before = server.cpu_seconds()
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        results = pool.map(_load_process, jobs)
    # Measured inside the load processes, so process start-up is not counted.
    elapsed = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    latencies = sorted(x for _, _, result in results for x in result)
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    rate = len(latencies) / elapsed
    cpu_us = (server.cpu_seconds() - cpu_before) / len(latencies) * 1e6
    median_ms = statistics.median(latencies) * 1000
    return f"{rate:>10,.0f}  {median_ms:>8.2f}  {p99 * 1000:>8.2f}  {cpu_us:>10.0f}  {1e6 / cpu_us:>12,.0f}"


def main() -> None:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60_000)
    parser.add_argument("--load-procs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="connections per process")
    args = parser.parse_args()
    store = AccountStore(args.accounts, SEED, REFERENCE)
    ids = [store.account_ids.encode(i) for i in range(min(args.requests, args.accounts))]
    half = len(ids) // 2
    print(f"emulator: 1 process, {args.accounts:,} accounts, limits and latency off")
    print(f"load: {args.load_procs} process(es) x {args.concurrency} keep-alive connections\n")
    print(
        f"{'scenario':<30}{'req/s':>10}  {'p50 ms':>8}  {'p99 ms':>8}"
        f"  {'server µs':>10}  {'1-core cap/s':>12}"
    )

    def row(name: str, server: Server, kind: str, scenario_ids: list[str]) -> None:
        result = run_scenario(server, kind, scenario_ids, args.load_procs, args.concurrency)
        print(f"{name:<30}{result}", flush=True)

    with emulator(args.accounts, log_size=1_000_000) as base:
        row("health (baseline)", base, "health", ids)
        row("retrieve", base, "retrieve", ids)
        row("disconnect", base, "disconnect", ids[:half])
        row("disconnect + Idempotency-Key", base, "idempotent", ids[half:])
    with emulator(args.accounts, log_size=0) as base:
        row("disconnect, log off", base, "disconnect", ids)


if __name__ == "__main__":
    main()
