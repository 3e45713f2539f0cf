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

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from archive import ArchiveStore, open_archive
from ledger.durations import parse_duration

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"  # console on a TTY, JSON lines otherwise


class Durability(StrEnum):
    """When a submission counts as stored (``FCD_DURABILITY``; see the README, "Redis durability
    and high availability")."""

    EVERYSEC = "everysec"  # in Redis' memory; an AOF fsynced each second (kill -9 loses ≤ ~1 s)
    FSYNC = "fsync"  # also on disk (WAITAOF) or on a replica (WAIT) before it is acknowledged


#: The Stripe-Version every Stripe call pins (the worker's default; ``fcd doctor`` checks it).
DEFAULT_STRIPE_API_VERSION = "2026-06-24.dahlia"


class BaseServiceSettings(BaseSettings):
    """Fields every fc-disconnect process needs."""

    model_config = SettingsConfigDict(env_prefix="FCD_", extra="ignore", frozen=True)

    redis_url: str = Field(
        default=DEFAULT_REDIS_URL, description="Redis holding the ledger and the queues."
    )
    redis_sentinels: str = Field(
        default="",
        description="Sentinel mode: comma-separated host:port of the Redis Sentinels (instead of "
        "FCD_REDIS_URL); clients ask them for the master's address on every new connection.",
    )
    redis_sentinel_master: str = Field(
        default="", description="Sentinel mode: the master name the Sentinels monitor."
    )
    redis_password: SecretStr | None = Field(
        default=None,
        description="Sentinel mode: the master's password (in URL mode it is part of the URL).",
    )
    redis_db: int = Field(
        default=0, ge=0, description="Sentinel mode: the database number (URL mode: in the URL)."
    )
    durability: Durability = Field(
        default=Durability.EVERYSEC,
        description="everysec: a write is acknowledged once Redis has it in memory; fsync: the "
        "intake and fcd submit also wait until it is on disk or on a replica.",
    )
    durability_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="fsync mode: how long a submission waits for the disk or replica to confirm "
        "before answering 503 (intake) or exiting 1 (CLI) with the request ids.",
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

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_parse(cls, value: str) -> str:
        parse_sentinels(value)  # raises with the variable's name, never the value
        return value

    @model_validator(mode="after")
    def _one_redis_mode(self) -> BaseServiceSettings:
        """Either FCD_REDIS_URL or FCD_REDIS_SENTINELS + FCD_REDIS_SENTINEL_MASTER, not a mix."""
        sentinel_only = [
            name
            for name, is_set in (
                ("FCD_REDIS_SENTINEL_MASTER", bool(self.redis_sentinel_master)),
                ("FCD_REDIS_PASSWORD", self.redis_password is not None),
                ("FCD_REDIS_DB", "redis_db" in self.model_fields_set),
            )
            if is_set
        ]
        if not self.redis_sentinels:
            if sentinel_only:
                raise ValueError(
                    f"{', '.join(sentinel_only)}: used only with FCD_REDIS_SENTINELS (Sentinel "
                    "mode); with FCD_REDIS_URL put the password and database in the URL"
                )
            return self
        if not self.redis_sentinel_master:
            raise ValueError(
                "FCD_REDIS_SENTINELS needs FCD_REDIS_SENTINEL_MASTER (the master name the "
                "Sentinels monitor, as in their `sentinel monitor <name> …` line)"
            )
        if self.redis_url not in ("", DEFAULT_REDIS_URL):
            raise ValueError(
                "set either FCD_REDIS_URL or FCD_REDIS_SENTINELS, not both (in Sentinel mode the "
                "master's address comes from the Sentinels; leave FCD_REDIS_URL unset or empty)"
            )
        return self

    def sentinel_addresses(self) -> tuple[tuple[str, int], ...]:
        """The Sentinels' (host, port) pairs; empty in URL mode."""
        return parse_sentinels(self.redis_sentinels)

    def redis_location(self) -> RedisLocation:
        """Where this process's Redis is, for logs and screens (never the password)."""
        sentinels = self.sentinel_addresses()
        if sentinels:
            return RedisLocation(
                "sentinel",
                ",".join(f"{host}:{port}" for host, port in sentinels),
                None,
                self.redis_db,
                self.redis_password is not None,
                master=self.redis_sentinel_master,
            )
        return redis_location(self.redis_url)

    @property
    def uses_default_redis(self) -> bool:
        """True when ``FCD_REDIS_URL`` was not set to anything but the built-in default (and
        Sentinel mode is off)."""
        return self.redis_url == DEFAULT_REDIS_URL and not self.redis_sentinels


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``"h1:26379,h2:26379"`` as ``(("h1", 26379), ("h2", 26379))``; ``""`` as ``()``.

    A malformed entry raises ``ValueError`` naming FCD_REDIS_SENTINELS and the entry's position
    (not its text: this setting is not secret, but the rule for errors is one rule).
    """
    pairs: list[tuple[str, int]] = []
    entries = [entry.strip() for entry in text.split(",")] if text.strip() else []
    for number, entry in enumerate(entries, start=1):
        host, sep, port_text = entry.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(
                f"FCD_REDIS_SENTINELS entry {number} is not host:port (expected e.g. "
                "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379)"
            )
        pairs.append((host, int(port_text)))
    return tuple(pairs)


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
    #: Sentinel mode: the master name (``host`` then lists the Sentinels).
    master: str | None = None

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        auth = "***@" if self.authenticated else ""
        if self.master is not None:
            return f"{self.scheme}://{auth}{self.host}/{self.master}/{self.db}"
        return f"{self.scheme}://{auth}{self.host}{port}/{self.db}"

    def log_fields(self) -> dict[str, str | int | None]:
        fields: dict[str, str | int | None] = {
            "redis_host": self.host,
            "redis_port": self.port,
            "redis_db": self.db,
        }
        if self.master is not None:
            fields["redis_sentinel_master"] = self.master
        return fields


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
