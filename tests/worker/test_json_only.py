"""The queue carries JSON only: a job in arq's default binary format planted in Redis is refused,
never loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from devenv.processes import worker_env
from ledger.jobs import ARQ_JOB_KEY_PREFIX
from ledger.store import Ledger

pytestmark = pytest.mark.process


def exploit(marker: Path) -> bytes:
    """A payload in arq's default serializer's format (Python's object serialization, protocol
    0 opcodes written out: GLOBAL os.system, MARK, STRING, TUPLE, REDUCE, STOP): loading it runs
    ``touch marker``, the attack a queue of such objects allows."""
    return b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


async def test_a_binary_object_job_is_refused_and_runs_no_code(
    ledger: Ledger, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """Someone with Redis access enqueues a job in arq's default binary format; the worker's JSON
    deserializer rejects it, the payload's code never runs, and the worker carries on."""
    marker = tmp_path / "pwned"
    await redis.set(ARQ_JOB_KEY_PREFIX + "evil.1", exploit(marker))
    await redis.zadd(ledger.queue_name, {"evil.1": int(time.time() * 1000)})
    env = worker_env(
        redis_url,
        "http://127.0.0.1:9",
        key_prefix=ledger.prefix,
        queue_name=ledger.queue_name,
        reconcile_interval_seconds="0",
    )
    done = subprocess.run(  # noqa: ASYNC221 - the test waits for the worker on purpose
        [sys.executable, "-m", "worker", "--burst"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert "evil.1" in done.stdout and "deserializ" in done.stdout.lower()
    assert await redis.zcard(ledger.queue_name) == 0
