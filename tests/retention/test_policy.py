"""Policy files (TOML) and cron schedules: what loads, what is refused and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from retention.policy import PolicyError, get_policy, load_policies
from retention.schedule import InvalidSchedule, parse_cron
from worker.retention import sweep_cron_jobs
from worker.settings import WorkerSettings

EXAMPLE = Path(__file__).parents[2] / "deploy" / "retention_policies.example.toml"


def test_the_example_file_loads_with_customers_read_from_their_file() -> None:
    """The shipped example parses; a customers_file's ids end up in the rule."""
    policies = load_policies(EXAMPLE)
    assert set(policies) == {"stale-links", "closed-customers", "legal-hold-release"}
    closed = policies["closed-customers"].rules[0]
    assert closed.customers == frozenset({"cus_EXAMPLE1", "cus_EXAMPLE2"})
    assert policies["legal-hold-release"].file == EXAMPLE.parent / "legal_release.jsonl"


def test_the_examples_are_dry_by_default_and_schedule_off_without_policies() -> None:
    """Copying the example never arms an apply: every scheduled example policy runs dry (the
    default is dry too); a bulk worker without a policy file logs that its schedule is off."""
    policies = load_policies(EXAMPLE)
    scheduled = [p for p in policies.values() if p.schedule]
    assert scheduled and not any(p.scheduled_apply for p in scheduled)
    bare = policies["stale-links"].model_copy(update={"scheduled_apply": True})
    assert bare.digest != policies["stale-links"].digest  # a worker sees the difference
    settings = WorkerSettings(stripe_api_key=SecretStr("sk_test_x"))
    with structlog.testing.capture_logs() as logs:
        assert sweep_cron_jobs(settings) == []
    assert [(e["event"], e["message"]) for e in logs] == [
        ("retention.schedule_off", "no retention policies: schedule off")
    ]


def test_a_rule_without_criteria_must_say_select_all(tmp_path: Path) -> None:
    """Selecting everything by accident is refused at load time, naming the policy."""
    path = tmp_path / "p.toml"
    path.write_text(
        "[policies.oops]\nmax_disconnects = 1\nmax_fraction = 0.1\n"
        '[[policies.oops.rules]]\nreason = "all"\n'
    )
    with pytest.raises(PolicyError, match=r"(?s)oops.*select_all"):
        load_policies(path)


def test_unknown_policy_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    """Asking for a policy that is not there names the ones that are."""
    with pytest.raises(PolicyError, match="have: closed-customers"):
        get_policy(EXAMPLE, "nope")
    with pytest.raises(PolicyError, match="FCD_RETENTION_POLICIES"):
        get_policy(None, "x")
    with pytest.raises(PolicyError):
        load_policies(tmp_path / "absent.toml")


def test_cron_fields_map_to_arq() -> None:
    """Five fields get second 0; six put seconds first; crontab Sunday (0/7) is arq's 6."""
    daily = parse_cron("30 3 * * *")
    assert daily.as_kwargs() == {"second": {0}, "minute": {30}, "hour": {3}}
    fast = parse_cron("*/20 * * * * *")
    assert fast.second == frozenset({0, 20, 40}) and fast.minute is None
    weekly = parse_cron("0 4 * * 0,1,7")
    assert weekly.weekday == frozenset({6, 0})
    assert parse_cron("0 0 1-10/3 * *").day == frozenset({1, 4, 7, 10})


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "0 0 1 * 1", "*/0 * * * *", "a * * * *"])
def test_bad_cron_expressions_are_refused(bad: str) -> None:
    """Malformed, out-of-range, or both-day-fields schedules raise InvalidSchedule."""
    with pytest.raises(InvalidSchedule):
        parse_cron(bad)


CONNECT_POLICIES = """
[policies.everywhere]
max_disconnects = 10
max_fraction = 0.5
stripe_accounts = "all"
[[policies.everywhere.rules]]
reason = "inactive"
status = ["inactive"]

[policies.two]
max_disconnects = 10
max_fraction = 0.5
stripe_accounts = ["acct_1A", "acct_1B"]
include_platform = false
[[policies.two.rules]]
reason = "inactive"
status = ["inactive"]
"""


def test_stripe_accounts_name_connected_accounts_or_all(tmp_path: Path) -> None:
    """Point 5: ``stripe_accounts`` is ``"all"`` or a list of ``acct_`` ids; ``include_platform
    = false`` leaves the key's own accounts out; either changes the digest, while a policy
    without them keeps the digest it had before the fields existed."""
    path = tmp_path / "p.toml"
    path.write_text(CONNECT_POLICIES)
    policies = load_policies(path)
    assert policies["everywhere"].stripe_accounts == "all"
    assert policies["everywhere"].include_platform
    assert policies["two"].stripe_accounts == ("acct_1A", "acct_1B")
    assert not policies["two"].include_platform
    plain = policies["everywhere"].model_copy(update={"stripe_accounts": None})
    assert plain.digest != policies["everywhere"].digest
    # The example policies' digests as the version before these fields computed them.
    example = {name: policy.digest for name, policy in load_policies(EXAMPLE).items()}
    assert example == {
        "stale-links": "4ea574dd4f78b08a",
        "closed-customers": "287f474434b2b378",
        "legal-hold-release": "683d0f803ccc67bb",
    }


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('stripe_accounts = ["cus_1"]', "not a connected account id"),
        ("include_platform = false", "include_platform = false needs stripe_accounts"),
        ('stripe_accounts = "some"', "stripe_accounts"),
    ],
)
def test_bad_stripe_accounts_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    """A non-``acct_`` id, an empty scope, or another string than ``"all"`` is a clear error."""
    path = tmp_path / "p.toml"
    path.write_text(
        f"[policies.x]\nmax_disconnects = 1\nmax_fraction = 0.5\n{extra}\n"
        '[[policies.x.rules]]\nreason = "r"\nstatus = ["inactive"]\n'
    )
    with pytest.raises(PolicyError, match=message):
        load_policies(path)
