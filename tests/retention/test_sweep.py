"""Sweeps against a real Redis: dry runs change nothing, the guard refuses, apply routes to bulk."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from ledger.bulk import BulkItem, submit_many
from ledger.jobs import ARQ_JOB_KEY_PREFIX, BATCH_JOB
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from retention.policy import RetentionPolicy, Rule
from retention.runs import SweepRun, SweepRuns, SweepStatus, new_sweep_id
from retention.sources import AccountPage, file_pages, stripe_pages
from retention.sweep import SweepOptions, run_sweep

NOW = 1_800_000_000.0


def policy(max_disconnects: int = 100, max_fraction: float = 1.0) -> RetentionPolicy:
    return RetentionPolicy(
        name="inactive",
        max_disconnects=max_disconnects,
        max_fraction=max_fraction,
        rules=(Rule(reason="inactive account", status=("inactive",)),),
    )


def accounts_file(tmp_path: Path, inactive: int, active: int) -> Path:
    rows = [{"id": f"fca_i{n}", "status": "inactive"} for n in range(inactive)]
    rows += [{"id": f"fca_a{n}", "status": "active"} for n in range(active)]
    path = tmp_path / "accounts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def start(runs: SweepRuns, chosen: RetentionPolicy, apply: bool) -> SweepRun:
    run = SweepRun(
        run_id=new_sweep_id(), policy=chosen.name, trigger="cli", apply=apply,
        status=SweepStatus.LISTING, started_at=NOW,
    )  # fmt: skip
    return await runs.create(run)


async def ledger_keys(redis: Redis, ledger: Ledger) -> list[str]:
    keys = [k.decode() async for k in redis.scan_iter(match=f"{ledger.prefix}*")]
    return sorted(k for k in keys if not k.startswith(f"{ledger.prefix}sweep"))


async def test_dry_run_changes_nothing_but_its_run_record(
    bulk_ledger: Ledger, redis: Redis, tmp_path: Path
) -> None:
    """A dry run reports counts and a sample and writes no request, job or queue entry."""
    runs = SweepRuns(redis, bulk_ledger.prefix, bulk_ledger.audit)
    chosen = policy()
    run = await start(runs, chosen, apply=False)
    pages = file_pages(accounts_file(tmp_path, inactive=7, active=3))
    done = await run_sweep(bulk_ledger, runs, run, chosen, pages, SweepOptions(), now=NOW)
    assert done.status == SweepStatus.FINISHED
    assert (done.scanned, done.selected, done.submitted) == (10, 7, 0)
    assert done.summary is not None and done.summary["by_reason"] == {"inactive account": 7}
    assert len(done.summary["sample"]) == 7
    assert await ledger_keys(redis, bulk_ledger) == []
    assert await redis.zcard(bulk_ledger.bulk_queue_name) == 0
    events = [r["event"] for r in await runs.history(run.run_id)]
    assert events == ["sweep.started", "sweep.selected", "sweep.finished"]


async def test_guard_refuses_and_submits_nothing_unless_forced(
    bulk_ledger: Ledger, redis: Redis, tmp_path: Path
) -> None:
    """Over max_fraction an apply is refused with the reason; with force it submits."""
    runs = SweepRuns(redis, bulk_ledger.prefix, bulk_ledger.audit)
    chosen = policy(max_disconnects=100, max_fraction=0.5)
    path = accounts_file(tmp_path, inactive=7, active=3)
    run = await start(runs, chosen, apply=True)
    refused = await run_sweep(
        bulk_ledger, runs, run, chosen, file_pages(path), SweepOptions(apply=True), now=NOW
    )
    assert refused.status == SweepStatus.REFUSED
    assert "70.0% of 10 accounts examined selected, max_fraction is 50.0%" in refused.message
    assert await ledger_keys(redis, bulk_ledger) == []
    forced_run = await start(runs, chosen, apply=True)
    forced = await run_sweep(
        bulk_ledger, runs, forced_run, chosen, file_pages(path),
        SweepOptions(apply=True, force=True), now=NOW,
    )  # fmt: skip
    assert forced.status == SweepStatus.FINISHED and forced.submitted == 7
    assert "--force" in forced.message


async def test_apply_routes_to_the_bulk_queue_and_merges_existing(
    bulk_ledger: Ledger, redis: Redis, tmp_path: Path
) -> None:
    """Sweep requests wait in the bulk queue (one batch job for the chunk, listing exactly the
    requests it recorded) with the rule's reason and the status the file listed (no time: a
    file's age is unknown); an active one is merged, not batched."""
    existing = await bulk_ledger.submit("fca_i0", source=RequestSource.DELETION_EVENT)
    runs = SweepRuns(redis, bulk_ledger.prefix, bulk_ledger.audit)
    chosen = policy()
    run = await start(runs, chosen, apply=True)
    pages = file_pages(accounts_file(tmp_path, inactive=5, active=0))
    done = await run_sweep(bulk_ledger, runs, run, chosen, pages, SweepOptions(apply=True), now=NOW)
    assert (done.submitted, done.merged) == (4, 1)
    (batch_id,) = await redis.zrange(bulk_ledger.bulk_queue_name, 0, -1)
    job = json.loads(await redis.get(ARQ_JOB_KEY_PREFIX + batch_id.decode()))
    assert job["f"] == BATCH_JOB
    batched = [(await bulk_ledger.resolve(f"fca_i{n}")) for n in range(1, 5)]
    assert job["a"] == [{"v": 1, "request_ids": [r.request_id for r in batched]}]
    assert {r.job_id for r in batched} == {batch_id.decode()}
    assert await redis.zcard(bulk_ledger.queue_name) == 1  # the user's own request
    request = await bulk_ledger.resolve("fca_i3")
    assert request.source == RequestSource.RETENTION_POLICY
    assert request.reason == "inactive account"
    assert request.reference == f"inactive/{run.run_id}"
    assert (request.listed_status, request.listed_at) == ("inactive", None)
    history = await bulk_ledger.history(existing.request_id)
    assert history[-1]["event"] == "disconnect.merged"


async def test_later_enqueues_keep_the_requests_queue(bulk_ledger: Ledger, redis: Redis) -> None:
    """A retry of a sweep request is enqueued on the bulk queue again, never the urgent one."""
    submitted = await bulk_ledger.submit("fca_r1", source=RequestSource.RETENTION_POLICY)
    request = await bulk_ledger.get(submitted.request_id)
    request = await bulk_ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    await redis.zrem(bulk_ledger.bulk_queue_name, submitted.request_id + ".1")
    retried = await bulk_ledger.transition(request, RequestStatus.RETRY_SCHEDULED, enqueue_in=0.0)
    assert await redis.zscore(bulk_ledger.bulk_queue_name, retried.job_id or "") is not None
    assert await redis.zcard(bulk_ledger.queue_name) == 0


async def test_history_is_stored_compact_and_read_back_complete(
    bulk_ledger: Ledger, redis: Redis, audit_path: Path
) -> None:
    """Stored records omit nulls and the request's own fields; reads restore every audit key."""
    submitted = await bulk_ledger.submit("fca_h1", source=RequestSource.OPERATOR, reason="why")
    request = await bulk_ledger.get(submitted.request_id)
    await bulk_ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    raw = await redis.lrange(bulk_ledger.history_key(submitted.request_id), 0, -1)  # type: ignore[misc]
    stored = [json.loads(item) for item in raw]
    assert all("request_id" not in s and "http_status" not in s for s in stored)
    records = await bulk_ledger.history(submitted.request_id)
    audited = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert records == audited[-2:]


async def test_bulk_submission_waits_while_the_queue_is_too_deep(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """With more queued requests than the bound, submission pauses until workers take them."""
    items = [BulkItem(f"fca_b{n}", "r") for n in range(30)]
    depths: list[int] = []
    queued = bulk_ledger.status_key(RequestStatus.QUEUED)

    async def drain_and_watch(_: Any) -> None:
        depths.append(await redis.zcard(queued))

    await submit_many(bulk_ledger, items[:10], chunk_size=10)

    async def worker() -> None:  # claims requests: they leave the queued index
        while await redis.zcard(queued) > 0 or len(depths) < 2:
            await redis.zpopmin(queued, 5)
            await asyncio.sleep(0.02)

    drainer = asyncio.create_task(worker())
    result = await submit_many(
        bulk_ledger, items[10:], chunk_size=10, max_queue_depth=5, poll_seconds=0.01,
        on_chunk=drain_and_watch,
    )  # fmt: skip
    await drainer
    assert result.submitted == 20 and result.waited_seconds > 0
    assert max(depths) <= 5 + 2 * 10  # the bound plus the two chunks in flight


async def test_stripe_pages_follow_the_cursor() -> None:
    """Paging passes the last id of each page as starting_after until has_more is false."""
    seen: list[str | None] = []

    async def fetch(after: str | None) -> AccountPage:
        seen.append(after)
        start_at = 0 if after is None else int(after[5:]) + 1
        ids = [{"id": f"fca_p{n}"} for n in range(start_at, min(start_at + 100, 250))]
        return AccountPage(ids, has_more=start_at + 100 < 250)

    pages = [page async for page in stripe_pages(fetch)]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert seen == [None, "fca_p99", "fca_p199"]
