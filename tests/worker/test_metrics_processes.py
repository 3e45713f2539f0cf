"""A real worker process serves /metrics, /healthz and /readyz on its own port; the series the
runbook's alerts use move as the worker trips the breaker, beats and stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from control.exposition import render_metrics
from control.pause import get_pause
from devenv.processes import ProcessGroup
from devenv.redis_server import free_port
from ledger.store import Ledger
from tests.control.metrics_support import parse_samples
from tests.emulator_admin import EmulatorAdmin
from tests.producer.process_helpers import wait_for_exit
from tests.producer.test_cli import fcd
from tests.worker.test_breaker_processes import start_workers, submit_all

pytestmark = pytest.mark.process


async def _scrape(session: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        return parse_samples(await resp.text())


async def test_worker_metrics_show_breaker_heartbeat_and_stripe_calls(
    group: ProcessGroup,
    ledger: Ledger,
    process_admin: EmulatorAdmin,
    redis_url: str,
    tmp_path: Path,
    namespace: str,
) -> None:
    """A worker with a revoked key trips the breaker: its own /metrics shows fcd_breaker_tripped 1
    and fcd_paused 1, the 401 in fcd_stripe_calls_total and the call's duration histogram, itself
    in fcd_workers and its heartbeat; /readyz stays 200 while paused. After `fcd resume` both
    gauges are 0 (its request cancelled first), and once it stops it leaves fcd_workers."""
    port = free_port()
    [account] = await process_admin.create_accounts(1)
    [request_id] = await submit_all(ledger, [account])
    start_workers(
        group, ledger, redis_url, process_admin, tmp_path, ["w0"],
        stripe_api_key="sk_test_revoked", metrics_port=str(port),
    )  # fmt: skip
    group.wait_for_line("w0", "worker.metrics_listening")
    deadline = time.monotonic() + 20
    while await get_pause(ledger.redis, key=ledger.pause_key) is None:
        assert time.monotonic() < deadline, group.log_text("w0")
        await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as session:
        samples = await _scrape(session, port)
        assert (samples["fcd_paused"], samples["fcd_breaker_tripped"]) == (1, 1)
        assert samples['fcd_workers{queue="urgent"}'] == 1
        assert any(k.startswith("fcd_worker_heartbeat_timestamp_seconds{") for k in samples)
        first_call = next(k for k in samples if k.startswith("fcd_stripe_calls_total{"))
        assert first_call.endswith('outcome="401"}') and samples[first_call] >= 1
        labels = first_call.removeprefix("fcd_stripe_calls_total")
        assert samples[f"fcd_stripe_call_duration_seconds_count{labels}"] == samples[first_call]
        async with session.get(f"http://127.0.0.1:{port}/readyz") as ready:
            assert ready.status == 200
        async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
            assert (await health.json()) == {"ok": True}
        # nothing left to run, so the worker cannot trip again before the scrape
        cancelled = fcd(["cancel", request_id, "--reason", "test over"], redis_url, namespace)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        resumed = fcd(["resume", "--reason", "key rotated"], redis_url, namespace)
        assert resumed.returncode == 0, resumed.stderr
        samples = await _scrape(session, port)
        assert (samples["fcd_paused"], samples["fcd_breaker_tripped"]) == (0, 0)
    group.signal("w0")
    await wait_for_exit(group, "w0")
    after = parse_samples(await render_metrics(ledger, webhook_inbox=0, webhook_dead_letters=0))
    assert after['fcd_workers{queue="urgent"}'] == 0
