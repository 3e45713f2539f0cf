"""``/metrics`` in Prometheus' text format, derived from Redis so it covers the whole fleet.

Gauges come from the ledger's indexes at scrape time (requests per status, the arq queue's depth
and how much of it is due, webhook events not yet applied); counters from the hashes every process
flushes (:mod:`control.metrics`) and the worker limiter's stats hash.
"""

from __future__ import annotations

import time

from control.metrics import read_counters
from ledger.models import RequestStatus
from producer.http.state import Services

_HELP = {
    "fcd_requests": ("gauge", "Disconnect requests in the ledger, by status."),
    "fcd_queue_jobs": ("gauge", "Jobs in the arq queue (due: runnable now; all: incl. deferred)."),
    "fcd_webhook_inbox": ("gauge", "Verified webhook events not yet applied."),
    "fcd_intake_requests_total": ("counter", "Intake submissions by calling service and outcome."),
    "fcd_http_responses_total": ("counter", "HTTP answers of the intake by status code."),
    "fcd_stripe_calls_total": ("counter", "Stripe calls by endpoint and outcome."),
    "fcd_webhooks_total": ("counter", "Stripe webhook deliveries by event type and result."),
    "fcd_limiter_total": ("counter", "Rate-limiter grants, waits, rate_limited reports."),
    "fcd_limiter_wait_seconds_total": ("counter", "Time callers spent waiting for the limiter."),
}


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def render_metrics(svc: Services) -> str:
    """The whole exposition text."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    counts = await svc.ledger.count_by_status()
    for status in RequestStatus:
        samples["fcd_requests"].append(f"{_labels(status=status.value)} {counts[status]}")
    queue = svc.ledger.queue_name
    depth = await svc.redis.zcard(queue)
    due = await svc.redis.zcount(queue, "-inf", int(time.time() * 1000))
    samples["fcd_queue_jobs"] += [f'{{state="all"}} {depth}', f'{{state="due"}} {due}']
    samples["fcd_webhook_inbox"].append(f" {await svc.inbox.pending()}")
    counters = await read_counters(svc.redis, svc.ledger.prefix)
    _add_counters(samples, "fcd_intake_requests_total", counters["intake"], ("service", "outcome"))
    _add_counters(samples, "fcd_http_responses_total", counters["http"], ("code",))
    _add_counters(samples, "fcd_stripe_calls_total", counters["stripe"], ("endpoint", "outcome"))
    _add_counters(samples, "fcd_webhooks_total", counters["webhooks"], ("type", "result"))
    limiter = counters["limiter"]
    for kind in ("grants", "waits", "rate_limited"):
        samples["fcd_limiter_total"].append(f"{_labels(kind=kind)} {limiter.get(kind, 0)}")
    wait_s = limiter.get("wait_us", 0) / 1e6
    samples["fcd_limiter_wait_seconds_total"].append(f" {wait_s:.6f}")
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"


def _add_counters(
    samples: dict[str, list[str]], name: str, values: dict[str, int], label_names: tuple[str, ...]
) -> None:
    for field, value in sorted(values.items()):
        parts = field.split("|")
        if len(parts) != len(label_names):
            continue
        samples[name].append(f"{_labels(**dict(zip(label_names, parts, strict=True)))} {value}")
