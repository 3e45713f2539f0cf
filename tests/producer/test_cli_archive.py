"""Reads that fall through to the archive, through the real CLI (``fcd status``, ``fcd
export``) and the dashboard (real HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from archive import ArchiveStore, open_archive
from ledger.archiving import Archiver
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from producer.cli.export import parse_since
from producer.http.app import create_app
from tests.producer.dashboard.conftest import OPERATOR_TOKENS, sign_in
from tests.producer.http.conftest import make_settings

DAY = 86_400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ArchiveStore]:
    archive = open_archive(tmp_path / "archive", None)
    yield archive
    await archive.close()


def fcd(args: list[str], redis_url: str, namespace: str, archive_dir: Path) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {
        **os.environ,
        "FCD_REDIS_URL": redis_url,
        "FCD_KEY_PREFIX": f"{namespace}fcd:",
        "FCD_QUEUE_NAME": f"{namespace}queue",
        "FCD_LOG_FORMAT": "json",
        "FCD_ARCHIVE_DIR": str(archive_dir),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-c", "from producer.cli import main; raise SystemExit(main())", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def archived_requests(ledger: Ledger, store: ArchiveStore, accounts: list[str]) -> list[str]:
    ids = []
    for account in accounts:
        submitted = await ledger.submit(account, source=RequestSource.OPERATOR, reference="t")
        request = await ledger.get(submitted.request_id)
        request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
        await ledger.transition(request, RequestStatus.DISCONNECTED)
        ids.append(submitted.request_id)
    report = await Archiver(ledger, store).run(older_than=DAY, now=time.time() + 2 * DAY)
    assert report.archived == len(accounts)
    return ids


@pytest.mark.process
async def test_status_and_export_read_the_archive(
    redis_url: str, namespace: str, ledger: Ledger, store: ArchiveStore, tmp_path: Path
) -> None:
    ids = await archived_requests(ledger, store, ["fca_cli1", "fca_cli2"])
    archive_dir = tmp_path / "archive"
    shown = fcd(["status", ids[0], "--json"], redis_url, namespace, archive_dir)
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["stored_in"] == "archive" and body["request"]["status"] == "disconnected"
    assert [r["to"] for r in body["history"]] == ["queued", "in_progress", "disconnected"]
    text = fcd(["status", "fca_cli2"], redis_url, namespace, archive_dir)
    assert text.returncode == 0, text.stderr
    assert ids[1] in text.stdout and "stored in archive" in text.stdout
    missing = fcd(["status", "fca_never"], redis_url, namespace, archive_dir)
    assert missing.returncode == 1 and "no request found" in missing.stderr

    exported = fcd(["export", "--since", "1d"], redis_url, namespace, archive_dir)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(lines) == 6 and {r["request_id"] for r in lines} == set(ids)
    assert "exported 6 audit events" in exported.stderr
    out = tmp_path / "export.jsonl"
    to_file = fcd(["export", "--since", "2000-01-01", "--output", str(out)], redis_url, namespace,
                  archive_dir)  # fmt: skip
    assert to_file.returncode == 0, to_file.stderr
    assert out.read_text().splitlines() == exported.stdout.splitlines()
    future = fcd(["export", "--since", "2999-01-01"], redis_url, namespace, archive_dir)
    assert future.returncode == 0 and future.stdout == ""
    bad = fcd(["export", "--since", "last tuesday"], redis_url, namespace, archive_dir)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_since_takes_dates_times_and_durations() -> None:
    assert parse_since("2026-01-31") == 1_769_817_600.0
    assert parse_since("2026-01-31T01:00:00+01:00") == 1_769_817_600.0
    assert parse_since("2d", now=1_000_000.0) == 1_000_000.0 - 2 * DAY


async def test_dashboard_shows_an_archived_request_read_only(
    redis_url: str, namespace: str, ledger: Ledger, store: ArchiveStore, tmp_path: Path
) -> None:
    (request_id,) = await archived_requests(ledger, store, ["fca_dash"])
    settings = make_settings(
        redis_url, namespace, operator_tokens=OPERATOR_TOKENS, archive_dir=tmp_path / "archive"
    )
    client: TestClient[Any, Any]
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        await sign_in(client)
        for ref in (request_id, "fca_dash"):
            response = await client.get(f"/dashboard/requests/{ref}")
            assert response.status == 200
            page = await response.text()
            assert request_id in page and "stored in archive" in page
            assert "/requeue" not in page and "/cancel" not in page
