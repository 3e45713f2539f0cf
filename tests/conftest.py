"""Fixtures shared by every tier: a real Redis (private unless FCD_REDIS_URL is set) and a ledger.

Each test gets its own key prefix and queue name, so tests never see each other's data, and a
Redis we did not start is never flushed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from redis.asyncio import Redis

from devenv.postgres_server import PostgresCluster, private_postgres
from devenv.processes import ProcessGroup, start_emulator
from devenv.redis_server import redis_url_for_run
from ledger.audit import AuditTrail
from ledger.store import Ledger
from tests.emulator_admin import EmulatorAdmin


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of the Redis the tests use: ``FCD_REDIS_URL``, else a private redis-server."""
    with redis_url_for_run() as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def namespace() -> str:
    """A key prefix unique to this test."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
async def ledger(redis: Redis, namespace: str, audit_path: Path) -> AsyncIterator[Ledger]:
    audit = AuditTrail(audit_path)
    yield Ledger(redis, queue_name=f"{namespace}queue", audit=audit, prefix=f"{namespace}fcd:")
    audit.close()


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Processes the test starts (emulator, workers); all stopped afterwards."""
    processes = ProcessGroup(tmp_path / "logs")
    yield processes
    processes.stop_all()


@pytest.fixture
def emulator_url(group: ProcessGroup) -> str:
    """The emulator as a separate process (limits off), for tests with worker processes."""
    return start_emulator(group, accounts=10, extra=["--no-limits"])


@pytest.fixture
async def process_admin(emulator_url: str) -> AsyncIterator[EmulatorAdmin]:
    async with aiohttp.ClientSession() as session:
        yield EmulatorAdmin(emulator_url, session)


@pytest.fixture
async def bulk_ledger(redis: Redis, namespace: str, audit_path: Path) -> AsyncIterator[Ledger]:
    """A ledger with separate urgent and bulk queues, on the test's own prefix."""
    audit = AuditTrail(audit_path)
    yield Ledger(
        redis,
        queue_name=f"{namespace}urgent",
        bulk_queue_name=f"{namespace}bulk",
        audit=audit,
        prefix=f"{namespace}fcd:",
    )
    audit.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster for the whole run (initdb in a tmp dir, a free port)."""
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture
def archive_dsn(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh database of this test's own in the private cluster, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_cluster.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
        yield postgres_cluster.dsn(name)
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())
