"""deploy/healthcheck.py, the image's HEALTHCHECK: healthy while the process answers /healthz.

The real script runs against a real intake process (``python -m producer``) on loopback.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest

from devenv.processes import ProcessGroup
from devenv.redis_server import free_port
from tests.deploy.conftest import service_env
from tests.deploy.dockerfile import ROOT

SCRIPT = ROOT / "deploy" / "healthcheck.py"


def _script() -> ModuleType:
    """The script as a module (it is a file in the image, not part of a package)."""
    spec = importlib.util.spec_from_file_location("fcd_healthcheck", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cmdline", "environ", "url"),
    [
        (["python", "-m", "producer"], {}, "http://127.0.0.1:8080/healthz"),
        (["python", "-m", "producer"], {"FCD_HTTP_PORT": "9000"}, "http://127.0.0.1:9000/healthz"),
        (["python", "-m", "worker", "--queue", "bulk"], {}, "http://127.0.0.1:9108/healthz"),
        (["python", "-m", "worker"], {"FCD_METRICS_PORT": "9200"}, "http://127.0.0.1:9200/healthz"),
        (
            ["python", "-m", "stripe_emulator", "--port", "12111"],
            {},
            "http://127.0.0.1:12111/_emulator/accounts?limit=1",
        ),
        (["python", "-m", "worker"], {"FCD_HEALTHCHECK_URL": "http://x/y"}, "http://x/y"),
    ],
)
def test_the_url_follows_the_containers_role(
    cmdline: list[str], environ: dict[str, str], url: str
) -> None:
    """PID 1's command picks the port: the intake's, a worker's metrics port, the emulator's."""
    assert _script().health_url(environ, cmdline) == url


def _check(port: int) -> subprocess.CompletedProcess[str]:
    env = {"FCD_HTTP_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthy_while_the_intake_answers_then_unhealthy(
    group: ProcessGroup, redis_url: str, namespace: str
) -> None:
    """Exit 0 while a real intake serves /healthz on FCD_HTTP_PORT; exit 1 once it stopped."""
    port = free_port()
    env = service_env(redis_url, namespace, "http://127.0.0.1:9") | {"FCD_HTTP_PORT": str(port)}
    group.start("intake", ["-m", "producer"], env)
    group.wait_for_line("intake", "listening on")
    healthy = _check(port)
    assert healthy.returncode == 0, healthy.stderr
    group.stop(["intake"])
    unhealthy = _check(port)
    assert unhealthy.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz did not answer 200" in unhealthy.stderr
