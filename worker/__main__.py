"""``python -m worker [--burst] [--queue urgent|bulk]``: run one arq worker process.

Run more of them to scale out. ``--queue bulk`` consumes the retention sweeps' queue, yields to
urgent work at the rate limiter, and runs the sweeps' schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ledger.durability import RedisRefused
from ledger.logging import announce_redis, configure_logging
from ledger.settings import InvalidSettings, load_settings
from worker.app import build_worker
from worker.settings import WorkerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    parser.add_argument(
        "--queue",
        choices=["urgent", "bulk"],
        default="urgent",
        help="urgent: FCD_QUEUE_NAME (user deletions); bulk: FCD_BULK_QUEUE_NAME (sweeps)",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(WorkerSettings)
    except InvalidSettings as exc:
        print(f"python -m worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    announce_redis(settings, f"worker:{args.queue}")
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = build_worker(settings, burst=args.burst, queue=args.queue)
    try:
        worker.run()
    except RedisRefused as exc:  # maxmemory-policy, FCD_DURABILITY: the message says the fix
        print(f"python -m worker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
