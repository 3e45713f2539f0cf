"""deploy/k8s: valid Kubernetes objects that hold what an operator expects of them.

Every object is validated, offline, against the Kubernetes API schemas of the versions the
manifests are written for (kubernetes-validate, strict: unknown fields are errors). Then what a
schema cannot say: probes on the endpoints the processes serve, resources, disruption budgets,
grace periods longer than a worker's drain, secrets only from a Secret, non-root pods, the
autoscalers, and retention policies from a ConfigMap that the real policy loader accepts.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from producer.http.app import create_app
from producer.http.settings import IntakeSettings
from retention.policy import load_policies
from tests.deploy.dockerfile import DOCKERFILE, ROOT, stages
from tests.producer.http.conftest import make_settings
from worker.settings import WorkerSettings

K8S = ROOT / "deploy" / "k8s"
# Written for Kubernetes 1.33 (the oldest release they target: PDB unhealthyPodEvictionPolicy is
# GA since 1.31) and checked against the newest schema kubernetes-validate ships as well, so an
# API removed later shows up here first.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "API_KEY")
GRACE_MARGIN_SECONDS = 30


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


DOCUMENTS = _documents()


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc["kind"] == kind]


def _deployments() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _kind("Deployment")}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def _role(deployment: dict[str, Any]) -> str:
    command = " ".join(_container(deployment)["command"])
    if "-m producer" in command:
        return "intake"
    return "worker-bulk" if "--queue bulk" in command else "worker"


def _config() -> dict[str, str]:
    [config] = [
        doc for doc in _kind("ConfigMap") if doc["metadata"]["name"] == "fc-disconnect-config"
    ]
    data: dict[str, str] = config["data"]
    return data


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each variable a container gets: its own env entries, and the keys of ConfigMaps it takes
    whole (as ``{"configMap": name}``)."""
    env = {item["name"]: item for item in container.get("env", [])}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        [config] = [d for d in _kind("ConfigMap") if d["metadata"]["name"] == name]
        for key in config["data"]:
            env.setdefault(key, {"name": key, "configMap": name})
    return env


def test_kustomization_lists_every_manifest() -> None:
    """``kubectl apply -k deploy/k8s`` applies every file here, and only those."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "document",
    DOCUMENTS,
    ids=[f"{name}:{doc['kind']}:{doc['metadata']['name']}" for name, doc in DOCUMENTS],
)
def test_every_object_is_valid_for_the_stated_kubernetes_version(
    document: tuple[str, dict[str, Any]], version: str
) -> None:
    """The object validates against that version's API schema, strictly (an unknown or
    misspelt field fails). No custom resources are used, so every object has a schema."""
    name, doc = document
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return
    except jsonschema.ValidationError as exc:  # kubernetes-validate raises it or a subclass
        where = ".".join(str(p) for p in exc.path)
        problem = f"{name} {doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}"
    pytest.fail(f"Kubernetes {version}: {problem}", pytrace=False)


def _intake_paths() -> set[str]:
    app = create_app(make_settings("redis://127.0.0.1:1/0", "k8s:"))
    return {route.resource.canonical for route in app.router.routes() if route.resource}


def _probe_target(container: dict[str, Any], probe: str) -> tuple[str, int]:
    get = container[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
    return get["path"], port


@pytest.mark.parametrize("name", sorted(_deployments()))
def test_probes_ask_the_real_endpoints_on_the_real_port(name: str) -> None:
    """Liveness and startup ask /healthz, readiness /readyz, on the port the process listens on:
    the intake's FCD_HTTP_PORT (routes taken from the real app), a worker's FCD_METRICS_PORT
    (where workers serve /metrics, /healthz and /readyz)."""
    deployment = _deployments()[name]
    container = _container(deployment)
    port_setting = "FCD_HTTP_PORT" if _role(deployment) == "intake" else "FCD_METRICS_PORT"
    port = int(_config()[port_setting])
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert probe in container, f"{name} has no {probe}"
        assert _probe_target(container, probe) == (path, port), (name, probe)
    if _role(deployment) == "intake":
        assert {"/healthz", "/readyz", "/metrics"} <= _intake_paths()
        assert IntakeSettings.model_fields["http_port"].default == port
    else:  # the Procfile test asks a real worker's /healthz, /readyz and /metrics on its port
        assert WorkerSettings.model_fields["metrics_port"].default == port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


@pytest.mark.parametrize("name", sorted(_deployments()))
def test_containers_have_requests_and_limits(name: str) -> None:
    """CPU and memory requests (for scheduling) and a memory limit (so a leak is bounded)."""
    resources = _container(_deployments()[name])["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


@pytest.mark.parametrize("name", sorted(_deployments()))
def test_every_deployment_has_a_disruption_budget_that_allows_a_drain(name: str) -> None:
    """Exactly one PodDisruptionBudget selects the Deployment's pods; it lets a node drain
    proceed (never minAvailable >= replicas) and evicts not-ready pods (a paused fleet)."""
    deployment = _deployments()[name]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb for pdb in _kind("PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]  # fmt: skip
    assert len(budgets) == 1, name
    spec = budgets[0]["spec"]
    if "minAvailable" in spec:
        assert spec["minAvailable"] < deployment["spec"]["replicas"]
    else:
        assert spec["maxUnavailable"] >= 1
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def _job_timeout(container: dict[str, Any]) -> float:
    env = _env(container)
    item = env.get("FCD_JOB_TIMEOUT_SECONDS")
    if item is None:
        default: float = WorkerSettings.model_fields["job_timeout_seconds"].default
        return default
    return float(item["value"] if "value" in item else _config()["FCD_JOB_TIMEOUT_SECONDS"])


@pytest.mark.parametrize(
    "name", [n for n, d in sorted(_deployments().items()) if _role(d) != "intake"]
)
def test_worker_grace_period_outlasts_the_drain(name: str) -> None:
    """A worker's drain is bounded by one attempt, FCD_JOB_TIMEOUT_SECONDS (as the pod sets it,
    else the default); terminationGracePeriodSeconds is at least that plus 30 s."""
    deployment = _deployments()[name]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= _job_timeout(_container(deployment)) + GRACE_MARGIN_SECONDS


def _secret_settings() -> set[str]:
    classes: list[type[BaseSettings]] = [IntakeSettings, WorkerSettings]
    names = {"FCD_REDIS_URL"}  # its URL may carry the Redis password
    for cls in classes:
        for field, info in cls.model_fields.items():
            if SecretStr in (info.annotation, *getattr(info.annotation, "__args__", ())):
                names.add(f"FCD_{field.upper()}")
    return names


def test_secrets_come_only_from_a_secret() -> None:
    """Every secret setting (SecretStr fields, the Redis URL) a container gets comes from a
    secretKeyRef; no literal value, ConfigMap key or Secret object in the manifests holds one."""
    secret_names = _secret_settings()
    assert {"FCD_API_TOKENS", "FCD_STRIPE_API_KEY", "FCD_STRIPE_WEBHOOK_SECRETS"} <= secret_names
    assert not _kind("Secret"), "a Secret's values do not belong in the repository"
    for doc in _kind("ConfigMap"):
        assert not set(doc["data"]) & secret_names, doc["metadata"]["name"]
    for name, deployment in _deployments().items():
        for variable, item in _env(_container(deployment)).items():
            looks_secret = variable in secret_names or any(w in variable for w in SECRET_WORDS)
            if looks_secret:
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{name}: {variable}"


@pytest.mark.parametrize("name", sorted(_deployments()))
def test_every_required_setting_of_the_role_is_provided(name: str) -> None:
    """The settings a role cannot start without (no default) are all given to its container."""
    deployment = _deployments()[name]
    cls: type[BaseSettings] = IntakeSettings if _role(deployment) == "intake" else WorkerSettings
    required = {f"FCD_{f.upper()}" for f, info in cls.model_fields.items() if info.is_required()}
    assert required <= set(_env(_container(deployment))), required - set(
        _env(_container(deployment))
    )


def _image_uid() -> int:
    user = stages(DOCKERFILE.read_text())["production"].all("USER")[-1].args
    return int(user.split(":")[0])


@pytest.mark.parametrize("name", sorted(_deployments()))
def test_pods_run_as_the_images_non_root_user_without_privileges(name: str) -> None:
    """runAsNonRoot with the image's uid, no privilege escalation, a read-only root filesystem,
    no capabilities, the runtime's seccomp profile, and no service-account token."""
    pod = _deployments()[name]["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] == _image_uid() != 0
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    container = _container(_deployments()[name])["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("name", sorted(_deployments()))
def test_commands_are_the_procfiles_and_images_are_pinned(name: str) -> None:
    """Each Deployment runs a Procfile process's command, from a tagged image (never latest)."""
    container = _container(_deployments()[name])
    procfile = (ROOT / "Procfile").read_text().splitlines()
    commands = [shlex.split(line.split(":", 1)[1]) for line in procfile if ":" in line]
    programs = [[w for w in words if "=" not in w] for words in commands]
    assert container["command"] in programs
    repository, _, tag = container["image"].rpartition(":")
    assert repository and tag and tag != "latest"


def test_worker_autoscalers_scale_on_the_due_jobs_of_their_queue() -> None:
    """Each worker Deployment has one HPA on fcd_queue_jobs{queue=<its queue>, state="due"}; the
    bulk workers keep a replica (they run the sweeps' schedule); the intake is not autoscaled."""
    autoscalers = {
        hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in _kind("HorizontalPodAutoscaler")
    }
    workers = {n: d for n, d in _deployments().items() if _role(d) != "intake"}
    assert set(autoscalers) == set(workers)
    for name, deployment in workers.items():
        spec = autoscalers[name]["spec"]
        [metric] = spec["metrics"]
        queue = "bulk" if _role(deployment) == "worker-bulk" else "urgent"
        assert metric["external"]["metric"]["name"] == "fcd_queue_jobs"
        assert metric["external"]["metric"]["selector"]["matchLabels"] == {
            "queue": queue,
            "state": "due",
        }
        assert 1 <= spec["minReplicas"] < spec["maxReplicas"]


def test_retention_policies_come_from_a_configmap_the_loader_accepts(tmp_path: Path) -> None:
    """The bulk workers mount the retention ConfigMap where FCD_RETENTION_POLICIES points; its
    files, written out, load with the real policy loader (files they name included)."""
    [bulk] = [d for d in _deployments().values() if _role(d) == "worker-bulk"]
    container = _container(bulk)
    policies = Path(_env(container)["FCD_RETENTION_POLICIES"]["value"])
    [mount] = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == policies.parent]
    [volume] = [
        v for v in bulk["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    ]
    [config] = [
        d for d in _kind("ConfigMap") if d["metadata"]["name"] == volume["configMap"]["name"]
    ]
    for key, text in config["data"].items():
        (tmp_path / key).write_text(text)
    loaded = load_policies(tmp_path / policies.name)
    assert loaded and all(policy.schedule for policy in loaded.values())
