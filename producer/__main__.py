"""``python -m producer``: serve the HTTP intake (settings from ``FCD_*``, see the README)."""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from ledger.durability import RedisRefused
from ledger.logging import announce_redis, configure_logging
from ledger.settings import InvalidSettings, load_settings
from producer.http.app import create_app
from producer.http.settings import IntakeSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producer", description=__doc__)
    parser.parse_args(argv)
    try:
        settings = load_settings(IntakeSettings)
    except InvalidSettings as exc:
        print(f"python -m producer: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    announce_redis(settings, "intake")
    app = create_app(settings)
    try:
        _serve(app, settings)
    except RedisRefused as exc:  # maxmemory-policy, FCD_DURABILITY: the message says the fix
        print(f"python -m producer: {exc}", file=sys.stderr)
        return 1
    return 0


def _serve(app: web.Application, settings: IntakeSettings) -> None:
    web.run_app(
        app,
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=lambda _: print(
            f"fcd intake listening on http://{settings.http_host}:{settings.http_port}",
            flush=True,
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
