"""Bearer tokens per calling service; the service's name is who the request is from.

Every configured token is compared with ``hmac.compare_digest`` (no early exit on a match), so
the time taken does not tell a caller which service's token it came close to. Tokens are never
logged; a failure says only "missing" or "unknown".
"""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import SecretStr

from producer.http.errors import ApiError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fc-disconnect"'}


def authenticate(request: web.Request, tokens: dict[str, SecretStr]) -> str:
    """The calling service's name, or :class:`ApiError` 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(401, "missing bearer token", headers=_CHALLENGE)
    given = presented.strip().encode("utf-8", "backslashreplace")
    caller: str | None = None
    for service, token in tokens.items():
        if hmac.compare_digest(given, token.get_secret_value().encode()):
            caller = service
    if caller is None:
        raise ApiError(401, "unknown bearer token", headers=_CHALLENGE)
    return caller
