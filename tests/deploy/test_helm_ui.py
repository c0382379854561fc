"""The chart's UIs behind their authenticating proxies (issue 20, "The UI"): the Dagster
webserver, and the optional read-only one for viewers, each listen on 127.0.0.1 only; the proxy
in the same pod (the OpenShift OAuth proxy on OpenShift, oauth2-proxy with an OIDC issuer on
Kubernetes) is the one way in. Checked on both value sets and on variants (no read-only UI, a
path prefix): no Service, Route, Ingress or NetworkPolicy reaches a webserver's own port; the
proxies' flags, accounts and Secrets fit together; no credential value is rendered.

What runs for real: `helm template`, and the webserver side with the rendered command line
(`dagster-webserver --host=127.0.0.1 ... --read-only`): it listens on loopback only, answers
the chart's exec probe, and Dagster reports it read-only. What does not: the proxies. Their
images (quay.io/openshift/origin-oauth-proxy, quay.io/oauth2-proxy/oauth2-proxy) cannot be
pulled here and there is no cluster, OpenShift OAuth server or OIDC issuer, so they are proven
by rendering, by the Kubernetes and Route schemas (test_helm_chart.py) and by the checks below
on their flags, not by a login.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from deploy_support import NAMESPACE, RELEASE, UI_PROXIES, VALUE_SETS, Rendered, assert_pod_is_restricted

FULL = f"{RELEASE}-datamesh"
WEB = f"{FULL}-webserver"
READ_ONLY = f"{FULL}-webserver-read-only"

# (value set, extra helm args) of every variant the exposure checks run on
VARIANTS = {
    "openshift": ("openshift", ()),
    "kubernetes": ("kubernetes", ()),
    "openshift-without-read-only": ("openshift", ("--set", "readOnlyWebserver.enabled=false")),
    "kubernetes-without-read-only": ("kubernetes", ("--set", "readOnlyWebserver.enabled=false")),
    "openshift-path-prefix": ("openshift", ("--set", "webserver.pathPrefix=/dagster")),
    "kubernetes-path-prefix": ("kubernetes", ("--set", "webserver.pathPrefix=/dagster")),
}


def parse(name: str, values_file: Path, out: str) -> Rendered:
    return Rendered(name, values_file, [d for d in yaml.safe_load_all(out) if d])


@pytest.fixture(scope="session")
def variants(render) -> dict[str, Rendered]:
    rendered = {}
    for name, (value_set, extra) in VARIANTS.items():
        rendered[name] = parse(name, VALUE_SETS[value_set], render(VALUE_SETS[value_set], *extra).stdout)
    return rendered


@pytest.fixture(params=sorted(VARIANTS))
def variant(request, variants) -> Rendered:
    return variants[request.param]


def ui_deployments(rendered: Rendered) -> dict[str, dict]:
    """The Deployments running dagster-webserver, by name."""
    return {
        d["metadata"]["name"]: d
        for d in rendered.of_kind("Deployment")
        if any(c.get("command") == ["dagster-webserver"] for c in d["spec"]["template"]["spec"]["containers"])
    }


def webserver(deployment: dict) -> dict:
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "webserver"
    ]
    return container


def proxy(deployment: dict) -> dict:
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] in UI_PROXIES
    ]
    return container


def flags(container: dict) -> dict[str, list[str]]:
    """--name=value flags of a container's args, by name (a flag may repeat)."""
    found: dict[str, list[str]] = {}
    for arg in container["args"]:
        name, _, value = arg.partition("=")
        found.setdefault(name, []).append(value)
    return found


def flag(container: dict, name: str) -> str:
    (value,) = flags(container)[name]
    return value


def webserver_port(deployment: dict) -> int:
    return int(flag(webserver(deployment), "--port"))


def selected_by(service: dict, rendered: Rendered) -> list[dict]:
    selector = service["spec"]["selector"]
    return [
        d
        for d in rendered.of_kind("Deployment")
        if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]


def expected_uis(rendered: Rendered) -> set[str]:
    return {WEB} if rendered.name.endswith("without-read-only") else {WEB, READ_ONLY}


def test_each_ui_is_a_webserver_with_one_proxy(variant):
    uis = ui_deployments(variant)
    assert set(uis) == expected_uis(variant)
    for deployment in uis.values():
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["webserver", proxy(deployment)["name"]]


def test_no_service_reaches_a_webserver_port_directly(variant):
    uis = ui_deployments(variant)
    services = {}
    for service in variant.of_kind("Service"):
        for deployment in selected_by(service, variant):
            if deployment["metadata"]["name"] not in uis:
                continue
            services.setdefault(deployment["metadata"]["name"], []).append(service["metadata"]["name"])
            proxy_ports = {p["name"]: p["containerPort"] for p in proxy(deployment)["ports"]}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] == "proxy", (service["metadata"]["name"], port)
                assert proxy_ports[port["targetPort"]] != webserver_port(deployment)
    # every UI has exactly its own Service, and the webserver container declares no port at all
    assert services == {name: [name] for name in uis}
    for deployment in uis.values():
        assert "ports" not in webserver(deployment), deployment["metadata"]["name"]
    # and no Service anywhere targets the webserver's port number
    web_port = webserver_port(uis[WEB])
    for service in variant.of_kind("Service"):
        assert web_port not in [p["targetPort"] for p in service["spec"]["ports"]]


def test_webserver_listens_on_loopback_and_the_proxy_forwards_there(variant):
    for name, deployment in ui_deployments(variant).items():
        args = webserver(deployment)["args"]
        assert [a for a in args if a.startswith(("--host", "-h"))] == ["--host=127.0.0.1"], name
        upstream = flag(proxy(deployment), "--upstream")
        assert upstream.rstrip("/") == f"http://127.0.0.1:{webserver_port(deployment)}", name


def test_route_and_ingress_reach_the_proxy(variant):
    uis = ui_deployments(variant)
    services = {s["metadata"]["name"]: s for s in variant.of_kind("Service")}
    exposures = variant.of_kind("Route") + variant.of_kind("Ingress")
    assert {e["metadata"]["name"] for e in exposures} == set(uis)
    for route in variant.of_kind("Route"):
        service = services[route["spec"]["to"]["name"]]
        assert [d["metadata"]["name"] for d in selected_by(service, variant)] == [route["metadata"]["name"]]
        assert route["spec"]["port"]["targetPort"] == "proxy"
        assert [p["name"] for p in service["spec"]["ports"]] == ["proxy"]
        # the router re-encrypts to the proxy's service-CA certificate
        assert route["spec"]["tls"]["termination"] == "reencrypt"
    for ingress in variant.of_kind("Ingress"):
        (rule,) = ingress["spec"]["rules"]
        (path,) = rule["http"]["paths"]
        backend = path["backend"]["service"]
        assert backend["name"] == ingress["metadata"]["name"]
        assert backend["port"] == {"name": "proxy"}
        assert [p["name"] for p in services[backend["name"]]["spec"]["ports"]] == ["proxy"]


def test_network_policies_admit_the_proxy_port_only(variant):
    uis = ui_deployments(variant)
    policies = {p["metadata"]["name"]: p for p in variant.of_kind("NetworkPolicy")}
    for name, deployment in uis.items():
        (proxy_port,) = [p["containerPort"] for p in proxy(deployment)["ports"]]
        (rule,) = policies[name]["spec"]["ingress"]
        assert rule["ports"] == [{"port": proxy_port, "protocol": "TCP"}]
        # the proxy reaches its login service (the OIDC issuer or OpenShift's OAuth server)
        egress_ports = {p["port"] for r in policies[name]["spec"]["egress"] for p in r["ports"]}
        assert 443 in egress_ports
    web_port = webserver_port(uis[WEB])
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []):
            assert web_port not in [p["port"] for p in rule.get("ports", [])], policy["metadata"]["name"]
    # the code servers' gRPC is open to every UI (and the daemon), nothing else
    (grpc,) = policies[f"{FULL}-code-servers"]["spec"]["ingress"]
    components = {p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in grpc["from"]}
    assert components == {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for d in uis.values()
    } | {"daemon"}


def test_proxies_run_restricted_with_a_read_only_root(variant):
    for name, deployment in ui_deployments(variant).items():
        spec = deployment["spec"]["template"]["spec"]
        assert_pod_is_restricted(name, spec)
        container = proxy(deployment)
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["runAsNonRoot"] is True and security["capabilities"] == {"drop": ["ALL"]}
        # nothing to write: every mount of the proxy is read-only (no emptyDir needed)
        assert all(m["readOnly"] for m in container.get("volumeMounts", [])), name
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == "proxy", (name, probe)


def test_openshift_oauth_proxy_is_the_routes_oauth_client(rendered_sets):
    rendered = rendered_sets["openshift"]
    accounts = {a["metadata"]["name"]: a for a in rendered.of_kind("ServiceAccount")}
    routes = {r["metadata"]["name"]: r for r in rendered.of_kind("Route")}
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    sars = {
        WEB: {"namespace": NAMESPACE, "resourceAPIGroup": "batch", "resource": "jobs", "verb": "create"},
        READ_ONLY: {"namespace": NAMESPACE, "resource": "services", "verb": "get"},
    }
    for name, deployment in ui_deployments(rendered).items():
        spec = deployment["spec"]["template"]["spec"]
        container = proxy(deployment)
        assert container["name"] == "oauth-proxy"
        assert flag(container, "--provider") == "openshift"
        # the pod's account is the OAuth client (its token the client secret) ...
        assert flag(container, "--openshift-service-account") == spec["serviceAccountName"]
        assert spec["automountServiceAccountToken"] is True
        # ... whose redirect reference names this UI's Route, which leads to this UI's Service
        annotations = accounts[spec["serviceAccountName"]]["metadata"]["annotations"]
        component = deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        reference = json.loads(
            annotations[f"serviceaccounts.openshift.io/oauth-redirectreference.{component}"]
        )
        assert reference == {
            "kind": "OAuthRedirectReference",
            "apiVersion": "v1",
            "reference": {"kind": "Route", "name": name},
        }
        assert routes[name]["spec"]["to"]["name"] == name
        # who gets in: a SubjectAccessReview in the release's namespace
        assert json.loads(flag(container, "--openshift-sar")) == sars[name]
        # TLS from the serving certificate OpenShift writes for the Service
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        cert_secret = services[name]["metadata"]["annotations"][
            "service.beta.openshift.io/serving-cert-secret-name"
        ]
        for option in ("--tls-cert", "--tls-key"):
            path = Path(flag(container, option))
            assert volumes[mounts[str(path.parent)]]["secret"]["secretName"] == cert_secret
        assert flag(container, "--https-address") == ":8443" and flag(container, "--http-address") == ""
        # the cookie secret: a file from the configured Secret
        cookie = Path(flag(container, "--cookie-secret-file"))
        secret = volumes[mounts[str(cookie.parent)]]["secret"]
        assert secret["secretName"] == "datamesh-ui-cookie"
        assert secret["items"] == [{"key": "cookie-secret", "path": cookie.name}]
    # the run launcher's Role stays with the run launcher's account: not the read-only UI's
    (binding,) = rendered.of_kind("RoleBinding")
    assert [s["name"] for s in binding["subjects"]] == [FULL]


def test_kubernetes_oauth2_proxy_logs_in_at_the_oidc_issuer(rendered_sets):
    rendered = rendered_sets["kubernetes"]
    ingresses = {i["metadata"]["name"]: i for i in rendered.of_kind("Ingress")}
    groups = {WEB: ["datamesh-operators"], READ_ONLY: ["datamesh-operators", "datamesh-viewers"]}
    for name, deployment in ui_deployments(rendered).items():
        container = proxy(deployment)
        assert container["name"] == "oauth2-proxy"
        assert flag(container, "--provider") == "oidc"
        assert flag(container, "--oidc-issuer-url") == "https://login.example.com/realms/data"
        assert flag(container, "--client-id") == "datamesh-ui"
        host = ingresses[name]["spec"]["rules"][0]["host"]
        assert flag(container, "--redirect-url") == f"https://{host}/oauth2/callback"
        assert flags(container)["--allowed-group"] == groups[name]
        assert flags(container)["--email-domain"] == ["*"]
        assert flag(container, "--http-address") == "0.0.0.0:4180"
        assert flag(container, "--cookie-secure") == "true"
        # both secrets by reference: the OIDC client's and the cookie's
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert env == {
            "OAUTH2_PROXY_CLIENT_SECRET": {"name": "datamesh-ui-oidc", "key": "client-secret"},
            "OAUTH2_PROXY_COOKIE_SECRET": {"name": "datamesh-ui-cookie", "key": "cookie-secret"},
        }
        probes = {p: container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
        assert probes == {"readinessProbe": "/ready", "livenessProbe": "/ping"}


def test_path_prefix_reaches_the_proxy_the_probes_and_the_route(variants):
    for name in ("openshift-path-prefix", "kubernetes-path-prefix"):
        rendered = variants[name]
        for deployment in ui_deployments(rendered).values():
            assert "--path-prefix=/dagster" in webserver(deployment)["args"]
            probe = webserver(deployment)["livenessProbe"]["exec"]["command"]
            assert "'http://127.0.0.1:3000/dagster/server_info'" in probe[2]
            container = proxy(deployment)
            if container["name"] == "oauth-proxy":
                assert flag(container, "--proxy-prefix") == "/dagster/oauth"
                assert container["livenessProbe"]["httpGet"]["path"] == "/dagster/oauth/healthz"
            else:
                assert flag(container, "--proxy-prefix") == "/dagster/oauth2"
                assert flag(container, "--redirect-url").endswith("/dagster/oauth2/callback")
        for route in rendered.of_kind("Route"):
            assert route["spec"]["path"] == "/dagster"
        for ingress in rendered.of_kind("Ingress"):
            assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/dagster"


def test_without_the_read_only_ui_nothing_of_it_is_rendered(variants):
    for name in ("openshift-without-read-only", "kubernetes-without-read-only"):
        leftovers = [
            f"{d['kind']}/{d['metadata']['name']}"
            for d in variants[name].docs
            if "read-only" in d["metadata"]["name"] or "read-only" in json.dumps(d.get("spec", {}))
        ]
        assert leftovers == [], name


def test_read_only_flag_only_on_the_read_only_ui(rendered):
    uis = ui_deployments(rendered)
    assert "--read-only" in webserver(uis[READ_ONLY])["args"]
    assert "--read-only" not in webserver(uis[WEB])["args"]
    strip = lambda c: [a for a in c["args"] if a != "--read-only"]  # noqa: E731
    assert strip(webserver(uis[READ_ONLY])) == strip(webserver(uis[WEB]))


@pytest.mark.parametrize(
    ("value_set", "args", "message"),
    [
        (
            "kubernetes",
            ("--set", "uiAuth.oidc.issuerUrl="),
            "uiAuth.oidc.issuerUrl is required on Kubernetes (openshift.enabled=false)",
        ),
        (
            "kubernetes",
            ("--set", "secrets.uiOidcClient.name="),
            "secrets.uiOidcClient.name is required on Kubernetes",
        ),
        ("openshift", ("--set", "secrets.uiCookie.name="), "secrets.uiCookie.name is required"),
        (
            "kubernetes",
            ("--set", "readOnlyWebserver.host="),
            "readOnlyWebserver.host is required with an Ingress",
        ),
    ],
)
def test_missing_login_settings_fail_the_render(render, value_set, args, message):
    result = render(VALUE_SETS[value_set], *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


# --- the webserver side, for real --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on a port (Linux /proc/net/tcp, tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if len(address) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
                    found.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


def test_the_rendered_read_only_webserver_binds_loopback_answers_its_probe_and_is_read_only(
    rendered_sets, tmp_path
):
    """dagster-webserver with the chart's arguments (port and workspace replaced by local ones,
    a local instance): it listens on 127.0.0.1 only, the chart's exec probe succeeds against it
    and fails once it is gone, and Dagster reports launching runs disabled."""
    deployment = ui_deployments(rendered_sets["kubernetes"])[READ_ONLY]
    container = webserver(deployment)
    port = free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text("load_from: []\n")
    args = []
    for arg in container["args"]:
        if arg.startswith("--port="):
            arg = f"--port={port}"
        elif arg.startswith("--workspace="):
            arg = f"--workspace={workspace}"
        args.append(arg)
    probe = [
        sys.executable if part == "python" else part.replace(":3000/", f":{port}/")
        for part in container["livenessProbe"]["exec"]["command"]
    ]
    (tmp_path / "home").mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    webserver_bin = Path(sys.executable).parent / "dagster-webserver"
    log = (tmp_path / "webserver.log").open("w")
    process = subprocess.Popen([str(webserver_bin), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(probe, capture_output=True, timeout=30).returncode != 0:
            assert process.poll() is None, (tmp_path / "webserver.log").read_text()
            assert time.monotonic() < deadline, "the probe never succeeded"
            time.sleep(1)
        assert listening_addresses(port) == {"127.0.0.1"}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql",
            data=json.dumps({"query": "{ permissions { permission value } }"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            permissions = {p["permission"]: p["value"] for p in json.load(response)["data"]["permissions"]}
        assert permissions["launch_pipeline_execution"] is False
        assert permissions["terminate_pipeline_execution"] is False
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0
