"""``/metrics`` in Prometheus' text format, derived from Redis so it covers the whole fleet.

Every role serves the same text (the intake on its HTTP port, each worker on
``FCD_METRICS_PORT``): gauges are read from the ledger's indexes, the arq queues, the pause flag
and the worker registry at scrape time, counters and histograms from the hashes every process
writes (:mod:`control.metrics`). Because the values are fleet-wide, alerts aggregate over scrape
targets with ``max`` (gauges) or take one target per role; see ``deploy/runbook.md``. The series
(:data:`SERIES`) are a contract: Kubernetes probes, Prometheus alerts and the Grafana dashboard
name them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from control.metrics import HISTOGRAMS, bucket_label, read_counters
from control.overview import queue_depths
from control.pause import get_pause
from control.workers import WorkerRegistry
from ledger.models import RequestStatus
from ledger.store import Ledger

SERIES: Final = {
    "fcd_requests": ("gauge", "Disconnect requests in the ledger, by status."),
    "fcd_queue_jobs": ("gauge", "arq jobs per queue: due (runnable now) or deferred (later)."),
    "fcd_oldest_pending_request_age_seconds": (
        "gauge",
        "Seconds the longest-waiting non-terminal request of the queue has gone unmoved.",
    ),
    "fcd_paused": ("gauge", "1 while the kill switch is set (by an operator or the breaker)."),
    "fcd_breaker_tripped": ("gauge", "1 while paused by the circuit breaker (Stripe 401/403)."),
    "fcd_workers": ("gauge", "Worker processes alive (heartbeat not expired), per queue."),
    "fcd_worker_heartbeat_timestamp_seconds": (
        "gauge",
        "Last heartbeat of each live worker process (unix seconds, Redis' clock).",
    ),
    "fcd_webhook_inbox": ("gauge", "Verified webhook events not yet applied."),
    "fcd_webhook_dead_letters": (
        "gauge",
        "Webhook events parked in the dead-letter stream (capped: drain before the cap).",
    ),
    "fcd_intake_requests_total": ("counter", "Intake submissions by calling service and outcome."),
    "fcd_http_responses_total": ("counter", "HTTP answers of the intake by status code."),
    "fcd_stripe_calls_total": ("counter", "Stripe calls by endpoint and outcome."),
    "fcd_stripe_call_duration_seconds": (
        "histogram",
        "Duration of one Stripe call (limiter wait excluded), by endpoint and outcome.",
    ),
    "fcd_request_completion_seconds": (
        "histogram",
        "Time from submission to a terminal status, by terminal status and source.",
    ),
    "fcd_webhooks_total": ("counter", "Stripe webhook deliveries by event type and result."),
    "fcd_stream_trimmed_total": (
        "counter",
        "Entries a Redis stream's MAXLEN cap trimmed (webhook:dead: dead letters lost).",
    ),
    "fcd_limiter_total": ("counter", "Rate-limiter grants, waits, rate_limited reports."),
    "fcd_limiter_wait_seconds_total": ("counter", "Time callers spent waiting for the limiter."),
}
_HISTOGRAM_OF = {
    "fcd_stripe_call_duration_seconds": ("stripe_latency", ("endpoint", "outcome")),
    "fcd_request_completion_seconds": ("completion", ("status", "source")),
}
_COUNTER_OF = {
    "fcd_intake_requests_total": ("intake", ("service", "outcome")),
    "fcd_http_responses_total": ("http", ("code",)),
    "fcd_stripe_calls_total": ("stripe", ("endpoint", "outcome")),
    "fcd_webhooks_total": ("webhooks", ("type", "result")),
    "fcd_stream_trimmed_total": ("streams", ("stream",)),
}


def labels(**values: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in values.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def render_metrics(ledger: Ledger, *, webhook_inbox: int, webhook_dead_letters: int) -> str:
    """The whole exposition text; ``webhook_inbox`` is the inbox's pending count and
    ``webhook_dead_letters`` its dead-letter count (the events layer owns the inbox, so the
    caller reads them)."""
    samples: dict[str, list[str]] = {name: [] for name in SERIES}
    await _gauges(ledger, samples)
    samples["fcd_webhook_inbox"].append(f" {webhook_inbox}")
    samples["fcd_webhook_dead_letters"].append(f" {webhook_dead_letters}")
    counters = await read_counters(ledger.redis, ledger.prefix)
    for name, (family, label_names) in _COUNTER_OF.items():
        samples[name] += _counter_samples(counters[family], label_names)
    for name, (family, label_names) in _HISTOGRAM_OF.items():
        samples[name] += _histogram_samples(name, counters[family], label_names, HISTOGRAMS[family])
    limiter = counters["limiter"]
    for kind in ("grants", "waits", "rate_limited"):
        samples["fcd_limiter_total"].append(f"{labels(kind=kind)} {limiter.get(kind, 0)}")
    samples["fcd_limiter_wait_seconds_total"].append(f" {limiter.get('wait_us', 0) / 1e6:.6f}")
    lines: list[str] = []
    for name, (kind, text) in SERIES.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        prefix = "" if kind == "histogram" else name
        lines += [f"{prefix}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"


async def _gauges(ledger: Ledger, samples: dict[str, list[str]]) -> None:
    now = time.time()
    counts = await ledger.count_by_status()
    for status in RequestStatus:
        samples["fcd_requests"].append(f"{labels(status=status.value)} {counts[status]}")
    alive = await WorkerRegistry(ledger.redis, ledger.prefix).alive()
    for depth in await queue_depths(ledger, now, alive=alive):
        for state, value in (("due", depth.due), ("deferred", depth.deferred)):
            samples["fcd_queue_jobs"].append(f"{labels(queue=depth.kind, state=state)} {value}")
        age = f"{depth.oldest_pending_age_seconds:.3f}"
        samples["fcd_oldest_pending_request_age_seconds"].append(
            f"{labels(queue=depth.kind)} {age}"
        )
        samples["fcd_workers"].append(f"{labels(queue=depth.kind)} {depth.workers}")
    pause = await get_pause(ledger.redis, key=ledger.pause_key)
    samples["fcd_paused"].append(f" {int(pause is not None)}")
    samples["fcd_breaker_tripped"].append(
        f" {int(pause is not None and pause.source == 'breaker')}"
    )
    for worker in alive:
        series = labels(worker=worker.worker_id, queue=worker.queue)
        samples["fcd_worker_heartbeat_timestamp_seconds"].append(
            f"{series} {worker.heartbeat_at:.3f}"
        )


def _counter_samples(values: dict[str, int], label_names: tuple[str, ...]) -> list[str]:
    out = []
    for field, value in sorted(values.items()):
        parts = field.split("|")
        if len(parts) == len(label_names):
            out.append(f"{labels(**dict(zip(label_names, parts, strict=True)))} {value}")
    return out


def _histogram_samples(
    name: str, values: dict[str, int], label_names: tuple[str, ...], buckets: Iterable[float]
) -> list[str]:
    """Per-bucket counts in Redis -> cumulative ``_bucket``, ``_sum`` and ``_count`` lines."""
    per_series: dict[tuple[str, ...], dict[str, int]] = defaultdict(dict)
    for field, value in values.items():
        *parts, tail = field.split("|")
        if len(parts) == len(label_names):
            per_series[tuple(parts)][tail] = value
    bounds = [*buckets, float("inf")]
    out = []
    for series, fields in sorted(per_series.items()):
        base = dict(zip(label_names, series, strict=True))
        running = 0
        for bound in bounds:
            le = bucket_label(bound)
            running += fields.get(f"le:{le}", 0)
            out.append(f"{name}_bucket{labels(**base, le=le)} {running}")
        out.append(f"{name}_sum{labels(**base)} {fields.get('sum_us', 0) / 1e6:.6f}")
        out.append(f"{name}_count{labels(**base)} {running}")
    return out
