"""The Redis ledger against a real Redis: submit, merge, atomic transitions, audit, no expiry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from ledger.audit import RECORD_KEYS, STATUS_CHANGED, Evidence, TransitionDetails
from ledger.jobs import ARQ_JOB_KEY_PREFIX, DISCONNECT_JOB
from ledger.models import IllegalTransition, RequestSource, RequestStatus, StaleTransition
from ledger.store import Ledger

ACCOUNT = "fca_test1"


async def _submit(ledger: Ledger, account: str = ACCOUNT) -> str:
    result = await ledger.submit(account, source=RequestSource.OPERATOR, reference="alice")
    return result.request_id


async def test_submit_records_request_and_enqueues_json_job(ledger: Ledger, redis: Redis) -> None:
    """A submission writes the request, its first history record and a JSON arq job, together."""
    request_id = await _submit(ledger)
    request = await ledger.get(request_id)
    assert request.status == RequestStatus.QUEUED
    assert request.job_id == f"{request_id}.1"
    raw = await redis.get(ARQ_JOB_KEY_PREFIX + request.job_id)
    job = json.loads(raw)
    assert job["f"] == DISCONNECT_JOB
    assert job["a"] == [{"v": 1, "request_id": request_id}]
    assert await redis.zscore(ledger.queue_name, request.job_id) is not None
    history = await ledger.history(request_id)
    assert [h["to"] for h in history] == ["queued"]
    assert history[0]["from"] is None


async def test_second_submission_merges_into_active_request(ledger: Ledger, redis: Redis) -> None:
    """One active request per account: a second submit returns the same id and records a merge."""
    first = await ledger.submit(ACCOUNT, source=RequestSource.OPERATOR, reference="alice")
    second = await ledger.submit(
        ACCOUNT, source=RequestSource.DELETION_EVENT, reference="evt_1", reason="user deleted"
    )
    assert second.request_id == first.request_id
    assert (first.merged, second.merged) == (False, True)
    history = await ledger.history(first.request_id)
    assert [h["event"] for h in history] == [STATUS_CHANGED, "disconnect.merged"]
    assert history[1]["request_id"] == first.request_id
    assert history[1]["reference"] == "evt_1"
    assert await redis.zcard(ledger.queue_name) == 1


async def test_terminal_request_frees_the_account(ledger: Ledger) -> None:
    """After a request ends, a new submission for the account creates a new request."""
    request = await ledger.get(await _submit(ledger))
    request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    await ledger.transition(request, RequestStatus.DISCONNECTED)
    again = await ledger.submit(ACCOUNT, source=RequestSource.OPERATOR)
    assert not again.merged
    assert again.request_id != request.request_id
    assert await ledger.requests_for_account(ACCOUNT) == [request.request_id, again.request_id]


async def test_illegal_transition_raises_and_changes_nothing(ledger: Ledger) -> None:
    """queued -> disconnected skips in_progress: refused before touching Redis."""
    request = await ledger.get(await _submit(ledger))
    with pytest.raises(IllegalTransition):
        await ledger.transition(request, RequestStatus.DISCONNECTED)
    assert (await ledger.get(request.request_id)).status == RequestStatus.QUEUED
    assert len(await ledger.history(request.request_id)) == 1


async def test_two_workers_cannot_both_move_one_request(ledger: Ledger, redis_url: str) -> None:
    """Two clients racing the same transition from the same snapshot: exactly one wins."""
    request = await ledger.get(await _submit(ledger))
    other_redis = Redis.from_url(redis_url)
    other = Ledger(
        other_redis,
        queue_name=ledger.queue_name,
        audit=ledger.audit,
        prefix=ledger.prefix,
    )
    try:
        results = await asyncio.gather(
            ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1),
            other.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1),
            return_exceptions=True,
        )
    finally:
        await other_redis.aclose()
    assert sum(isinstance(r, StaleTransition) for r in results) == 1
    stored = await ledger.get(request.request_id)
    assert stored.attempts == 1
    assert [h["to"] for h in await ledger.history(request.request_id)] == ["queued", "in_progress"]


async def test_retry_transition_enqueues_deferred_job(ledger: Ledger, redis: Redis) -> None:
    """retry_scheduled enqueues a fresh job id due after the delay, in the same step."""
    request = await ledger.get(await _submit(ledger))
    request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    retried = await ledger.transition(request, RequestStatus.RETRY_SCHEDULED, enqueue_in=30.0)
    assert retried.job_id == f"{request.request_id}.2"
    score = await redis.zscore(ledger.queue_name, retried.job_id)
    assert score is not None and score > retried.updated_at * 1000 + 29_000
    history = await ledger.history(request.request_id)
    assert history[-1]["job_id"] == retried.job_id


async def test_audit_file_matches_history_one_record_per_change(
    ledger: Ledger, audit_path: Path
) -> None:
    """Each status change writes one audit line identical to the history record, all keys set."""
    request = await ledger.get(await _submit(ledger))
    request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    details = TransitionDetails(
        message="bad key sk_test_abcdef123 rejected",
        stripe_request_id="req_1",
        http_status=401,
        stripe_error_code="api_key_expired",
        duration_ms=12.345,
    )
    await ledger.transition(request, RequestStatus.FAILED, details)
    lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
    history = await ledger.history(request.request_id)
    assert lines == history
    assert all(tuple(record) == RECORD_KEYS for record in lines)
    last = lines[-1]
    assert (last["from"], last["to"], last["http_status"]) == ("in_progress", "failed", 401)
    assert "sk_test_" not in last["message"]
    assert last["duration_ms"] == 12.3


async def test_evidence_is_recorded_and_older_records_read_back_without_it(
    ledger: Ledger, audit_path: Path, redis: Redis
) -> None:
    """``evidence`` is written like every other field (file and history agree), and a record
    stored before the field existed (no ``evidence`` key at all) reads back with it null and
    every other key in place."""
    request = await ledger.get(await _submit(ledger))
    request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    details = TransitionDetails(message="Stripe answered 200", evidence=Evidence.ANSWER)
    await ledger.transition(request, RequestStatus.DISCONNECTED, details)
    history = await ledger.history(request.request_id)
    assert history[-1]["evidence"] == "answer"
    assert json.loads(audit_path.read_text().splitlines()[-1])["evidence"] == "answer"
    older = {"event": "disconnect.status_changed", "from": "in_progress", "to": "failed"}
    await redis.rpush(ledger.history_key(request.request_id), json.dumps(older))  # type: ignore[misc]
    restored = (await ledger.history(request.request_id))[-1]
    assert tuple(restored) == RECORD_KEYS and restored["evidence"] is None
    assert restored["to"] == "failed" and restored["account_id"] == request.account_id


async def test_ledger_keys_never_expire(ledger: Ledger, redis: Redis) -> None:
    """The ledger is the source of truth: none of its keys carries a TTL."""
    request_id = await _submit(ledger)
    keys = [k async for k in redis.scan_iter(match=f"{ledger.prefix}*")]
    assert keys
    for key in keys:
        assert await redis.ttl(key) == -1, key
    assert request_id


async def test_requeue_of_failed_request_blocked_while_account_has_another(
    ledger: Ledger,
) -> None:
    """failed -> queued re-activates the account; refused if a newer request holds it."""
    request = await ledger.get(await _submit(ledger))
    request = await ledger.transition(request, RequestStatus.IN_PROGRESS, attempts_delta=1)
    failed = await ledger.transition(request, RequestStatus.FAILED)
    newer = await _submit(ledger)
    with pytest.raises(IllegalTransition):
        await ledger.transition(failed, RequestStatus.QUEUED, enqueue_in=0.0)
    assert (await ledger.resolve(ACCOUNT)).request_id == newer


async def test_resolve_by_account_finds_active_then_latest(ledger: Ledger) -> None:
    """``resolve(fca_…)`` returns the active request, else the most recent one."""
    request = await ledger.get(await _submit(ledger))
    assert (await ledger.resolve(ACCOUNT)).request_id == request.request_id
    request = await ledger.transition(request, RequestStatus.CANCELLED)
    assert (await ledger.resolve(ACCOUNT)).status == RequestStatus.CANCELLED


async def test_notes_and_account_history(ledger: Ledger, audit_path: Path) -> None:
    """Notes append audit records without a status change; the account history merges them all."""
    request = await ledger.get(await _submit(ledger))
    await ledger.note(request, "disconnect.confirmed", TransitionDetails(message="webhook"))
    await ledger.note_account(ACCOUNT, "account.externally_disconnected")
    history = await ledger.history(request.request_id)
    assert history[-1]["event"] == "disconnect.confirmed"
    assert history[-1]["from"] == history[-1]["to"] == "queued"
    assert (await ledger.get(request.request_id)).status == RequestStatus.QUEUED
    events = [r["event"] for r in await ledger.account_history(ACCOUNT)]
    assert events == [STATUS_CHANGED, "disconnect.confirmed", "account.externally_disconnected"]
    assert len(audit_path.read_text().splitlines()) == 3


async def test_cancelled_caller_waits_for_the_write_to_be_published(ledger: Ledger) -> None:
    """A caller cancelled while its script runs gets CancelledError only after the script's
    audit records are published, so shutdown never closes Redis or the audit file under it."""
    release = asyncio.Event()
    published: list[int] = []

    async def script() -> int:
        await release.wait()
        return 1

    def publish(value: int) -> int:
        published.append(value)
        return value

    task = asyncio.create_task(ledger.published(script(), publish))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert published == [1]
