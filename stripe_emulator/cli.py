"""Command line: `python -m stripe_emulator --port 12111 --accounts 1000 --seed 7 ...`.

Prints `stripe_emulator listening on http://HOST:PORT` (flushed) once it accepts connections,
then serves until SIGINT or SIGTERM. Unlike the Python API, the CLI applies Stripe-like limits by
default (25/s per endpoint, 25/s global for test keys, 100/s live, 20 in flight); `--no-limits`
turns them off. API keys are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Sequence

from aiohttp import web

from stripe_emulator.app import create_app
from stripe_emulator.config import (
    DEFAULT_API_KEY,
    LATENCY_PRESETS,
    EmulatorConfig,
    FaultsConfig,
    LatencyConfig,
    LimitsConfig,
    OutageWindow,
    WebhookEndpoint,
)
from stripe_emulator.listener import Listener
from stripe_emulator.pipeline import STATE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stripe_emulator", description=__doc__)
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=12111)
    add("--accounts", type=int, default=200, help="accounts generated at start")
    add("--seed", type=int, default=0)
    add("--reference-time", type=int, default=None, help="unix s the data leads up to")
    add(
        "--api-key", action="append", dest="api_keys", help=f"repeatable; default {DEFAULT_API_KEY}"
    )
    add("--already-disconnected-mode", choices=("200", "400"), default="200")
    add("--inactive-disconnect-mode", choices=("200", "400"), default="200")
    add("--event-request-mode", choices=("set", "null"), default="set")
    add("--connected-accounts", type=int, default=0, help="accounts connected at start")
    add("--rate-limit", type=float, default=25.0, help="requests/s per endpoint")
    add("--global-rate-limit", type=float, default=25.0, help="requests/s, sk_test_ keys")
    add("--global-rate-limit-live", type=float, default=100.0, help="requests/s, sk_live_ keys")
    add("--max-concurrency", type=int, default=20, help="requests in flight")
    add("--endpoint-max-concurrency", type=int, default=None)
    add("--no-limits", action="store_true", help="turn every limiter off")
    add("--latency", default="none", help="none | realistic | fixed:MS | lognormal:MEDIAN:P99")
    add("--error-rate", action="append", default=[], metavar="STATUS=P", help="500|502|503")
    add("--hang-rate", type=float, default=0.0)
    add("--hang-seconds", type=float, default=60.0)
    add("--reset-rate", type=float, default=0.0)
    add("--outage-seconds", type=float, default=None, help="all calls 503 for N s from start")
    add("--webhook", action="append", default=[], metavar="URL=whsec_...")
    add("--webhook-max-attempts", type=int, default=5)
    add("--webhook-backoff", type=float, default=0.5)
    add("--request-log-size", type=int, default=1_000_000)
    add("--idempotency-ttl", type=float, default=24 * 3600.0)
    return parser


def parse_latency(text: str) -> LatencyConfig:
    """`none`, `realistic`, `fixed:MS` or `lognormal:MEDIAN_MS:P99_MS`."""
    if text in LATENCY_PRESETS:
        return LATENCY_PRESETS[text]
    kind, _, rest = text.partition(":")
    numbers = [float(part) for part in rest.split(":") if part]
    if kind == "fixed" and len(numbers) == 1:
        return LatencyConfig(kind="fixed", fixed_ms=numbers[0])
    if kind == "lognormal" and len(numbers) == 2:
        return LatencyConfig(kind="lognormal", median_ms=numbers[0], p99_ms=numbers[1])
    raise argparse.ArgumentTypeError(f"bad --latency: {text!r}")


def _limits(args: argparse.Namespace) -> LimitsConfig | None:
    if args.no_limits:
        return None
    return LimitsConfig(
        endpoint_rate=args.rate_limit,
        global_rate_test=args.global_rate_limit,
        global_rate_live=args.global_rate_limit_live,
        max_concurrency=args.max_concurrency,
        endpoint_max_concurrency=args.endpoint_max_concurrency,
    )


def _faults(args: argparse.Namespace) -> FaultsConfig:
    outage = None
    if args.outage_seconds is not None:
        now = time.time()
        outage = OutageWindow(start=now, end=now + args.outage_seconds)
    return FaultsConfig.model_validate(
        {
            "error_rates": dict(item.split("=", 1) for item in args.error_rate),
            "latency": parse_latency(args.latency),
            "hang_rate": args.hang_rate,
            "hang_seconds": args.hang_seconds,
            "reset_rate": args.reset_rate,
            "outage": outage,
        }
    )


def config_from_args(argv: Sequence[str] | None = None) -> tuple[EmulatorConfig, str, int]:
    """The config, host and port the command line asks for."""
    args = _parser().parse_args(argv)
    webhooks = []
    for item in args.webhook:
        url, _, secret = item.rpartition("=")
        webhooks.append(WebhookEndpoint(url=url, secret=secret))
    config = EmulatorConfig(
        accounts=args.accounts,
        seed=args.seed,
        reference_time=args.reference_time,
        api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
        already_disconnected_mode=args.already_disconnected_mode,
        inactive_disconnect_mode=args.inactive_disconnect_mode,
        event_request_mode=args.event_request_mode,
        connected_accounts=args.connected_accounts,
        limits=_limits(args),
        faults=_faults(args),
        webhook_endpoints=tuple(webhooks),
        webhook_max_attempts=args.webhook_max_attempts,
        webhook_backoff_seconds=args.webhook_backoff,
        request_log_size=args.request_log_size,
        idempotency_ttl_seconds=args.idempotency_ttl,
    )
    return config, args.host, args.port


async def serve(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, announcing readiness on stdout."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        listener = Listener(runner, host, port, backlog=1024)
        runner.app[STATE].listener = listener
        await listener.start()
        print(f"stripe_emulator listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `python -m stripe_emulator`."""
    config, host, port = config_from_args(argv)
    try:
        asyncio.run(serve(config, host, port))
    except KeyboardInterrupt:
        sys.exit(130)
