"""The chart's pods, run from the image against the stack (production mode: PostgreSQL, S3,
Trino over HTTPS with each domain's service account).

helm/datamesh is rendered with values-openshift.yaml and tests/image/values-local.yaml (what a
cluster would otherwise provide: the UID restricted-v2 assigns, host-network ports, runs as
processes of the code server pods since no Kubernetes API exists here: ``runs.launcher:
default``). Its webserver, daemon and one code server per domain start as podman containers
(tests/image/pods.py: why not ``podman kube play``, and what stands in for the cluster). The
webserver then lists every code location as loaded, and a materialization of the fleet domain
launched through its GraphQL API (queued, dequeued by the daemon, run by the code server)
succeeds with its checks.

Not run here: the UI's login proxies (their images are on quay.io / registry.redhat.io, not
reachable; the webserver is reached directly on its loopback port, as the proxy in its pod
would), the read-only UI (a second webserver: disabled in the overlay), and the
K8sRunLauncher's Jobs (no Kubernetes API server; the Job spec it would submit is checked by
tests/deploy/test_helm_dagster.py).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from pods import Cluster, PodStartError, fresh_dir, make_readable

from mesh_assets import image
from mesh_assets.deploy import CHART_DIR
from mesh_assets.engine import trino_connection
from mesh_assets.iceberg.catalog import open_catalog
from mesh_assets.iceberg.commit import RUN_ID_PROPERTY
from mesh_assets.settings import load_settings
from mesh_assets.stack import production_env
from mesh_assets.stack.layout import DAGSTER_DB, DAGSTER_USER, S3_REGION, TRINO_CATALOG
from mesh_assets.tools import go_tool

pytestmark = [pytest.mark.image, pytest.mark.stack]

RELEASE, NAMESPACE = "mesh", "data-platform"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "image"
OVERLAY = Path(__file__).parent / "values-local.yaml"
LOCAL = yaml.safe_load(OVERLAY.read_text())
WEB_PORT = LOCAL["webserver"]["port"]
DOMAIN = "fleet"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def render(layout, platform_image: str, *extra: str) -> list[dict]:
    repository, tag = platform_image.rsplit(":", 1)
    sets = {
        "image.repository": repository,
        "image.tag": tag,
        "image.pullPolicy": "Never",
        "postgresql.host": "127.0.0.1",
        "postgresql.port": str(layout.ports["postgres"]),
        "postgresql.user": DAGSTER_USER,
        "postgresql.database": DAGSTER_DB,
        "mesh.catalogName": layout.catalog_name,
        "mesh.catalogUri": layout.catalog_uri(),
        "mesh.warehouse": layout.warehouse,
        "mesh.s3Endpoint": layout.s3_endpoint,
        "mesh.s3Region": S3_REGION,
        "mesh.trino.host": "127.0.0.1",
        "mesh.trino.port": str(layout.ports["trino-https"]),
        "mesh.trino.catalog": TRINO_CATALOG,
        "secrets.trino.name": "datamesh-trino-logins",
        "secrets.trinoCa.name": "datamesh-trino-ca",
    }
    args = ["template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--kube-version", "1.33.0"]
    args += ["-f", str(CHART_DIR / "values-openshift.yaml"), "-f", str(OVERLAY)]
    for key, value in sets.items():
        args += ["--set-string", f"{key}={value}"]
    result = subprocess.run([str(go_tool("helm")), *args, *extra], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def cluster_secrets(layout) -> dict[str, dict[str, str]]:
    """The Secrets an operator creates before installing the chart, from the stack's own."""
    accounts = layout.secrets_dir / "trino-accounts"
    return {
        "datamesh-dagster-postgres": {"postgresql-password": layout.secret("dagster-password")},
        "datamesh-catalog-postgres": {"password": layout.secret("catalog-password")},
        "datamesh-s3": {
            "AWS_ACCESS_KEY_ID": layout.secret("s3-access-key"),
            "AWS_SECRET_ACCESS_KEY": layout.secret("s3-secret-key"),
        },
        "datamesh-trino-logins": {p.name: p.read_text().strip() for p in accounts.glob("domain-*")},
        "datamesh-trino-ca": {"ca.crt": (layout.secrets_dir / "tls" / "ca.pem").read_text()},
        "datamesh-ui-cookie": {"cookie-secret": secrets.token_hex(16)},
    }


def graphql(query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{WEB_PORT}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def wait_started(cluster: Cluster, deployment: dict, containers: list[str], timeout_s: float = 300) -> None:
    """Until the chart's startup probe of each container passes (run as the kubelet would:
    its exec command inside the container); a container that exits fails with its log."""
    specs = {
        f"{deployment['metadata']['name']}-{c['name']}": c
        for c in deployment["spec"]["template"]["spec"]["containers"]
    }
    deadline = time.monotonic() + timeout_s
    for name in containers:
        command = specs[name]["startupProbe"]["exec"]["command"]
        while True:
            state = image.podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
            assert state == "running", f"{name} is {state}:\n{cluster.logs(name)[-4000:]}"
            if image.podman("exec", name, *command, check=False).returncode == 0:
                break
            assert time.monotonic() < deadline, (
                f"{name}: startup probe failing:\n{cluster.logs(name)[-4000:]}"
            )
            time.sleep(2)


@pytest.fixture
def cluster(stack_layout, tmp_path):
    landing = fresh_dir(tmp_path / "landing")
    made = Cluster(
        docs=[],
        secrets=cluster_secrets(stack_layout),
        claims={"datamesh-landing": landing},
        workdir=tmp_path / "pods",
    )
    yield made
    made.remove_all()


def land(landing: Path, domain: str) -> None:
    """The domain's demo files into the landing claim, as `mesh land` puts them anywhere."""
    env = {**os.environ, "MESH_LANDING": str(landing), "MESH_HOME": str(landing.parent / "lander")}
    mesh = str(Path(sys.executable).parent / "mesh")
    result = subprocess.run([mesh, "land", domain], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    make_readable(landing)


def test_the_charts_pods_run_and_materialize_a_domain(platform_image, stack_layout, cluster, monkeypatch):
    cluster.docs = render(stack_layout, platform_image)
    deployments = cluster.of_kind("Deployment")
    proxies = {
        c["name"]
        for d in deployments
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["image"] != platform_image
    }
    assert proxies == {"oauth-proxy"}  # the only part not run: see the module's docstring
    land(cluster.claims["datamesh-landing"], DOMAIN)

    started = {d["metadata"]["name"]: (d, cluster.start(d, skip=frozenset(proxies))) for d in deployments}
    assert len(started) == 2 + len(LOCAL["domains"])  # webserver, daemon, a code server per domain
    for deployment, containers in started.values():
        wait_started(cluster, deployment, containers)

    entries = graphql(
        """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
             locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    )["workspaceOrError"]["locationEntries"]
    assert {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries} == {
        name: "RepositoryLocation" for name in LOCAL["domains"]
    }, entries

    launched = graphql(
        """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
             ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": DOMAIN,
                    "repositoryName": "__repository__",
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": [DOMAIN, "planes"]}],
                },
                "mode": "default",
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    launched_at = time.time() - 5  # Trino's clock is this machine's
    deadline = time.monotonic() + 600
    while True:
        status = graphql(
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
        )
        status = status["runOrError"]["status"]
        if status in TERMINAL or time.monotonic() > deadline:
            break
        time.sleep(3)
    events = graphql(
        """query($id: ID!) { logsForRun(runId: $id, limit: 5000) { ... on EventConnection { events {
             __typename ... on MessageEvent { message }
             ... on ExecutionStepFailureEvent { stepKey error { message cause { message } } }
             ... on AssetCheckEvaluationEvent { evaluation { checkName success } }
             ... on MaterializationEvent { assetKey { path } } } } } }""",
        {"id": run_id},
    )["logsForRun"]["events"]
    code_server = f"{RELEASE}-datamesh-cs-{DOMAIN}-code-server"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # what the run did, kept for the reader
    (ARTIFACTS / "chart-run-events.json").write_text(json.dumps(events, indent=1))
    (ARTIFACTS / "chart-code-server.log").write_text(cluster.logs(code_server))
    assert status == "SUCCESS", (
        [e.get("error") or e["message"] for e in events if e["__typename"].endswith("FailureEvent")],
        cluster.logs(code_server)[-4000:],
    )
    materialized = [e["assetKey"]["path"] for e in events if e["__typename"] == "MaterializationEvent"]
    assert materialized == [[DOMAIN, "planes"]]
    checks = {
        e["evaluation"]["checkName"]: e["evaluation"]["success"]
        for e in events
        if e["__typename"] == "AssetCheckEvaluationEvent"
    }
    assert checks and all(checks.values()), checks
    # the contract's checks (SQL on Trino) and its dbt source test (dbt on Trino) both ran
    assert {"not_null_tailnum", "unique_tailnum", "not_shrunk"} <= set(checks), checks
    assert any(name.startswith("source_accepted_values_fleet_planes_engine") for name in checks), checks
    # main of fleet.planes is this run's publication, with every plane
    for key, value in production_env(stack_layout, resolve_secrets=True).items():
        monkeypatch.setenv(key, value)
    table = open_catalog(load_settings()).load_table(f"{DOMAIN}.planes")
    assert table.current_snapshot().summary.additional_properties[RUN_ID_PROPERTY] == run_id
    assert table.scan().to_arrow().num_rows == 3322
    # Trino saw the domain's own service account: the checks' SQL and dbt's queries since launch
    cursor = trino_connection().cursor()  # the platform's account (group platform) reads system
    cursor.execute(
        'select "user", count(*) from system.runtime.queries '
        f"where created >= from_unixtime({launched_at:.3f}) and query like '%planes%' "
        "and query not like '%system.runtime.queries%' group by 1"  # not this one
    )
    users = dict(cursor.fetchall())
    assert users.get(f"domain-{DOMAIN}", 0) >= 2 and set(users) == {f"domain-{DOMAIN}"}, users
    # no credential in what the test keeps
    kept = "".join(p.read_text(errors="replace") for p in ARTIFACTS.iterdir() if p.is_file())
    values = [v for data in cluster.secrets.values() for v in data.values() if len(v) >= 16]
    assert not any(v in kept for v in values), "a Secret value is in test-artifacts/image"


def test_a_pod_missing_a_secret_fails_at_start_naming_it(platform_image, stack_layout, cluster):
    # the Secret object itself missing: the pod does not start. That is the kubelet's own check
    # (stood in for by tests/image/pods.py): it shows that the chart references the Secret
    cluster.docs = render(stack_layout, platform_image)
    del cluster.secrets["datamesh-catalog-postgres"]
    code_server = next(
        d for d in cluster.of_kind("Deployment") if d["metadata"]["name"].endswith(f"cs-{DOMAIN}")
    )
    with pytest.raises(PodStartError, match='secret "datamesh-catalog-postgres" not found'):
        cluster.start(code_server)
    # the chart told about no catalog Secret at all: the image's code server stops at start
    cluster.docs = render(stack_layout, platform_image, "--set-string", "secrets.catalog.name=")
    code_server = next(
        d for d in cluster.of_kind("Deployment") if d["metadata"]["name"].endswith(f"cs-{DOMAIN}")
    )
    (name,) = cluster.start(code_server)
    deadline = time.monotonic() + 120
    while image.podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "running":
        assert time.monotonic() < deadline, cluster.logs(name)[-3000:]
        time.sleep(1)
    code = image.podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    log = cluster.logs(name)
    assert code != "0", log[-3000:]
    assert (
        "MissingSecretError: missing credentials: MESH_CATALOG_URI needs {password} but neither "
        "MESH_CATALOG_PASSWORD nor MESH_CATALOG_PASSWORD_FILE is set; set Helm value "
        "secrets.catalog.name to the Secret holding the catalog's password"
    ) in log, log[-3000:]
    raw = image.podman("logs", name, check=False)
    values = [v for data in cluster.secrets.values() for v in data.values() if len(v) >= 16]
    assert not any(v in raw.stdout + raw.stderr for v in values), "a Secret value is in its output"
