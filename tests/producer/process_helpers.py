"""Helpers for tests that run ``fcd`` and ``python -m worker`` as real processes."""

from __future__ import annotations

import asyncio
import time

from devenv.processes import ProcessGroup, worker_env
from ledger.models import DisconnectRequest, RequestStatus
from ledger.store import Ledger


def env_for(ledger: Ledger, redis_url: str, emulator_url: str, **extra: str) -> dict[str, str]:
    """Worker environment on the test's own key prefix and queue."""
    return worker_env(
        redis_url,
        emulator_url,
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        retry_base_seconds="0.05",
        retry_cap_seconds="0.2",
        **extra,
    )


async def wait_for_status(
    ledger: Ledger, request_id: str, status: RequestStatus, seconds: float = 30.0
) -> DisconnectRequest:
    """Poll the ledger until the request reaches ``status``; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        request = await ledger.get(request_id)
        if request.status == status:
            return request
        assert time.monotonic() < deadline, f"{request_id} stuck in {request.status}"
        await asyncio.sleep(0.1)


async def wait_for_exit(group: ProcessGroup, name: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while group.processes[name].poll() is None:
        assert time.monotonic() < deadline, f"{name} did not exit"
        await asyncio.sleep(0.1)
