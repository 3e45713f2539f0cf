"""The fleet-wide ``/metrics`` text against a real Redis: every series the runbook's alerts and
the deploy's probes name exists and moves with what happened (see ``deploy/runbook.md``)."""

from __future__ import annotations

from control.exposition import SERIES, render_metrics
from control.metrics import COMPLETION_BUCKETS, CounterBuffer, histogram_fields, record_stripe_call
from control.overview import oldest_pending_by_queue
from control.pause import pause, resume
from control.workers import ENTRY_TTL_SECONDS, WorkerRegistry
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from tests.control.metrics_support import parse_samples, series_names
from tests.ledger.operator_support import failed, in_progress

EXPECTED_SERIES = [
    "fcd_requests",
    "fcd_queue_jobs",
    "fcd_oldest_pending_request_age_seconds",
    "fcd_paused",
    "fcd_breaker_tripped",
    "fcd_workers",
    "fcd_worker_heartbeat_timestamp_seconds",
    "fcd_webhook_inbox",
    "fcd_webhook_dead_letters",
    "fcd_intake_requests_total",
    "fcd_http_responses_total",
    "fcd_stripe_calls_total",
    "fcd_stripe_call_duration_seconds",
    "fcd_request_completion_seconds",
    "fcd_webhooks_total",
    "fcd_stream_trimmed_total",
    "fcd_limiter_total",
    "fcd_limiter_wait_seconds_total",
]


async def _samples(ledger: Ledger) -> dict[str, float]:
    return parse_samples(await render_metrics(ledger, webhook_inbox=0, webhook_dead_letters=0))


async def test_every_contracted_series_is_declared(bulk_ledger: Ledger) -> None:
    """The exposition declares exactly the series the deploy's alerts and dashboards use."""
    text = await render_metrics(bulk_ledger, webhook_inbox=3, webhook_dead_letters=2)
    assert series_names(text) == EXPECTED_SERIES == list(SERIES)
    samples = parse_samples(text)
    assert samples["fcd_webhook_inbox"] == 3
    assert samples["fcd_webhook_dead_letters"] == 2
    assert samples['fcd_queue_jobs{queue="bulk",state="deferred"}'] == 0
    assert samples['fcd_oldest_pending_request_age_seconds{queue="urgent"}'] == 0


async def test_alert_service_paused_and_breaker_tripped(ledger: Ledger) -> None:
    """Alert "service paused": fcd_paused is 1 for any pause, fcd_breaker_tripped only when the
    circuit breaker set it; both are 0 after resume."""
    assert (await _samples(ledger))["fcd_paused"] == 0
    await pause(ledger.redis, "dave", "incident 42", "cli", key=ledger.pause_key)
    by_hand = await _samples(ledger)
    assert (by_hand["fcd_paused"], by_hand["fcd_breaker_tripped"]) == (1, 0)
    await pause(ledger.redis, "w1:9", "Stripe answered HTTP 401", "breaker", key=ledger.pause_key)
    tripped = await _samples(ledger)
    assert (tripped["fcd_paused"], tripped["fcd_breaker_tripped"]) == (1, 1)
    await resume(ledger.redis, "carol", "key rotated", key=ledger.pause_key)
    after = await _samples(ledger)
    assert (after["fcd_paused"], after["fcd_breaker_tripped"]) == (0, 0)


async def test_alert_disconnects_failing_counts_completions_by_status(ledger: Ledger) -> None:
    """Alert "disconnects failing": a request that fails adds one to the completion histogram's
    failed count (and to every bucket at or above its duration), flushed from the ledger hook."""
    counters = CounterBuffer(ledger.redis, ledger.prefix)
    ledger.on_terminal = counters.observe_completion
    request = await failed(ledger, "fca_fail1")
    still_running = await in_progress(ledger, "fca_run1")
    await counters.flush()
    samples = await _samples(ledger)
    base = 'fcd_request_completion_seconds_count{status="failed",source="operator"}'
    assert samples[base] == 1
    assert samples['fcd_requests{status="failed"}'] == 1
    buckets = [
        samples[
            f'fcd_request_completion_seconds_bucket{{status="failed",source="operator",le="{le}"}}'
        ]
        for le in [*(f"{b:g}" for b in COMPLETION_BUCKETS), "+Inf"]
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 1
    elapsed = request.updated_at - request.created_at
    first_bucket = next(i for i, b in enumerate(COMPLETION_BUCKETS) if elapsed <= b)
    assert buckets[first_bucket] == 1 and all(b == 0 for b in buckets[:first_bucket])
    assert still_running.status == RequestStatus.IN_PROGRESS
    assert not any("in_progress" in key for key in samples if "completion" in key)


async def test_alert_oldest_request_per_queue(bulk_ledger: Ledger) -> None:
    """Alert "oldest request too old": each queue's age is measured from the status change of
    its longest-waiting non-terminal request (an urgent one behind many bulk ones is found);
    terminal requests do not count; a queue with none reports 0."""
    ledger = bulk_ledger
    bulk = [
        await ledger.submit(f"fca_bulk{i}", source=RequestSource.RETENTION_POLICY, reference="p")
        for i in range(3)
    ]
    urgent = await ledger.submit("fca_urg1", source=RequestSource.OPERATOR, reference="op")
    await failed(ledger, "fca_done1")
    key = ledger.status_key(RequestStatus.QUEUED)
    bulk_score = float(await ledger.redis.zscore(key, bulk[0].request_id) or 0)
    urgent_score = float(await ledger.redis.zscore(key, urgent.request_id) or 0)
    ages = await oldest_pending_by_queue(ledger, now=urgent_score + 100.0)
    assert ages == {"urgent": 100.0, "bulk": urgent_score + 100.0 - bulk_score}
    samples = await _samples(ledger)
    assert samples['fcd_oldest_pending_request_age_seconds{queue="urgent"}'] > 0
    # two urgent jobs: the waiting request's and the failed one's (no worker took it here)
    assert samples['fcd_queue_jobs{queue="urgent",state="due"}'] == 2
    assert samples['fcd_queue_jobs{queue="bulk",state="due"}'] == 3  # one job per submit


async def test_alert_no_worker_heartbeat(ledger: Ledger) -> None:
    """Alert "no worker heartbeat": fcd_workers counts live registry entries per queue and each
    has its heartbeat time; an entry expires on its own (a killed worker), a clean stop removes
    it at once."""
    registry = WorkerRegistry(ledger.redis, ledger.prefix)
    at = await registry.beat("h1:10", queue="urgent", jobs_running=2, max_jobs=20, started_at=1.0)
    await registry.beat("h2:11", queue="bulk", jobs_running=0, max_jobs=20, started_at=1.0)
    samples = await _samples(ledger)
    assert samples['fcd_workers{queue="urgent"}'] == 1
    assert samples['fcd_worker_heartbeat_timestamp_seconds{worker="h1:10",queue="urgent"}'] == (
        round(at, 3)
    )
    assert 0 < await ledger.redis.ttl(registry.entry_key("h1:10")) <= ENTRY_TTL_SECONDS
    await ledger.redis.delete(registry.entry_key("h1:10"))  # what expiry does to a killed worker
    await registry.remove("h2:11")
    samples = await _samples(ledger)
    assert samples['fcd_workers{queue="urgent"}'] == 0
    assert not any(k.startswith("fcd_worker_heartbeat") for k in samples)
    assert await ledger.redis.zcard(registry.index_key) == 0


def test_histogram_fields_pick_the_bucket_whose_bound_holds_the_value() -> None:
    """A value lands in the first bucket with bound >= value (Prometheus' le), beyond the last
    bound in +Inf; the sum is kept in whole microseconds."""
    assert histogram_fields((1.0, 5.0), 1.0, "a") == [("a|le:1", 1), ("a|sum_us", 1_000_000)]
    assert histogram_fields((1.0, 5.0), 1.5, "a", "b")[0] == ("a|b|le:5", 1)
    assert histogram_fields((1.0, 5.0), 9.0, "a")[0] == ("a|le:+Inf", 1)


async def test_alert_stripe_calls_slow_histogram_is_cumulative(ledger: Ledger) -> None:
    """Alert "Stripe calls slow": each call lands in its bucket; the exposition's buckets are
    cumulative per endpoint and outcome, _count equals the calls and _sum their seconds, and the
    calls counter agrees."""
    for seconds in (0.03, 0.2, 0.2, 7.5):
        await record_stripe_call(ledger.redis, ledger.prefix, "disconnect", "ok", seconds)
    await record_stripe_call(ledger.redis, ledger.prefix, "list", "429", 0.4)
    samples = await _samples(ledger)
    ok = 'endpoint="disconnect",outcome="ok"'
    buckets = [
        samples[f'fcd_stripe_call_duration_seconds_bucket{{{ok},le="{le}"}}']
        for le in ("0.05", "0.25", "5", "10", "+Inf")
    ]
    assert buckets == [
        1, 3, 3, 4, 4,
    ]  # fmt: skip
    assert samples["fcd_stripe_call_duration_seconds_count{" + ok + "}"] == 4
    assert samples["fcd_stripe_call_duration_seconds_sum{" + ok + "}"] == 7.93
    assert samples["fcd_stripe_calls_total{" + ok + "}"] == 4
    assert samples['fcd_stripe_calls_total{endpoint="list",outcome="429"}'] == 1
