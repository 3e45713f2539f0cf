"""The queue carries JSON only: a pickled job planted in Redis is refused, never unpickled."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from devenv.processes import worker_env
from ledger.jobs import ARQ_JOB_KEY_PREFIX, DISCONNECT_JOB
from ledger.store import Ledger

pytestmark = pytest.mark.process


class _Exploit:
    """Unpickling this runs a shell command: the attack a pickle queue allows."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


async def test_a_pickled_job_is_refused_and_runs_no_code(
    ledger: Ledger, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """Someone with Redis access enqueues a pickled job; the worker's JSON deserializer rejects
    it, the payload's code never runs, and the worker carries on."""
    marker = tmp_path / "pwned"
    payload = {"t": 1, "f": DISCONNECT_JOB, "a": [_Exploit(marker)], "k": {}, "et": 0}
    await redis.set(ARQ_JOB_KEY_PREFIX + "evil.1", pickle.dumps(payload))
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
