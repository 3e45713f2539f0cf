"""The metrics contract that deploy/ relies on is what the service really exposes.

The dashboards, alerts and autoscalers are checked against tests/deploy/metrics.py; this test
holds that table to the service's own series (control.exposition) and to the text it renders
from a real Redis with every kind of sample present.
"""

from __future__ import annotations

import re

from control.exposition import SERIES, render_metrics
from control.metrics import CounterBuffer, record_stripe_call
from control.workers import WorkerRegistry
from ledger.store import Ledger
from tests.deploy.metrics import CONTRACT, series_names
from tests.ledger.operator_support import failed, submitted

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? \S+$")
LABEL = re.compile(r'([a-z_]+)="')


def test_the_contract_names_exactly_the_exposed_series_and_kinds() -> None:
    """Every contract metric is a series the service declares, of the same type, and back."""
    assert {name: kind for name, (kind, _) in CONTRACT.items()} == {
        name: kind for name, (kind, _) in SERIES.items()
    }


async def test_every_rendered_sample_has_only_contract_labels(bulk_ledger: Ledger) -> None:
    """With requests, a failure, Stripe calls and a live worker on record, every sample line
    of /metrics is a contract series (histograms as _bucket/_sum/_count) carrying exactly the
    contract's labels, and every contract series has samples."""
    ledger = bulk_ledger
    counters = CounterBuffer(ledger.redis, ledger.prefix)
    ledger.on_terminal = counters.observe_completion
    await failed(ledger, "fca_contract1")
    await submitted(ledger, "fca_contract2")
    await counters.flush()
    await record_stripe_call(ledger.redis, ledger.prefix, "disconnect", "ok", 0.2)
    registry = WorkerRegistry(ledger.redis, ledger.prefix)
    await registry.beat("h1:10", queue="urgent", jobs_running=1, max_jobs=20, started_at=1.0)
    text = await render_metrics(ledger, webhook_inbox=0, webhook_dead_letters=0)
    known = series_names()
    seen: set[str] = set()
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match is None:
            assert line.startswith("#"), line
            continue
        name = match["name"]
        assert name in known, f"{name} is exposed but not in the contract"
        assert set(LABEL.findall(match["labels"] or "")) == known[name], line
        seen.add(name)
    missing = (
        {name for name in known if not name.endswith(("_sum", "_count"))}
        - seen
        - {
            "fcd_intake_requests_total",
            "fcd_http_responses_total",
            "fcd_webhooks_total",
            "fcd_stream_trimmed_total",
        }
    )
    assert not missing, f"no samples of {missing}"
