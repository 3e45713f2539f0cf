"""POST/GET /v1: accepted requests land in the ledger once per event id; bad input changes nothing."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from ledger.audit import TransitionDetails
from ledger.event_ids import EventRegistry, body_hash
from ledger.models import RequestSource, RequestStatus
from ledger.store import Ledger
from producer.http.app import create_app
from producer.intake import parse_body
from tests.producer.http.conftest import BILLING, CRM, TOKENS, account_body, make_settings

Client = TestClient[Any, Any]


async def _queued(ledger: Ledger) -> int:
    return (await ledger.count_by_status())[RequestStatus.QUEUED]


async def test_account_request_is_accepted_with_id_and_status_url(
    intake: Client, ledger: Ledger
) -> None:
    """A valid account request answers 202 with its dr_ id and a status URL that resolves."""
    resp = await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    assert resp.status == 202
    body = await resp.json()
    request_id = body["request_ids"][0]
    assert (
        body["kind"] == "account" and body["status_url"] == f"/v1/disconnect-requests/{request_id}"
    )
    assert resp.headers["Location"] == body["status_url"]
    status = await (await intake.get(body["status_url"], headers=BILLING)).json()
    assert status["status"] == "queued" and status["source"] == "deletion_event"
    assert status["reference"] == "billing:evt_a"
    assert status["history"][0]["event"] == "disconnect.status_changed"
    assert await _queued(ledger) == 1


async def test_same_event_and_body_answers_the_same_result(intake: Client, ledger: Ledger) -> None:
    """Replaying an event id with the same body (keys in any order) answers the stored result."""
    first = await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    reordered = dict(reversed(list(account_body().items())))
    again = await intake.post("/v1/disconnect-requests", json=reordered, headers=BILLING)
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    assert await _queued(ledger) == 1
    assert len(await ledger.history((await first.json())["request_ids"][0])) == 1


async def test_same_event_with_another_body_is_409_and_writes_nothing(
    intake: Client, ledger: Ledger
) -> None:
    """A different body under a used event id is 409 event_id_conflict; the ledger is unchanged."""
    await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    other = account_body(account_id="fca_2")
    resp = await intake.post("/v1/disconnect-requests", json=other, headers=BILLING)
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "event_id_conflict" and error["field"] == "event_id"
    assert await ledger.requests_for_account("fca_2") == []
    assert await _queued(ledger) == 1


async def test_event_ids_are_scoped_per_service(intake: Client, ledger: Ledger) -> None:
    """Two services may use the same event id for different bodies."""
    a = await intake.post("/v1/disconnect-requests", json=account_body("fca_1"), headers=BILLING)
    b = await intake.post("/v1/disconnect-requests", json=account_body("fca_2"), headers=CRM)
    assert (a.status, b.status) == (202, 202)
    request = await ledger.resolve("fca_2")
    assert request.reference == "crm:evt_a"


async def test_concurrent_duplicates_make_one_request(intake: Client, ledger: Ledger) -> None:
    """Twenty simultaneous deliveries of one event all answer the same single request."""
    sends = [
        intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
        for _ in range(20)
    ]
    bodies = [await r.json() for r in await asyncio.gather(*sends)]
    assert len({b["request_ids"][0] for b in bodies}) == 1
    assert await _queued(ledger) == 1


async def test_a_pending_claim_is_completed_by_the_retry(
    intake: Client, ledger: Ledger, namespace: str
) -> None:
    """If a process died after claiming an event id, the caller's retry still gets a request."""
    events = EventRegistry(ledger.redis, f"{namespace}fcd:")
    digest = body_hash(parse_body(account_body()).normalised())
    await events.claim("billing", "evt_a", digest)
    resp = await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    assert resp.status == 202 and "Idempotent-Replayed" not in resp.headers
    assert await _queued(ledger) == 1


async def test_crash_after_submit_then_request_finished_is_not_submitted_twice(
    intake: Client, ledger: Ledger, namespace: str
) -> None:
    """A process died after submitting but before answering, and the request has since ended:
    the caller's retry is answered with that request, no second request is created."""
    events = EventRegistry(ledger.redis, f"{namespace}fcd:")
    body = parse_body(account_body())
    assert body.account_id is not None
    await events.claim("billing", body.event_id, body_hash(body.normalised()))
    first = await ledger.submit(
        body.account_id, source=RequestSource.DELETION_EVENT, reference=f"billing:{body.event_id}"
    )
    request = await ledger.get(first.request_id)
    await ledger.transition(request, RequestStatus.CANCELLED)
    resp = await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    assert resp.status == 202
    assert (await resp.json())["request_ids"] == [first.request_id]
    assert await ledger.requests_for_account(body.account_id) == [first.request_id]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope-nope-nope-nope"}, {"Authorization": "Basic abc"}],
    ids=["none", "unknown", "not-bearer"],
)
async def test_requests_without_a_known_token_are_401(
    intake: Client, ledger: Ledger, headers: dict[str, str]
) -> None:
    """No token, an unknown token or another scheme: 401 with a JSON error, nothing written."""
    resp = await intake.post("/v1/disconnect-requests", json=account_body(), headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    assert await _queued(ledger) == 0


BAD_BODIES = [
    ({"event_id": "e", "reason": "r"}, 422, "account_id"),
    ({**account_body(), "customer_id": "cus_1"}, 422, "account_id"),
    (account_body(account_id="acct_1"), 422, "account_id"),
    (account_body(stripe_account="fca_x"), 422, "stripe_account"),
    ({"account_id": "fca_1", "reason": "r"}, 422, "event_id"),
    (account_body(event_id="has space"), 422, "event_id"),
    (account_body(reason=""), 422, "reason"),
    (account_body(colour="red"), 422, "colour"),
    (["fca_1"], 422, None),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
async def test_invalid_bodies_are_422_naming_the_field(
    intake: Client, ledger: Ledger, body: Any, status: int, field: str | None
) -> None:
    """Each invalid body gets a JSON error naming the field, and nothing is written."""
    resp = await intake.post("/v1/disconnect-requests", json=body, headers=BILLING)
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["field"] == field and error["message"]
    assert await _queued(ledger) == 0


async def test_malformed_and_oversized_bodies(intake: Client, ledger: Ledger) -> None:
    """Not JSON: 400; not application/json: 415; over 1 MiB: 413; always the JSON error shape."""
    json_type = {**BILLING, "Content-Type": "application/json"}
    cases = [
        (b"{not json", json_type, 400),
        (b"\xff\xfe", json_type, 400),
        (b"account_id=fca_1", {**BILLING, "Content-Type": "text/plain"}, 415),
        (b"{" + b" " * (1024 * 1024 + 10) + b"}", json_type, 413),
    ]
    for data, headers, status in cases:
        resp = await intake.post("/v1/disconnect-requests", data=io.BytesIO(data), headers=headers)
        assert resp.status == status, data[:20]
        assert set((await resp.json())["error"]) == {"code", "message", "field"}
    assert await _queued(ledger) == 0


async def test_batch_accepts_valid_items_and_rejects_others(intake: Client, ledger: Ledger) -> None:
    """A batch answers one result per item; valid items are accepted despite invalid ones."""
    items = [
        account_body("fca_1", "e1"),
        account_body("bad", "e2"),
        account_body("fca_3", "e3"),
        account_body("fca_9", "e1"),
        {"customer_id": "cus_1", "event_id": "e4", "reason": "gone"},
    ]
    resp = await intake.post(
        "/v1/disconnect-requests/batch", json={"items": items}, headers=BILLING
    )
    assert resp.status == 200
    body = await resp.json()
    assert [r["status"] for r in body["results"]] == [202, 422, 202, 409, 202]
    assert (body["accepted"], body["rejected"]) == (3, 2)
    assert body["results"][1]["error"]["field"] == "account_id"
    assert body["results"][4]["result"]["kind"] == "customer"
    assert await _queued(ledger) == 2


async def test_batch_limits(intake: Client, ledger: Ledger) -> None:
    """More than 1,000 items, no items or no list: 422 on the items field, nothing written."""
    many = [account_body(f"fca_{i}", f"e{i}") for i in range(1001)]
    payloads: list[Any] = [{"items": many}, {"items": []}, {"things": []}, []]
    for payload in payloads:
        resp = await intake.post("/v1/disconnect-requests/batch", json=payload, headers=BILLING)
        assert resp.status == 422
        assert (await resp.json())["error"]["field"] == "items"
    assert await _queued(ledger) == 0


async def test_reads_of_unknown_things_are_json_404(intake: Client) -> None:
    """Unknown request ids, malformed account ids and unknown routes answer a JSON 404."""
    for path in (
        "/v1/disconnect-requests/dr_00000000000000000000000000",
        "/v1/disconnect-requests/whatever",
        "/v1/accounts/not-an-account/history",
        "/v1/nothing-here",
    ):
        resp = await intake.get(path, headers=BILLING)
        assert resp.status == 404, path
        assert (await resp.json())["error"]["code"] == "not_found"
    resp = await intake.delete("/v1/disconnect-requests", headers=BILLING)
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_account_history_lists_requests_and_records(intake: Client) -> None:
    """GET /v1/accounts/{id}/history shows every request for the account and its records."""
    first = await intake.post("/v1/disconnect-requests", json=account_body(), headers=BILLING)
    await intake.post("/v1/disconnect-requests", json=account_body(event_id="e2"), headers=CRM)
    resp = await intake.get("/v1/accounts/fca_1/history", headers=BILLING)
    body = await resp.json()
    assert body["request_ids"] == (await first.json())["request_ids"]
    assert [r["event"] for r in body["history"]] == [
        "disconnect.status_changed",
        "disconnect.merged",
    ]


async def test_a_replayed_event_is_never_answered_with_a_request_cancelled_under_it(
    intake: Client, ledger: Ledger
) -> None:
    """Issue 16.1: an event merged into a sweep's request that an operator then force-cancelled
    is not answered with that cancelled request on replay: the deletion is submitted again and
    the caller gets the request that now serves it."""
    sweep = await ledger.submit("fca_mrg", source=RequestSource.RETENTION_POLICY, reason="stale")
    first = await intake.post(
        "/v1/disconnect-requests", json=account_body("fca_mrg", "evt_m"), headers=BILLING
    )
    assert first.status == 202
    assert (await first.json())["request_ids"] == [sweep.request_id]
    forced = TransitionDetails(operator="oncall", message="cancelled: misconfigured")  # --force
    await ledger.transition(await ledger.get(sweep.request_id), RequestStatus.CANCELLED, forced)
    replay = await intake.post(
        "/v1/disconnect-requests", json=account_body("fca_mrg", "evt_m"), headers=BILLING
    )
    assert replay.status == 202
    (new_id,) = (await replay.json())["request_ids"]
    assert new_id != sweep.request_id
    serving = await ledger.get(new_id)
    assert serving.status == RequestStatus.QUEUED and serving.reference == "billing:evt_m"
    again = await intake.post(
        "/v1/disconnect-requests", json=account_body("fca_mrg", "evt_m"), headers=BILLING
    )
    assert (await again.json())["request_ids"] == [new_id]
    assert again.headers.get("Idempotent-Replayed") == "true"


async def test_a_service_reads_only_its_own_requests_unless_granted_read_all(
    redis_url: str, namespace: str
) -> None:
    """Issue 16 (read scoping): crm cannot read billing's request or see it in the account's
    history (404, as for an unknown id); a token granted ``read:all`` reads both."""
    tokens = {**TOKENS, "ops": {"token": "tok_ops_0123456789abcdef", "scopes": ["read:all"]}}
    settings = make_settings(redis_url, namespace, api_tokens=SecretStr(json.dumps(tokens)))
    ops = {"Authorization": "Bearer tok_ops_0123456789abcdef"}
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1")) as client:
        posted = await client.post(
            "/v1/disconnect-requests", json=account_body("fca_own", "evt_o"), headers=BILLING
        )
        (request_id,) = (await posted.json())["request_ids"]
        path = f"/v1/disconnect-requests/{request_id}"
        assert (await client.get(path, headers=BILLING)).status == 200
        assert (await client.get(path, headers=CRM)).status == 404
        assert (await client.get(path, headers=ops)).status == 200
        history = "/v1/accounts/fca_own/history"
        crm_view = await (await client.get(history, headers=CRM)).json()
        assert crm_view["request_ids"] == [] and crm_view["history"] == []
        ops_view = await (await client.get(history, headers=ops)).json()
        assert ops_view["request_ids"] == [request_id] and ops_view["history"]
