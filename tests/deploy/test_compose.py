"""deploy/compose.yaml: the local stack is well-formed and runs what production runs.

One test is ``docker compose config`` where Docker's compose plugin exists; every other test is
structural and runs everywhere (services, image targets that exist in the Dockerfile, the
Procfile's commands, non-root users, health checks, grace periods, required settings, mounts
that exist and retention policies the real loader accepts).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from producer.http.settings import IntakeSettings
from retention.policy import load_policies
from tests.deploy.dockerfile import DOCKERFILE, ROOT, stages
from worker.settings import WorkerSettings

COMPOSE = ROOT / "deploy" / "compose.yaml"
SERVICES = {"redis", "emulator", "worker", "worker-bulk", "web"}
ROLES: dict[str, type[BaseSettings]] = {
    "web": IntakeSettings,
    "worker": WorkerSettings,
    "worker-bulk": WorkerSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _compose_plugin() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, timeout=30, check=False
    )
    return probe.returncode == 0


def test_compose_file_is_valid(compose: dict[str, Any]) -> None:
    """Where Docker has its compose plugin, ``docker compose config`` (which needs no engine)
    accepts the file. Where it has not (this machine: a docker client without the plugin, and
    no engine), the file must at least declare the stack's services, each with an image or a
    build, and only ``x-`` extension keys beside them: the structural tests below check the rest."""
    if _compose_plugin():
        checked = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        return
    assert set(compose["services"]) == SERVICES
    assert all("image" in s or "build" in s for s in compose["services"].values())
    extra = set(compose) - {"name", "services", "volumes"}
    assert all(key.startswith("x-") for key in extra), extra


def test_builds_use_dockerfile_targets_production_except_the_emulator(
    compose: dict[str, Any],
) -> None:
    """The service containers run the production target; only the emulator runs demo."""
    dockerfile_stages = stages(DOCKERFILE.read_text())
    for name, service in compose["services"].items():
        if name == "redis":
            continue
        build = service["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert build["target"] in dockerfile_stages
        assert build["target"] == ("demo" if name == "emulator" else "production"), name


def test_commands_are_the_procfiles(compose: dict[str, Any]) -> None:
    """web, worker and worker-bulk run the same command as the Procfile line of that name."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        program = [w for w in shlex.split(command) if "=" not in w]
        assert compose["services"][name]["command"] == program


def test_containers_run_as_the_images_user_read_only_without_capabilities(
    compose: dict[str, Any],
) -> None:
    """Every container built here runs as the Dockerfile's uid with a read-only root and no
    capabilities."""
    uid = stages(DOCKERFILE.read_text())["production"].all("USER")[-1].args
    for name, service in compose["services"].items():
        if "build" in service:
            assert service["user"] == uid, name
            assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name


def test_health_checks_and_startup_order(compose: dict[str, Any]) -> None:
    """Every service has a health check, and waits for the services it depends on to be healthy."""
    services = compose["services"]
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency]


def test_workers_get_longer_to_stop_than_their_drain(compose: dict[str, Any]) -> None:
    """stop_grace_period exceeds the job timeout (the longest an attempt runs) by 30 s."""
    timeout = WorkerSettings.model_fields["job_timeout_seconds"].default
    for name in ("worker", "worker-bulk"):
        service = compose["services"][name]
        assert "FCD_JOB_TIMEOUT_SECONDS" not in service["environment"]
        assert int(service["stop_grace_period"].removesuffix("s")) >= timeout + 30


def test_every_required_setting_is_given(compose: dict[str, Any]) -> None:
    """Each role's settings without a default are in its service's environment."""
    for name, cls in ROLES.items():
        required = {f"FCD_{f.upper()}" for f, i in cls.model_fields.items() if i.is_required()}
        assert required <= set(compose["services"][name]["environment"]), name


def test_retention_mounts_exist_and_the_policies_load(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """The bulk worker's mounted files exist in deploy/, and laid out as mounted they load with
    the real policy loader (files a policy names sit beside it)."""
    service = compose["services"]["worker-bulk"]
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if not source.startswith((".", "/")):  # a named volume (the archive's), not a file
            assert source in compose["volumes"], source
            continue
        origin = (COMPOSE.parent / source).resolve()
        assert origin.is_file(), source
        placed = tmp_path / target.lstrip("/")
        placed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(origin, placed)
    policies = tmp_path / service["environment"]["FCD_RETENTION_POLICIES"].lstrip("/")
    assert load_policies(policies)
