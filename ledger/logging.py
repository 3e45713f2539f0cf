"""structlog, configured once per process: contextvars first, JSON lines unless on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from ledger.settings import LogFormat


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
