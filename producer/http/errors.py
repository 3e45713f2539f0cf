"""JSON errors for every failure, and the middleware that guarantees it.

Every answer that is not a success is ``{"error": {"code", "message", "field"}}`` (``field`` is
``null`` unless one input is to blame): handlers raise :class:`ApiError`; aiohttp's own errors
(unknown route 404, wrong method 405, body over ``client_max_size`` 413) are rewritten; Redis being
unreachable is 503 ``unavailable``; a submission ``FCD_DURABILITY=fsync`` could not confirm in time
is 503 ``not_durable`` with ``request_ids`` and ``Retry-After`` (resubmitting merges); anything else is logged and answered 500 ``internal`` without
detail (tests assert it never happens).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from ledger.durability import NotDurable, RedisRefused

log = structlog.get_logger("fcd.http")

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
}


class ApiError(Exception):
    """An error answer; ``status`` is the HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.extra = extra or {}
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.field = field
        self.headers = headers or {}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(error: ApiError) -> web.Response:
    body = error_body(error.code, error.message, error.field)
    body["error"].update(error.extra)
    return web.json_response(body, status=error.status, headers=error.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn every failure into the JSON error shape (see the module docstring)."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        return error_response(exc)
    except RedisRefused as exc:  # found by the check deferred from start-up (Redis was away)
        return error_response(ApiError(503, str(exc), code="redis_refused"))
    except NotDurable as exc:  # FCD_DURABILITY=fsync: stored, not yet confirmed; retry merges
        log.warning("http.not_durable", detail=exc.detail, request_ids=exc.request_ids)
        extra = {"request_ids": exc.request_ids}
        error = ApiError(
            503, str(exc), code="not_durable", headers={"Retry-After": "1"}, extra=extra
        )
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason if exc.status != 413 else "the body is larger than 1 MiB"
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(ApiError(exc.status, message, headers=headers))
    except (RedisError, OSError) as exc:
        log.warning("http.redis_unavailable", error=type(exc).__name__, path=request.path)
        return error_response(ApiError(503, "the ledger is unavailable", code="unavailable"))
    except Exception:
        log.exception("http.internal_error", path=request.path, method=request.method)
        return error_response(ApiError(500, "internal error", code="internal"))
