"""structlog, configured once per process: contextvars first, JSON lines unless on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from ledger.settings import BaseServiceSettings, LogFormat


def configure_logging(
    log_format: LogFormat = LogFormat.AUTO, level: str = "INFO", stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging (arq, aiohttp) to render through the same pipeline.

    Log lines go to ``stream`` (stdout by default; the CLI uses stderr to keep stdout for output).
    """
    stream = stream or sys.stdout
    use_console = log_format == LogFormat.CONSOLE or (
        log_format == LogFormat.AUTO and stream.isatty()
    )
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer, foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def announce_redis(settings: BaseServiceSettings, role: str) -> None:
    """Log which Redis this process uses (host, port, db; never the password), and warn loudly
    when it is the built-in default outside the demo: with ``FCD_REDIS_URL`` unset, every
    process silently agrees on ``127.0.0.1:6379/0``, which in production is rarely what anyone
    meant. Called once at start-up by the intake, the workers and every ``fcd`` command that acts.
    """
    location = settings.redis_location()
    log = structlog.get_logger("fcd.redis")
    log.info("redis.target", role=role, redis=str(location), **location.log_fields())
    if settings.uses_default_redis and not settings.demo:
        log.warning(
            "redis.default_url",
            role=role,
            redis=str(location),
            message="FCD_REDIS_URL is not set: using the built-in default "
            f"{location}. Set FCD_REDIS_URL to the Redis holding your ledger "
            "(FCD_DEMO=1 silences this for local demos).",
        )
