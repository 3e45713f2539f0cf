"""The command line: flags map onto the config, and the process announces itself and serves."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest

from stripe_emulator import free_port
from stripe_emulator.cli import config_from_args, parse_latency


def test_defaults_enable_stripe_like_limits() -> None:
    """Without flags the CLI applies 25/s endpoint, 25/s test, 100/s live, 20 in flight."""
    config, host, port = config_from_args([])
    assert (host, port) == ("127.0.0.1", 12111)
    assert config.limits is not None
    assert config.limits.endpoint_rate == 25
    assert config.limits.global_rate_live == 100
    assert config.limits.max_concurrency == 20
    assert config.api_keys == ("sk_test_fcd_emulator",)


def test_flags_map_onto_config() -> None:
    """Keys, mode, faults, latency and webhooks given as flags end up in the config."""
    config, _, port = config_from_args(
        [
            "--port", "9999", "--accounts", "5", "--seed", "3",
            "--api-key", "sk_test_a", "--api-key", "sk_live_b",
            "--already-disconnected-mode", "400", "--no-limits",
            "--latency", "lognormal:100:900", "--error-rate", "500=0.1",
            "--webhook", "http://127.0.0.1:1/hook=whsec_x", "--outage-seconds", "5",
        ]
    )  # fmt: skip
    assert port == 9999
    assert (config.accounts, config.seed) == (5, 3)
    assert config.api_keys == ("sk_test_a", "sk_live_b")
    assert config.already_disconnected_mode == "400"
    assert config.limits is None
    assert config.faults.latency.kind == "lognormal"
    assert config.faults.error_rates == {"500": 0.1}
    assert config.faults.outage is not None
    assert config.webhook_endpoints[0].url == "http://127.0.0.1:1/hook"
    assert config.webhook_endpoints[0].secret == "whsec_x"


def test_latency_presets() -> None:
    """`realistic` is lognormal with p50 300 ms and p99 1.5 s; `fixed:MS` is fixed."""
    realistic = parse_latency("realistic")
    assert (realistic.kind, realistic.median_ms, realistic.p99_ms) == ("lognormal", 300, 1500)
    assert parse_latency("fixed:25").fixed_ms == 25


@pytest.mark.process
async def test_process_announces_url_and_serves() -> None:
    """`python -m stripe_emulator` prints its URL once ready and answers Stripe calls."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stripe_emulator", "--port", str(port), "--accounts", "3",
        "--api-key", "sk_test_cli", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
        assert line.decode().strip() == f"stripe_emulator listening on http://127.0.0.1:{port}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}/v1/financial_connections/accounts",
                headers={"Authorization": "Bearer sk_test_cli"},
            ) as resp,
        ):
            assert resp.status == 200
            assert len((await resp.json())["data"]) == 3
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
