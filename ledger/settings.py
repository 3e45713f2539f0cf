"""Settings shared by every role: Redis, queues, logging and the audit file.

Built once in each process's ``main()`` and passed down; never read at import time. Each role
(worker, producer) subclasses :class:`BaseServiceSettings` with its own fields. Every field is
listed in the README's configuration table; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from archive import ArchiveStore, open_archive
from ledger.durations import parse_duration

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"


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
        default=DEFAULT_REDIS_URL, description="Redis holding the ledger and the queues."
    )
    demo: bool = Field(
        default=False,
        description="Set by the demo and the dev tools (devenv): the default Redis URL is expected "
        "there, so no warning is logged for it.",
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

    archive_dir: Path = Field(
        default=Path("var/archive"),
        description="Directory of the embedded archive (one SQLite file, archive.sqlite3) "
        "when FCD_ARCHIVE_DSN is unset.",
    )
    archive_dsn: SecretStr | None = Field(
        default=None,
        description="postgresql://… of a PostgreSQL archive instead of the SQLite file "
        "(for fleets: every worker and producer shares it).",
    )
    archive_after: str = Field(
        default="30d",
        description="Terminal requests older than this (e.g. 30d, 12h) move from Redis to the "
        "archive.",
    )
    archive_batch_size: int = Field(
        default=1000, gt=0, le=20_000, description="Requests the archive job moves per batch."
    )

    @field_validator("archive_after")
    @classmethod
    def _archive_after_is_a_duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except ValueError:
            raise ValueError("not a duration (e.g. 90s, 15m, 2h, 30d, 1h30m)") from None
        return value

    @field_validator("archive_dsn")
    @classmethod
    def _archive_dsn_is_postgresql(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("must be a postgresql:// URL")
        return value

    @property
    def archive_after_seconds(self) -> float:
        return parse_duration(self.archive_after)

    def open_archive(self) -> ArchiveStore:
        """The archive these settings name (opened lazily; see :func:`archive.open_archive`)."""
        dsn = self.archive_dsn.get_secret_value() if self.archive_dsn is not None else None
        return open_archive(self.archive_dir, dsn)

    def redis_location(self) -> RedisLocation:
        """Where this process's Redis is, for logs and screens (never the password)."""
        return redis_location(self.redis_url)

    @property
    def uses_default_redis(self) -> bool:
        """True when ``FCD_REDIS_URL`` was not set to anything but the built-in default."""
        return self.redis_url == DEFAULT_REDIS_URL


@dataclass(frozen=True)
class RedisLocation:
    """Host, port and database of a Redis URL: what every process logs at start-up and what
    ``fcd queue`` and the dashboard header show, so nobody has to guess which Redis they are on.
    It never holds the password (only whether there is one)."""

    scheme: str
    host: str
    port: int | None
    db: int
    authenticated: bool

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        auth = "***@" if self.authenticated else ""
        return f"{self.scheme}://{auth}{self.host}{port}/{self.db}"

    def log_fields(self) -> dict[str, str | int | None]:
        return {"redis_host": self.host, "redis_port": self.port, "redis_db": self.db}


def redis_location(url: str) -> RedisLocation:
    """Parse ``url`` (``redis://``, ``rediss://`` or ``unix://``) without keeping any secret.

    An unparsable URL still gives a location (host ``?``) rather than an error: this is for
    display, and the connection itself reports a bad URL.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return RedisLocation("redis", "?", None, 0, False)
    if parts.scheme == "unix":
        host = parts.path or "?"
        db_text = dict(p.partition("=")[::2] for p in parts.query.split("&")).get("db", "0")
    else:
        host = parts.hostname or "localhost"
        db_text = parts.path.lstrip("/") or "0"
    db = int(db_text) if db_text.isdigit() else 0
    authenticated = parts.password is not None or (parts.username or "") != ""
    return RedisLocation(parts.scheme or "redis", host, port, db, authenticated)


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
