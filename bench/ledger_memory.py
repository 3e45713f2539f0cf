"""Benchmark: Redis bytes per request while pending, when terminal and after archiving, and the
archive's throughput into SQLite, beside baselines measured in the same run.

    python bench/ledger_memory.py [--requests 100000] [--batch 2000] [--naive 5000]

Starts a private redis-server (nothing else is touched) and an SQLite archive in a temporary
directory. Steps, each measured as ``INFO used_memory`` minus the pre-run figure, per request:

1. *arq baseline*: ``--requests`` jobs enqueued with arq's own ``enqueue_job`` (one job each,
   with the JSON serializer the service uses, ``ledger.jobs.serialize``: JSON only),
   then removed again.
2. *pending*: ``--requests`` account requests submitted through :meth:`Ledger.submit` (one arq
   job each, the urgent path: the request hash, its account's active key, the status index
   entry, the arq job record and its queue entry). ``MEMORY USAGE`` of one request's own keys
   is shown too.
3. *terminal*: every request moved ``queued -> in_progress -> disconnected`` by the ledger's
   transition script, then its arq job removed as a worker running it would (arq deletes the
   job record and queue entry; its result key expires after an hour).
4. *naive archive baseline*: ``--naive`` of them copied into another SQLite file one at a time
   (HGETALL + LRANGE, one INSERT, one COMMIT per request, synchronous=FULL), nothing removed.
5. *archived*: one :class:`ledger.archiving.Archiver` pass (``--batch`` per batch) moves all
   of them; requests/s is the pass's wall time. "Redis after the run" is read here.
6. *bulk pending*: ``--requests / 5`` more submitted the way a retention sweep does
   (:func:`ledger.bulk.submit_many`: one arq batch job per 100 requests), then finished and
   archived the same way.

The pre-run state is a Redis the service has already used: a warm-up of one archive batch (at
least 500 requests) runs the whole cycle first (a cold server's first script loads alone cost ~150 KB, a fixed amount).

Then every request is read back through the Ledger read API (:meth:`StateStore.locate`, what
``fcd status`` uses) from the archive, the archive's audit-record count is compared with the
audit lines the ledger published, and whatever is left in Redis is listed by key family.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis

from archive import open_archive
from devenv.redis_server import start_redis
from ledger.archiving import Archiver
from ledger.audit import AuditTrail
from ledger.bulk import BulkItem, submit_many
from ledger.jobs import ARQ_JOB_KEY_PREFIX, serialize
from ledger.logging import configure_logging
from ledger.models import RequestSource, RequestStatus
from ledger.settings import LogFormat
from ledger.store import Ledger

CONCURRENCY = 200
WARM_UP = 500
GOALS = {"pending": 1024.0, "archived": 100.0, "rate": 5000.0, "growth": 5.0}


async def used_memory(redis: Redis) -> int:
    """``used_memory`` once it settles (the server shrinks its tables in its cron), read with
    every other connection of ``redis``'s pool closed: client buffers are not ledger data."""
    await redis.connection_pool.disconnect()
    last = -1
    for _ in range(40):
        value = int((await redis.info("memory"))["used_memory"])
        if value == last:
            return value
        last = value
        await asyncio.sleep(0.25)
    return last


async def in_waves(items: list[Any], step: Any) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(items), CONCURRENCY):
        out += await asyncio.gather(*(step(i) for i in items[start : start + CONCURRENCY]))
    return out


async def arq_baseline(url: str, count: int) -> float:
    """Bytes per job of arq's own ``enqueue_job`` (db 1 of the private server)."""
    pool = ConnectionPool.from_url(url.rsplit("/", 1)[0] + "/1")
    arq = ArqRedis(connection_pool=pool, job_serializer=serialize)
    await arq.flushdb()
    before = await used_memory(arq)
    ids = [f"arqbench{n:07d}" for n in range(count)]

    async def enqueue(job_id: str) -> None:
        await arq.enqueue_job("disconnect_account", {"v": 1, "request_id": job_id},
                              _job_id=job_id, _queue_name="bench:queue")  # fmt: skip

    await in_waves(ids, enqueue)
    after = await used_memory(arq)
    await arq.flushdb()
    await arq.aclose()
    return (after - before) / count


async def own_key_bytes(redis: Redis, ledger: Ledger, request_id: str, account: str) -> int:
    keys = [ledger.request_key(request_id), ledger.history_key(request_id),
            ledger.active_key(account), ledger.account_requests_key(account)]  # fmt: skip
    sizes = [await redis.memory_usage(k) or 0 for k in keys]
    return int(sum(sizes))


def naive_archive(redis_url: str, prefix: str, ids: list[str], path: Path) -> float:
    """One request at a time: read it, INSERT it, COMMIT (synchronous=FULL). Requests/s."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE requests (request_id TEXT PRIMARY KEY, fields TEXT, history TEXT)")
    started = time.perf_counter()
    for request_id in ids:
        fields = client.hgetall(f"{prefix}req:{request_id}")
        history = client.lrange(f"{prefix}req:{request_id}:hist", 0, -1)
        conn.execute("BEGIN")
        conn.execute(
            "INSERT OR REPLACE INTO requests VALUES (?, ?, ?)",
            (request_id, repr(fields), repr(history)),
        )
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    client.close()
    return len(ids) / seconds


async def _ids(ledger: Ledger, status: RequestStatus) -> Any:
    async for batch in ledger.scan_status(status):
        for request in batch:
            yield request.request_id


async def leftovers(redis: Redis) -> dict[str, int]:
    families: Counter[str] = Counter()
    async for key in redis.scan_iter(count=1000):
        families[re.sub(r"[0-9a-z]{20,}|fca_\w+", "<id>", key.decode())] += 1
    return dict(families)


def row(name: str, value: str, goal: str = "", met: bool | None = None) -> str:
    verdict = "" if met is None else ("met" if met else "NOT MET")
    return f"| {name:<58} | {value:>16} | {goal:>12} | {verdict:<7} |"


async def run(count: int, batch: int, naive_count: int) -> int:
    configure_logging(LogFormat.JSON, "WARNING", stream=io.StringIO())  # audit lines: the file
    server = start_redis()
    tmp = Path(tempfile.mkdtemp(prefix="fcd-bench-archive-"))
    audit_path = tmp / "audit.jsonl"
    redis = Redis.from_url(server.url)
    audit = AuditTrail(audit_path)
    store = open_archive(tmp / "archive", None)
    ledger = Ledger(redis, queue_name="fcd:queue:urgent", bulk_queue_name="fcd:queue:bulk",
                    audit=audit, archive=store)  # fmt: skip
    archiver = Archiver(ledger, store)

    async def submit(account: str) -> str:
        return (await ledger.submit(account, source=RequestSource.OPERATOR)).request_id

    async def finish(request_id: str) -> None:
        request = await ledger.get(request_id)
        request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
        await ledger.transition(request, RequestStatus.DISCONNECTED)

    async def jobs_run() -> None:
        """What workers running the jobs leave of them: nothing after an hour (arq deletes the
        job record and queue entry, and its result key expires)."""
        async for key in redis.scan_iter(match=ARQ_JOB_KEY_PREFIX + "*", count=1000):
            await redis.delete(key)
        await redis.delete(*ledger.queue_names)

    try:
        # Warm-up: a service that has run once (its scripts loaded, Redis's own structures
        # allocated) is the pre-run state; a cold server's first script load alone is ~150 KB.
        warm_up = max(WARM_UP, batch)  # at least one full archive batch
        warm = await in_waves([f"fca_warm{n:05d}" for n in range(warm_up)], submit)
        await in_waves(warm, finish)
        await jobs_run()
        await archiver.run(older_than=0, batch_size=batch, now=time.time() + 1)
        await arq_baseline(server.url, warm_up)
        arq_per_job = await arq_baseline(server.url, count)
        before = await used_memory(redis)
        info_before = await redis.info("memory")

        accounts = [f"fca_bench{n:07d}" for n in range(count)]
        ids = await in_waves(accounts, submit)
        pending = (await used_memory(redis) - before) / count
        pending_own = await own_key_bytes(redis, ledger, ids[0], accounts[0])

        await in_waves(ids, finish)
        await jobs_run()
        terminal = (await used_memory(redis) - before) / count
        terminal_own = await own_key_bytes(redis, ledger, ids[0], accounts[0])

        naive_ids = ids[: min(naive_count, count)]
        naive_rate = await asyncio.to_thread(
            naive_archive, server.url, ledger.prefix, naive_ids, tmp / "naive.sqlite3"
        )

        started = time.perf_counter()
        report = await archiver.run(older_than=0, batch_size=batch, now=time.time() + 1)
        seconds = time.perf_counter() - started
        rate = report.archived / seconds
        after = await used_memory(redis)
        archived = (after - before) / count
        growth = 100.0 * (after - before) / before

        # The bulk path (a retention sweep: one arq batch job per 100 requests), count / 5.
        bulk_before = await used_memory(redis)
        bulk_accounts = [f"fca_bulk{n:07d}" for n in range(max(count // 5, 1))]
        items = [BulkItem(a, reason="retention", reference="policy") for a in bulk_accounts]
        await submit_many(ledger, items)
        bulk_pending = (await used_memory(redis) - bulk_before) / len(bulk_accounts)
        bulk_ids = [r async for r in _ids(ledger, RequestStatus.QUEUED)]
        await in_waves(bulk_ids, finish)
        await jobs_run()
        await archiver.run(older_than=0, batch_size=batch, now=time.time() + 1)
        ids += bulk_ids

        published = len(audit_path.read_bytes().splitlines())
        answered = 0
        for start in range(0, len(ids), 1000):
            for request_id in ids[start : start + 1000]:
                located = await ledger.locate(request_id)
                answered += located.stored_in == "archive" and (
                    located.request.status == RequestStatus.DISCONNECTED
                )
        audit.close()
        counts = await store.counts()
        left = await leftovers(redis)
        info_after = await redis.info("memory")
        if os.environ.get("BENCH_DEBUG"):
            for key, value in info_after.items():
                if isinstance(value, int) and value != info_before.get(key):
                    print(f"  {key}: {info_before.get(key)} -> {value}")
            print("  keyspace", await redis.info("keyspace"))
            print("  stats", await redis.execute_command("MEMORY", "STATS"))
    finally:
        await store.close()
        await redis.aclose()
        server.stop()

    print(f"ledger memory and archive, {count} requests, batch {batch}, Redis {server.url}")
    print(row("measure", "figure", "goal", None).replace("None", ""))
    print("|" + "-" * 60 + "|" + "-" * 18 + "|" + "-" * 14 + "|" + "-" * 9 + "|")
    print(row("arq enqueue_job, one job (JSON serializer), B/job", f"{arq_per_job:,.0f}"))
    print(row("pending request, all keys incl. its arq job, B/req", f"{pending:,.0f}",
              "<= 1024", pending <= GOALS["pending"]))  # fmt: skip
    share = pending - arq_per_job
    print(row("  the ledger's share (the above minus arq's B/job), B/req", f"{share:,.0f}",
              "<= 1024", share <= GOALS["pending"]))  # fmt: skip
    print(row("  MEMORY USAGE of one pending request's own keys, B", f"{pending_own:,}"))
    print(row(f"pending, bulk sweep path ({len(bulk_ids)}, batch jobs of 100), B/req",
              f"{bulk_pending:,.0f}", "<= 1024", bulk_pending <= GOALS["pending"]))  # fmt: skip
    print(row("terminal request (its arq job gone), B/req", f"{terminal:,.0f}"))
    print(row("  MEMORY USAGE of one terminal request's own keys, B", f"{terminal_own:,}"))
    print(row("archived request, left in Redis, B/req", f"{archived:,.1f}", "<= 100",
              archived <= GOALS["archived"]))  # fmt: skip
    print(row("Redis after the run vs before, %", f"{growth:+.2f} %", "within 5 %",
              abs(growth) <= GOALS["growth"]))  # fmt: skip
    print(
        row(f"naive archive ({len(naive_ids)}: 1 row + commit each), req/s", f"{naive_rate:,.0f}")
    )
    print(row("archive pass into SQLite, req/s", f"{rate:,.0f}", ">= 5000",
              rate >= GOALS["rate"]))  # fmt: skip
    print(row("requests answered from the archive (Ledger.locate)", f"{answered:,}/{len(ids):,}",
              "all", answered == len(ids)))  # fmt: skip
    print(row("audit records: archived / published", f"{counts.records:,}/{published:,}",
              "equal", counts.records == published))  # fmt: skip
    print(f"pre-run used_memory {before:,} B, after {after:,} B; pass: {report.batches} batches, "
          f"{report.archived} archived, {report.kept} kept, {seconds:.2f} s")  # fmt: skip
    print("left in Redis by key family:", left or "nothing")
    ok = answered == len(ids) and counts.records == published
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000, help="archive batch size")
    parser.add_argument("--naive", type=int, default=5000, help="requests for the naive baseline")
    args = parser.parse_args()
    return asyncio.run(run(args.requests, args.batch, args.naive))


if __name__ == "__main__":
    raise SystemExit(main())
