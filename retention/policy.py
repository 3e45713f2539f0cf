"""Retention policies: which linked accounts the company no longer needs, read from a TOML file.

A policy (``[policies.<name>]``) has a source (Stripe's list endpoint, or a file of accounts), the
Stripe accounts to list (``stripe_accounts``: an unfiltered list covers the key's own account
only, so connected accounts are named, ``["acct_…"]``, or ``"all"`` for every account
``GET /v1/accounts`` lists; ``include_platform = false`` leaves the key's own account out), a
blast-radius guard (``max_disconnects`` and ``max_fraction`` of the accounts examined), an
optional ``schedule`` (cron; see :mod:`retention.schedule`) whose runs are dry runs unless
``scheduled_apply = true`` (so a copied example never arms a nightly apply), and one or more rules
(``[[policies.<name>.rules]]``). An account is selected by the first rule it matches; the rule's
``reason`` is recorded on its request. Within a rule every criterion given must hold:

- ``status``: the account's status is one of these strings (any value Stripe sends is accepted;
  an unknown one simply matches nothing unless listed);
- ``no_successful_refresh_days``: no balance, ownership or transaction refresh with status
  ``succeeded`` was attempted within that many days, and the account is at least that old
  (an account linked yesterday has not gone 90 days without a refresh);
- ``created_older_than_days``: ``created`` is older than that many days;
- ``customers`` / ``customers_file``: the account holder (``cus_…`` or ``acct_…``) is listed
  (the file: one id per line, ``#`` comments, or a CSV with a ``customer`` column).

A rule with no criterion would select every account: it must say ``select_all = true``.
Accounts already ``disconnected`` are never selected. See
``deploy/retention_policies.example.toml``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from retention.schedule import CronFields, parse_cron

POLICY_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
CONNECTED_ACCOUNT_RE = re.compile(r"^acct_[A-Za-z0-9]{1,250}$")
HOLDER_ID_RE = re.compile(r"^(?:cus|acct)_[A-Za-z0-9]{1,250}$")


class PolicyError(ValueError):
    """The policy file is missing, malformed, or names something that does not exist."""


class Rule(BaseModel):
    """One way a policy selects accounts; every criterion given must hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    status: tuple[str, ...] | None = None
    no_successful_refresh_days: float | None = Field(default=None, gt=0)
    created_older_than_days: float | None = Field(default=None, gt=0)
    customers: frozenset[str] | None = None
    customers_file: Path | None = None
    select_all: bool = False

    @model_validator(mode="after")
    def _has_a_criterion(self) -> Rule:
        criteria = (
            self.status,
            self.no_successful_refresh_days,
            self.created_older_than_days,
            self.customers,
        )
        if all(c is None for c in criteria) and not self.select_all:
            raise ValueError("a rule without criteria selects everything: set select_all = true")
        bad = sorted(c for c in self.customers or () if not HOLDER_ID_RE.match(c))
        if bad:
            raise ValueError(f"not a customer or account id: {bad[0]!r}")
        return self


class RetentionPolicy(BaseModel):
    """A named retention policy: source, guard, schedule and rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    source: Literal["stripe", "file"] = "stripe"
    file: Path | None = None
    schedule: str | None = None
    #: A scheduled run submits only when this is true; otherwise it is a dry run (a report).
    scheduled_apply: bool = False
    max_disconnects: int = Field(ge=0)
    max_fraction: float = Field(gt=0, le=1)
    rules: tuple[Rule, ...] = Field(min_length=1)
    #: Connected accounts to sweep too (each listed with its ``Stripe-Account``), or ``"all"``.
    stripe_accounts: Literal["all"] | tuple[str, ...] | None = None
    #: Whether the key's own (platform) accounts are swept.
    include_platform: bool = True

    @model_validator(mode="after")
    def _check(self) -> RetentionPolicy:
        if not POLICY_NAME_RE.match(self.name):
            raise ValueError(f"policy name {self.name!r} must match {POLICY_NAME_RE.pattern}")
        if self.source == "file" and self.file is None:
            raise ValueError("source = 'file' needs file = '<path>'")
        if self.schedule is not None:
            parse_cron(self.schedule)
        named = self.stripe_accounts if isinstance(self.stripe_accounts, tuple) else ()
        bad = [a for a in named if not CONNECTED_ACCOUNT_RE.match(a)]
        if bad:
            raise ValueError(f"stripe_accounts: not a connected account id: {bad[0]!r}")
        if self.source == "file" and (
            self.stripe_accounts is not None or not self.include_platform
        ):
            raise ValueError("stripe_accounts and include_platform apply to source = 'stripe'")
        if not self.include_platform and not self.stripe_accounts:
            raise ValueError("include_platform = false needs stripe_accounts")
        return self

    @property
    def cron_fields(self) -> CronFields | None:
        return None if self.schedule is None else parse_cron(self.schedule)

    @property
    def digest(self) -> str:
        """A fingerprint of the whole definition: a sweep run records it, and a worker refuses
        to run a sweep whose policy differs from the one the operator looked at."""
        data = self.model_dump(mode="json", exclude={"file"})
        defaults = (
            ("stripe_accounts", None),
            ("include_platform", True),
            ("scheduled_apply", False),
        )
        for name, default in defaults:
            if data[name] == default:
                del data[name]  # a policy written before these fields keeps its digest
        for rule in data["rules"]:
            rule.pop("customers_file", None)  # where the list lives may differ; its ids may not
            rule["customers"] = sorted(rule["customers"]) if rule["customers"] else None
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_policies(path: Path) -> dict[str, RetentionPolicy]:
    """Every policy in the TOML file at ``path``; raise :class:`PolicyError` naming the problem.

    Relative paths in the file (``file``, ``customers_file``) are relative to the file itself;
    customer files are read now, so a policy in hand is complete.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    tables = data.get("policies")
    if not isinstance(tables, dict) or not tables:
        raise PolicyError(f"{path}: no [policies.<name>] tables")
    policies = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise PolicyError(f"{path}: policies.{name} is not a table")
        try:
            policies[name] = _build(name, table, path.parent)
        except (ValidationError, ValueError, OSError) as exc:
            raise PolicyError(f"{path}: policy {name!r}: {exc}") from exc
    return policies


def get_policy(path: Path | None, name: str) -> RetentionPolicy:
    """One policy by name from the file at ``path`` (``FCD_RETENTION_POLICIES``)."""
    if path is None:
        raise PolicyError("no policy file: set FCD_RETENTION_POLICIES (or pass --policies)")
    policies = load_policies(path)
    if name not in policies:
        raise PolicyError(f"{path}: no policy {name!r} (have: {', '.join(sorted(policies))})")
    return policies[name]


def _build(name: str, table: dict[str, Any], base: Path) -> RetentionPolicy:
    rules = []
    for raw in table.get("rules", []):
        rule = dict(raw)
        if rule.get("customers_file"):
            listed = read_holder_ids(base / rule["customers_file"])
            rule["customers"] = frozenset(rule.get("customers", ())) | listed
        rules.append(rule)
    fields = {**table, "name": name, "rules": rules}
    if fields.get("file"):
        fields["file"] = base / fields["file"]
    return RetentionPolicy.model_validate(fields)


def read_holder_ids(path: Path) -> frozenset[str]:
    """Account-holder ids from a file exported elsewhere: one per line or CSV ``customer``."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    rows = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if rows and ("," in rows[0] or rows[0] == "customer"):
        reader = csv.DictReader(rows)
        if reader.fieldnames is None or "customer" not in reader.fieldnames:
            raise ValueError(f"{path}: CSV without a 'customer' column")
        rows = [(row.get("customer") or "").strip() for row in reader]
    bad = [(n, r) for n, r in enumerate(rows, start=1) if not HOLDER_ID_RE.match(r)]
    if bad:
        raise ValueError(f"{path}: entry {bad[0][0]} {bad[0][1]!r} is not a cus_/acct_ id")
    return frozenset(rows)


PolicySource = Literal["stripe", "file"]
