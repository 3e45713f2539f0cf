"""Settings of producer-side processes: the CLI, the Python API and (later) the HTTP intake."""

from __future__ import annotations

from pydantic import Field, SecretStr

from ledger.settings import BaseServiceSettings


class ProducerSettings(BaseServiceSettings):
    """Producer-side settings: the shared ones plus the dashboard's operator sign-in."""

    operator_tokens: SecretStr | None = Field(
        default=None,
        description="Dashboard sign-in: comma-separated name:token pairs; the name is recorded as "
        "the operator. Unset: the dashboard refuses every sign-in.",
    )
