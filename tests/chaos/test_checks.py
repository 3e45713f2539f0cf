"""Unit tests of the chaos harness's checks: each invariant flags what it must and only that."""

from __future__ import annotations

from typing import Any

from devenv.chaos_checks import Kill, RequestFacts, compare_audit, max_in_window, overlapping_posts

CHANGED = "disconnect.status_changed"


def post(request_id: str, ts: float, end: float, fault: str | None = None) -> dict[str, Any]:
    return {
        "method": "POST", "path": "/v1/financial_connections/accounts/fca_1/disconnect",
        "account_id": "fca_1", "ts": ts, "end_ts": end, "fault": fault, "request_id": request_id,
    }  # fmt: skip


def test_overlapping_posts_flags_ours_but_not_one_given_up_after_a_hang() -> None:
    """A second POST while the first is in flight is an overlap; after a hung first call that
    the client gave up at its timeout it is not (the emulator still holds the hung one)."""
    assert overlapping_posts([post("a", 0.0, 1.0), post("b", 0.5, 0.6)], client_timeout=2.0)
    hung = [post("a", 0.0, 4.0, fault="hang"), post("b", 2.5, 2.6)]
    assert overlapping_posts(hung, client_timeout=2.0) == []
    early = [post("a", 0.0, 4.0, fault="hang"), post("b", 0.5, 0.6)]
    assert overlapping_posts(early, client_timeout=2.0)
    assert overlapping_posts([post("a", 0.0, 1.0), post("b", 1.0, 1.2)], client_timeout=2.0) == []


def record(to: str, frm: str | None, ts: str, worker: str = "vm:42") -> dict[str, Any]:
    return {"event": CHANGED, "from": frm, "to": to, "attempt": 1, "ts": ts, "worker": worker}


def test_compare_audit_explains_only_what_a_fault_explains() -> None:
    """A history record without its audit line is explained only when written by a worker the
    harness SIGKILLed just then; an audit line without its record only inside a kill -9's loss
    window; anything else is a mismatch."""
    created = record("queued", None, "2026-01-01T00:00:00Z")
    claimed = record("in_progress", "queued", "2026-01-01T00:00:10Z")
    facts = {"dr_1": RequestFacts("dr_1", "account", "in_progress", "fca_1", [created, claimed])}
    kill_at = 1767225610.5  # 2026-01-01T00:00:10.5Z
    died = compare_audit(facts, {"dr_1": [created]}, [], [Kill(42, kill_at)])
    assert died.mismatched == [] and died.died_with_worker == 1
    unexplained = compare_audit(facts, {"dr_1": [created]}, [], [Kill(7, kill_at)])
    assert unexplained.mismatched and unexplained.died_with_worker == 0
    only_created = {"dr_1": RequestFacts("dr_1", "account", "queued", "fca_1", [created])}
    lost = compare_audit(only_created, {"dr_1": [created, claimed]}, [kill_at], [])
    assert lost.mismatched == [] and lost.lost_with_kill9 == 1
    assert compare_audit(only_created, {"dr_1": [created, claimed]}, [kill_at + 60], []).mismatched


def test_max_in_window_counts_a_half_open_second() -> None:
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
