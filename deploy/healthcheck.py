"""Container health check (the image's ``HEALTHCHECK``): is this container's process alive?

Asks ``GET /healthz`` of the process on loopback: the intake on ``FCD_HTTP_PORT`` (8080), a
worker on ``FCD_METRICS_PORT`` (9108: the workers' metrics and health port); the demo
image's Stripe emulator is asked for one account on its ``--port``. Which one is running is read
from PID 1's command line (the image runs one process: ``python -m producer``, ``python -m
worker`` or ``python -m stripe_emulator``); ``FCD_HEALTHCHECK_URL`` overrides. Exit 0 when it
answers 200, 1 otherwise: Docker's contract. Standard library only, as the image's Python runs it
before anything else is known to work. Kubernetes does not use this: its probes ask the same
endpoints directly (deploy/k8s).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_SECONDS = 3.0
SERVICE_PORTS = {"producer": ("FCD_HTTP_PORT", "8080"), "worker": ("FCD_METRICS_PORT", "9108")}
EMULATOR = "stripe_emulator"


def health_url(environ: dict[str, str], pid1_cmdline: list[str]) -> str:
    """The URL to ask: ``FCD_HEALTHCHECK_URL``, else the role's port from PID 1's command."""
    if environ.get("FCD_HEALTHCHECK_URL"):
        return environ["FCD_HEALTHCHECK_URL"]
    if EMULATOR in pid1_cmdline:
        port = "12111"
        if "--port" in pid1_cmdline[:-1]:
            port = pid1_cmdline[pid1_cmdline.index("--port") + 1]
        return f"http://127.0.0.1:{port}/_emulator/accounts?limit=1"
    role = next((arg for arg in pid1_cmdline if arg in SERVICE_PORTS), "producer")
    variable, default = SERVICE_PORTS[role]
    return f"http://127.0.0.1:{environ.get(variable, default)}/healthz"


def _pid1_cmdline() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def check(url: str) -> bool:
    """True if ``url`` answers 200 within the timeout."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    url = health_url(dict(os.environ), _pid1_cmdline())
    if check(url):
        return 0
    print(f"unhealthy: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
