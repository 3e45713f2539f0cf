"""Settings shared by every role: Redis, queues, logging and the audit file.

Built once in each process's ``main()`` and passed down; never read at import time. Each role
(worker, producer) subclasses :class:`BaseServiceSettings` with its own fields. Every field is
listed in the README's configuration table; a test keeps the two in step.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"  # console on a TTY, JSON lines otherwise


#: The Stripe-Version every Stripe call pins (the worker's default; ``fcd doctor`` checks it).
DEFAULT_STRIPE_API_VERSION = "2026-06-24.dahlia"


class BaseServiceSettings(BaseSettings):
    """Fields every fc-disconnect process needs."""

    model_config = SettingsConfigDict(env_prefix="FCD_", extra="ignore", frozen=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis holding the ledger and the queues."
    )
    key_prefix: str = Field(
        default="fcd:", description="Prefix of every ledger key in Redis (arq's keys are its own)."
    )
    queue_name: str = Field(
        default="fcd:queue:urgent", description="arq queue that carries disconnect jobs."
    )
    bulk_queue_name: str = Field(
        default="fcd:queue:bulk",
        description="arq queue for retention-sweep requests; served after the urgent queue.",
    )
    bulk_queue_max_depth: int = Field(
        default=50_000,
        gt=0,
        description="A sweep's submission pauses while more requests than this are queued.",
    )
    retention_policies: Path | None = Field(
        default=None, description="TOML file of retention policies (fcd sweep, worker cron)."
    )
    log_format: LogFormat = Field(default=LogFormat.AUTO, description="json, console or auto.")
    log_level: str = Field(default="INFO", description="Minimum level for log lines.")
    audit_log_path: Path | None = Field(
        default=None, description="Optional JSON-lines file that receives every audit event too."
    )
    job_expires_seconds: int = Field(
        default=86_400,
        description="How long an enqueued arq job stays valid after its due time "
        "(the reconciler re-creates expired ones).",
    )
    in_progress_lease_seconds: float = Field(
        default=900.0,
        description="The reconciler re-queues a request in_progress for longer than this "
        "(workers refuse to start unless it exceeds FCD_JOB_TIMEOUT_SECONDS).",
    )


S = TypeVar("S", bound=BaseSettings)


class InvalidSettings(ValueError):
    """The environment does not make valid settings; the message never contains a value."""


def load_settings(cls: type[S]) -> S:
    """``cls()`` from ``FCD_*``; on bad input raise :class:`InvalidSettings` naming each variable
    and problem, but never echoing input (pydantic's own message would print secrets)."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = "_".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{'FCD_' + name if name else 'settings'}: {error['msg']}")
        raise InvalidSettings("invalid configuration: " + "; ".join(problems)) from None
