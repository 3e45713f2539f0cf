"""The transition table, and a property test that random event sequences leave legal histories."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from ledger.audit import STATUS_CHANGED, AuditTrail
from ledger.models import (
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


def _is_legal_history(history: list[dict[str, object]]) -> bool:
    changes = [h for h in history if h["event"] == STATUS_CHANGED]
    if not changes or changes[0]["from"] is not None or changes[0]["to"] != "queued":
        return False
    for previous, current in itertools.pairwise(changes):
        if current["from"] != previous["to"]:
            return False
        to = RequestStatus(str(current["to"]))
        if to not in TRANSITIONS[RequestStatus(str(current["from"]))]:
            return False
    return True


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
        assert _is_legal_history(history), history
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
