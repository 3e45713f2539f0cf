"""``fcd submit`` and ``fcd status`` as real processes against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ledger.models import RequestStatus
from ledger.store import Ledger

pytestmark = pytest.mark.process


def fcd(args: list[str], redis_url: str, namespace: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FCD_REDIS_URL": redis_url,
        "FCD_KEY_PREFIX": f"{namespace}fcd:",
        "FCD_QUEUE_NAME": f"{namespace}queue",
        "FCD_LOG_FORMAT": "json",
    }
    return subprocess.run(
        [sys.executable, "-c", "from producer.cli import main; raise SystemExit(main())", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_submit_ids_then_status_json(redis_url: str, namespace: str, ledger: Ledger) -> None:
    """Submitting two ids queues two requests; a repeat merges; status --json shows the history."""
    done = fcd(["submit", "fca_a1", "fca_b2", "--reason", "gdpr"], redis_url, namespace)
    assert done.returncode == 0, done.stderr
    assert "2 submitted: 2 new, 0 merged" in done.stdout
    again = fcd(["submit", "fca_a1", "--reason", "second event"], redis_url, namespace)
    assert "merged into" in again.stdout
    status = fcd(["status", "fca_a1", "--json"], redis_url, namespace)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["request"]["status"] == RequestStatus.QUEUED
    assert body["request"]["reason"] == "gdpr"
    assert [h["event"] for h in body["history"]] == [
        "disconnect.status_changed",
        "disconnect.merged",
    ]
    table = fcd(["status", body["request"]["request_id"]], redis_url, namespace)
    assert "queued" in table.stdout and body["request"]["request_id"] in table.stdout


async def test_bad_line_in_file_queues_nothing(
    redis_url: str, namespace: str, ledger: Ledger, redis: Redis, tmp_path: Path
) -> None:
    """Bad ids in a file: exit 2, the error names every bad line (up to a limit, then how many
    more), nothing is queued."""
    path = tmp_path / "ids.txt"
    path.write_text("fca_ok1\n\nfca_ok2\nnot-an-id\nfca_ok3\nalso bad\n" + "x\n" * 30)
    done = fcd(["submit", "--file", str(path), "--reason", "r"], redis_url, namespace)
    assert done.returncode == 2
    assert "line 4" in done.stderr and "not-an-id" in done.stderr
    assert "line 6" in done.stderr and "'also bad'" in done.stderr
    assert "and 12 more bad lines" in done.stderr and "32 bad lines; nothing queued" in done.stderr
    assert await redis.zcard(ledger.queue_name) == 0
    assert await ledger.requests_for_account("fca_ok1") == []


async def test_csv_file_with_account_id_column(
    redis_url: str, namespace: str, ledger: Ledger, tmp_path: Path
) -> None:
    """A CSV with an account_id column is read by header; other columns are ignored."""
    path = tmp_path / "ids.csv"
    path.write_text("customer,account_id\ncus_1,fca_c1\ncus_2,fca_c2\n")
    done = fcd(
        ["submit", "--file", str(path), "--source", "retention_policy", "--reason", "r"],
        redis_url,
        namespace,
    )
    assert done.returncode == 0, done.stderr
    request = await ledger.resolve("fca_c2")
    assert request.source == "retention_policy"


async def test_csv_without_account_id_column_is_rejected(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """A CSV whose header lacks account_id is a clear error with exit code 2."""
    path = tmp_path / "ids.csv"
    path.write_text("customer,account\ncus_1,fca_c1\n")
    done = fcd(["submit", "--file", str(path), "--reason", "r"], redis_url, namespace)
    assert done.returncode == 2
    assert "account_id" in done.stderr


def test_unknown_request_and_unreachable_redis_are_clear_errors(
    redis_url: str, namespace: str
) -> None:
    """status of an unknown id exits 1 with a message; a dead Redis URL is reported, no traceback."""
    missing = fcd(["status", "dr_00000000000000000000000000"], redis_url, namespace)
    assert missing.returncode == 1 and "no request found" in missing.stderr
    dead = fcd(["status", "fca_x"], "redis://:hunter2@127.0.0.1:1/0", namespace)
    assert dead.returncode == 1
    assert "cannot reach Redis" in dead.stderr and "hunter2" not in dead.stderr
    assert "Traceback" not in dead.stderr
