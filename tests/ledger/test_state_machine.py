"""Stateful property test over both kinds of request (accounts and customer-level parents).

Hypothesis drives random submits, claims (through the worker's own claim helper), outcomes,
hand-backs, crashes (a claim never followed up), lost arq jobs and reconciler runs against a real
Redis. After every step every history is legal for its kind; at the end, once the reconciler has
run and workers finish what it gave back, every request is terminal.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from ledger.audit import AuditTrail, TransitionDetails
from ledger.customer_models import CUSTOMER, CustomerRequest, CustomerStatus
from ledger.customers import CustomerLedger
from ledger.jobs import ARQ_JOB_KEY_PREFIX
from ledger.kinds import StaleTransition
from ledger.machine import StateStore
from ledger.models import ACCOUNT, RequestSource, RequestStatus
from ledger.reconcile import reconcile
from ledger.store import Ledger
from worker.claims import claim, give_back

ACCOUNT_OUTCOMES = [
    RequestStatus.DISCONNECTED,
    RequestStatus.ALREADY_DISCONNECTED,
    RequestStatus.NOT_FOUND,
    RequestStatus.FAILED,
    RequestStatus.RETRY_SCHEDULED,
]
CUSTOMER_OUTCOMES = [CustomerStatus.LISTED, CustomerStatus.FAILED, CustomerStatus.RETRY_SCHEDULED]


class LedgerMachine(RuleBasedStateMachine):
    """One ledger namespace per example; see the module docstring."""

    redis_url = ""
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(self.redis_url)
        prefix = f"sm{uuid.uuid4().hex[:8]}:"
        audit = AuditTrail()
        self.ledger = Ledger(self.redis, queue_name=prefix + "q", audit=audit, prefix=prefix)
        self.customers = CustomerLedger(self.ledger, audit)
        # request id -> the claimed snapshots "workers" hold (two when arq re-ran the job of a
        # worker that was only frozen: the older claim must then never move the request)
        self.held: dict[str, list[Any]] = {}
        self.known: set[tuple[str, str]] = set()  # (kind name, request id)
        self.counter = 0

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def store(self, kind_name: str) -> StateStore[Any, Any]:
        return self.ledger if kind_name == "account" else self.customers

    # -- rules --------------------------------------------------------------------------------

    @rule(target=requests, account=st.integers(0, 4))
    def submit_account(self, account: int) -> tuple[str, str]:
        submission = self.run(
            self.ledger.submit(f"fca_sm{account}", source=RequestSource.OPERATOR, reason="r")
        )
        self.known.add(("account", submission.request_id))
        return ("account", submission.request_id)

    @rule(target=requests)
    def submit_customer(self) -> tuple[str, str]:
        self.counter += 1
        now = time.time()
        parent = CustomerRequest(
            request_id=f"cr_{uuid.uuid4().hex[:26]}",
            customer_id=f"cus_sm{self.counter}",
            source=RequestSource.DELETION_EVENT,
            reference=f"svc:e{self.counter}",
            reason="r",
            status=CustomerStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        key = f"{self.ledger.prefix}intake:svc:e{self.counter}"
        self.run(self.customers.create(parent, event_key=key, digest="d", result={}))
        self.known.add(("customer", parent.request_id))
        return ("customer", parent.request_id)

    @rule(ref=requests)
    def claim_it(self, ref: tuple[str, str]) -> None:
        """A worker runs the request's current job (claims only if it is waiting, or resumes it
        if it is running under that job: arq re-ran the job of a worker it took for dead)."""
        store = self.store(ref[0])
        current = self.run(store.get(ref[1]))
        if current.job_id is None:
            return
        claimed = self.run(claim(store, current, current.job_id, resume_note="resumed"))
        if claimed is not None:
            self.held.setdefault(ref[1], []).append(claimed)

    @rule(ref=requests, data=st.data())
    def rerun_job(self, ref: tuple[str, str], data: st.DataObject) -> None:
        """arq runs the job of a running request again, as if its worker were dead while it was
        only frozen; the frozen worker then wakes up and records its outcome: refused, because
        its claim is no longer the request's (same status, same job id: only the claim token
        tells them apart)."""
        holders = self.held.get(ref[1])
        if not holders:
            return
        frozen = holders[-1]
        before = len(holders)
        self.claim_it(ref)
        if len(holders) == before:
            return  # the request had moved on: nothing was re-run
        store = self.store(ref[0])
        outcomes = ACCOUNT_OUTCOMES if ref[0] == "account" else CUSTOMER_OUTCOMES
        late = data.draw(st.sampled_from([o for o in outcomes if o in store.kind.terminal]))
        with pytest.raises(StaleTransition):
            self.run(store.transition(frozen, late))
        holders.remove(frozen)

    @rule(ref=requests, data=st.data())
    def finish_it(self, ref: tuple[str, str], data: st.DataObject) -> None:
        """A holding worker records an outcome, or hands the request back."""
        holders = self.held.get(ref[1])
        if not holders:
            return
        held = holders.pop(data.draw(st.integers(0, len(holders) - 1)))
        store = self.store(ref[0])
        outcomes = ACCOUNT_OUTCOMES if ref[0] == "account" else CUSTOMER_OUTCOMES
        to = data.draw(st.sampled_from([*outcomes, "give_back"]))
        latest = self.run(store.get(ref[1])).claim
        try:
            if to == "give_back":
                if self.run(give_back(store, held, TransitionDetails(message="shutdown"))) is None:
                    raise StaleTransition(ref[1], "held", None)
            else:
                retry = to in (RequestStatus.RETRY_SCHEDULED, CustomerStatus.RETRY_SCHEDULED)
                enqueue = 0.0 if retry else None
                self.run(store.transition(held, to, enqueue_in=enqueue))
            assert held.claim == latest, "a worker holding an outdated claim moved the request"
        except StaleTransition:
            # Only the reconciler can have moved it meanwhile; the ledger must say so.
            now = self.run(store.get(ref[1]))
            assert (now.status, now.job_id, now.claim) != (held.status, held.job_id, held.claim)

    @rule(ref=requests)
    def crash(self, ref: tuple[str, str]) -> None:
        """The holding workers die: their claims are never followed up."""
        self.held.pop(ref[1], None)

    @rule(ref=requests)
    def lose_job(self, ref: tuple[str, str]) -> None:
        """arq forgets the request's job (expired, or lost on a fail-over)."""
        current = self.run(self.store(ref[0]).get(ref[1]))
        if current.job_id:
            self.run(self.redis.delete(ARQ_JOB_KEY_PREFIX + current.job_id))

    @rule()
    def reconcile_now(self) -> None:
        """A reconciler pass with a lease of zero: every running request counts as lost."""
        self.run(reconcile(self.ledger, lease_seconds=0.0))

    # -- checks -------------------------------------------------------------------------------

    @invariant()
    def every_history_is_legal(self) -> None:
        for kind_name, request_id in self.known:
            kind = ACCOUNT if kind_name == "account" else CUSTOMER
            history = self.run(self.store(kind_name).history(request_id))
            assert kind.follows_table(history), history

    def teardown(self) -> None:
        try:
            self.run(self._drain())
        finally:
            self.run(self.redis.aclose())
            self.loop.close()

    async def _drain(self) -> None:
        """Crash every holder, reconcile, and let workers finish whatever is left: everything
        must end terminal (nothing is lost, nothing is stuck)."""
        self.held.clear()
        for _ in range(10):
            await reconcile(self.ledger, lease_seconds=0.0)
            pending = False
            for kind_name, request_id in sorted(self.known):
                store = self.store(kind_name)
                current = await store.get(request_id)
                if current.status in store.kind.terminal:
                    continue
                pending = True
                if current.job_id is None:
                    continue
                claimed = await claim(store, current, current.job_id, resume_note="resumed")
                if claimed is not None:
                    done = RequestStatus.DISCONNECTED if kind_name == "account" else None
                    await store.transition(claimed, done or CustomerStatus.LISTED)
            if not pending:
                break
        for kind_name, request_id in self.known:
            store = self.store(kind_name)
            current = await store.get(request_id)
            assert current.status in store.kind.terminal, (kind_name, current)
            assert store.kind.follows_table(await store.history(request_id))


def test_random_lives_of_both_kinds_stay_legal_and_end_terminal(redis_url: str) -> None:
    """Random interleavings of submits, claims, outcomes, crashes, lost jobs and reconciler
    passes over accounts and customer parents: histories stay legal, and all end terminal."""
    LedgerMachine.redis_url = redis_url
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
