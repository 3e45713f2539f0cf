"""The ledger's compact layout against a real Redis: lazy history lists, account indexes written
when requests end, promotion of a waiting bulk request, and audit publication that a
cancellation cannot split from its script."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ledger.audit import MERGED, STATUS_CHANGED, TransitionDetails
from ledger.bulk import BulkItem, submit_many
from ledger.jobs import ARQ_JOB_KEY_PREFIX, DISCONNECT_JOB
from ledger.models import RequestPriority, RequestSource, RequestStatus
from ledger.store import Ledger
from ledger.submissions import PROMOTED_MESSAGE


def audited(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_history_list_appears_with_the_second_record(
    bulk_ledger: Ledger, redis: Redis, audit_path: Path
) -> None:
    """A new request has no history list; its creation record is rebuilt from the hash, and the
    first later record (here a note) writes that same record into the list first."""
    submitted = await bulk_ledger.submit("fca_lazy", source=RequestSource.OPERATOR, reason="r")
    rid = submitted.request_id
    assert not await redis.exists(bulk_ledger.history_key(rid))
    assert await bulk_ledger.history(rid) == audited(audit_path)
    await bulk_ledger.note(await bulk_ledger.get(rid), "disconnect.confirmed")
    assert await redis.llen(bulk_ledger.history_key(rid)) == 2  # type: ignore[misc]
    creation_fields = ["created_by", "created_ts"]
    assert await redis.hmget(bulk_ledger.request_key(rid), creation_fields) == [None, None]  # type: ignore[misc]
    assert await bulk_ledger.history(rid) == audited(audit_path)


async def test_every_first_append_keeps_the_creation_record(
    bulk_ledger: Ledger, audit_path: Path
) -> None:
    """Merge, transition and batch submission each materialise the creation record first:
    history equals the audit file, record for record."""
    merged = await bulk_ledger.submit("fca_m", source=RequestSource.OPERATOR)
    await bulk_ledger.submit("fca_m", source=RequestSource.OPERATOR, reference="again")
    moved = await bulk_ledger.submit("fca_t", source=RequestSource.OPERATOR)
    request = await bulk_ledger.get(moved.request_id)
    await bulk_ledger.transition(request, RequestStatus.CANCELLED)
    await submit_many(bulk_ledger, [BulkItem("fca_b", "r")])
    batched = await bulk_ledger.resolve("fca_b")
    await bulk_ledger.transition(batched, RequestStatus.IN_PROGRESS, attempts_delta=1)
    lines = audited(audit_path)
    for rid in (merged.request_id, moved.request_id, batched.request_id):
        assert await bulk_ledger.history(rid) == [r for r in lines if r["request_id"] == rid]
    assert [r["event"] for r in await bulk_ledger.history(merged.request_id)][-1] == MERGED


async def test_account_index_is_written_when_a_request_ends(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """``acct:<fca>:reqs`` holds finished requests only; the account's requests are still listed
    in creation order, the active one included, and resolve finds the latest."""
    first = await bulk_ledger.get(
        (await bulk_ledger.submit("fca_idx", source=RequestSource.OPERATOR)).request_id
    )
    index = bulk_ledger.account_requests_key("fca_idx")
    assert not await redis.exists(index)
    assert await bulk_ledger.requests_for_account("fca_idx") == [first.request_id]
    await bulk_ledger.transition(first, RequestStatus.CANCELLED)
    assert await redis.zrange(index, 0, -1) == [first.request_id.encode()]
    second = await bulk_ledger.submit("fca_idx", source=RequestSource.OPERATOR)
    ids = [first.request_id, second.request_id]
    assert await bulk_ledger.requests_for_account("fca_idx") == ids
    assert (await bulk_ledger.resolve("fca_idx")).request_id == second.request_id
    history = await bulk_ledger.account_history("fca_idx")
    assert [r["request_id"] for r in history] == [first.request_id] * 2 + [second.request_id]


async def test_urgent_submission_promotes_a_waiting_bulk_request(
    bulk_ledger: Ledger, redis: Redis, audit_path: Path
) -> None:
    """A user deletion merged into a queued sweep request moves it to the urgent queue at once:
    a fresh job there, priority urgent for every later enqueue, recorded in the merge record."""
    await submit_many(bulk_ledger, [BulkItem("fca_p", "retention")])
    waiting = await bulk_ledger.resolve("fca_p")
    merged = await bulk_ledger.submit("fca_p", source=RequestSource.DELETION_EVENT)
    assert merged.merged and merged.request_id == waiting.request_id
    promoted = await bulk_ledger.get(waiting.request_id)
    assert promoted.priority == RequestPriority.URGENT
    assert promoted.job_id == f"{waiting.request_id}.1"
    assert await redis.zscore(bulk_ledger.queue_name, promoted.job_id) is not None
    job = json.loads(await redis.get(ARQ_JOB_KEY_PREFIX + promoted.job_id))
    assert (job["f"], job["a"]) == (DISCONNECT_JOB, [{"v": 1, "request_id": merged.request_id}])
    last = (await bulk_ledger.history(merged.request_id))[-1]
    assert (last["event"], last["message"], last["job_id"]) == (
        MERGED,
        PROMOTED_MESSAGE,
        promoted.job_id,
    )
    assert await bulk_ledger.history(merged.request_id) == audited(audit_path)
    moved = await bulk_ledger.transition(promoted, RequestStatus.IN_PROGRESS, attempts_delta=1)
    retried = await bulk_ledger.transition(moved, RequestStatus.RETRY_SCHEDULED, enqueue_in=0.0)
    assert await redis.zscore(bulk_ledger.queue_name, retried.job_id or "") is not None


async def test_no_promotion_for_bulk_merges(bulk_ledger: Ledger, redis: Redis) -> None:
    """A sweep merging into a sweep request changes no queue, job or priority."""
    await submit_many(bulk_ledger, [BulkItem("fca_q", "r")])
    await submit_many(bulk_ledger, [BulkItem("fca_q", "again")])
    queued = await bulk_ledger.resolve("fca_q")
    assert queued.priority == RequestPriority.BULK
    assert await redis.zcard(bulk_ledger.queue_name) == 0
    assert "message" not in json.loads(
        (await redis.lrange(bulk_ledger.history_key(queued.request_id), -1, -1))[0]  # type: ignore[misc]
    )


async def test_deletion_merged_into_a_bulk_request_in_flight_sends_its_retry_urgent(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """A deletion merging into a sweep request whose attempt is running creates no job now, but
    the attempt's retry is enqueued on the urgent queue, not behind the sweep backlog."""
    await submit_many(bulk_ledger, [BulkItem("fca_f", "r")])
    flying = await bulk_ledger.transition(
        await bulk_ledger.resolve("fca_f"), RequestStatus.IN_PROGRESS, attempts_delta=1
    )
    await bulk_ledger.submit("fca_f", source=RequestSource.DELETION_EVENT)
    assert await redis.zcard(bulk_ledger.queue_name) == 0
    last = (await bulk_ledger.history(flying.request_id))[-1]
    assert (last["event"], last["message"]) == (MERGED, PROMOTED_MESSAGE)
    assert (await bulk_ledger.get(flying.request_id)).priority == RequestPriority.URGENT
    # The worker still holds its (bulk) snapshot; its retry must go to the urgent queue anyway.
    retried = await bulk_ledger.transition(flying, RequestStatus.RETRY_SCHEDULED, enqueue_in=0.0)
    assert await redis.zscore(bulk_ledger.queue_name, retried.job_id or "") is not None
    assert await redis.zscore(bulk_ledger.bulk_queue_name, retried.job_id or "") is None


async def test_a_cancelled_caller_still_publishes_the_audit_record(
    ledger: Ledger, audit_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while waiting for the transition script's reply, the caller gets
    CancelledError, but the change it made is audited exactly once, identical to the history."""
    request = await ledger.get(
        (await ledger.submit("fca_c", source=RequestSource.OPERATOR)).request_id
    )
    script = ledger._transition
    arrived = asyncio.Event()

    async def slow_reply(**kwargs: Any) -> Any:
        result = await script(**kwargs)
        arrived.set()
        await asyncio.sleep(0.2)  # the reply is still on its way when the caller is cancelled
        return result

    monkeypatch.setattr(ledger, "_transition", slow_reply)
    details = TransitionDetails(message="cancel me")
    task = asyncio.create_task(ledger.transition(request, RequestStatus.CANCELLED, details))
    await arrived.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    lines = audited(audit_path)
    assert [r["to"] for r in lines] == ["queued", "cancelled"]
    assert await ledger.history(request.request_id) == lines


async def test_a_failing_batch_in_a_pipeline_writes_nothing_and_the_rest_is_audited(
    bulk_ledger: Ledger, redis: Redis, audit_path: Path
) -> None:
    """One CREATE call of a chunk fails (a corrupt key): that call writes nothing at all, the
    chunk's other calls are recorded with their batch job and audited, and the error surfaces."""
    await redis.rpush(bulk_ledger.active_key("fca_c4"), "corrupt")  # type: ignore[misc]
    items = [BulkItem(f"fca_c{n}", "r") for n in range(1, 5)]
    with pytest.raises(ResponseError):
        await submit_many(bulk_ledger, items, batch_size=2)
    good = [await bulk_ledger.resolve(f"fca_c{n}") for n in (1, 2)]
    for request in good:
        assert await redis.exists(ARQ_JOB_KEY_PREFIX + (request.job_id or ""))
    assert await bulk_ledger.requests_for_account("fca_c3") == []  # same call as the corrupt one
    assert [r["request_id"] for r in audited(audit_path)] == [r.request_id for r in good]


async def test_history_written_by_an_older_version_keeps_its_creation_record(
    bulk_ledger: Ledger, redis: Redis
) -> None:
    """During a rolling deploy an older writer may append without materialising first: reads
    still put the creation record first, and the next write repairs the stored list."""
    submitted = await bulk_ledger.submit("fca_old", source=RequestSource.OPERATOR)
    request = await bulk_ledger.get(submitted.request_id)
    old_style = {"event": "disconnect.merged", "ts": "2030-01-01T00:00:00.000000Z"}
    await redis.rpush(bulk_ledger.history_key(request.request_id), json.dumps(old_style))  # type: ignore[misc]
    events = [h["event"] for h in await bulk_ledger.history(request.request_id)]
    assert events == [STATUS_CHANGED, MERGED]
    await bulk_ledger.transition(request, RequestStatus.CANCELLED)
    stored = await redis.lrange(bulk_ledger.history_key(request.request_id), 0, -1)  # type: ignore[misc]
    assert [json.loads(r)["event"] for r in stored] == [STATUS_CHANGED, MERGED, STATUS_CHANGED]
    assert len(await bulk_ledger.history(request.request_id)) == 3
