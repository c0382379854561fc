"""helm/datamesh with a real helm: lint and template of both value sets, every rendered manifest
validated against the Kubernetes JSON schemas, the structure (one code server per domain, the
workspace, the UI exposure) and the values' guard rails.

Schemas: the PyPI package ``kubernetes-validate`` bundles the upstream Kubernetes JSON schemas
(offline), used in strict mode (unknown fields fail). An OpenShift Route has no upstream schema:
it is validated against ``schemas/route.openshift.io_v1.json``, written for these tests from the
route.openshift.io/v1 API (openshift/api route/v1).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_support import KUBE_VERSION, NAMESPACE, RELEASE, VALUE_SETS, run_helm

from mesh_assets.deploy import CHART_DIR

ROUTE_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "route.openshift.io_v1.json").read_text())


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint(helm, value_set):
    result = run_helm(
        helm,
        "lint",
        str(CHART_DIR),
        "--strict",
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "-f",
        str(VALUE_SETS[value_set]),
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_every_manifest_validates_against_its_schema(rendered):
    assert rendered.docs, "helm template rendered nothing"
    for doc in rendered.docs:
        if doc["apiVersion"] == "route.openshift.io/v1":
            jsonschema.Draft202012Validator(ROUTE_SCHEMA).validate(doc)
        else:
            # raises ValidationError (invalid) or SchemaNotFoundError (unknown kind): both fail
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_the_route_schema_rejects_what_openshift_rejects():
    route = {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": "ui"},
        "spec": {
            "to": {"kind": "Service", "name": "web"},
            "port": {"targetPort": "http"},
            "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"},
        },
    }
    jsonschema.Draft202012Validator(ROUTE_SCHEMA).validate(route)
    bad = [
        {"to": {"kind": "Deployment", "name": "web"}},  # only Service
        {"to": {"kind": "Service", "name": "web", "weight": 300}},  # weight 0..256
        {"to": {"kind": "Service", "name": "web"}, "tls": {"termination": "none"}},
        {
            "to": {"kind": "Service", "name": "web"},
            "path": "/x",
            "tls": {"termination": "passthrough"},
        },  # path + passthrough
        {"to": {"kind": "Service", "name": "web"}, "hots": "typo.example.com"},
        {"port": {"targetPort": "http"}},  # `to` is required
    ]
    for spec in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(ROUTE_SCHEMA).validate({**route, "spec": spec})


def test_one_code_server_per_domain(rendered, domains):
    code_servers = [
        d
        for d in rendered.of_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "code-server"
    ]
    served = sorted(d["metadata"]["labels"]["datamesh.io/domain"] for d in code_servers)
    assert served == sorted(e["name"] for e in domains)
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    for deployment in code_servers:
        domain = next(
            e for e in domains if e["name"] == deployment["metadata"]["labels"]["datamesh.io/domain"]
        )
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["dagster", "api", "grpc"]
        assert f"--module-name={domain['module']}" in container["args"]
        assert f"--location-name={domain['name']}" in container["args"]
        # its Service selects exactly this domain's pods
        service = services[deployment["metadata"]["name"]]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["selector"]["datamesh.io/domain"] == domain["name"]


def test_workspace_lists_every_domain_at_its_service(rendered, domains):
    workspace = yaml.safe_load(
        rendered.get("ConfigMap", f"{RELEASE}-datamesh-workspace")["data"]["workspace.yaml"]
    )
    entries = [e["grpc_server"] for e in workspace["load_from"]]
    assert sorted(e["location_name"] for e in entries) == sorted(d["name"] for d in domains)
    ports = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in rendered.of_kind("Service")}
    for entry in entries:
        assert ports[entry["host"]] == entry["port"]


def test_webserver_and_daemon(rendered):
    web = rendered.get("Deployment", f"{RELEASE}-datamesh-webserver")
    daemon = rendered.get("Deployment", f"{RELEASE}-datamesh-daemon")
    assert web["spec"]["template"]["spec"]["containers"][0]["command"] == ["dagster-webserver"]
    assert daemon["spec"]["template"]["spec"]["containers"][0]["args"][0] == "run"
    assert daemon["spec"]["replicas"] == 1 and daemon["spec"]["strategy"]["type"] == "Recreate"


def test_ui_is_a_route_on_openshift_and_an_ingress_elsewhere(rendered_sets):
    """One Route (OpenShift) or Ingress per UI: the webserver and the read-only one."""
    uis = {f"{RELEASE}-datamesh-webserver", f"{RELEASE}-datamesh-webserver-read-only"}
    openshift, kubernetes = rendered_sets["openshift"], rendered_sets["kubernetes"]
    assert not openshift.of_kind("Ingress") and not kubernetes.of_kind("Route")
    routes = {r["metadata"]["name"]: r for r in openshift.of_kind("Route")}
    assert set(routes) == uis
    for name, route in routes.items():
        assert route["spec"]["to"] == {"kind": "Service", "name": name, "weight": 100}
        assert route["spec"]["tls"]["termination"] == "reencrypt"  # the OAuth proxy serves TLS
    assert routes[f"{RELEASE}-datamesh-webserver"]["spec"]["host"] == "datamesh.apps.example.com"
    ingresses = {i["metadata"]["name"]: i for i in kubernetes.of_kind("Ingress")}
    assert set(ingresses) == uis
    for name, ingress in ingresses.items():
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == name
    read_only = ingresses[f"{RELEASE}-datamesh-webserver-read-only"]["spec"]
    assert read_only["rules"][0]["host"] == "datamesh-view.example.com"
    assert read_only["tls"] == [{"hosts": ["datamesh-view.example.com"], "secretName": "datamesh-view-tls"}]


def test_pod_disruption_budgets_exactly_where_replicas_exceed_one(rendered):
    pdbs = {p["metadata"]["name"]: p for p in rendered.of_kind("PodDisruptionBudget")}
    for deployment in rendered.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        if deployment["spec"]["replicas"] > 1:
            assert name in pdbs, f"{name} has {deployment['spec']['replicas']} replicas, no PDB"
            assert (
                pdbs[name]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
            )
        else:
            assert name not in pdbs
    if rendered.name == "openshift":  # values-openshift.yaml runs 2 webservers, 2 analytics
        assert {f"{RELEASE}-datamesh-webserver", f"{RELEASE}-datamesh-cs-analytics"} <= set(pdbs)


def test_per_domain_values_reach_the_code_server_and_its_runs(rendered_sets):
    docs = rendered_sets["openshift"]
    deployment = docs.get("Deployment", f"{RELEASE}-datamesh-cs-operations")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    context = json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"])["k8s"]
    assert context["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "6Gi"},
    }
    other = docs.get("Deployment", f"{RELEASE}-datamesh-cs-fleet")
    env = {e["name"]: e for e in other["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"])["k8s"]["resources"]["limits"] == {
        "cpu": "2",
        "memory": "4Gi",
    }  # runs.resources defaults


def test_unknown_domain_in_values_fails_the_render(render, tmp_path):
    values = tmp_path / "typo.yaml"
    values.write_text("domains:\n  wether:\n    run: {resources: {}}\n")
    result = render(VALUE_SETS["kubernetes"], "-f", str(values), check=False)
    assert result.returncode != 0
    assert "values domains.wether: no such domain" in result.stderr


def test_image_is_required(render, tmp_path):
    result = render(CHART_DIR / "values.yaml", check=False)
    assert result.returncode != 0 and "image.repository is required" in result.stderr


def test_step_isolation_opens_the_api_to_runs_only_when_enabled(render, rendered_sets):
    def runs_policy(docs):
        return next(
            d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-runs")
        )

    ports = lambda policy: {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}  # noqa: E731
    assert 6443 not in ports(runs_policy(rendered_sets["openshift"].docs))
    out = render(VALUE_SETS["openshift"], "--set", "runs.stepIsolation=true").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert 6443 in ports(runs_policy(docs))
    mesh_env = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-mesh"))
    assert mesh_env["data"]["MESH_EXECUTOR"] == "k8s"


def test_one_image_by_reference_everywhere(rendered):
    """Every container runs the platform's image, except the UI proxies (their own image)."""
    values = yaml.safe_load(rendered.values_file.read_text())["image"]
    expected = f"{values['repository']}:{values['tag']}"
    ui_auth = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["uiAuth"]
    proxies = {"oauth-proxy": ui_auth["openshift"]["image"], "oauth2-proxy": ui_auth["oidc"]["image"]}
    for where, spec in rendered.pod_specs():
        for container in spec["containers"]:
            assert container["image"] == proxies.get(container["name"], expected), where
        assert [s["name"] for s in spec.get("imagePullSecrets", [])] == values.get("pullSecrets", []), where
    instance = yaml.safe_load(
        rendered.get("ConfigMap", f"{RELEASE}-datamesh-instance")["data"]["dagster.yaml"]
    )
    assert instance["run_launcher"]["config"]["job_image"] == expected


def test_openmetadata_settings_and_egress(render, rendered_sets):
    docs = rendered_sets["openshift"]
    data = docs.get("ConfigMap", f"{RELEASE}-datamesh-mesh")["data"]
    assert data["OPENMETADATA_HOST"] == "http://openmetadata.metadata.svc:8585"
    assert data["OPENMETADATA_DAGSTER_URL"] == "https://datamesh.apps.example.com"  # the Route
    assert "OPENMETADATA_API_VERSION" not in data  # empty apiVersion: auto, the server's
    chosen = render(VALUE_SETS["openshift"], "--set-string", "mesh.openmetadata.apiVersion=2").stdout
    (configmap,) = [
        d
        for d in yaml.safe_load_all(chosen)
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{RELEASE}-datamesh-mesh"
    ]
    assert configmap["data"]["OPENMETADATA_API_VERSION"] == "2"
    # the bot's JWT: a file of the projected Secret in every code server (the sensor) and its runs
    token = {"name": "datamesh-openmetadata-bot", "items": [{"key": "token", "path": "openmetadata/token"}]}
    code_servers = [
        d
        for d in docs.of_kind("Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "code-server"
    ]
    assert code_servers
    for deployment in code_servers:
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["OPENMETADATA_JWT_TOKEN_FILE"] == {
            "name": "OPENMETADATA_JWT_TOKEN_FILE",
            "value": "/var/run/secrets/datamesh/openmetadata/token",
        }
        sources = next(v for v in pod["volumes"] if v["name"] == "mesh-secrets")["projected"]["sources"]
        assert [s["secret"] for s in sources if s["secret"]["name"] == token["name"]] == [token]
        context = json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"])["k8s"]
        run_env = {e["name"]: e.get("value") for e in context["env"]}
        assert run_env["OPENMETADATA_JWT_TOKEN_FILE"] == "/var/run/secrets/datamesh/openmetadata/token"
        run_sources = next(v for v in context["volumes"] if v["name"] == "mesh-secrets")["projected"][
            "sources"
        ]
        assert [s["secret"] for s in run_sources if s["secret"]["name"] == token["name"]] == [token]
    for name in ("code-servers", "runs"):  # the sensor runs in the code server, exports in runs
        policy = docs.get("NetworkPolicy", f"{RELEASE}-datamesh-{name}")
        assert 8585 in {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    # without a host (values-kubernetes.yaml) nothing about OpenMetadata is rendered
    kubernetes = rendered_sets["kubernetes"]
    assert not any(
        k.startswith("OPENMETADATA") for k in kubernetes.get("ConfigMap", f"{RELEASE}-datamesh-mesh")["data"]
    )
    policy = kubernetes.get("NetworkPolicy", f"{RELEASE}-datamesh-runs")
    assert 8585 not in {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}


def test_each_domain_logs_in_to_trino_as_its_own_service_account(render, domains):
    """With Trino's logins in a Secret, a domain's code server (and so its runs' container
    context) mounts that domain's key only and logs in as domain-<name>; the CA comes along."""
    out = render(
        VALUE_SETS["openshift"],
        "--set",
        "secrets.trino.name=datamesh-trino-logins",
        "--set",
        "secrets.trinoCa.name=datamesh-trino-ca",
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    code_servers = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "code-server"
    ]
    assert len(code_servers) == len(domains)
    for deployment in code_servers:
        domain = deployment["metadata"]["labels"]["datamesh.io/domain"]
        pod = deployment["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["MESH_TRINO_USER"]["value"] == f"domain-{domain}"
        assert env["MESH_TRINO_PASSWORD_FILE"]["value"] == "/var/run/secrets/datamesh/trino-login/password"
        assert env["MESH_TRINO_CA_FILE"]["value"] == "/var/run/secrets/datamesh/trino/ca.crt"
        sources = next(v for v in pod["volumes"] if v["name"] == "mesh-secrets")["projected"]["sources"]
        logins = [s["secret"] for s in sources if s["secret"]["name"] == "datamesh-trino-logins"]
        assert logins == [
            {
                "name": "datamesh-trino-logins",
                "items": [{"key": f"domain-{domain}", "path": "trino-login/password"}],
            }
        ]
        # the runs of the domain get the same login (the code server's container context)
        context = json.loads(env["DAGSTER_CONTAINER_CONTEXT"]["value"])["k8s"]
        run_env = {e["name"]: e.get("value") for e in context["env"]}
        assert run_env["MESH_TRINO_USER"] == f"domain-{domain}"
        run_sources = next(v for v in context["volumes"] if v["name"] == "mesh-secrets")["projected"][
            "sources"
        ]
        assert [s for s in run_sources if s["secret"]["name"] == "datamesh-trino-logins"] == [
            {"secret": logins[0]}
        ]
