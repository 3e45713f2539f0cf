"""deploy/prometheus: the alert rules (and their unit tests) and the autoscaler's adapter rules.

The rules are checked by promtool where this machine has it, else against a schema of Prometheus
rule files; either way every expression may name only metrics of the contract
(tests/deploy/metrics.py), the required alerts exist, and each links a runbook section that exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.metrics import CONTRACT, contract_problems
from tests.deploy.promtool import ROOT, find_promtool, promtool

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
ADAPTER = ROOT / "deploy" / "prometheus" / "adapter.yaml"
AUTOSCALING = ROOT / "deploy" / "k8s" / "autoscaling.yaml"
RUNBOOK = ROOT / "deploy" / "runbook.md"

DURATION = {"type": "string", "pattern": r"^(\d+(ms|s|m|h|d|w|y))+$"}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
NAME = {"type": "string", "pattern": r"^[A-Za-z_:][A-Za-z0-9_:]*$"}
RULE_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["groups"],
    "additionalProperties": False,
    "properties": {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "rules"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": DURATION,
                    "limit": {"type": "integer", "minimum": 0},
                    "rules": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["alert", "expr", "labels", "annotations"],
                            "additionalProperties": False,
                            "properties": {
                                "alert": NAME,
                                "expr": {"type": "string", "minLength": 1},
                                "for": DURATION,
                                "keep_firing_for": DURATION,
                                "labels": STRINGS,
                                "annotations": STRINGS,
                            },
                        },
                    },
                },
            },
        }
    },
}
# What an operator is promised (issue 14): breaker, SLO age, failed rate, no heartbeat.
REQUIRED_ALERTS = {
    "FcdBreakerTripped",
    "FcdUrgentRequestOverSLO",
    "FcdFailedRateHigh",
    "FcdNoWorkerHeartbeat",
}


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _balanced(text: str) -> bool:
    depth = 0
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', "", text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_alert_rules_are_valid() -> None:
    """With promtool (Debian's prometheus package; ``make install-promtool``, as CI does) the
    rules must pass ``promtool check rules`` and their unit tests (alerts_test.yaml: each alert
    fires, and only, when it should). Without it, the file must match the rule-file schema and
    every expression have balanced parentheses: promtool is not on every developer's machine and
    installing it needs the Debian registry, so this test takes the path the machine allows."""
    binary = find_promtool()
    if binary is not None:
        checked = promtool("check", "rules", str(ALERTS))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        tested = promtool("test", "rules", str(ALERT_TESTS))
        assert tested.returncode == 0, tested.stdout + tested.stderr
        return
    jsonschema.validate(yaml.safe_load(ALERTS.read_text()), RULE_FILE_SCHEMA)
    unbalanced = [rule["alert"] for rule in _rules() if not _balanced(rule["expr"])]
    assert not unbalanced, f"unbalanced parentheses in {unbalanced}"


def test_alert_expressions_use_only_contract_metrics() -> None:
    """Every metric and label an alert reads is one the service exposes (the contract)."""
    problems = {rule["alert"]: contract_problems(rule["expr"]) for rule in _rules()}
    assert not {name: found for name, found in problems.items() if found}


def test_the_promised_alerts_exist_with_severity_and_runbook() -> None:
    """Breaker tripped, oldest request over SLO, failed rate and no heartbeat are alerts; each
    alert is in the runbook's table, has a severity and links a runbook section that exists."""
    rules = _rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    anchors = {
        _anchor(line[3:]) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")
    }
    runbook = RUNBOOK.read_text()
    for rule in rules:
        assert f"`{rule['alert']}`" in runbook, f"the runbook's alert table lacks {rule['alert']}"
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "deploy/runbook.md" and anchor in anchors, (rule["alert"], anchor)


def _anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_unit_test() -> None:
    """alerts_test.yaml exercises every alert of alerts.yaml, and names no alert that is gone."""
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    tested = {check["alertname"] for case in cases for check in case["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in _rules()}
    for case in cases:
        for series in case["input_series"]:
            assert not contract_problems(series["series"]), series["series"]


def _autoscaled_metrics() -> list[dict[str, Any]]:
    documents = list(yaml.safe_load_all(AUTOSCALING.read_text()))
    return [m["external"]["metric"] for d in documents for m in d["spec"]["metrics"]]


def test_the_adapter_serves_the_metric_the_autoscalers_scale_on() -> None:
    """Each HPA's external metric is a contract gauge served by an adapter rule, selected on
    labels the gauge has; the adapter combines pods with max (they report the same value)."""
    rules = yaml.safe_load(ADAPTER.read_text())["externalRules"]
    served = {rule["name"]["as"]: rule for rule in rules}
    for metric in _autoscaled_metrics():
        rule = served[metric["name"]]
        kind, labels = CONTRACT[metric["name"]]
        assert kind == "gauge"
        assert set(metric["selector"]["matchLabels"]) <= labels
        query = re.sub(r"<<[^>]*>>", "", rule["metricsQuery"])
        assert not contract_problems(query) and not contract_problems(rule["seriesQuery"])
        assert query.lstrip().startswith("max by"), query


@pytest.mark.parametrize(
    ("expr", "problems"),
    [
        ('max by (queue) (fcd_queue_jobs{state="due"})', []),
        (
            "histogram_quantile(0.9, sum by (le) (rate(fcd_stripe_call_duration_seconds_bucket[5m])))",
            [],
        ),
        ("time() - max(fcd_worker_heartbeat_timestamp_seconds) > 1e2", []),
        ("rate(fcd_limiter_total[$__rate_interval]) offset 5m", []),
        ("max(fcd_queue_depth)", ["fcd_queue_depth is not in the metrics contract"]),
        ('max(fcd_paused{queue="urgent"})', ["fcd_paused has no label ['queue']"]),
        (
            "sum(rate(fcd_request_completion_seconds[5m]))",
            ["fcd_request_completion_seconds is not in the metrics contract"],
        ),
    ],
)
def test_the_contract_reader_finds_unknown_names_and_labels(expr: str, problems: list[str]) -> None:
    """The PromQL reader the checks rely on reports exactly the names and labels outside the
    contract (a histogram is selected through _bucket, _sum or _count only)."""
    assert contract_problems(expr) == problems


def test_the_rules_are_run_by_promtool_here_when_it_exists(tmp_path: Path) -> None:
    """Where promtool exists, a rule that names a broken expression is refused by it (so the
    check above can fail); where it does not, the schema refuses a rule without ``expr``."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: max(\n")
    if find_promtool() is not None:
        assert promtool("check", "rules", str(broken)).returncode != 0
        return
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"groups": [{"name": "x", "rules": [{"alert": "X"}]}]}, RULE_FILE_SCHEMA
        )
