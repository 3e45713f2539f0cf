"""Policy selection on hand-built accounts, each with its expected outcome worked out by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from retention.policy import RetentionPolicy, Rule, load_policies
from retention.select import (
    DAY,
    Selection,
    blast_radius_refusal,
    last_successful_refresh,
)

NOW = 1_800_000_000.0
STALE = "no successful refresh for 90 days"
OLD_INACTIVE = "inactive, linked over a year ago"
CLOSED = "customer closed"


def refresh(status: str, days_ago: float) -> dict[str, Any]:
    return {"status": status, "last_attempted_at": int(NOW - days_ago * DAY)}


def account(
    n: int, *, status: str = "active", age_days: float = 400, **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"fca_t{n}",
        "status": status,
        "created": int(NOW - age_days * DAY),
        "institution_name": "Chase" if n % 2 else "Ally Bank",
        "account_holder": {"type": "customer", "customer": f"cus_{n}"},
        "balance_refresh": None,
        "ownership_refresh": None,
        "transaction_refresh": None,
        **extra,
    }


POLICY = RetentionPolicy(
    name="mixed",
    max_disconnects=100,
    max_fraction=1.0,
    rules=(
        Rule(reason=STALE, status=("active", "inactive"), no_successful_refresh_days=90),
        Rule(reason=OLD_INACTIVE, status=("inactive",), created_older_than_days=365),
        Rule(reason=CLOSED, customers=frozenset({"cus_20", "acct_21"})),
    ),
)

# (account, expected reason or None) -- worked out by hand against POLICY at NOW.
CASES: list[tuple[dict[str, Any], str | None]] = [
    # 1: a success 10 days ago -> recent; 400 days old but active -> rule 2 needs inactive.
    (account(1, balance_refresh=refresh("succeeded", 10)), None),
    # 2: last success 100 days ago, a failure 5 days ago -> no success within 90 -> STALE.
    (
        account(
            2, balance_refresh=refresh("succeeded", 100), transaction_refresh=refresh("failed", 5)
        ),
        STALE,
    ),
    # 3: never refreshed at all (all null), 400 days old -> STALE.
    (account(3), STALE),
    # 4: never refreshed but linked 30 days ago: has not existed for 90 days -> not STALE.
    (account(4, age_days=30), None),
    # 5: pending refresh 1 day ago is not a success; ownership succeeded 91 days ago -> STALE.
    (
        account(
            5, ownership_refresh=refresh("succeeded", 91), balance_refresh=refresh("pending", 1)
        ),
        STALE,
    ),
    # 6: inactive, refreshed OK 3 days ago (rule 1 no), 500 days old (rule 2 yes) -> OLD_INACTIVE.
    (
        account(6, status="inactive", age_days=500, transaction_refresh=refresh("succeeded", 3)),
        OLD_INACTIVE,
    ),
    # 7: inactive, refreshed OK recently, 200 days old -> neither.
    (account(7, status="inactive", age_days=200, balance_refresh=refresh("succeeded", 1)), None),
    # 8: already disconnected: never selected, counted apart.
    (account(8, status="disconnected"), None),
    # 9: a status Stripe may add one day: not listed by rules 1/2, holder not listed -> None.
    (account(9, status="suspended_by_bank"), None),
    # 10: unknown refresh status "stalled" is not a success -> STALE.
    (account(10, balance_refresh=refresh("stalled", 1)), STALE),
    # 20: recent success but holder cus_20 is listed -> CLOSED.
    (account(20, balance_refresh=refresh("succeeded", 1)), CLOSED),
    # 21: connected-account holder acct_21 listed, status unknown -> CLOSED.
    (
        account(21, status="new_status", account_holder={"type": "account", "account": "acct_21"}),
        CLOSED,
    ),
    # 22: malformed id -> invalid, never selected.
    ({**account(22), "id": "not-an-account"}, None),
]


def test_each_account_gets_the_hand_computed_outcome() -> None:
    """Every case is selected by exactly the rule worked out by hand, and by nothing else."""
    selection = Selection()
    selection.add_all(POLICY, [a for a, _ in CASES], NOW)
    expected = [(a["id"], reason) for a, reason in CASES if reason is not None]
    assert selection.selected == expected
    assert selection.scanned == len(CASES)
    assert selection.already_disconnected == 1
    assert selection.invalid_id == 1
    assert selection.by_reason == {STALE: 4, OLD_INACTIVE: 1, CLOSED: 2}
    assert sum(selection.by_institution.values()) == 7
    assert selection.by_institution["Ally Bank"] == 4  # ids 2, 6, 10, 20


def test_last_successful_refresh_takes_the_latest_success_only() -> None:
    """Only ``succeeded`` refresh objects count; the latest of them wins."""
    acc = account(
        1, balance_refresh=refresh("succeeded", 50), ownership_refresh=refresh("succeeded", 20)
    )
    acc["transaction_refresh"] = refresh("failed", 1)
    assert last_successful_refresh(acc) == int(NOW - 20 * DAY)
    assert last_successful_refresh(account(2)) is None


def test_rows_without_the_needed_fields_are_incomplete_not_selected() -> None:
    """A file row with only an id cannot satisfy field criteria: counted incomplete."""
    selection = Selection()
    selection.add_all(POLICY, [{"id": "fca_only"}, {"id": "fca_s", "status": "active"}], NOW)
    assert selection.selected == []
    assert selection.incomplete == 2


def test_select_all_rule_selects_every_listed_id() -> None:
    """A ``select_all`` rule (a file that is itself the list) selects each valid id."""
    policy = RetentionPolicy(
        name="list",
        max_disconnects=10,
        max_fraction=1.0,
        rules=(Rule(reason="legal", select_all=True),),
    )
    selection = Selection()
    selection.add_all(policy, [{"id": "fca_a"}, {"id": "fca_b", "status": "disconnected"}], NOW)
    assert selection.selected == [("fca_a", "legal")]


def test_guard_refuses_over_count_or_fraction_and_says_why() -> None:
    """Over ``max_disconnects`` or ``max_fraction`` is refused with both numbers named."""
    policy = POLICY.model_copy(update={"max_disconnects": 4, "max_fraction": 0.5})
    selection = Selection()
    selection.add_all(policy, [a for a, _ in CASES], NOW)
    refusal = blast_radius_refusal(policy, selection)
    assert refusal is not None
    assert "7 accounts selected, max_disconnects is 4" in refusal
    assert "53.8% of 13 accounts examined" in refusal
    within = POLICY.model_copy(update={"max_disconnects": 7, "max_fraction": 0.6})
    assert blast_radius_refusal(within, selection) is None


EXAMPLE = Path(__file__).parents[2] / "deploy" / "retention_policies.example.toml"
FIXTURE = (
    Path(__file__).parents[2]
    / "stripe_emulator"
    / "spec"
    / "fixture_financial_connections_account.json"
)


def payment_method_only_link(created: float) -> dict[str, Any]:
    """Stripe's own account fixture as a payment-method-only link has it: no refresh was ever
    requested, so ``balance_refresh``, ``ownership_refresh`` and ``transaction_refresh`` are null."""
    account: dict[str, Any] = json.loads(FIXTURE.read_text())
    account.update(
        permissions=["payment_method"],
        balance=None,
        balance_refresh=None,
        ownership_refresh=None,
        transaction_refresh=None,
        created=int(created),
    )
    return account


def test_a_never_refreshed_link_is_measured_from_created() -> None:
    """Issue 10, point 4: with every refresh null, "no successful refresh for 180 days" counts
    from ``created``: the example policy leaves a link made today (or 179 days ago) alone and
    selects one made 181 days ago."""
    stale_links = load_policies(EXAMPLE)["stale-links"]
    now = time.time()
    for age_days, expected in [(0, None), (179, None), (181, "no successful refresh for 180 days")]:
        selection = Selection()
        selection.add(stale_links, payment_method_only_link(now - age_days * DAY), now)
        reasons = [reason for _, reason in selection.selected]
        assert reasons == ([expected] if expected else []), age_days
        assert selection.incomplete == 0
