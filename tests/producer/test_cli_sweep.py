"""``fcd sweep`` and ``fcd sweeps`` as real processes against a real Redis (and, for a Stripe
source, a real bulk worker listing the emulator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, start_emulator, worker_env

pytestmark = pytest.mark.process

POLICIES = """
[policies.inactive]
source = "file"
file = "accounts.csv"
max_disconnects = 100
max_fraction = 0.5
[[policies.inactive.rules]]
reason = "inactive account"
status = ["inactive"]

[policies.from-stripe]
source = "stripe"
max_disconnects = 1000
max_fraction = 1.0
[[policies.from-stripe.rules]]
reason = "inactive at Stripe"
status = ["inactive"]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    rows = ["account_id,status,institution_name"]
    rows += [f"fca_i{n},inactive,Chase" for n in range(6)]
    rows += [f"fca_a{n},active,Ally Bank" for n in range(4)]
    (tmp_path / "accounts.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "policies.toml"
    path.write_text(POLICIES)
    return path


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcessGroup]:
    processes = ProcessGroup(tmp_path / "logs")
    yield processes
    processes.stop_all()


def fcd_env(redis_url: str, namespace: str, policies: Path) -> dict[str, str]:
    return {
        "FCD_REDIS_URL": redis_url,
        "FCD_KEY_PREFIX": f"{namespace}fcd:",
        "FCD_QUEUE_NAME": f"{namespace}urgent",
        "FCD_BULK_QUEUE_NAME": f"{namespace}bulk",
        "FCD_RETENTION_POLICIES": str(policies),
        "FCD_LOG_FORMAT": "json",
        "FCD_LOG_LEVEL": "WARNING",
    }


def fcd(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from producer.cli import main; raise SystemExit(main())", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def request_keys(redis: Redis, namespace: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"{namespace}fcd:req:*")]


async def test_dry_run_reports_and_changes_nothing(
    redis_url: str, namespace: str, redis: Redis, policy_file: Path
) -> None:
    """The default is a dry run: counts, breakdowns and a sample printed, no request written;
    the summary says one thing: an apply would be refused, nothing was submitted (never also
    "run again with --apply")."""
    done = fcd(["sweep", "--policy", "inactive"], fcd_env(redis_url, namespace, policy_file))
    assert done.returncode == 0, done.stderr
    assert "examined 10  selected 6 (60.0%)" in done.stdout
    assert "inactive account" in done.stdout and "Chase" in done.stdout
    assert "fca_i0" in done.stdout  # the sample
    assert "--apply would be refused (policy 'inactive' refused" in done.stdout
    assert done.stdout.count("nothing was submitted") == 1
    assert "run again with --apply" not in done.stdout
    assert await request_keys(redis, namespace) == []
    assert await redis.zcard(f"{namespace}bulk") == 0


async def test_apply_over_the_guard_is_refused_unless_forced(
    redis_url: str, namespace: str, redis: Redis, policy_file: Path
) -> None:
    """--apply over max_fraction exits 3 and submits nothing; --force submits to the bulk queue;
    ``fcd sweeps`` lists both runs."""
    env = fcd_env(redis_url, namespace, policy_file)
    refused = fcd(["sweep", "--policy", "inactive", "--apply"], env)
    assert refused.returncode == 3, refused.stderr
    assert "60.0% of 10 accounts examined selected, max_fraction is 50.0%" in refused.stdout
    assert await request_keys(redis, namespace) == []
    forced = fcd(["sweep", "--policy", "inactive", "--apply", "--force"], env)
    assert forced.returncode == 0, forced.stderr
    assert "submitted 6  merged into existing 0" in forced.stdout
    assert await redis.zcard(f"{namespace}bulk") == 1  # one batch job for the 6 requests
    assert await redis.zcard(f"{namespace}urgent") == 0
    listed = json.loads(fcd(["sweeps", "--json"], env).stdout)
    assert [r["status"] for r in listed] == ["finished", "refused"]
    assert listed[0]["forced"] is True
    table = fcd(["sweeps"], env).stdout
    assert "refused" in table and "inactive" in table


async def test_stripe_source_is_listed_by_a_bulk_worker(
    redis_url: str, namespace: str, redis: Redis, policy_file: Path, group: ProcessGroup
) -> None:
    """For a Stripe policy the CLI asks a bulk worker, which pages through the emulator's list
    (limit 100) at the shared limiter; the CLI shows the worker's result."""
    emulator = start_emulator(group, accounts=250, seed=5, extra=["--no-limits"])
    env = fcd_env(redis_url, namespace, policy_file)
    worker = {**worker_env(redis_url, emulator), **env, "FCD_RECONCILE_INTERVAL_SECONDS": "0"}
    group.start("bulk", ["-m", "worker", "--queue", "bulk"], worker)
    done = fcd(["sweep", "--policy", "from-stripe", "--json"], env)
    assert done.returncode == 0, done.stderr + group.log_text("bulk")
    run = json.loads(done.stdout)
    assert run["scanned"] == 250 and run["status"] == "finished" and run["submitted"] == 0
    assert run["summary"]["already_disconnected"] > 0
    assert set(run["summary"]["by_reason"]) == {"inactive at Stripe"}
    assert await request_keys(redis, namespace) == []
