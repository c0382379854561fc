"""Policies over the rendered manifests of both value sets: OpenShift restricted-v2 SCC (and
Kubernetes PodSecurity "restricted") on every pod, RBAC without wildcards and with exactly the
verbs dagster-k8s calls, requests/limits and probes on every container, credentials only by
reference, network isolation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster_k8s
import pytest
import yaml
from deploy_support import (
    CREDENTIAL_NAME,
    RELEASE,
    VALUE_SETS,
    assert_container_has_resources_and_probes,
    assert_pod_is_restricted,
    credential_env_problems,
)

from mesh_assets.deploy import CHART_DIR
from mesh_assets.governance import SECRET_PATTERNS

# A credential passed as a flag value (visible in `ps` and the pod spec); *-file flags are fine.
LITERAL_SECRET_FLAG = re.compile(r"--[a-z-]*(secret|password|token)(?!-file)[a-z-]*", re.I)


def configured_secret_names(values_secrets: dict) -> set[str]:
    return {s["name"] for s in values_secrets.values() if s.get("name")}


def test_every_pod_is_restricted_v2_compatible(rendered):
    specs = rendered.pod_specs()
    assert len(specs) >= 3
    for where, spec in specs:
        assert_pod_is_restricted(where, spec)


def test_every_container_has_requests_limits_and_probes(rendered):
    for where, spec in rendered.pod_specs():
        for container in spec["containers"] + spec.get("initContainers", []):
            assert_container_has_resources_and_probes(f"{where}/{container['name']}", container)


def _role_rules(rendered) -> list[dict]:
    assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding"), (
        "the chart is namespaced: no cluster-wide RBAC"
    )
    (role,) = rendered.of_kind("Role")
    return role["rules"]


def test_rbac_has_no_wildcard(rendered):
    for rule in _role_rules(rendered):
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"
            assert not any("*" in item for item in rule.get(key, [])), rule
        assert rule["verbs"] and rule["resources"], rule


def dagster_k8s_api_calls() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every Kubernetes API call in dagster-k8s's run launcher,
    step executor and their client, read from the installed sources."""
    package = Path(dagster_k8s.__file__).parent
    verbs = {
        "create": "create",
        "delete": "delete",
        "list": "list",
        "read": "get",
        "patch": "patch",
        "replace": "update",
        "watch": "watch",
    }
    plural = {
        "job": "jobs",
        "pod": "pods",
        "event": "events",
        "service": "services",
        "deployment": "deployments",
        "config_map": "configmaps",
        "secret": "secrets",
    }
    calls = set()
    for source in ("client.py", "launcher.py", "executor.py"):
        text = (package / source).read_text()
        for api, method in re.findall(r"\b(core_api|batch_api|apps_api)\.([a-z_]+)\(", text):
            match = re.fullmatch(
                r"(create|delete|list|read|patch|replace)_namespaced_([a-z_]+?)"
                r"(_status|_log)?",
                method,
            )
            assert match, f"dagster_k8s/{source} calls {api}.{method}: map it to an RBAC rule"
            verb, kind, sub = match.groups()
            group = {"core_api": "", "batch_api": "batch", "apps_api": "apps"}[api]
            resource = plural[kind] + (f"/{sub[1:]}" if sub else "")
            calls.add((group, resource, verbs[verb]))
    return calls


def test_rbac_grants_exactly_what_dagster_k8s_calls(rendered):
    granted = {
        (group, resource, verb)
        for rule in _role_rules(rendered)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = dagster_k8s_api_calls()
    assert needed == granted, (
        f"missing: {sorted(needed - granted)}; granted but never called: {sorted(granted - needed)}"
    )
    # and the result, spelled out (a dagster-k8s upgrade that changes it shows here)
    assert needed == {
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("batch", "jobs", "list"),
        ("batch", "jobs/status", "get"),
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods", "delete"),
        ("", "pods/log", "get"),
        ("", "events", "list"),
    }


def test_only_the_run_launcher_pods_carry_an_api_token(rendered):
    sa = f"{RELEASE}-datamesh"
    (binding,) = rendered.of_kind("RoleBinding")
    assert [s["name"] for s in binding["subjects"]] == [sa]
    for where, spec in rendered.pod_specs():
        if "-cs-" in where:
            assert spec["serviceAccountName"] == f"{RELEASE}-datamesh-code-server", where
            assert spec["automountServiceAccountToken"] is False, where
        elif where.endswith("-webserver-read-only"):  # its own account, bound to no Role
            assert spec["serviceAccountName"] == f"{RELEASE}-datamesh-webserver-read-only", where
        else:  # webserver (terminates runs) and daemon (launches runs)
            assert spec["serviceAccountName"] == sa, where
    for account in rendered.of_kind("ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def plaintext_secret_problems(rendered) -> list[str]:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    overrides = yaml.safe_load(rendered.values_file.read_text())
    secrets = {**values["secrets"], **(overrides.get("secrets") or {})}
    names = configured_secret_names(secrets)
    mount = values["paths"]["secrets"]
    # Secrets OpenShift's service CA writes for a Service (serving certificates): no value either
    serving_certs = {
        s["metadata"].get("annotations", {}).get("service.beta.openshift.io/serving-cert-secret-name")
        for s in rendered.of_kind("Service")
    } - {None}
    problems = [
        f"the chart creates Secret {s['metadata']['name']} (references only)"
        for s in rendered.of_kind("Secret")
    ]
    for where, spec in rendered.pod_specs():
        for container in spec["containers"]:
            env = container.get("env", [])
            problems += credential_env_problems(f"{where}/{container['name']}", env, names, mount)
            for arg in container.get("args", []):
                flag, _, value = arg.partition("=")
                if value and LITERAL_SECRET_FLAG.fullmatch(flag):
                    problems.append(f"{where}/{container['name']}: {flag} given on the command line")
            for var in env:
                if var["name"] == "DAGSTER_CONTAINER_CONTEXT":  # the runs' env, by reference too
                    context_env = json.loads(var["value"])["k8s"]["env"]
                    problems += credential_env_problems(f"{where} run env", context_env, names, mount)
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    assert source["secret"]["name"] in names
            if "secret" in volume and volume["secret"]["secretName"] not in names | serving_certs:
                problems.append(f"{where}: volume {volume['name']} mounts an unconfigured Secret")
    for config_map in rendered.of_kind("ConfigMap"):
        for key, text in config_map["data"].items():
            for line in f"{key}: {text}".splitlines():  # the MESH009 patterns are line-based
                if any(pattern.search(line) for pattern in SECRET_PATTERNS):
                    problems.append(f"ConfigMap {config_map['metadata']['name']}: {line}")
            if CREDENTIAL_NAME.search(key):
                problems.append(f"ConfigMap {config_map['metadata']['name']}: key {key}")
    for route in rendered.of_kind("Route"):
        if {"key", "certificate"} & set(route["spec"].get("tls", {})):
            problems.append("the Route embeds a TLS key or certificate")
    return problems


def test_no_plaintext_secret_values(rendered):
    assert not plaintext_secret_problems(rendered), "\n".join(plaintext_secret_problems(rendered))


def test_chart_sources_pass_the_mesh009_secret_rule():
    """`mesh lint` (MESH009) scans helm/**/*.yaml; the chart keeps it clean by construction."""
    for path in sorted(CHART_DIR.rglob("*")):
        if path.is_file() and path.suffix in (".yaml", ".tpl", ".json"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for pattern in SECRET_PATTERNS:
                    assert not pattern.search(line), f"{path}:{number}: {line.strip()}"


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_network_policies_deny_by_default_and_allow_per_component(rendered):
    policies = {
        p["metadata"]["name"].removeprefix(f"{RELEASE}-datamesh-"): p
        for p in rendered.of_kind("NetworkPolicy")
    }
    assert set(policies) == {
        "default-deny",
        "webserver",
        "webserver-read-only",
        "daemon",
        "code-servers",
        "runs",
    }
    deny = policies["default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    for policy in policies.values():
        spec = policy["spec"]
        for rule in spec.get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule to anywhere"
            assert rule.get("ports"), f"{policy['metadata']['name']}: an egress rule on every port"
        for rule in spec.get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']}: an ingress rule from anywhere"
    for deployment in rendered.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deny["podSelector"], labels), deployment["metadata"]["name"]
        allowing = [
            n
            for n, p in policies.items()
            if n != "default-deny" and _selects(p["spec"]["podSelector"], labels)
        ]
        assert len(allowing) == 1, (deployment["metadata"]["name"], allowing)
    # code servers: gRPC from the webservers and the daemon only
    (ingress,) = policies["code-servers"]["spec"]["ingress"]
    components = sorted(
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in ingress["from"]
    )
    assert components == ["daemon", "webserver", "webserver-read-only"]
    assert policies["daemon"]["spec"]["ingress"] == [] and policies["runs"]["spec"]["ingress"] == []


@pytest.mark.parametrize("component", ["webserver", "daemon"])
def test_launcher_components_reach_the_kubernetes_api(rendered, component):
    policy = rendered.get("NetworkPolicy", f"{RELEASE}-datamesh-{component}")
    overrides = yaml.safe_load(rendered.values_file.read_text())
    api_ports = {
        p["port"]
        for p in (
            overrides.get("networkPolicy", {}).get("kubeApi")
            or yaml.safe_load((CHART_DIR / "values.yaml").read_text())["networkPolicy"]["kubeApi"]
        )["ports"]
    }
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert api_ports <= ports


def test_the_policies_catch_violations(render):
    """The checks above have teeth: a values file that breaks each rule fails it."""
    from deploy_support import Rendered

    def rendered_with(*args: str) -> Rendered:
        out = render(VALUE_SETS["openshift"], *args).stdout
        return Rendered("broken", VALUE_SETS["openshift"], [d for d in yaml.safe_load_all(out) if d])

    broken = rendered_with(
        "--set",
        "podSecurityContext.runAsUser=1000",
        "--set",
        "containerSecurityContext.allowPrivilegeEscalation=true",
    )
    where, spec = broken.pod_specs()[0]
    with pytest.raises(AssertionError, match="runAsUser"):
        assert_pod_is_restricted(where, spec)
    spec["securityContext"].pop("runAsUser")
    with pytest.raises(AssertionError, match="allowPrivilegeEscalation"):
        assert_pod_is_restricted(where, spec)

    leaky = rendered_with(
        "--set",
        "mesh.extraEnv.MESH_TRINO_PASSWORD=hunter2hunter2",
        "--set",
        "domains.weather.env[0].name=OPENMETADATA_TOKEN",
        "--set",
        "domains.weather.env[0].value=placeholder-not-a-token",
    )
    problems = plaintext_secret_problems(leaky)
    assert any("key MESH_TRINO_PASSWORD" in p for p in problems), problems
    assert any("OPENMETADATA_TOKEN is not a secretKeyRef" in p for p in problems), problems

    leaky_proxy = rendered_with(
        "--set",
        "uiAuth.extraArgs[0]=--cookie-secret=0123456789abcdef",
        "--set",
        "secrets.uiCookie.name=stray",  # not a Secret the values file configures
    )
    problems = plaintext_secret_problems(leaky_proxy)
    web = f"Deployment/{RELEASE}-datamesh-webserver"
    assert f"{web}/oauth-proxy: --cookie-secret given on the command line" in problems, problems
    assert f"{web}: volume ui-proxy-cookie mounts an unconfigured Secret" in problems, problems

    no_limits = rendered_with("--set", "webserver.resources.limits=null")
    web = no_limits.get("Deployment", f"{RELEASE}-datamesh-webserver")
    with pytest.raises(AssertionError, match="no limits"):
        assert_container_has_resources_and_probes(
            "webserver", web["spec"]["template"]["spec"]["containers"][0]
        )
