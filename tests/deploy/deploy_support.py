"""Helpers of the deployment tests (imported by conftest.py and the test modules): the value
sets, `helm template`, and the rendered manifests."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from mesh_assets.deploy import CHART_DIR
from mesh_assets.governance import SECRET_PATTERNS

# The Kubernetes version the manifests are rendered and validated for (OpenShift 4.20 runs 1.33).
KUBE_VERSION = "1.33.0"
RELEASE = "mesh"
NAMESPACE = "data-platform"
VALUE_SETS = {
    "openshift": CHART_DIR / "values-openshift.yaml",
    "kubernetes": CHART_DIR / "values-kubernetes.yaml",
}
# The names of the UI proxy containers the chart puts next to each webserver.
UI_PROXIES = {"oauth-proxy", "oauth2-proxy"}


@dataclass
class Rendered:
    name: str
    values_file: Path
    docs: list[dict] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [d for d in self.docs if d["kind"] == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def pod_specs(self) -> list[tuple[str, dict]]:
        """(workload name, pod spec) of every workload rendered by the chart."""
        specs = []
        for doc in self.docs:
            if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
            elif doc["kind"] == "CronJob":
                specs.append(
                    (
                        f"CronJob/{doc['metadata']['name']}",
                        doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                    )
                )
            elif doc["kind"] == "Pod":
                specs.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
        return specs


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def template(helm: Path, values_file: Path, *extra: str, check: bool = True):
    return run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART_DIR),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(values_file),
        *extra,
        check=check,
    )


# --- policies shared by the rendered manifests and the Jobs dagster-k8s builds ----------------

# Volume types restricted-v2 (and PodSecurity "restricted") allow.
ALLOWED_VOLUMES = {
    "configMap",
    "downwardAPI",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "secret",
    "csi",
    "ephemeral",
}
CREDENTIAL_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|PRIVATE_KEY", re.I)


def assert_pod_is_restricted(where: str, spec: dict) -> None:
    """restricted-v2: non-root, no fixed UID, no privilege escalation, no capability, seccomp
    RuntimeDefault, no host namespaces, ports or paths."""
    pod_sc = spec.get("securityContext") or {}
    for key in ("runAsUser", "fsGroup", "supplementalGroups"):
        assert key not in pod_sc, f"{where}: pod securityContext.{key} is fixed (restricted-v2 assigns it)"
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), f"{where}: {key}"
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        assert kinds <= ALLOWED_VOLUMES, f"{where}: volume {volume['name']} of type {kinds}"
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    assert containers, where
    for container in containers:
        sc = container.get("securityContext") or {}
        name = f"{where} container {container['name']}"
        assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
        assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities.drop"
        assert not sc.get("capabilities", {}).get("add"), f"{name}: capabilities.add"
        assert not sc.get("privileged"), f"{name}: privileged"
        assert "runAsUser" not in sc, f"{name}: runAsUser fixed"
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot"
        seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", f"{name}: seccompProfile"
        assert not any(p.get("hostPort") for p in container.get("ports", [])), f"{name}: hostPort"


def assert_container_has_resources(where: str, container: dict) -> None:
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert resources.get(kind, {}).get(resource), f"{where}: no {kind}.{resource}"


def assert_container_has_resources_and_probes(where: str, container: dict) -> None:
    assert_container_has_resources(where, container)
    for probe in ("livenessProbe", "readinessProbe"):
        assert container.get(probe), f"{where}: no {probe}"


def credential_env_problems(
    where: str, env: list[dict], secret_names: set[str], secrets_mount: str
) -> list[str]:
    """Credentials in an env list that are not references to the configured Secrets."""
    problems = []
    for var in env:
        name = var["name"]
        if name.endswith("_FILE"):
            if not str(var.get("value", "")).startswith(secrets_mount + "/"):
                problems.append(f"{where}: {name} points outside the mounted secrets")
        elif CREDENTIAL_NAME.search(name):
            ref = var.get("valueFrom") or var.get("value_from") or {}
            ref = ref.get("secretKeyRef") or ref.get("secret_key_ref")
            if "value" in var or not ref:
                problems.append(f"{where}: {name} is not a secretKeyRef")
            elif ref["name"] not in secret_names:
                problems.append(f"{where}: {name} refers to Secret {ref['name']}, not a configured one")
        for pattern in SECRET_PATTERNS:
            if pattern.search(f"{name}: {var.get('value', '')}"):
                problems.append(f"{where}: {name} looks like a credential value")
    return problems
