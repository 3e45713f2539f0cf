"""deploy/Dockerfile: stages, a non-root user, a health check, the lock, and no emulator in
production. No Docker engine runs on this machine (``docker`` is only a client), so the image is
checked by reading the Dockerfile, and by building the production stage's wheel from exactly the
files that stage copies, the way its ``RUN`` does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.dockerfile import DOCKERFILE, ROOT, Stage, chain, context_sources, stages

SERVICE_PACKAGES = {"archive", "ledger", "control", "events", "retention", "producer", "worker"}
DEV_ONLY = ("stripe_emulator", "devenv", "tests", "bench")
RUNTIME_STAGES = ("production", "demo")


@pytest.fixture(scope="module")
def parsed() -> dict[str, Stage]:
    return stages(DOCKERFILE.read_text())


def test_multi_stage_with_production_as_the_default_target(parsed: dict[str, Stage]) -> None:
    """Build, demo and production stages exist; production is last, so a plain build makes it."""
    assert {"base", "build", "build-demo", "demo", "production"} <= set(parsed)
    assert list(parsed)[-1] == "production"


@pytest.mark.parametrize("target", RUNTIME_STAGES)
def test_runtime_images_run_as_a_numeric_non_root_user(
    parsed: dict[str, Stage], target: str
) -> None:
    """The last USER of each runtime image is a numeric uid other than 0, created in the base
    stage (numeric, so Kubernetes' runAsNonRoot can verify it)."""
    users = parsed[target].all("USER")
    assert users, f"{target} sets no USER: it would run as root"
    uid = users[-1].args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    creates = " ".join(i.args for stage in chain(parsed, target) for i in stage.all("RUN"))
    assert f"--uid {uid}" in creates


@pytest.mark.parametrize("target", RUNTIME_STAGES)
def test_runtime_images_have_a_health_check(parsed: dict[str, Stage], target: str) -> None:
    """Each runtime image has a HEALTHCHECK running deploy/healthcheck.py, copied into it."""
    [check] = parsed[target].all("HEALTHCHECK")
    assert "CMD" in check.words and "NONE" not in check.words
    assert "/app/healthcheck.py" in check.args
    assert any("deploy/healthcheck.py" in srcs for _, srcs in parsed[target].copies())


def test_production_copies_no_emulator_devenv_or_tests(parsed: dict[str, Stage]) -> None:
    """Nothing the production image is built from comes from stripe_emulator/, devenv/, tests/
    or bench/, and nothing copies the whole build context."""
    sources = context_sources(chain(parsed, "production"))
    assert sources, "production copies nothing?"
    assert "." not in sources and "./" not in sources
    leaked = [s for s in sources if s.strip("./").split("/")[0] in DEV_ONLY]
    assert not leaked, f"production image would contain {leaked}"


def test_demo_image_adds_the_emulator_and_devenv(parsed: dict[str, Stage]) -> None:
    """The demo target (compose's emulator) has what production lacks."""
    sources = context_sources(chain(parsed, "demo"))
    assert {"stripe_emulator", "devenv"} <= set(sources)


def _pip_installs(parsed: dict[str, Stage], target: str) -> list[list[str]]:
    commands = []
    for stage in chain(parsed, target):
        for run in stage.all("RUN"):
            for part in run.args.split("&&"):
                words = shlex.split(part)
                if "pip" in " ".join(words[:1]) and "install" in words:
                    commands.append(words)
    return commands


@pytest.mark.parametrize("target", RUNTIME_STAGES)
def test_dependencies_come_only_from_the_runtime_lock(
    parsed: dict[str, Stage], target: str
) -> None:
    """Every pip install is the hash-checked runtime lock, or the project itself with --no-deps
    and --no-build-isolation (its build backend is in the lock): nothing resolved at build time."""
    installs = _pip_installs(parsed, target)
    locked = [c for c in installs if "--require-hashes" in c]
    assert [c[c.index("-r") + 1] for c in locked] == ["requirements/runtime.txt"]
    rest = [c for c in installs if c not in locked]
    assert rest and all("--no-deps" in c and "--no-build-isolation" in c for c in rest), rest
    assert all(c[-1] == "." for c in rest), rest
    assert "requirements/runtime.txt" in context_sources(chain(parsed, target))


def _production_context(parsed: dict[str, Stage], into: Path) -> Path:
    """Lay out the files the production chain copies from the build context, as its build
    stage sees them (the Dockerfile copies each directory to the same relative path)."""
    for source in context_sources(chain(parsed, "production")):
        origin = ROOT / source
        target = into / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, target)
    return into


def _tracked_data_files(packages: set[str]) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", *sorted(packages)], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {path for path in listed if not path.endswith(".py")}


def test_production_wheel_holds_the_service_and_its_data_only(
    parsed: dict[str, Stage], tmp_path: Path
) -> None:
    """Building the project from the production stage's files (as its RUN does) gives a wheel
    with exactly the service's packages, every data file they track (Lua, templates), and no
    emulator or devenv; the service imports from it."""
    context = _production_context(parsed, tmp_path / "context")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(context)],
        check=True, capture_output=True,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("fc_disconnect-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == SERVICE_PACKAGES
    missing = _tracked_data_files(SERVICE_PACKAGES) - set(names)
    assert not missing, f"data files left out of the wheel (pyproject package-data): {missing}"
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {**os.environ, "PYTHONPATH": str(unpacked)}  # the wheel's packages come first
    imported = subprocess.run(
        [sys.executable, "-c", "import worker.app, producer.http.app; print(worker.app.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith(str(unpacked))
