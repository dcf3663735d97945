"""The deployment files agree with each other and with the service: no Docker, no cluster, no network.

The schema checks (compose spec, Kubernetes, hadolint, promtool) live in deploy/validate.sh; these tests
check the properties that matter to zooserve.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from service.settings import Settings  # noqa: E402
from zooserve.cli import COMMANDS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
PORT = 8000


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s(kind: str) -> dict:
    found = [d for f in sorted(K8S.glob("*.yaml")) for d in load_docs(f) if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its text, from `FROM ... AS name` to the next FROM."""
    stages, name = {}, None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if m:
            name = m.group(1)
            stages[name] = ""
        if name:
            stages[name] += line + "\n"
    return stages


def env_names(obj) -> set[str]:
    """Every ZOOSERVE_* variable set anywhere in a parsed manifest (env lists, env maps, ConfigMap data)."""
    names = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and k.startswith("ZOOSERVE_"):
                names.add(k)
            if k == "name" and isinstance(v, str) and v.startswith("ZOOSERVE_"):
                names.add(v)
            names |= env_names(v)
    elif isinstance(obj, list):
        for v in obj:
            names |= env_names(v)
    return names


# --- Dockerfile -------------------------------------------------------------------------------------


def test_dockerfile_has_the_three_targets():
    assert {"serve", "serve-gpu", "train"} <= set(dockerfile_stages())


@pytest.mark.parametrize("stage", ["serve", "serve-gpu"])
def test_serving_stages_install_no_torch_and_run_as_non_root(stage):
    stages = dockerfile_stages()
    text = stages[stage] + stages.get("serve-build", "") if stage == "serve" else stages[stage]
    assert "torch" not in re.sub(r"#.*", "", text.replace('import torch"', "")), "a serving image installs torch"
    assert "[train]" not in text
    users = re.findall(r"^USER\s+(\S+)", stages[stage], re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'HEALTHCHECK[^\n]*\n?[^\n]*CMD \["zooserve", "healthcheck"\]', stages[stage])
    assert 'CMD ["zooserve", "serve"]' in stages[stage]
    assert "ZOOSERVE_HOST=0.0.0.0" in stages[stage]


def test_gpu_stage_swaps_in_onnxruntime_gpu():
    text = dockerfile_stages()["serve-gpu"]
    assert re.search(r"nvidia/cuda:[\w.]+-cudnn-runtime", (ROOT / "Dockerfile").read_text())
    assert "uninstall -y onnxruntime" in text and "onnxruntime-gpu==" in text


def test_train_stage_uses_the_cpu_torch_index():
    text = dockerfile_stages()["train"]
    assert "https://download.pytorch.org/whl/cpu" in text and "torch==2.13.0" in text


def test_base_images_are_pinned():
    for image in re.findall(r"^ARG \w+_IMAGE=(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE):
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), image


def test_dockerignore_keeps_the_context_small():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".venv-serve", "runs", ".git", "**/__pycache__"} <= ignored


# --- docker-compose.yml ---------------------------------------------------------------------------


def test_compose_zooserve_is_hardened_and_healthchecked(compose):
    svc = compose["services"]["zooserve"]
    assert svc["build"]["target"] == "serve"
    assert f"{PORT}:{PORT}" in svc["ports"]
    assert svc["read_only"] is True
    assert any(t.startswith("/tmp") for t in svc["tmpfs"])
    assert svc["user"].split(":")[0] not in ("root", "0")
    assert svc["healthcheck"]["test"] == ["CMD", "zooserve", "healthcheck"]
    assert svc["restart"] in ("unless-stopped", "always", "on-failure")
    assert svc["deploy"]["resources"]["limits"]["memory"]


def test_compose_gpu_profile_reserves_an_nvidia_device(compose):
    svc = compose["services"]["zooserve-gpu"]
    assert svc["profiles"] == ["gpu"] and svc["build"]["target"] == "serve-gpu"
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_compose_train_profile_writes_the_shared_models_volume_then_reloads(compose):
    train, serve = compose["services"]["train"], compose["services"]["zooserve"]
    assert train["profiles"] == ["train"] and train["build"]["target"] == "train"
    assert "models:/srv/models" in train["volumes"] and "models:/srv/models:ro" in serve["volumes"]
    command = " ".join(train["command"])
    assert "zooserve train" in command and "/v2/repository/models/" in command and "/load" in command
    # the load is an admin action: the job sends the admin key the server is given
    assert "X-Admin-Key" in command and train["environment"]["ADMIN_KEY"] == "${ZOOSERVE_ADMIN_KEY:-}"
    assert serve["environment"]["ZOOSERVE_ADMIN_KEY"] == "${ZOOSERVE_ADMIN_KEY:-}"
    assert serve["environment"]["ZOOSERVE_REPOSITORY_CONTROL"] == "${ZOOSERVE_REPOSITORY_CONTROL:-false}"


def test_prometheus_scrapes_zooserve_metrics(compose):
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "zooserve")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert f"zooserve:{PORT}" in targets and "zooserve" in compose["services"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./deploy/prometheus/prometheus.yml:") for m in mounts)


def test_grafana_is_provisioned_with_the_dashboard(compose):
    ds = yaml.safe_load(next((ROOT / "deploy/grafana/provisioning/datasources").glob("*.yml")).read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/zooserve.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for needed in ("zooserve_requests_total", "zooserve_request_duration_seconds_bucket", "histogram_quantile(0.99",
                   "zooserve_queue_wait_seconds", "zooserve_batch_size", "zooserve_model_ready",
                   "zooserve_generated_tokens_total", "zooserve_time_to_first_token_seconds"):
        assert needed in exprs, needed


def test_dashboard_uses_only_declared_metrics():
    spec = importlib.util.spec_from_file_location("check_dashboard", ROOT / "deploy/check_dashboard.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/zooserve.json").read_text())
    assert check.unknown_metrics(dashboard, check.declared_metrics()) == set()
    assert check.unknown_metrics({"panels": [{"targets": [{"expr": "rate(zooserve_nope_total[1m])"}]}]},
                                 check.declared_metrics()) == {"zooserve_nope_total"}


# --- Kubernetes -----------------------------------------------------------------------------------


def test_deployment_probes_and_security():
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]
    tmp_mounts = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"}
    assert tmp_mounts and all("emptyDir" in v for v in pod["volumes"] if v["name"] in tmp_mounts)


def test_ports_agree_between_configmap_deployment_and_service():
    (container,) = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == PORT == int(k8s("ConfigMap")["data"]["ZOOSERVE_PORT"])
    (svc_port,) = k8s("Service")["spec"]["ports"]
    assert svc_port["targetPort"] in (port["name"], PORT)


def test_service_and_pdb_select_the_deployment_pods():
    deployment = k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s("Service")["spec"]["selector"].items() <= labels.items()
    assert k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_hpa_targets_the_deployment():
    hpa, deployment = k8s("HorizontalPodAutoscaler"), k8s("Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2  # the PDB's minAvailable: 1 then leaves room to drain a node


def test_deployment_reads_the_configmap():
    (container,) = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
    assert k8s("ConfigMap")["metadata"]["name"] in refs
    # repository control only through an optional Secret (off when it does not exist)
    (secret,) = [e["secretRef"] for e in container["envFrom"] if "secretRef" in e]
    assert secret["optional"] is True
    assert "ZOOSERVE_REPOSITORY_CONTROL" not in k8s("ConfigMap")["data"]


def test_training_job_writes_the_models_volume():
    pod = k8s("Job")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("zooserve-train")
    assert any(m["mountPath"] == "/srv/models" for m in container["volumeMounts"])
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_kserve_predictor_is_the_v2_server():
    (isvc,) = load_docs(K8S / "kserve-inferenceservice.yaml")
    assert isvc["apiVersion"].startswith("serving.kserve.io/") and isvc["kind"] == "InferenceService"
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["ports"][0]["containerPort"] == PORT


def test_every_zooserve_variable_is_a_settings_field(compose):
    fields = set(Settings.model_fields)
    manifests = [compose] + [d for f in sorted(K8S.glob("*.yaml")) for d in load_docs(f)]
    names = set().union(*(env_names(m) for m in manifests))
    names |= set(re.findall(r"\b(ZOOSERVE_[A-Z0-9_]+)=", (ROOT / "Dockerfile").read_text()))
    assert names, "no ZOOSERVE_* variables found"
    # ZOOSERVE_BATCHING__<MODEL>__... is a nested field: its first part must be a field.
    unknown = {n for n in names if n.removeprefix("ZOOSERVE_").split("__")[0].lower() not in fields}
    assert not unknown, f"not fields of service.settings.Settings: {sorted(unknown)}"


def zooserve_command_lines(compose: dict) -> list[list[str]]:
    """Every zooserve command line that the Dockerfile, the compose file and the manifests run, as argv."""
    lines = [json.loads(m) for m in re.findall(r"\bCMD (\[.*\])", (ROOT / "Dockerfile").read_text())]
    for svc in compose["services"].values():
        lines.append(svc.get("healthcheck", {}).get("test", [])[1:])  # after "CMD"
        command = svc.get("command") or []
        if command[:2] == ["sh", "-c"]:  # a shell script: each `&&` step
            words = shlex.split(command[2].replace("$$", "$"))
            starts = [i for i, w in enumerate(words) if w.startswith("zooserve")]
            lines += [words[i:words.index("&&", i) if "&&" in words[i:] else None] for i in starts]

    def containers(obj):
        if isinstance(obj, dict):
            if "command" in obj and "image" in obj:
                yield obj.get("command", []) + obj.get("args", [])
            for v in obj.values():
                yield from containers(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from containers(v)

    lines += [c for f in sorted(K8S.glob("*.yaml")) for d in load_docs(f) for c in containers(d)]
    return [line for line in lines if line and line[0].startswith("zooserve")]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_deployments_run_commands_that_exist(compose):
    """The images, compose and the manifests call console scripts that pyproject.toml still declares, and
    `zooserve` subcommands that the CLI has: a renamed command fails here, not in a cluster."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    lines = zooserve_command_lines(compose)
    assert {"serve", "healthcheck", "train"} <= {line[1] for line in lines if line[0] == "zooserve"}
    for line in lines:
        assert line[0] in scripts, line
        if line[0] == "zooserve":
            assert line[1] in COMMANDS, line


def test_the_healthcheck_command_asks_readiness(monkeypatch):
    from service import healthcheck

    asked = []

    class Ready:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake(url, timeout):
        asked.append(url)
        if "9999" in url:
            raise urllib.error.URLError("connection refused")
        return Ready()

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    monkeypatch.setenv("ZOOSERVE_PORT", "8123")
    assert healthcheck.main([]) == 0 and asked == ["http://127.0.0.1:8123/v2/health/ready"]
    monkeypatch.setenv("ZOOSERVE_PORT", "9999")
    assert healthcheck.main([]) == 1
    assert healthcheck.main(["--port", "8124"]) == 0 and asked[-1] == "http://127.0.0.1:8124/v2/health/ready"


def test_tests_run_the_serving_stack_the_image_pins():
    """`make test` installs with the serve constraints: the suite exercises the onnxruntime (and fastapi,
    numpy, ...) that `make serve` and the image run, so a card figure checked here is the one users get."""
    from importlib import metadata

    pins = dict(line.split("==") for line in (ROOT / "deploy" / "docker" / "constraints-serve.txt").read_text()
                .splitlines() if "==" in line and not line.startswith("#"))
    for name in ("onnxruntime", "numpy", "fastapi", "uvicorn", "pillow"):
        assert metadata.version(name) == pins[name], name


def test_the_shutdown_drain_and_grace_fit_the_pods_termination_grace_period():
    data = k8s("ConfigMap")["data"]
    drain, grace = float(data["ZOOSERVE_SHUTDOWN_DRAIN_S"]), float(data["ZOOSERVE_SHUTDOWN_GRACE_S"])
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    probe = pod["containers"][0]["readinessProbe"]
    assert drain >= probe["periodSeconds"] * 2  # the Service sees the 503 before the port closes
    assert drain + grace < pod["terminationGracePeriodSeconds"]
