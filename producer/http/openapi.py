"""The OpenAPI 3.0 description of the intake, served at ``/openapi.json``.

A test compares its paths and methods with the app's routes, and schemathesis generates requests
from it (``tests/producer/http/test_schemathesis.py``): change both together.
"""

from __future__ import annotations

from typing import Any

from ledger.models import ACCOUNT_ID_RE, CONNECTED_ACCOUNT_RE, CUSTOMER_ID_RE

#: Route prefixes that are deliberately not in this document (e.g. an HTML dashboard).
UNDOCUMENTED_PREFIXES: list[str] = ["/dashboard"]

_REF = "#/components/schemas/"
_JSON = "application/json"


def _json(schema: str | dict[str, Any], description: str) -> dict[str, Any]:
    body = {"$ref": _REF + schema} if isinstance(schema, str) else schema
    return {"description": description, "content": {_JSON: {"schema": body}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Malformed JSON or signature.",
        401: "Missing or unknown bearer token.",
        404: "No such resource.",
        409: "The event id was used with a different body.",
        413: "Body larger than 1 MiB.",
        415: "Body is not application/json.",
        422: "A field is invalid; `field` names it.",
    }
    return {str(code): _json("Error", texts[code]) for code in codes}


_BODY_PROPERTIES: dict[str, Any] = {
    "account_id": {"type": "string", "pattern": ACCOUNT_ID_RE.pattern},
    "customer_id": {"type": "string", "pattern": CUSTOMER_ID_RE.pattern},
    "event_id": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "reason": {"type": "string", "minLength": 1, "maxLength": 500},
    "stripe_account": {"type": "string", "pattern": CONNECTED_ACCOUNT_RE.pattern},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "nullable": True},
                },
            }
        },
    },
    "DisconnectRequestBody": {
        "type": "object",
        "description": "Exactly one of account_id and customer_id.",
        "required": ["event_id", "reason"],
        "additionalProperties": False,
        "properties": _BODY_PROPERTIES,
    },
    "SubmitResult": {
        "type": "object",
        "required": ["event_id", "kind", "request_ids", "status_url", "merged"],
        "properties": {
            "event_id": {"type": "string"},
            "kind": {"type": "string", "enum": ["account", "customer"]},
            "request_ids": {"type": "array", "items": {"type": "string"}},
            "status_url": {"type": "string"},
            "merged": {"type": "boolean"},
        },
    },
    "Batch": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {"$ref": _REF + "DisconnectRequestBody"},
            }
        },
    },
    "BatchResult": {
        "type": "object",
        "required": ["accepted", "rejected", "results"],
        "properties": {
            "accepted": {"type": "integer"},
            "rejected": {"type": "integer"},
            "results": {"type": "array", "items": {"type": "object"}},
        },
    },
    "RequestStatus": {
        "type": "object",
        "required": ["kind", "request_id", "status", "history", "stored_in"],
        "properties": {
            "kind": {"type": "string", "enum": ["account", "customer"]},
            "request_id": {"type": "string"},
            "status": {"type": "string"},
            "history": {"type": "array", "items": {"type": "object"}},
            "stored_in": {
                "type": "string",
                "enum": ["redis", "archive"],
                "description": "Where the request was read: Redis, or the archive it moved to.",
            },
        },
    },
    "AccountHistory": {
        "type": "object",
        "required": ["account_id", "request_ids", "history", "stored_in"],
        "properties": {
            "account_id": {"type": "string"},
            "request_ids": {"type": "array", "items": {"type": "string"}},
            "history": {"type": "array", "items": {"type": "object"}},
            "stored_in": {
                "type": "object",
                "additionalProperties": {"type": "string", "enum": ["redis", "archive"]},
                "description": "Request id -> where it was read (redis or archive).",
            },
        },
    },
}


def _v1_paths() -> dict[str, Any]:
    body = {
        "required": True,
        "content": {_JSON: {"schema": {"$ref": _REF + "DisconnectRequestBody"}}},
    }
    batch = {"required": True, "content": {_JSON: {"schema": {"$ref": _REF + "Batch"}}}}
    return {
        "/v1/disconnect-requests": {
            "post": {
                "operationId": "submitDisconnectRequest",
                "summary": "Disconnect one account, or every account of one customer.",
                "requestBody": body,
                "responses": {
                    "202": _json("SubmitResult", "Accepted (or the stored answer, replayed)."),
                    **_errors(400, 401, 409, 413, 415, 422),
                },
            }
        },
        "/v1/disconnect-requests/batch": {
            "post": {
                "operationId": "submitDisconnectBatch",
                "summary": "Up to 1,000 requests; one result per item.",
                "requestBody": batch,
                "responses": {
                    "200": _json("BatchResult", "One result per item, in order."),
                    **_errors(400, 401, 413, 415, 422),
                },
            }
        },
        "/v1/disconnect-requests/{request_id}": {
            "get": {
                "operationId": "getDisconnectRequest",
                "summary": "Status and history of a request (dr_…) or customer request (cr_…).",
                "parameters": [_path_param("request_id")],
                "responses": {
                    "200": _json("RequestStatus", "The request."),
                    **_errors(401, 404),
                },
            }
        },
        "/v1/accounts/{account_id}/history": {
            "get": {
                "operationId": "getAccountHistory",
                "summary": "Everything recorded about one account.",
                "parameters": [_path_param("account_id")],
                "responses": {
                    "200": _json("AccountHistory", "The account's records."),
                    **_errors(401, 404),
                },
            }
        },
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _ops_paths() -> dict[str, Any]:
    text = {"description": "Text.", "content": {"text/plain": {"schema": {"type": "string"}}}}
    obj = {"type": "object"}
    return {
        "/webhooks/stripe": {
            "post": {
                "operationId": "stripeWebhook",
                "summary": "Stripe events, verified with Stripe-Signature.",
                "security": [],
                "parameters": [
                    {"name": "Stripe-Signature", "in": "header", "schema": {"type": "string"}}
                ],
                "requestBody": {"content": {_JSON: {"schema": obj}}},
                "responses": {"200": _json(obj, "Accepted."), **_errors(400, 413)},
            }
        },
        "/healthz": {"get": _plain("liveness", {"200": _json(obj, "Alive.")})},
        "/readyz": {
            "get": _plain(
                "readiness: Redis reachable (a pause keeps it ready; the body says paused)",
                {"200": _json(obj, "Ready (paused or not)."), "503": _json(obj, "No Redis.")},
            )
        },
        "/metrics": {"get": _plain("Prometheus metrics", {"200": text})},
        "/openapi.json": {"get": _plain("this document", {"200": _json(obj, "OpenAPI.")})},
    }


def _plain(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "security": [], "responses": responses}


def build_openapi() -> dict[str, Any]:
    """The whole document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "fc-disconnect intake", "version": "1"},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {**_v1_paths(), **_ops_paths()},
    }
