"""Shared plumbing of the ``fcd`` commands: settings, the ledger, errors."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ledger.audit import AuditTrail
from ledger.logging import configure_logging
from ledger.settings import InvalidSettings, load_settings
from ledger.store import Ledger
from producer.settings import ProducerSettings

EXIT_OPERATIONAL = 1
EXIT_BAD_INPUT = 2


class CliError(Exception):
    """An error to print to stderr (without a traceback) and exit with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_OPERATIONAL) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def cli_settings() -> ProducerSettings:
    """The CLI's settings from ``FCD_*``; a bad value is a clear error (exit 2), never a trace."""
    try:
        return load_settings(ProducerSettings)
    except InvalidSettings as exc:
        raise CliError(str(exc), EXIT_BAD_INPUT) from None


@asynccontextmanager
async def open_ledger(settings: ProducerSettings | None = None) -> AsyncIterator[Ledger]:
    """A ledger on ``FCD_REDIS_URL``; log lines (audit events included) go to stderr."""
    settings = settings or cli_settings()
    configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
    audit = AuditTrail(settings.audit_log_path)
    redis = Redis.from_url(settings.redis_url)
    try:
        try:
            await redis.ping()
        except (RedisConnectionError, OSError) as exc:
            raise CliError(f"cannot reach Redis at {_safe_url(settings.redis_url)}: {exc}") from exc
        yield Ledger.from_settings(redis, settings, audit)
    finally:
        await redis.aclose()
        audit.close()


def _safe_url(url: str) -> str:
    """The Redis URL without any password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
