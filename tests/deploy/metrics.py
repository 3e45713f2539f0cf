"""The /metrics contract the dashboards, alerts and autoscalers may use, and a PromQL reader.

Every expression in deploy/ may reference only these names and labels. The table is held to
what the service really exposes (control.exposition, rendered from a real Redis) by
tests/deploy/test_metrics_contract.py, so a renamed series fails there first.

:func:`selectors` reads the metric names (and matcher labels) out of a PromQL expression without
a PromQL parser: strings, ranges and grouping clauses are removed, numbers and durations skipped,
and what is left that is not a function, aggregation or keyword is a metric name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"

CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "fcd_requests": (GAUGE, frozenset({"status"})),
    "fcd_stripe_calls_total": (COUNTER, frozenset({"endpoint", "outcome"})),
    "fcd_limiter_total": (COUNTER, frozenset({"kind"})),  # grants | waits | rate_limited
    "fcd_limiter_wait_seconds_total": (COUNTER, frozenset()),
    "fcd_intake_requests_total": (COUNTER, frozenset({"service", "outcome"})),
    "fcd_http_responses_total": (COUNTER, frozenset({"code"})),
    "fcd_webhooks_total": (COUNTER, frozenset({"type", "result"})),
    "fcd_stream_trimmed_total": (COUNTER, frozenset({"stream"})),  # webhook:inbox | webhook:dead
    "fcd_webhook_inbox": (GAUGE, frozenset()),
    "fcd_webhook_dead_letters": (GAUGE, frozenset()),
    "fcd_queue_jobs": (GAUGE, frozenset({"queue", "state"})),  # state: due | deferred
    "fcd_oldest_pending_request_age_seconds": (GAUGE, frozenset({"queue"})),
    "fcd_paused": (GAUGE, frozenset()),
    "fcd_breaker_tripped": (GAUGE, frozenset()),
    "fcd_stripe_call_duration_seconds": (HISTOGRAM, frozenset({"endpoint", "outcome"})),
    "fcd_request_completion_seconds": (HISTOGRAM, frozenset({"status", "source"})),
    "fcd_worker_heartbeat_timestamp_seconds": (GAUGE, frozenset({"worker", "queue"})),
    "fcd_workers": (GAUGE, frozenset({"queue"})),
}
# Labels Prometheus itself attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "service"})


def series_names() -> dict[str, frozenset[str]]:
    """Every series name a query may select, with its labels (histograms: _bucket, _sum, _count)."""
    names: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in CONTRACT.items():
        if kind == HISTOGRAM:
            names[f"{name}_bucket"] = labels | {"le"}
            names[f"{name}_sum"] = labels
            names[f"{name}_count"] = labels
        else:
            names[name] = labels
    return names


FUNCTIONS_AND_KEYWORDS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "limitk",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
    ]
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+|ms|[smhdwy])*)|(?P<name>[A-Za-z_:][\w:]*)"
    r"|(?P<matchers>\{[^}]*\})"
)
_MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]


def selectors(expr: str) -> list[Selector]:
    """The metric selectors of a PromQL expression (Grafana ``$variables`` allowed: they stand
    only for label values and intervals)."""
    text = _VARIABLE.sub("1", _RANGE.sub(" ", _GROUPING.sub(" ", _STRING.sub('""', expr))))
    found: list[Selector] = []
    tokens = list(_TOKEN.finditer(text))
    for index, token in enumerate(tokens):
        name = token["name"]
        if not name or name in FUNCTIONS_AND_KEYWORDS:
            continue
        following = text[token.end() :].lstrip()
        if following.startswith("("):
            continue  # a function call
        labels: frozenset[str] = frozenset()
        nxt = tokens[index + 1] if index + 1 < len(tokens) else None
        if nxt is not None and nxt["matchers"] and following.startswith("{"):
            labels = frozenset(_MATCHER_LABEL.findall(nxt["matchers"]))
        found.append(Selector(name, labels))
    return found


def contract_problems(expr: str) -> list[str]:
    """What in ``expr`` is outside the contract: unknown metric names, unknown labels."""
    known = series_names()
    problems = []
    for selector in selectors(expr):
        if selector.metric not in known:
            problems.append(f"{selector.metric} is not in the metrics contract")
            continue
        extra = selector.labels - known[selector.metric] - TARGET_LABELS
        if extra:
            problems.append(f"{selector.metric} has no label {sorted(extra)}")
    return problems
