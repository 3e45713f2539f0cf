"""The Stripe endpoints over loopback: auth, retrieve, list, disconnect and their errors."""

from __future__ import annotations

import base64

from stripe_emulator import RunningEmulator
from tests.stripe_emulator.conftest import ACCOUNTS_PATH, LIVE_KEY, StripeHttp


async def test_missing_key_is_401_with_stripe_body(stripe_http: StripeHttp) -> None:
    """A call without a key gets 401 invalid_request_error telling how to authenticate."""
    reply = await stripe_http.call("GET", ACCOUNTS_PATH, api_key="")
    assert reply.status == 401
    assert reply.body["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in reply.body["error"]["message"]
    assert reply.headers["Request-Id"].startswith("req_")


async def test_wrong_key_is_401_and_never_echoed(stripe_http: StripeHttp) -> None:
    """An unknown key gets 401 and the body shows at most its last four characters."""
    reply = await stripe_http.call("GET", ACCOUNTS_PATH, api_key="sk_test_secretvalue9876")
    assert reply.status == 401
    assert "secretvalue" not in reply.body["error"]["message"]
    assert reply.body["error"]["message"].endswith("9876")


async def test_basic_auth_with_key_as_user_is_accepted(stripe_http: StripeHttp) -> None:
    """Basic auth with the key as user name authenticates like a bearer token."""
    token = base64.b64encode(f"{stripe_http.api_key}:".encode()).decode()
    reply = await stripe_http.call(
        "GET", ACCOUNTS_PATH, api_key="", headers={"Authorization": f"Basic {token}"}
    )
    assert reply.status == 200


async def test_retrieve_returns_the_account(stripe_http: StripeHttp) -> None:
    """GET by id returns the account object with that id and a Request-Id header."""
    account_id = (await stripe_http.account_ids())[0]
    reply = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
    assert reply.status == 200
    assert reply.body["id"] == account_id
    assert reply.body["object"] == "financial_connections.account"
    assert reply.body["livemode"] is False
    assert reply.headers["Request-Id"].startswith("req_")


async def test_live_key_sees_livemode_true(stripe_http: StripeHttp) -> None:
    """An sk_live_ key gets the same account with livemode true."""
    account_id = (await stripe_http.account_ids())[0]
    reply = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}", api_key=LIVE_KEY)
    assert reply.body["livemode"] is True


async def test_unknown_id_is_resource_missing(stripe_http: StripeHttp) -> None:
    """An unknown id answers 404 resource_missing with Stripe's message and param."""
    for method, path in (
        ("GET", f"{ACCOUNTS_PATH}/fca_doesnotexist"),
        ("POST", f"{ACCOUNTS_PATH}/fca_doesnotexist/disconnect"),
    ):
        reply = await stripe_http.call(method, path)
        assert reply.status == 404
        error = reply.body["error"]
        assert error["code"] == "resource_missing"
        assert error["message"] == "No such financial_connections.account: 'fca_doesnotexist'"
        assert error["param"] == "account"


async def test_disconnect_changes_status_and_is_visible(stripe_http: StripeHttp) -> None:
    """Disconnecting answers the account as disconnected, and a later retrieve agrees."""
    account_id = (await stripe_http.account_ids())[0]
    reply = await stripe_http.disconnect(account_id)
    assert reply.status == 200
    assert reply.body["status"] == "disconnected"
    again = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}")
    assert again.body["status"] == "disconnected"


async def test_second_disconnect_in_mode_200_returns_account(stripe_http: StripeHttp) -> None:
    """In mode "200" a second disconnect answers 200 with the disconnected account."""
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.disconnect(account_id)
    reply = await stripe_http.disconnect(account_id)
    assert reply.status == 200
    assert reply.body["status"] == "disconnected"


async def test_second_disconnect_in_mode_400_is_invalid_request(stripe_http: StripeHttp) -> None:
    """In mode "400" (set at run time) a second disconnect answers 400 invalid_request_error."""
    await stripe_http.admin("POST", "/config", {"already_disconnected_mode": "400"})
    account_id = (await stripe_http.account_ids())[0]
    assert (await stripe_http.disconnect(account_id)).status == 200
    reply = await stripe_http.disconnect(account_id)
    assert reply.status == 400
    assert reply.body["error"]["type"] == "invalid_request_error"
    assert reply.body["error"]["code"] == "account_already_disconnected"


async def test_unknown_form_parameter_is_rejected(stripe_http: StripeHttp) -> None:
    """A disconnect with a parameter other than expand[] is a 400 naming the parameter."""
    account_id = (await stripe_http.account_ids())[0]
    reply = await stripe_http.disconnect(account_id, form={"reason": "x"})
    assert reply.status == 400
    assert reply.body["error"]["param"] == "reason"
    ok = await stripe_http.disconnect(account_id, form={"expand[]": "balance"})
    assert ok.status == 200


async def test_stripe_account_and_version_are_accepted_and_logged(
    stripe_http: StripeHttp,
) -> None:
    """Stripe-Account is recorded in the request log; Stripe-Version is echoed back."""
    account_id = (await stripe_http.account_ids())[0]
    headers = {"Stripe-Account": "acct_1Connected", "Stripe-Version": "2024-06-20"}
    reply = await stripe_http.disconnect(account_id, headers=headers)
    assert reply.headers["Stripe-Version"] == "2024-06-20"
    log = (await stripe_http.admin("GET", "/requests"))["data"]
    assert log[-1]["stripe_account"] == "acct_1Connected"
    assert log[-1]["account_id"] == account_id
    assert log[-1]["api_key_suffix"] == stripe_http.api_key[-4:]
    assert log[-1]["request_id"] == reply.headers["Request-Id"]
    assert log[-1]["ts"] <= log[-1]["end_ts"]


async def test_state_is_inspectable_in_process(
    emulator: RunningEmulator, stripe_http: StripeHttp
) -> None:
    """The running emulator's state shows a disconnect made over HTTP."""
    account_id = (await stripe_http.account_ids())[0]
    await stripe_http.disconnect(account_id)
    index = emulator.state.accounts.index_of(account_id)
    assert index is not None
    assert emulator.state.accounts.status(index) == "disconnected"


async def test_unrecognized_url_is_stripe_json_404(stripe_http: StripeHttp) -> None:
    """An unknown /v1 URL or a wrong method gets Stripe's JSON 404 with a Request-Id."""
    for method, path in (("GET", "/v1/charges"), ("GET", f"{ACCOUNTS_PATH}/fca_x/disconnect")):
        reply = await stripe_http.call(method, path)
        assert reply.status == 404
        assert reply.body["error"]["message"].startswith(f"Unrecognized request URL ({method}")
        assert reply.headers["Request-Id"].startswith("req_")
