"""Environment for running the service's processes as a deployment would, on the test's own
Redis key prefix and queues."""

from __future__ import annotations

import json

from devenv.processes import worker_env
from tests.producer.http.conftest import TOKENS, WEBHOOK_SECRETS


def service_env(redis_url: str, namespace: str, emulator_url: str) -> dict[str, str]:
    """``FCD_*`` for the intake and both kinds of worker (one environment, as on a platform)."""
    env = worker_env(
        redis_url,
        emulator_url,
        key_prefix=f"{namespace}fcd:",
        queue_name=f"{namespace}urgent",
        bulk_queue_name=f"{namespace}bulk",
        retry_base_seconds="0.05",
        retry_cap_seconds="0.2",
    )
    env["FCD_API_TOKENS"] = json.dumps(TOKENS)
    env["FCD_STRIPE_WEBHOOK_SECRETS"] = ",".join(WEBHOOK_SECRETS)
    env["FCD_HTTP_HOST"] = "127.0.0.1"
    return env
