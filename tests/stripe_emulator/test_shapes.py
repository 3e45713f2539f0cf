"""Every body the emulator returns validates against Stripe's OpenAPI schemas (issue #3).

The spec extract lives in `stripe_emulator/spec/` (its README names the source and date). OpenAPI
3.0's `nullable` is rewritten into JSON Schema before validating; `$ref`s resolve inside the file.
Fields the 2023 extract lacks must at least be in the hand-made 2026 core extract.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from stripe_emulator import run_emulator
from tests.stripe_emulator.conftest import ACCOUNTS_PATH, LIVE_KEY, StripeHttp, small_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC = REPO_ROOT / "stripe_emulator" / "spec"


def _nullable_to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable_to_json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def _spec() -> dict[str, Any]:
    path = SPEC / "financial_connections_openapi.json"
    if not path.exists():
        raise FileNotFoundError(f"Stripe's OpenAPI extract is expected at {path}")
    converted: dict[str, Any] = _nullable_to_json_schema(json.loads(path.read_text()))
    return converted


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": _spec()["components"]})


def _validate(schema_name: str, body: Any) -> None:
    _validator({"$ref": f"#/components/schemas/{schema_name}"}).validate(body)


def _list_schema() -> dict[str, Any]:
    responses = _spec()["paths"][ACCOUNTS_PATH]["get"]["responses"]
    schema: dict[str, Any] = responses["200"]["content"]["application/json"]["schema"]
    return schema


def _known_account_fields() -> set[str]:
    fields = set(_spec()["components"]["schemas"]["financial_connections.account"]["properties"])
    current = json.loads((SPEC / "financial_connections_openapi_current_core.json").read_text())
    return fields | set(
        current["components"]["schemas"]["financial_connections.account"]["properties"]
    )


def test_nullable_conversion() -> None:
    """Unit: `nullable` admits null for typed, enum and anyOf schemas."""
    validator = Draft202012Validator(
        _nullable_to_json_schema(
            {"properties": {"a": {"type": "string", "nullable": True, "enum": ["x"]}}}
        )
    )
    assert validator.is_valid({"a": None})
    assert not validator.is_valid({"a": "y"})


def test_validator_rejects_a_broken_account() -> None:
    """Negative control: the account schema catches a bad enum, a wrong type, a missing field."""
    fixture = json.loads((SPEC / "fixture_financial_connections_account.json").read_text())
    validator = _validator({"$ref": "#/components/schemas/financial_connections.account"})
    assert validator.is_valid({**fixture, "balance": None})
    assert not validator.is_valid({**fixture, "status": "gone"})
    assert not validator.is_valid({**fixture, "created": "yesterday"})
    assert not validator.is_valid({k: v for k, v in fixture.items() if k != "institution_name"})
    assert not validator.is_valid({**fixture, "account_holder": {"customer": "cus_1"}})


async def test_every_account_and_list_page_validates(stripe_http: StripeHttp) -> None:
    """All generated accounts, through retrieve and list, match the account and list schemas."""
    reply = await stripe_http.call("GET", ACCOUNTS_PATH, params={"limit": "100"})
    assert reply.status == 200
    _validator(_list_schema()).validate(reply.body)
    known = _known_account_fields()
    for account in reply.body["data"]:
        _validate("financial_connections.account", account)
        assert set(account) <= known, set(account) - known
        single = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account['id']}")
        _validate("financial_connections.account", single.body)
    empty = await stripe_http.call(
        "GET", ACCOUNTS_PATH, params={"account_holder[customer]": "cus_None"}
    )
    _validator(_list_schema()).validate(empty.body)


async def test_disconnected_and_created_accounts_validate(stripe_http: StripeHttp) -> None:
    """Accounts after a disconnect, for a live key and created through the admin API validate."""
    account_id = (await stripe_http.account_ids())[0]
    _validate("financial_connections.account", (await stripe_http.disconnect(account_id)).body)
    live = await stripe_http.call("GET", f"{ACCOUNTS_PATH}/{account_id}", api_key=LIVE_KEY)
    _validate("financial_connections.account", live.body)
    created = await stripe_http.admin("POST", "/accounts", {"count": 2, "account": "acct_1X"})
    for account in created["data"]:
        _validate("financial_connections.account", account)


async def _error_bodies(stripe_http: StripeHttp) -> list[Any]:
    account_id = (await stripe_http.account_ids())[0]
    script = [{"status": s} for s in (500, 502, 503, 409, 429, 402)]
    await stripe_http.admin("POST", "/script", {"account_id": account_id, "responses": script})
    bodies = [(await stripe_http.disconnect(account_id)).body for _ in range(6)]
    bodies.append((await stripe_http.call("GET", ACCOUNTS_PATH, api_key="")).body)
    bodies.append((await stripe_http.call("GET", ACCOUNTS_PATH, api_key="sk_test_bad1")).body)
    bodies.append((await stripe_http.call("GET", f"{ACCOUNTS_PATH}/fca_nope")).body)
    bodies.append((await stripe_http.call("GET", ACCOUNTS_PATH, params={"limit": "0"})).body)
    await stripe_http.disconnect(account_id, headers={"Idempotency-Key": "shape"})
    other = (await stripe_http.account_ids())[1]
    bodies.append((await stripe_http.disconnect(other, headers={"Idempotency-Key": "shape"})).body)
    return bodies


async def test_every_error_body_validates(stripe_http: StripeHttp) -> None:
    """401, 400, 404, 409, 429, 5xx and idempotency errors all match the `error` schema."""
    bodies = await _error_bodies(stripe_http)
    assert len(bodies) == 11
    for body in bodies:
        _validate("error", body)
        assert set(body["error"]) <= {
            "type",
            "code",
            "message",
            "param",
            "doc_url",
            "request_log_url",
        }


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_other_seeds_validate(seed: int) -> None:
    """Accounts of other seeds validate too (in-process, read from the state)."""
    async with run_emulator(small_config(seed=seed, accounts=300)) as emulator:
        store = emulator.state.accounts
        for index in range(store.total):
            _validate("financial_connections.account", store.get(index))
