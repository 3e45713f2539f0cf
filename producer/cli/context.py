"""Shared plumbing of the ``fcd`` commands: settings, the ledger, errors."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import ConnectionError as RedisConnectionError

from control.metrics import CounterBuffer
from ledger.audit import AuditTrail, process_name
from ledger.connection import redis_client
from ledger.logging import announce_redis, configure_logging
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
async def open_ledger(
    settings: ProducerSettings | None = None, *, acts: bool = False
) -> AsyncIterator[Ledger]:
    """A ledger on ``FCD_REDIS_URL``; log lines (audit events included) go to stderr.

    A command that changes something (``acts``) logs which Redis it uses first; any command
    warns when that is the built-in default outside the demo.
    """
    settings = settings or cli_settings()
    configure_logging(settings.log_format, settings.log_level, stream=sys.stderr)
    audit = AuditTrail(settings.audit_log_path)
    if acts or (settings.uses_default_redis and not settings.demo):  # the warning: reads too
        announce_redis(settings, "cli")
    redis = redis_client(settings)
    counters = CounterBuffer(redis, settings.key_prefix)
    try:
        try:
            await redis.ping()
        except (RedisConnectionError, OSError) as exc:
            where = settings.redis_location()
            raise CliError(f"cannot reach Redis at {where}: {exc}") from exc
        ledger = Ledger.from_settings(redis, settings, audit, actor=cli_actor())
        ledger.on_terminal = counters.observe_completion
        try:
            yield ledger
            await counters.flush()
        finally:
            await ledger.close_archive()
    finally:
        await redis.aclose()
        audit.close()


def cli_actor() -> str:
    """How audit records name a ``fcd`` process: ``cli:<host>:<pid>`` (not a worker's host:pid)."""
    return f"cli:{process_name()}"
