"""Stripe's error responses: the `{"error": {...}}` body, its status and its special headers.

`StripeError` is data, not an exception: the request pipeline returns one and `render` turns it
into bytes. The constructors below carry Stripe's own wording where it is known; null fields are
left out, as Stripe does. `request_log_url` points at the dashboard log of the request, as in
real errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DOCS = "https://stripe.com/docs/error-codes/"
_DEFAULT_MESSAGES = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", None, "Invalid API Key provided."),
    402: ("invalid_request_error", None, "The request failed."),
    403: ("invalid_request_error", None, "The provided key does not have access."),
    404: ("invalid_request_error", "resource_missing", "No such object."),
    409: (
        "idempotency_error",
        "idempotency_key_in_use",
        (
            "There is currently another in-progress request using this idempotency key. "
            "Please try again later."
        ),
    ),
    424: ("api_error", None, "An external dependency failed."),
    429: (
        "invalid_request_error",
        "rate_limit",
        (
            "Request rate limit exceeded. Learn more about rate limits here "
            "https://stripe.com/docs/rate-limits."
        ),
    ),
    500: ("api_error", None, "An unknown error occurred"),
    502: ("api_error", None, "Bad gateway: Stripe is temporarily unreachable."),
    503: ("api_error", None, "Stripe is temporarily unavailable. Please try again later."),
    504: ("api_error", None, "The request to Stripe timed out."),
}


@dataclass(frozen=True, slots=True)
class StripeError:
    """One error answer: HTTP status, body fields and extra headers."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, request_id: str, livemode: bool) -> bytes:
        """The JSON body Stripe would send for this error."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = DOCS + self.code.replace("_", "-")
        if self.param is not None:
            error["param"] = self.param
        mode = "" if livemode else "test/"
        error["request_log_url"] = f"https://dashboard.stripe.com/{mode}logs/{request_id}"
        return json.dumps({"error": error}, separators=(",", ":")).encode()


def generic(
    status: int,
    *,
    type_: str | None = None,
    code: str | None = None,
    message: str | None = None,
    param: str | None = None,
) -> StripeError:
    """An error of `status` with Stripe's usual type and wording unless given."""
    default_type, default_code, default_message = _DEFAULT_MESSAGES.get(
        status, ("api_error", None, "An error occurred.")
    )
    return StripeError(
        status=status,
        type=type_ or default_type,
        code=code if code is not None else default_code,
        message=message or default_message,
        param=param,
    )


def missing_key() -> StripeError:
    """401 for a request without any API key."""
    return StripeError(
        401,
        "invalid_request_error",
        "You did not provide an API key. You need to provide your API key in the Authorization "
        "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
        "https://stripe.com/docs/api#authentication for details, or we can help at "
        "https://support.stripe.com/.",
    )


def masked_key(key: str) -> str:
    """A key as Stripe shows it in messages: its mode prefix and last four characters only."""
    prefix = key[:8] if key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")) else ""
    return f"{prefix}{'*' * 12}{key[-4:]}"


def invalid_key(key: str) -> StripeError:
    """401 for an unknown key; like Stripe, the message shows only its last four characters."""
    return StripeError(401, "invalid_request_error", f"Invalid API Key provided: {masked_key(key)}")


def resource_missing(object_id: str, param: str = "account", status: int = 404) -> StripeError:
    """404 for an unknown account id."""
    return StripeError(
        status,
        "invalid_request_error",
        f"No such financial_connections.account: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def rate_limited(reason: str | None) -> StripeError:
    """429 from a limiter; `reason` becomes the `Stripe-Rate-Limited-Reason` header."""
    headers = {"Stripe-Rate-Limited-Reason": reason} if reason else {}
    error = generic(429)
    return StripeError(429, error.type, error.message, code="rate_limit", headers=headers)


def lock_timeout() -> StripeError:
    """429 for two requests on the same object at once: contention, not a rate limit."""
    return StripeError(
        429,
        "invalid_request_error",
        "This object cannot be accessed right now because another API request or Stripe process "
        "is currently accessing it. If you see this error intermittently, retry the request. If "
        "you see this error frequently and are making multiple concurrent requests to a single "
        "object, make your requests serially or at a lower rate. See "
        "https://stripe.com/docs/rate-limits for more details.",
        code="lock_timeout",
        headers={"Stripe-Should-Retry": "true"},
    )


def idempotency_mismatch(key: str) -> StripeError:
    """400 for an idempotency key reused with other parameters or on another path."""
    return StripeError(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were first "
        f"used with. Try using a key other than '{key}' if you meant to execute a different "
        "request.",
    )


def invalid_param(message: str, param: str, code: str | None = None) -> StripeError:
    """400 for a bad request parameter."""
    return StripeError(400, "invalid_request_error", message, code=code, param=param)


def already_disconnected(account_id: str) -> StripeError:
    """400 for disconnecting an account that is already disconnected (mode "400"; a guess)."""
    return StripeError(
        400,
        "invalid_request_error",
        f"The account '{account_id}' has already been disconnected and cannot be disconnected "
        "again.",
        code="account_already_disconnected",
        param="account",
    )


def inactive_account(account_id: str) -> StripeError:
    """400 for disconnecting an `inactive` account (mode "400"; undocumented, a guess: the code
    is the one Stripe uses for other operations on an inactive account)."""
    return StripeError(
        400,
        "invalid_request_error",
        f"The account '{account_id}' is inactive and cannot be disconnected.",
        code="financial_connections_account_inactive",
        param="account",
    )


def outage() -> StripeError:
    """503 during an outage window."""
    return generic(503)
