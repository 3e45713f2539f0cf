"""The chaos harness's invariants, computed from what the run left behind (no process needed).

Inputs: every request's hash and history from the ledger (:class:`RequestFacts`), the audit
files' status-change events, the emulator's request log and accounts, and what the producers
were told (:class:`Accepted`). Each check returns a number that must be 0 (or, for the rate, at
most the limiter's setting); :func:`check_all` puts them in :class:`Invariant` rows.

Redis ``kill -9`` with ``appendfsync everysec`` may drop up to the last second of acknowledged
writes. That is counted, not hidden: requests the producers were told were accepted but that the
restarted Redis lacks are *re-submitted* (as a producer retrying would) and counted in their own
row; an audit event whose ledger record was in that lost second is counted as "lost with
kill -9" only when its time is inside the loss window before the kill, and as a broken
invariant otherwise.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.customer_models import CUSTOMER
from ledger.models import ACCOUNT

#: Seconds before a Redis kill -9 whose acknowledged writes may be lost (everysec fsync runs
#: once a second and may lag by up to another second when the disk is busy).
LOSS_WINDOW_SECONDS = 2.5

#: HTTP statuses (and ``None``: a timeout or connection error) that say "try again".
TRANSIENT_STATUSES = frozenset({None, 409, 429, 500, 502, 503, 504, 424})


@dataclass(frozen=True)
class Accepted:
    """One submission the producer was told was accepted (202, an id)."""

    event_id: str
    kind: str  # "account" | "customer"
    target: str  # fca_… or cus_…
    request_ids: tuple[str, ...]
    expect: str  # "disconnected", "already_disconnected", "not_found", "customer"


@dataclass
class RequestFacts:
    """One request as the ledger holds it at the end."""

    request_id: str
    kind: str
    status: str
    account_id: str | None
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class Invariant:
    name: str
    value: int
    limit: int = 0

    @property
    def ok(self) -> bool:
        return self.value <= self.limit


@dataclass
class Findings:
    """The invariants and the figures that explain them (examples for a broken one)."""

    invariants: list[Invariant] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)

    def add(self, name: str, bad: Sequence[str], limit: int = 0) -> None:
        self.invariants.append(Invariant(name, len(bad), limit))
        if len(bad) > limit:
            self.examples[name] = list(bad[:5])


def parse_ts(value: Any) -> float:
    """An audit record's ``ts`` (ISO 8601, UTC) as unix seconds."""
    text = str(value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def read_audit(paths: Iterable[Path]) -> dict[str, list[dict[str, Any]]]:
    """Status-change events of every kind per request id, from JSON-lines audit files. A line
    cut short by a SIGKILL mid-write is skipped (and would then show as a missing event)."""
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    names = {ACCOUNT.status_changed, CUSTOMER.status_changed}
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") in names and record.get("request_id"):
                events[record["request_id"]].append(record)
    return events


def _change_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (record.get("event"), record.get("from"), record.get("to"), record.get("attempt"))


@dataclass(frozen=True)
class Kill:
    """A worker SIGKILLed by the harness: its pid and when (unix s)."""

    pid: int
    at: float


@dataclass
class AuditComparison:
    """Requests whose audit events and history differ beyond what a fault explains, and the
    explained differences, counted."""

    mismatched: list[str] = field(default_factory=list)
    lost_with_kill9: int = 0  # audit events of writes Redis lost in a kill -9
    died_with_worker: int = 0  # history records committed, their audit line not yet written


def _died_with_worker(record: Mapping[str, Any], kills: Sequence[Kill]) -> bool:
    """A history record written by a worker the harness SIGKILLed, just before the kill: the
    ledger step committed, and the process died before it published the audit line."""
    worker = str(record.get("worker") or "")
    _, _, pid = worker.rpartition(":")
    ts = parse_ts(record.get("ts"))
    return any(str(kill.pid) == pid and kill.at - 2.0 <= ts <= kill.at + 0.5 for kill in kills)


def compare_audit(
    facts: Mapping[str, RequestFacts],
    audit: Mapping[str, list[dict[str, Any]]],
    kill9_times: Sequence[float],
    kills: Sequence[Kill] = (),
) -> AuditComparison:
    """Compare each request's audit events with its history records (see the module docstring
    for the two differences a fault explains: writes Redis lost in a kill -9, and the last record
    of a worker SIGKILLed between its ledger step and the audit line)."""
    result = AuditComparison()
    for request_id in sorted(set(facts) | set(audit)):
        fact = facts.get(request_id)
        kind = CUSTOMER if request_id.startswith("cr_") else ACCOUNT
        history = [] if fact is None else fact.history
        changes = [r for r in history if r.get("event") == kind.status_changed]
        audited = audit.get(request_id, [])
        # History records without their audit line, then audit lines without their record.
        unaudited, died = _unexplained(changes, audited, lambda r: _died_with_worker(r, kills))
        unrecorded, lost = _unexplained(
            audited, changes, lambda r: _in_loss_window(parse_ts(r.get("ts")), kill9_times)
        )
        if unaudited:
            result.mismatched.append(f"{request_id}: {unaudited} history records not audited")
        elif unrecorded:
            result.mismatched.append(f"{request_id}: {unrecorded} audit events not in history")
        else:
            result.died_with_worker += died
            result.lost_with_kill9 += lost
    return result


def _unexplained(
    records: Sequence[Mapping[str, Any]],
    others: Sequence[Mapping[str, Any]],
    explained: Callable[[Mapping[str, Any]], bool],
) -> tuple[int, int]:
    """How many of ``records`` have no counterpart in ``others`` and no explanation, and how
    many have none but are explained."""
    surplus = Counter(_change_key(r) for r in records) - Counter(_change_key(r) for r in others)
    unexplained = explained_count = 0
    for record in reversed(records):  # a fault takes the latest writes
        key = _change_key(record)
        if surplus[key] <= 0:
            continue
        surplus[key] -= 1
        if explained(record):
            explained_count += 1
        else:
            unexplained += 1
    return unexplained, explained_count


def _in_loss_window(ts: float, kill9_times: Sequence[float]) -> bool:
    return any(kill - LOSS_WINDOW_SECONDS <= ts <= kill + 0.5 for kill in kill9_times)


def broken_histories(facts: Mapping[str, RequestFacts]) -> list[str]:
    """Requests whose history breaks their kind's transition table."""
    bad = []
    for fact in facts.values():
        kind = CUSTOMER if fact.kind == "customer" else ACCOUNT
        if not kind.follows_table(fact.history):
            bad.append(f"{fact.request_id}: {[r.get('to') for r in fact.history]}")
    return bad


def transient_failures(facts: Mapping[str, RequestFacts]) -> list[str]:
    """``failed`` requests whose last recorded cause says "try again" (5xx, 429, timeouts)."""
    bad = []
    for fact in facts.values():
        if fact.status != "failed":
            continue
        last: dict[str, Any] = next(
            (r for r in reversed(fact.history) if r.get("to") == "failed"), {}
        )
        status = last.get("http_status")
        if status in TRANSIENT_STATUSES:
            bad.append(f"{fact.request_id}: HTTP {status}: {last.get('message')}")
    return bad


def overlapping_posts(log: Sequence[Mapping[str, Any]], client_timeout: float) -> list[str]:
    """Accounts with two disconnect POSTs in flight at once at the emulator. A POST that hung
    past the client's timeout was given up by the client at ``ts + client_timeout``; a later
    call after that is not an overlap of ours (the emulator still holds the hung one)."""
    posts: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entry in log:
        if entry["method"] == "POST" and str(entry["path"]).endswith("/disconnect"):
            posts[str(entry["account_id"])].append(entry)
    bad = []
    for account, calls in posts.items():
        calls.sort(key=lambda e: e["ts"])
        for earlier, later in itertools.combinations(calls, 2):
            if later["ts"] >= earlier["end_ts"]:
                continue
            given_up = earlier["ts"] + client_timeout * 0.9
            if earlier.get("fault") == "hang" and later["ts"] >= given_up:
                continue
            bad.append(f"{account}: {earlier['request_id']} and {later['request_id']}")
    return bad


def max_in_window(times: Sequence[float], width: float) -> int:
    """The most timestamps in any half-open window ``[t, t + width)`` (``times`` sorted)."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width:
            start += 1
        best = max(best, end - start + 1)
    return best


def not_disconnected(
    accepted: Iterable[Accepted], sweep_accounts: Iterable[str], statuses: Mapping[str, str]
) -> list[str]:
    """Existing accounts that were submitted (directly, through a customer, or by the sweep)
    and are not ``disconnected`` at the emulator."""
    wanted: set[str] = set(sweep_accounts)
    customers: set[str] = set()
    for item in accepted:
        if item.kind == "customer":
            customers.add(item.target)
        elif item.expect != "not_found":
            wanted.add(item.target)
    bad = [f"{a}: {statuses.get(a)}" for a in sorted(wanted) if statuses.get(a) != "disconnected"]
    return bad


def lost_acceptances(accepted: Iterable[Accepted], facts: Mapping[str, RequestFacts]) -> list[str]:
    """Accepted request ids absent from the ledger."""
    return [
        f"{item.event_id}: {request_id}"
        for item in accepted
        for request_id in item.request_ids
        if request_id not in facts
    ]


def not_terminal(facts: Mapping[str, RequestFacts]) -> list[str]:
    bad = []
    for fact in facts.values():
        kind = CUSTOMER if fact.kind == "customer" else ACCOUNT
        if fact.status not in {s.value for s in kind.terminal}:
            bad.append(f"{fact.request_id}: {fact.status}")
    return bad


def handed_back_attempts(
    facts: Mapping[str, RequestFacts], log: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """Attempts the reconciler handed back after their worker was lost: how many had sent their
    disconnect POST (the kill landed after the POST, before the ledger write) and how many had
    not (before the POST), from the emulator's log between the claim and the hand-back."""
    posts: dict[str, list[float]] = defaultdict(list)
    for entry in log:
        if entry["method"] == "POST" and str(entry["path"]).endswith("/disconnect"):
            posts[str(entry["account_id"])].append(float(entry["ts"]))
    after_post = before_post = 0
    for fact in facts.values():
        if fact.kind != "account" or fact.account_id is None:
            continue
        claimed_at: float | None = None
        for record in fact.history:
            if record.get("to") == "in_progress":
                claimed_at = parse_ts(record.get("ts"))
            elif (
                record.get("from") == "in_progress"
                and record.get("to") == "queued"
                and str(record.get("message") or "").startswith("reconciler:")
                and claimed_at is not None
            ):
                handed = parse_ts(record.get("ts"))
                sent = any(claimed_at <= t <= handed for t in posts[fact.account_id])
                after_post += sent
                before_post += not sent
    return before_post, after_post
