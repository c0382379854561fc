"""What the chart renders for Dagster, checked by Dagster's own code: the instance (dagster.yaml)
through the instance config schema and each configured class's schema, the workspace through
Dagster's workspace loader, the code servers' command lines through the `dagster api grpc`
command, and, for a run of each domain, the Kubernetes Job dagster-k8s's K8sRunLauncher
builds from the rendered launcher config and the domain's container context, validated against
the Kubernetes Job schema and the same policies as the chart's own pods.

No cluster is involved: the launcher gets a kubeconfig pointing nowhere and a recording API
client; nothing is sent anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from unittest import mock

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster import DagsterInstance
from dagster._cli.api import grpc_command
from dagster._config import process_config
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.workspace.load import location_origins_from_yaml_paths
from dagster._serdes.config_class import class_from_code_pointer
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from deploy_support import (
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    UI_PROXIES,
    assert_container_has_resources,
    assert_pod_is_restricted,
    credential_env_problems,
)

from mesh_assets.deploy import step_executor

FULL = f"{RELEASE}-datamesh"


def write_instance(rendered, directory: Path) -> Path:
    config_map = rendered.get("ConfigMap", f"{FULL}-instance")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dagster.yaml").write_text(config_map["data"]["dagster.yaml"])
    return directory


@pytest.fixture
def instance_config(rendered, tmp_path, monkeypatch):
    """The rendered dagster.yaml, validated by Dagster (the password env var is what the pods
    get from the Secret)."""
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-secret")
    config, custom_class = dagster_instance_config(str(write_instance(rendered, tmp_path / "home")))
    assert custom_class is None
    return config


def test_dagster_yaml_passes_the_instance_schema_and_every_class_schema(instance_config):
    assert set(instance_config["storage"]) == {"postgres"}
    assert instance_config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    from dagster_postgres import DagsterPostgresStorage

    result = process_config(DagsterPostgresStorage.config_type(), instance_config["storage"]["postgres"])
    assert result.success, result.errors
    for key in ("run_launcher", "run_coordinator", "scheduler", "compute_logs"):
        data = instance_config[key]
        klass = class_from_code_pointer(data["module"], data["class"])
        result = process_config(klass.config_type(), data.get("config") or {})
        assert result.success, (key, result.errors)
    assert instance_config["run_launcher"]["class"] == "K8sRunLauncher"
    assert instance_config["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_workspace_loads_through_dagster(rendered, domains, tmp_path):
    path = tmp_path / "workspace.yaml"
    path.write_text(rendered.get("ConfigMap", f"{FULL}-workspace")["data"]["workspace.yaml"])
    origins = location_origins_from_yaml_paths([str(path)])
    assert all(isinstance(o, GrpcServerCodeLocationOrigin) for o in origins)
    assert {o.location_name: (o.host, o.port) for o in origins} == {
        d["name"]: (f"{FULL}-cs-{d['resourceName']}", 3030) for d in domains
    }


def code_server(rendered, domain: dict) -> tuple[list[str], dict[str, dict]]:
    deployment = rendered.get("Deployment", f"{FULL}-cs-{domain['resourceName']}")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return container["args"], {e["name"]: e for e in container["env"]}


def test_code_server_command_lines_parse_as_dagster_api_grpc(rendered, domains, monkeypatch):
    for domain in domains:
        args, env = code_server(rendered, domain)
        monkeypatch.setenv("DAGSTER_CONTAINER_IMAGE", env["DAGSTER_CONTAINER_IMAGE"]["value"])
        monkeypatch.setenv("DAGSTER_CONTAINER_CONTEXT", env["DAGSTER_CONTAINER_CONTEXT"]["value"])
        params = grpc_command.make_context("grpc", list(args)).params
        assert params["module_name"] == domain["module"] and params["port"] == 3030
        assert params["container_image"] == env["DAGSTER_CONTAINER_IMAGE"]["value"]
        # the module exists in the project (the image copies it to --working-directory)
        spec = importlib.util.find_spec(domain["module"])
        assert spec is not None and "defs = " in Path(spec.origin).read_text()
        # the container context is valid for dagster-k8s
        K8sContainerContext.create_from_config(json.loads(params["container_context"]))


def test_webserver_daemon_and_probe_command_lines_parse(rendered, tmp_path):
    """Every Dagster command the chart runs (containers and exec probes) parses with Dagster's
    own CLI (the mounted workspace path replaced by a local copy). The UI proxies' flags and the
    webserver's `python -c` probe are checked in test_helm_ui.py (the probe against a running
    webserver)."""
    from dagster._cli.api import grpc_health_check_command
    from dagster._daemon.cli import liveness_check_command, run_command
    from dagster_webserver.cli import dagster_webserver

    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(rendered.get("ConfigMap", f"{FULL}-workspace")["data"]["workspace.yaml"])

    def local(args):
        return [a.replace("/opt/dagster/workspace/workspace.yaml", str(workspace)) for a in args]

    commands = {
        ("dagster-webserver",): dagster_webserver,
        ("dagster-daemon", "run"): run_command,
        ("dagster-daemon", "liveness-check"): liveness_check_command,
        ("dagster", "api", "grpc-health-check"): grpc_health_check_command,
        ("dagster", "api", "grpc"): grpc_command,
    }
    seen = set()
    for _where, spec in rendered.pod_specs():
        for container in spec["containers"]:
            if container["name"] in UI_PROXIES:
                continue
            lines = [container["command"] + container.get("args", [])]
            lines += [
                container[p]["exec"]["command"]
                for p in ("startupProbe", "readinessProbe", "livenessProbe")
                if "exec" in container.get(p, {})
            ]
            for line in lines:
                if line[:2] == ["python", "-c"]:
                    continue
                prefix = next(p for p in commands if tuple(line[: len(p)]) == p)
                commands[prefix].make_context(" ".join(prefix), local(line[len(prefix) :]))
                seen.add(prefix)
    assert seen == set(commands)


@pytest.fixture
def launcher(instance_config, tmp_path):
    """The K8sRunLauncher exactly as the rendered dagster.yaml configures it, except that it
    loads a kubeconfig pointing nowhere instead of the in-cluster config, and records the Jobs
    it would create."""
    config = dict(instance_config["run_launcher"]["config"])
    assert config.pop("load_incluster_config") is True
    result = process_config(K8sRunLauncher.config_type(), config)
    assert result.success, result.errors
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "nowhere",
                "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "nobody", "user": {}}],
                "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
            }
        )
    )
    batch_api = mock.MagicMock(name="BatchV1Api")
    launcher = K8sRunLauncher(
        **{**result.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)},
        k8s_client_batch_api=batch_api,
        k8s_client_core_api=mock.MagicMock(name="CoreV1Api"),
    )
    (tmp_path / "instance").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "instance")) as instance:
        launcher.register_instance(instance)
        yield launcher, batch_api, instance


def launch_run_of(domain: dict, rendered, launcher) -> dict:
    """Launch a run of the domain's asset job as the daemon would, from the origin the domain's
    code server reports (its image and container context); returns the Job as sent."""
    launcher, batch_api, instance = launcher
    args, env = code_server(rendered, domain)
    params = grpc_command.make_context("grpc", list(args)).params
    origin = RepositoryPythonOrigin(
        executable_path="/opt/datamesh/.venv/bin/python",
        code_pointer=ModuleCodePointer(params["module_name"], "defs", params["working_directory"]),
        container_image=env["DAGSTER_CONTAINER_IMAGE"]["value"],
        entry_point=["dagster"],
        container_context=json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"]),
    )
    run = DagsterRun(
        job_name="__ASSET_JOB",
        run_id=str(uuid.uuid4()),
        job_code_origin=JobPythonOrigin("__ASSET_JOB", origin),
    )
    instance.add_run(run)
    batch_api.reset_mock()
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    call = batch_api.create_namespaced_job.call_args
    assert call.kwargs["namespace"] == NAMESPACE
    return kubernetes.client.ApiClient().sanitize_for_serialization(call.kwargs["body"])


def test_k8s_run_launcher_builds_a_valid_job_for_each_domain(rendered, domains, launcher):
    values = yaml.safe_load(rendered.values_file.read_text())
    defaults = yaml.safe_load((Path(rendered.values_file).parent / "values.yaml").read_text())
    policies = {p["metadata"]["name"]: p for p in rendered.of_kind("NetworkPolicy")}
    image = rendered.get("Deployment", f"{FULL}-webserver")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    secret_names = {
        s["name"] for s in {**defaults["secrets"], **(values.get("secrets") or {})}.values() if s.get("name")
    }
    for domain in domains:
        job = launch_run_of(domain, rendered, launcher)
        kubernetes_validate.validate(job, KUBE_VERSION, strict=True)
        pod = job["spec"]["template"]["spec"]
        where = f"run Job of {domain['name']}"
        assert_pod_is_restricted(where, pod)
        (container,) = pod["containers"]
        assert_container_has_resources(where, container)
        expected = (values.get("domains") or {}).get(domain["name"], {}).get("run", {}).get(
            "resources"
        ) or defaults["runs"]["resources"]
        assert container["resources"] == expected, domain["name"]
        assert container["image"] == image
        assert container["args"][:3] == ["dagster", "api", "execute_run"]
        env = {e["name"]: e for e in container["env"]}
        assert env["MESH_DOMAIN"]["value"] == domain["name"]
        assert (
            env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
            == defaults["secrets"]["dagsterPostgres"]["name"]
        )
        assert env["MESH_CATALOG_PASSWORD_FILE"]["value"].startswith(defaults["paths"]["secrets"])
        assert not credential_env_problems(
            where, container["env"], secret_names, defaults["paths"]["secrets"]
        )
        assert {"configMapRef": {"name": f"{FULL}-mesh"}} in container["envFrom"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["dagster-instance"] == "/opt/dagster/dagster_home/dagster.yaml"
        assert {"mesh-home", "mesh-secrets", "landing"} <= set(mounts)
        assert mounts["tmp"] == "/tmp"  # with the read-only root, the run's scratch space
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["serviceAccountName"] == FULL
        assert pod["automountServiceAccountToken"] is False  # no API calls from runs
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 86400
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["datamesh.io/domain"] == domain["name"]
        # the run's pod is isolated by the chart's NetworkPolicies
        for name in (f"{FULL}-default-deny", f"{FULL}-runs"):
            selector = policies[name]["spec"]["podSelector"]["matchLabels"]
            assert all(labels.get(k) == v for k, v in selector.items()), (name, labels)


def test_mesh_settings_reach_runs_through_the_mesh_config_map(rendered):
    data = rendered.get("ConfigMap", f"{FULL}-mesh")["data"]
    assert data["MESH_ENGINE"] == "trino"
    for key in (
        "MESH_CATALOG_URI",
        "MESH_WAREHOUSE",
        "MESH_HOME",
        "MESH_LANDING",
        "MESH_TRINO_HOST",
        "MESH_TRINO_PORT",
        "MESH_CATALOG_NAME",
    ):
        assert data[key], key
    assert "{password}" in data["MESH_CATALOG_URI"]  # substituted from the mounted Secret


def test_step_executor_follows_mesh_executor(monkeypatch):
    from dagster_k8s import k8s_job_executor

    monkeypatch.delenv("MESH_EXECUTOR", raising=False)
    assert step_executor() is None
    monkeypatch.setenv("MESH_EXECUTOR", "k8s")
    assert step_executor() is k8s_job_executor
    monkeypatch.setenv("MESH_EXECUTOR", "celery")
    with pytest.raises(ValueError, match="MESH_EXECUTOR"):
        step_executor()
