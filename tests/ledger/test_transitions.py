"""The transition table, and a property test that random event sequences leave legal histories."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ledger.audit import AuditTrail
from ledger.models import (
    ACCOUNT,
    TERMINAL_STATUSES,
    TRANSITIONS,
    IllegalTransition,
    RequestSource,
    RequestStatus,
    check_transition,
)
from ledger.store import Ledger


def test_every_status_has_a_row() -> None:
    """The table covers every status, and terminal ones only lead back via an operator requeue."""
    assert set(TRANSITIONS) == {None, *RequestStatus}
    for status in TERMINAL_STATUSES:
        allowed = TRANSITIONS[status]
        assert allowed <= {RequestStatus.QUEUED}
        assert (status == RequestStatus.FAILED) == bool(allowed)


def test_check_transition_rejects_skipping_in_progress() -> None:
    """queued -> disconnected is illegal; queued -> in_progress is legal."""
    check_transition("dr_x", RequestStatus.QUEUED, RequestStatus.IN_PROGRESS)
    with pytest.raises(IllegalTransition):
        check_transition("dr_x", RequestStatus.QUEUED, RequestStatus.DISCONNECTED)


async def _drive(redis_url: str, events: list[RequestStatus]) -> None:
    redis = Redis.from_url(redis_url)
    prefix = f"p{uuid.uuid4().hex[:8]}:"
    ledger = Ledger(redis, queue_name=prefix + "q", audit=AuditTrail(), prefix=prefix)
    try:
        submitted = await ledger.submit("fca_prop", source=RequestSource.OPERATOR)
        for to in events:
            request = await ledger.get(submitted.request_id)
            legal = to in TRANSITIONS[request.status]
            try:
                await ledger.transition(
                    request, to, enqueue_in=0.0 if to == RequestStatus.QUEUED else None
                )
            except IllegalTransition:
                assert not legal
            else:
                assert legal
        history = await ledger.history(submitted.request_id)
        assert ACCOUNT.follows_table(history), history
        final = await ledger.get(submitted.request_id)
        assert history[-1]["to"] == final.status.value
    finally:
        await redis.aclose()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(st.sampled_from(list(RequestStatus)), max_size=12))
def test_random_event_sequences_leave_legal_histories(
    redis_url: str, events: list[RequestStatus]
) -> None:
    """Random attempted transitions against real Redis: illegal ones raise, history stays legal."""
    asyncio.run(_drive(redis_url, events))


def test_follows_table_rejects_broken_histories() -> None:
    """Negative control for the check every history test relies on: a missing creation record,
    a gap, an illegal move and an unknown status are all refused; a legal life is accepted."""
    event = ACCOUNT.status_changed

    def life(*moves: tuple[str | None, str]) -> list[dict[str, object]]:
        return [{"event": event, "from": a, "to": b} for a, b in moves]

    assert ACCOUNT.follows_table(life((None, "queued"), ("queued", "in_progress")))
    assert not ACCOUNT.follows_table(life(("queued", "in_progress")))
    assert not ACCOUNT.follows_table(life((None, "queued"), ("in_progress", "disconnected")))
    assert not ACCOUNT.follows_table(life((None, "queued"), ("queued", "disconnected")))
    assert not ACCOUNT.follows_table(life((None, "queued"), ("queued", "vanished")))
