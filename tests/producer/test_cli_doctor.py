"""``fcd doctor`` as a real process, against the emulator (as CI runs it) and real Redis servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from devenv.processes import ProcessGroup, start_emulator
from devenv.redis_server import PrivateRedis, start_redis
from events.signature import sign_payload
from stripe_emulator import DEFAULT_API_KEY

pytestmark = pytest.mark.process
SECRETS = "whsec_old_0123456789,whsec_new_9876543210"


@pytest.fixture(scope="module")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One emulator process for the module (the doctor only reads from it)."""
    processes = ProcessGroup(tmp_path_factory.mktemp("doctor-logs"))
    try:
        yield start_emulator(processes, accounts=5, extra=["--no-limits"])
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def persistent_redis() -> Iterator[PrivateRedis]:
    """A private redis-server with an append-only file and no eviction (what production needs)."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def persistent_url(persistent_redis: PrivateRedis) -> AsyncIterator[str]:
    client = Redis.from_url(persistent_redis.url)
    await client.config_set("appendonly", "yes")
    await client.config_set("maxmemory-policy", "noeviction")
    await client.aclose()
    yield persistent_redis.url


def doctor(
    redis_url: str, emulator_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "FCD_REDIS_URL": redis_url,
        "FCD_STRIPE_API_KEY": DEFAULT_API_KEY,
        "FCD_STRIPE_API_BASE": emulator_url,
        "FCD_STRIPE_WEBHOOK_SECRETS": SECRETS,
        **{f"FCD_{k.upper()}": v for k, v in env.items()},
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from producer.cli import main; raise SystemExit(main())",
            "doctor",
            *args,
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def findings(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {f["check"]: f for f in json.loads(done.stdout)}


def test_a_healthy_setup_passes_every_check(persistent_url: str, emulator_url: str) -> None:
    """Against the emulator with a good key, the pinned version, two whsec_ secrets and a Redis
    that persists and never evicts: every check is ok, exit 0, and the table names each check
    without showing the key."""
    done = doctor(persistent_url, emulator_url, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    found = findings(done)
    assert {name: f["verdict"] for name, f in found.items()} == {
        "stripe key": "ok",
        "api version": "ok",
        "webhook secrets": "ok",
        "redis persistence": "ok",
        "redis eviction": "ok",
        "archive": "ok",
    }
    assert "test mode" in found["stripe key"]["detail"]
    table = doctor(persistent_url, emulator_url)
    assert table.returncode == 0
    for name in found:
        assert name in table.stdout
    assert DEFAULT_API_KEY not in table.stdout + table.stderr + done.stdout


def test_a_rejected_key_and_a_bad_version_are_problems(
    persistent_url: str, emulator_url: str
) -> None:
    """A key Stripe rejects is a problem (exit 1, key masked); so is a version Stripe refuses."""
    bad_key = doctor(persistent_url, emulator_url, "--json", stripe_api_key="sk_test_notAKey1234")
    assert bad_key.returncode == 1
    key = findings(bad_key)["stripe key"]
    assert key["verdict"] == "problem" and "401" in key["detail"]
    assert "sk_test_notAKey1234" not in bad_key.stdout + bad_key.stderr
    bad_version = doctor(persistent_url, emulator_url, "--json", stripe_api_version="latest")
    assert bad_version.returncode == 1
    assert findings(bad_version)["api version"]["verdict"] == "problem"


def test_redis_without_persistence_is_a_problem(redis_url: str, emulator_url: str) -> None:
    """The tests' own Redis keeps nothing on disk: doctor says so and exits 1."""
    done = doctor(redis_url, emulator_url, "--json")
    assert done.returncode == 1
    persistence = findings(done)["redis persistence"]
    assert (
        persistence["verdict"] == "problem" and "restart loses the ledger" in persistence["detail"]
    )


def test_a_real_delivery_is_matched_to_its_secret(
    persistent_url: str, emulator_url: str, tmp_path: Path
) -> None:
    """A delivery signed with the second secret matches it; one signed with an unknown secret
    is a problem; a secret without the whsec_ prefix is refused outright."""
    payload = tmp_path / "event.json"
    payload.write_bytes(b'{"id": "evt_1", "object": "event"}')

    def check(secret: str) -> subprocess.CompletedProcess[str]:
        signature = sign_payload(payload.read_bytes(), SecretStr(secret), 1_700_000_000)
        delivery = ["--webhook-payload", str(payload), "--webhook-signature", signature]
        return doctor(persistent_url, emulator_url, "--json", *delivery)

    done = check("whsec_new_9876543210")
    assert done.returncode == 0
    assert "matches secret #2" in findings(done)["webhook secrets"]["detail"]
    wrong = check("whsec_other")
    assert wrong.returncode == 1
    malformed = doctor(
        persistent_url, emulator_url, "--json", stripe_webhook_secrets="sk_test_oops"
    )
    assert findings(malformed)["webhook secrets"]["verdict"] == "problem"
    assert "sk_test_oops" not in malformed.stdout


def test_the_archive_is_checked(
    persistent_url: str, emulator_url: str, archive_dsn: str, tmp_path: Path
) -> None:
    """PostgreSQL reachable (schema applied) is ok; unreachable is a problem that names no
    password; an SQLite directory that cannot be made is a problem."""
    good = findings(doctor(persistent_url, emulator_url, "--json", archive_dsn=archive_dsn))
    assert good["archive"]["verdict"] == "ok" and "schema 1" in good["archive"]["detail"]
    unreachable = "postgresql://fcd:s3cret@127.0.0.1:9/none"
    done = doctor(persistent_url, emulator_url, "--json", archive_dsn=unreachable)
    assert done.returncode == 1
    assert findings(done)["archive"]["verdict"] == "problem"
    assert "s3cret" not in done.stdout + done.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad_dir = doctor(persistent_url, emulator_url, "--json", archive_dir=str(blocker / "archive"))
    assert findings(bad_dir)["archive"]["verdict"] == "problem"
