"""Which accounts a policy selects, and the summary a sweep shows before it submits anything.

Accounts are Stripe's JSON objects (or file rows shaped like them) and are read defensively:
statuses and other enum values are plain strings, never validated against a fixed list, so a value
Stripe adds tomorrow neither crashes a sweep nor matches a rule that does not name it. A criterion
whose field is absent (a file row without ``created``, say) does not match, and the row is
counted as ``incomplete``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.models import ACCOUNT_ID_RE
from retention.policy import RetentionPolicy, Rule

DAY = 86_400
REFRESH_FIELDS = ("balance_refresh", "ownership_refresh", "transaction_refresh")
SAMPLE_SIZE = 10


class _Missing(Exception):
    """A criterion needs a field this account does not carry."""


def last_successful_refresh(account: Mapping[str, Any]) -> int | None:
    """Latest ``last_attempted_at`` among refresh objects whose status is ``succeeded``."""
    times = []
    for name in REFRESH_FIELDS:
        refresh = account.get(name)
        if isinstance(refresh, Mapping) and refresh.get("status") == "succeeded":
            attempted = refresh.get("last_attempted_at")
            if isinstance(attempted, int | float):
                times.append(int(attempted))
    return max(times) if times else None


def holder_id(account: Mapping[str, Any]) -> str | None:
    """The account holder's ``cus_…`` or ``acct_…`` id, whatever the holder ``type`` says."""
    holder = account.get("account_holder")
    if not isinstance(holder, Mapping):
        return None
    value = holder.get("customer") or holder.get("account")
    return value if isinstance(value, str) else None


def _created(account: Mapping[str, Any]) -> int:
    created = account.get("created")
    if not isinstance(created, int | float):
        raise _Missing("created")
    return int(created)


def _status_ok(rule: Rule, account: Mapping[str, Any], now: float) -> bool:
    if rule.status is None:
        return True
    status = account.get("status")
    if not isinstance(status, str):
        raise _Missing("status")
    return status in rule.status


def _age_ok(rule: Rule, account: Mapping[str, Any], now: float) -> bool:
    days = rule.created_older_than_days
    return days is None or _created(account) <= now - days * DAY


def _refresh_ok(rule: Rule, account: Mapping[str, Any], now: float) -> bool:
    days = rule.no_successful_refresh_days
    if days is None:
        return True
    cutoff = now - days * DAY
    if _created(account) > cutoff:
        return False
    if not any(name in account for name in REFRESH_FIELDS):
        raise _Missing("refresh objects")
    last = last_successful_refresh(account)
    return last is None or last < cutoff


def _holder_ok(rule: Rule, account: Mapping[str, Any], now: float) -> bool:
    if rule.customers is None:
        return True
    if "account_holder" not in account:
        raise _Missing("account_holder")
    return holder_id(account) in rule.customers


_CRITERIA = (_status_ok, _age_ok, _refresh_ok, _holder_ok)


def rule_matches(rule: Rule, account: Mapping[str, Any], now: float) -> bool:
    """Whether every criterion of ``rule`` holds; raises :class:`_Missing` for absent fields."""
    return all(check(rule, account, now) for check in _CRITERIA)


@dataclass
class Selection:
    """What a sweep found: counts, the selected accounts (id, reason), breakdowns and a sample."""

    scanned: int = 0
    selected: list[tuple[str, str]] = field(default_factory=list)  # (account id, reason)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_institution: Counter[str] = field(default_factory=Counter)
    already_disconnected: int = 0
    invalid_id: int = 0
    incomplete: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    #: Selected account id -> the connected account it lives on (absent: the key's own).
    stripe_accounts: dict[str, str] = field(default_factory=dict)
    by_stripe_account: Counter[str] = field(default_factory=Counter)
    #: Connected accounts that could not be listed -> why.
    unreachable: dict[str, str] = field(default_factory=dict)
    #: For each entry of ``selected``, in the same order: the account's ``status`` as listed
    #: and when its page was read (unix seconds; ``None`` for a file), which its request carries.
    #: Entries are shared per page and status, so a million selected accounts cost a pointer each.
    listed: list[tuple[str | None, int | None]] = field(default_factory=list)
    _listed_shared: dict[tuple[str | None, int | None], tuple[str | None, int | None]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def fraction(self) -> float:
        return len(self.selected) / self.scanned if self.scanned else 0.0

    def add(
        self,
        policy: RetentionPolicy,
        account: Mapping[str, Any],
        now: float,
        stripe_account: str | None = None,
        listed_at: int | None = None,
    ) -> None:
        """Examine one account (listed as ``stripe_account``, or as the key's own account, in a
        page read at ``listed_at``).

        An account listed ``disconnected`` is counted (``already_disconnected``) and never
        selected: a request for it would end ``already_disconnected`` without a call anyway,
        and since ledger requests are kept forever, every run of a policy would add one more
        per disconnected account (about a tenth of a typical listing) for nothing."""
        self.scanned += 1
        account_id = account.get("id")
        if not isinstance(account_id, str) or not ACCOUNT_ID_RE.match(account_id):
            self.invalid_id += 1
            return
        if account.get("status") == "disconnected":
            self.already_disconnected += 1
            return
        rule = self._first_match(policy, account, now)
        if rule is None:
            return
        institution = account.get("institution_name")
        institution = institution if isinstance(institution, str) else "(unknown)"
        self.selected.append((account_id, rule.reason))
        status = account.get("status")
        listed = (status if isinstance(status, str) else None, listed_at)
        self.listed.append(self._listed_shared.setdefault(listed, listed))
        if stripe_account is not None:
            self.stripe_accounts[account_id] = stripe_account
            self.by_stripe_account[stripe_account] += 1
        self.by_reason[rule.reason] += 1
        self.by_institution[institution] += 1
        if len(self.sample) < SAMPLE_SIZE:
            self.sample.append(_sample_row(account_id, institution, rule.reason, account))

    def add_all(
        self,
        policy: RetentionPolicy,
        accounts: Iterable[Mapping[str, Any]],
        now: float,
        stripe_account: str | None = None,
        listed_at: int | None = None,
    ) -> None:
        for account in accounts:
            self.add(policy, account, now, stripe_account, listed_at)

    def _first_match(
        self, policy: RetentionPolicy, account: Mapping[str, Any], now: float
    ) -> Rule | None:
        incomplete = False
        for rule in policy.rules:
            try:
                if rule_matches(rule, account, now):
                    return rule
            except _Missing:
                incomplete = True
        if incomplete:
            self.incomplete += 1
        return None

    def summary(self) -> dict[str, Any]:
        """JSON-able counts and breakdowns (what a sweep run records and ``fcd sweep`` shows)."""
        return {
            "scanned": self.scanned,
            "selected": len(self.selected),
            "fraction": round(self.fraction, 6),
            "by_reason": dict(self.by_reason.most_common()),
            "by_institution": dict(self.by_institution.most_common()),
            "already_disconnected": self.already_disconnected,
            "invalid_id": self.invalid_id,
            "incomplete": self.incomplete,
            "sample": self.sample,
            "by_stripe_account": dict(self.by_stripe_account.most_common()),
            "unreachable_stripe_accounts": dict(self.unreachable),
        }


def _sample_row(
    account_id: str, institution: str, reason: str, account: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "institution": institution,
        "status": account.get("status"),
        "created": account.get("created"),
        "last_successful_refresh": last_successful_refresh(account),
        "reason": reason,
    }


def blast_radius_refusal(policy: RetentionPolicy, selection: Selection) -> str | None:
    """Why the guard refuses this selection, or ``None`` if it is within the policy's limits."""
    selected = len(selection.selected)
    problems = []
    if selected > policy.max_disconnects:
        problems.append(
            f"{selected} accounts selected, max_disconnects is {policy.max_disconnects}"
        )
    if selection.fraction > policy.max_fraction:
        problems.append(
            f"{selection.fraction:.1%} of {selection.scanned} accounts examined selected, "
            f"max_fraction is {policy.max_fraction:.1%}"
        )
    if not problems:
        return None
    return f"policy {policy.name!r} refused: " + "; ".join(problems) + " (--force to override)"
