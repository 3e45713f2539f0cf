"""deploy/grafana/fc-disconnect.json: a well-formed Grafana dashboard over the contract metrics.

Checked against a schema of the dashboard fields Grafana needs to import it, for a layout that
fits (24 columns, no overlaps), for the panels an operator was promised, and with promtool where
it exists (every query must parse as PromQL).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.metrics import contract_problems, selectors
from tests.deploy.promtool import ROOT, find_promtool, promtool

DASHBOARD = ROOT / "deploy" / "grafana" / "fc-disconnect.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["timeseries", "stat", "gauge", "table", "bargauge"]},
        "title": {"type": "string", "minLength": 1},
        "gridPos": {
            "type": "object",
            "required": ["h", "w", "x", "y"],
            "properties": {k: {"type": "integer", "minimum": 0} for k in "hwxy"},
        },
        "datasource": {"const": DATASOURCE},
        "targets": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["refId", "expr"],
                "properties": {"refId": {"type": "string"}, "expr": {"type": "string"}},
            },
        },
    },
}
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "panels": {"type": "array", "minItems": 1, "items": PANEL},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "properties": {
                            "name": {"const": "datasource"},
                            "type": {"const": "datasource"},
                        },
                        "required": ["name", "type"],
                    },
                }
            },
        },
    },
}
# Issue 14's list: throughput by outcome, queue depth by queue, limiter waits and 429s, oldest
# non-terminal request age, breaker state.
PROMISED = {
    "throughput by outcome": ("fcd_stripe_calls_total", "outcome"),
    "queue depth by queue": ("fcd_queue_jobs", "queue"),
    "limiter waits": ("fcd_limiter_total", 'kind="waits"'),
    "limiter 429s": ("fcd_limiter_total", 'kind="rate_limited"'),
    "oldest non-terminal request age": ("fcd_oldest_pending_request_age_seconds", "queue"),
    "breaker state": ("fcd_breaker_tripped", ""),
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_dashboard_matches_the_import_schema(dashboard: dict[str, Any]) -> None:
    """Fields Grafana needs are there; every panel queries the ${datasource} variable."""
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)


def test_panels_have_unique_ids_and_fit_the_grid_without_overlap(dashboard: dict[str, Any]) -> None:
    """Panel ids are unique; each panel is inside the 24 columns; no two panels overlap."""
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    for panel in panels:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]


def test_queries_use_only_contract_metrics(dashboard: dict[str, Any]) -> None:
    """Every metric and label a panel reads is one the service exposes."""
    problems = {expr: contract_problems(expr) for expr in _exprs(dashboard)}
    assert not {expr: found for expr, found in problems.items() if found}


def test_the_promised_panels_are_there(dashboard: dict[str, Any]) -> None:
    """Throughput by outcome, queue depth by queue, limiter waits and 429s, oldest request age,
    breaker state: each is a query of its metric that keeps (or selects) the named label."""
    exprs = _exprs(dashboard)
    for promise, (metric, label) in PROMISED.items():
        matching = [e for e in exprs if metric in {s.metric for s in selectors(e)} and label in e]
        assert matching, f"no panel shows {promise}"


def test_queries_parse_as_promql_where_promtool_exists(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    """With promtool, every query (Grafana's $__rate_interval set to 5m) parses: they are
    written into a rule file as recording rules and checked. Without promtool, each query's
    parentheses must balance and it must select at least one metric: the most that can be
    checked without a PromQL parser."""
    exprs = [re.sub(r"\$__rate_interval", "5m", e) for e in _exprs(dashboard)]
    if find_promtool() is not None:
        rules = [{"record": f"fcd:dashboard:{i}", "expr": e} for i, e in enumerate(exprs)]
        path = tmp_path / "dashboard_rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        checked = promtool("check", "rules", str(path))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        return
    for expr in exprs:
        assert expr.count("(") == expr.count(")"), expr
        assert selectors(expr), expr
