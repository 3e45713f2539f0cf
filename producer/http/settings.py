"""Settings of the HTTP intake (``python -m producer``), on top of the producer's.

``FCD_API_TOKENS`` names each calling service and its bearer token, either as a JSON object
(``{"billing": "tok_…"}``) or as ``name:token`` pairs separated by commas. Service names are
lower-case letters, digits, ``-`` and ``_``. A service may read only the requests it submitted
(and the account histories of those), unless its token is granted the scope ``read:all``, which
needs the JSON form: ``{"ops": {"token": "tok_…", "scopes": ["read:all"]}}``. ``FCD_STRIPE_WEBHOOK_SECRETS`` holds one or more
``whsec_…`` secrets separated by commas (more than one while a secret is being rotated).
"""

from __future__ import annotations

import json
import re

from pydantic import Field, SecretStr, field_validator

from producer.settings import ProducerSettings

SERVICE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class BadTokenConfig(ValueError):
    """``FCD_API_TOKENS`` cannot be read; the message never contains a token."""


class IntakeSettings(ProducerSettings):
    """Where the intake listens, who may call it and how Stripe's webhooks are checked."""

    http_host: str = Field(default="0.0.0.0", description="Address the intake listens on.")
    http_port: int = Field(default=8080, description="Port the intake listens on.")
    api_tokens: SecretStr = Field(
        description="Calling services and their bearer tokens: JSON object or name:token,…"
    )
    stripe_webhook_secrets: SecretStr = Field(
        description="Stripe webhook signing secrets (whsec_…), comma-separated for rotation."
    )
    webhook_tolerance_seconds: int = Field(
        default=300, description="Oldest Stripe-Signature timestamp accepted, in seconds."
    )
    redis_max_connections: int = Field(
        default=64, description="Connections in the intake's one Redis pool."
    )

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: SecretStr) -> SecretStr:
        """Refuse a malformed value at start-up, naming the problem but never the value."""
        try:
            parse_tokens(value.get_secret_value())
        except BadTokenConfig as exc:
            raise ValueError(str(exc)) from None
        return value

    def service_tokens(self) -> dict[str, SecretStr]:
        """Service name -> token; raises :class:`BadTokenConfig` on a malformed value."""
        return parse_tokens(self.api_tokens.get_secret_value())

    def services_reading_all(self) -> frozenset[str]:
        """The services whose token is granted ``read:all`` (operators' tools, support)."""
        scopes = parse_scopes(self.api_tokens.get_secret_value())
        return frozenset(name for name, granted in scopes.items() if READ_ALL in granted)

    def webhook_secrets(self) -> list[SecretStr]:
        secrets = [s.strip() for s in self.stripe_webhook_secrets.get_secret_value().split(",")]
        return [SecretStr(s) for s in secrets if s]


READ_ALL = "read:all"
SCOPES = frozenset({READ_ALL})


def parse_tokens(raw: str) -> dict[str, SecretStr]:
    """Parse ``FCD_API_TOKENS`` (see the module docstring): service name -> token."""
    return {name: token for name, (token, _scopes) in parse_grants(raw).items()}


def parse_scopes(raw: str) -> dict[str, frozenset[str]]:
    """Service name -> the scopes its token is granted (``read:all``, or none)."""
    return {name: scopes for name, (_token, scopes) in parse_grants(raw).items()}


def _entry(name: str, value: object) -> tuple[str, frozenset[str]]:
    if isinstance(value, str):
        return value, frozenset()
    if not isinstance(value, dict) or not isinstance(value.get("token"), str):
        raise BadTokenConfig(f"FCD_API_TOKENS: {name!r} needs a token string")
    scopes = value.get("scopes", [])
    if not isinstance(scopes, list) or not set(map(str, scopes)) <= SCOPES:
        raise BadTokenConfig(
            f"FCD_API_TOKENS: {name!r}: scopes must be a subset of {sorted(SCOPES)}"
        )
    return str(value["token"]), frozenset(map(str, scopes))


def parse_grants(raw: str) -> dict[str, tuple[SecretStr, frozenset[str]]]:
    """Service name -> (token, scopes), validated; the messages never contain a token."""
    raw = raw.strip()
    pairs: list[tuple[str, str, frozenset[str]]]
    if raw.startswith("{"):
        try:
            loaded = json.loads(raw)
        except ValueError:
            raise BadTokenConfig("FCD_API_TOKENS is not valid JSON") from None
        if not isinstance(loaded, dict):
            raise BadTokenConfig("FCD_API_TOKENS must be a JSON object")
        pairs = [(str(k), *_entry(str(k), v)) for k, v in loaded.items()]
    else:
        pairs = []
        for position, item in enumerate(filter(None, (p.strip() for p in raw.split(","))), 1):
            name, sep, token = item.partition(":")
            if not sep:
                raise BadTokenConfig(f"FCD_API_TOKENS entry {position} is not name:token")
            pairs.append((name.strip(), token.strip(), frozenset()))
    tokens: dict[str, tuple[SecretStr, frozenset[str]]] = {}
    for name, token, scopes in pairs:
        if not SERVICE_NAME_RE.match(name):
            raise BadTokenConfig(f"FCD_API_TOKENS: bad service name {name!r}")
        if len(token) < 16:
            raise BadTokenConfig(f"FCD_API_TOKENS: token of {name!r} is shorter than 16 chars")
        tokens[name] = (SecretStr(token), scopes)
    if not tokens:
        raise BadTokenConfig("FCD_API_TOKENS names no service")
    return tokens
