"""The production stack on one machine: PostgreSQL, an S3 store, OPA, Trino and Kafka as plain
processes.

    mesh stack up        install what is missing (cached outside the repo), start, health-check
    mesh stack status    each service (each Trino node): port, pid, health; exit 1 when one is not healthy
    mesh stack env       the `export` lines of production mode (credentials by file, never shown)
    mesh stack down [--purge]   stop everything (--purge also deletes the stack's data)

The services listen on 127.0.0.1 only: PostgreSQL (``MESH_PG_PORT``, 5432) holds the Iceberg
JDBC catalog (database ``mesh``) and the Dagster instance storage (database ``dagster``); the S3
store (``MESH_S3_PORT``, 9000) holds the warehouse bucket; Trino (HTTPS and a password on
``MESH_TRINO_HTTPS_PORT``, 8443; ``MESH_TRINO_PORT``, 8080, is its internal HTTP port, refused to
clients; ``MESH_TRINO_WORKERS`` workers beside it make it a cluster, see :mod:`.trino`) serves the
catalog as ``iceberg``, one schema per domain, and asks OPA (``MESH_OPA_PORT``, 8181)
about every access: the policy generated from the contracts (``mesh access build``, run by
``up``) decides table access, row filters and column masks. Kafka (``MESH_KAFKA_PORT``, 9092;
its KRaft controller on ``MESH_KAFKA_CONTROLLER_PORT``, 9093) carries the topics of streaming
products (:mod:`mesh_assets.stream`). With ``mesh stack up --with superset``, Apache Superset
(``MESH_SUPERSET_PORT``, 8088; :mod:`.superset`) serves dashboards and SQL Lab over Trino;
``status`` reports it once started and ``down`` stops it first. pyiceberg, Trino and DuckDB all read
and write the same tables. State lives in ``$MESH_HOME/stack`` (see :mod:`.layout`), the policy
data in ``$MESH_HOME/access``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import shlex
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mesh_assets import settings, tools
from mesh_assets.stack import accounts, kafka, objectstore, opa, postgres, superset, tls, trino
from mesh_assets.stack.kafka import Kafka
from mesh_assets.stack.layout import (
    BUCKET,
    DAGSTER_DB,
    DAGSTER_USER,
    HOST,
    PORT_ENV,
    S3_REGION,
    TRINO_CATALOG,
    TRINO_USER,
    StackError,
    StackLayout,
    port_variable,
)
from mesh_assets.stack.objectstore import ObjectStore
from mesh_assets.stack.opa import Opa
from mesh_assets.stack.postgres import Postgres
from mesh_assets.stack.processes import port_is_free, port_owner
from mesh_assets.stack.superset import Superset
from mesh_assets.stack.trino import Trino, TrinoWorker, active_workers
from mesh_assets.workspace import workspace_domains

__all__ = [
    "StackError",
    "StackLayout",
    "ServiceStatus",
    "up",
    "down",
    "status",
    "production_env",
    "catalog_properties",
    "add_cli",
]

SERVICES = ("postgres", "s3", "opa", "trino", "kafka")  # `down` stops them in reverse order
# started on request only (`up --with NAME`), after the others; stopped first
OPTIONAL_SERVICES = ("superset",)
READY_TIMEOUT_S = {"postgres": 60, "s3": 30, "opa": 30, "trino": 300, "kafka": 60, "superset": 300}
WORKERS_TIMEOUT_S = 120  # after the coordinator started: every worker announced and active
# the ports a service listens on besides its own name's
EXTRA_PORTS = {"trino-https": "trino", "kafka-controller": "kafka"}


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int
    pid: int | None
    healthy: bool
    detail: str


def _core(layout: StackLayout) -> list[str]:
    """:data:`SERVICES` with ``layout``'s Trino workers right after their coordinator, in start
    order (``down`` stops them in reverse)."""
    return [*SERVICES[:4], *layout.trino_workers, *SERVICES[4:]]


def _services(layout: StackLayout) -> dict:
    workers = {name: TrinoWorker(layout, n) for n, name in enumerate(layout.trino_workers, 1)}
    return {
        "postgres": Postgres(layout),
        "s3": ObjectStore(layout),
        "opa": Opa(layout),
        "trino": Trino(layout),
        **workers,
        "kafka": Kafka(layout),
        "superset": Superset(layout),
    }


@contextmanager
def _locked(layout: StackLayout):
    """One ``up``/``down`` at a time per stack (make test and a developer may race)."""
    layout.ensure_dirs()
    with (layout.run_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def status(layout: StackLayout | None = None) -> list[ServiceStatus]:
    layout = layout or StackLayout.current()
    out = []
    for name, service in _services(layout).items():
        proc = service.process
        if name in OPTIONAL_SERVICES and proc.recorded_pid() is None:
            continue  # not asked for (or stopped by `down`)
        pid = proc.pid()
        if pid is None:
            recorded = proc.recorded_pid()
            if recorded is not None:
                detail = (
                    f"NOT RUNNING: process {recorded} (from {proc.pidfile}) is gone; "
                    f"`mesh stack up{' --with ' + name if name in OPTIONAL_SERVICES else ''}` starts it "
                    f"again. Last lines of {proc.log}:\n{proc.last_words(15)}"
                )
            else:
                detail = "not running (never started, or stopped by `mesh stack down`)"
            out.append(ServiceStatus(name, service.port, None, False, detail))
            continue
        if (name == "trino" or name in layout.trino_workers) and not next(
            s for s in out if s.name == "opa"
        ).healthy:
            # every query would wait for OPA (a minute when it is stalled) and be refused
            detail = "running, but refuses every query while OPA fails (see the opa line)"
            out.append(ServiceStatus(name, service.port, pid, False, detail))
            continue
        try:
            out.append(ServiceStatus(name, service.port, pid, True, service.health()))
        except Exception as exc:  # noqa: BLE001 - any failure of the check is the answer
            out.append(
                ServiceStatus(
                    name, service.port, pid, False, f"running but not healthy: {type(exc).__name__}: {exc}"
                )
            )
    return out


def up(
    *,
    prepare: Callable[[StackLayout, Callable[[str], None]], None] | None = None,
    say: Callable[[str], None] = print,
    with_services: tuple[str, ...] = (),
) -> list[ServiceStatus]:
    """Start whatever part of the stack is not running; a no-op (that says so) when all is up.

    ``prepare(layout, say)`` runs first: it writes what the services read from
    ``layout.access_dir`` (the access policy folder for OPA, the group file for Trino).
    ``with_services`` names the :data:`OPTIONAL_SERVICES` to start too (after the others)."""
    unknown = set(with_services) - set(OPTIONAL_SERVICES)
    if unknown:
        raise StackError(
            f"no optional service {', '.join(sorted(unknown))}: choose from {', '.join(OPTIONAL_SERVICES)}"
        )
    layout = StackLayout.from_env()
    with _locked(layout):
        try:
            current = _up(layout, prepare, say)
            if "superset" in with_services:
                current = _up_superset(StackLayout.current(), say)
            return current
        except StackError as exc:
            raise StackError(
                f"{exc}\n(what did start keeps running: `mesh stack status` shows it, "
                "`mesh stack down` stops it)"
            ) from None


def _up(layout: StackLayout, prepare, say: Callable[[str], None]) -> list[ServiceStatus]:
    t0 = time.monotonic()
    recorded = StackLayout.current()
    services = _services(recorded)
    running = {name for name in _core(recorded) if services[name].process.pid() is not None}
    fixed = {name: port for name, port in recorded.ports.items() if name not in recorded.trino_workers}
    if running and fixed != {k: v for k, v in layout.ports.items() if k not in layout.trino_workers}:
        raise StackError(
            f"the stack in {layout.root} already runs on ports {recorded.ports}; "
            f"`mesh stack down` first to move it to {layout.ports}"
        )
    if running and settings.trino_workers() is not None:  # the workers MESH_TRINO_WORKERS asks for
        workers = {name: layout.ports[name] for name in layout.trino_workers}
        recorded = dataclasses.replace(recorded, ports={**fixed, **workers})
        for name in _core(StackLayout.current()):
            if name not in recorded.ports and services[name].stop():
                say(f"{name}: stopped (MESH_TRINO_WORKERS={len(workers)})")
                running.discard(name)
        services = _services(recorded)
    made = _ensure_identities(recorded if running else layout)
    if made:
        say(f"generated {', '.join(made)} in {(recorded if running else layout).secrets_dir} (mode 0600)")
    if prepare is not None:
        prepare(recorded if running else layout, say)
    nodes = [services["trino"], *(services[name] for name in recorded.trino_workers)]
    # started by an older platform (its etc/ lacks what this one writes), or with other workers
    for node in (node for node in nodes if node.process.name in running):
        outdated = node.outdated(_install(say, need={"trino"})["trino"])
        if outdated:
            say(f"{node.process.name}: configuration changed ({', '.join(outdated)}), restarting it")
            node.stop()
            running.discard(node.process.name)
    if running == set(_core(recorded)):
        current = status(recorded)
        if all(s.healthy for s in current if s.name in running):
            say(
                f"stack already up, nothing to do ({time.monotonic() - t0:.1f} s): "
                + ", ".join(f"{s.name} {HOST}:{s.port} pid {s.pid}" for s in current if s.pid is not None)
            )
            return current
    layout = recorded if running else layout
    services = _services(layout)
    for name in [*_core(layout), *EXTRA_PORTS]:
        service = EXTRA_PORTS.get(name, name)
        if service not in running and not port_is_free(layout.ports[name]):
            raise StackError(
                f"port {layout.ports[name]} on {HOST}, wanted by {name}, is taken by "
                f"{port_owner(layout.ports[name])}: stop that program or choose another "
                f"port with {port_variable(name)}=..."
            )
    layout.ensure_dirs()
    made = layout.ensure_secrets()
    pg: Postgres = services["postgres"]
    if "postgres-superuser" in made and pg.initialized() and pg.orphaned():
        # a cluster kept outside MESH_HOME for a MESH_HOME at this path that was deleted (a CI
        # clone in the same folder as the last): nothing can log in to it any more
        say(f"postgres: removing {pg.data}, left by a deleted MESH_HOME at {layout.root.parent}")
        shutil.rmtree(pg.data.parent)
    if "postgres-superuser" in made and pg.initialized():
        raise StackError(
            f"{pg.data} exists but its credentials in {layout.secrets_dir} were lost; "
            "`mesh stack down --purge` deletes the stack's data to start over"
        )
    if made:
        say(f"generated credentials {', '.join(made)} in {layout.secrets_dir} (mode 0600)")

    binaries = _install(
        say, need={"trino" if n in layout.trino_workers else n for n in _core(layout) if n not in running}
    )
    layout.write_state()

    started = {}
    trino: Trino = services["trino"]
    workers: list[TrinoWorker] = [services[name] for name in layout.trino_workers]
    # the slowest first: Trino's catalog reaches PostgreSQL and S3 lazily, and a worker keeps
    # announcing itself until the coordinator answers
    for node in [trino, *workers]:
        if node.process.name not in running:
            started[node.process.name] = (node.start(binaries["trino"], binaries["java"]), time.monotonic())
    broker: Kafka = services["kafka"]
    if "kafka" not in running:  # needs no other service; ready long before Trino
        started["kafka"] = (broker.start(binaries["kafka"], binaries["java"]), time.monotonic())
    if "postgres" not in running:
        if not pg.initialized():
            t = time.monotonic()
            pg.init(binaries["postgres"])
            say(f"postgres: initialized a cluster in {pg.data} ({time.monotonic() - t:.1f} s)")
        started["postgres"] = (pg.start(binaries["postgres"]), time.monotonic())
    store: ObjectStore = services["s3"]
    if "s3" not in running:
        started["s3"] = (store.start(binaries["s3"]), time.monotonic())
    opa: Opa = services["opa"]
    if "opa" not in running:
        started["opa"] = (opa.start(binaries["opa"]), time.monotonic())

    pg.process.wait_until(pg.accepts_superuser, READY_TIMEOUT_S["postgres"])
    pg.provision()
    _report_started(say, "postgres", started, layout)
    store.process.wait_until(store.ensure_bucket, READY_TIMEOUT_S["s3"])
    _report_started(say, "s3", started, layout)
    domains = _ensure_catalog(layout)
    opa.process.wait_until(opa.ready, READY_TIMEOUT_S["opa"])
    _report_started(say, "opa", started, layout)
    trino.process.wait_until(trino.started, READY_TIMEOUT_S["trino"], what="(/v1/info still starting)")
    for worker in workers:
        worker.process.wait_until(worker.started, READY_TIMEOUT_S["trino"], what="(/v1/info still starting)")
    if workers:
        trino.process.wait_until(
            lambda: _workers_active(trino) == len(workers),
            WORKERS_TIMEOUT_S,
            what=f"with its {len(workers)} workers active (system.runtime.nodes)",
        )
    trino.process.wait_until(lambda: bool(trino.health()), 60, what="to answer SELECT 1")
    for node in [trino, *workers]:
        _report_started(say, node.process.name, started, layout)
    broker.process.wait_until(broker.ready, READY_TIMEOUT_S["kafka"], what="to answer a metadata request")
    _report_started(say, "kafka", started, layout)

    current = status(layout)
    bad = [s for s in current if not s.healthy and s.name in _core(layout)]
    if bad:
        raise StackError("; ".join(f"{s.name}: {s.detail}" for s in bad))
    say(
        f"stack up in {time.monotonic() - t0:.1f} s: PostgreSQL {HOST}:{layout.ports['postgres']}, "
        f"S3 {layout.s3_endpoint} (bucket {BUCKET}), OPA {opa.url}, "
        f"Trino https://{HOST}:{layout.ports['trino-https']} "
        f"({f'coordinator of {len(workers)} workers, ' if workers else ''}password login, CA {layout.ca_file}; catalog {TRINO_CATALOG}, schemas {', '.join(domains)}, "
        f"access control OPA), Kafka {broker.bootstrap}"
    )
    say('production settings: eval "$(mesh stack env)"')
    return current


def _workers_active(trino: Trino) -> int:
    conn = trino.connect(request_timeout=10)
    try:
        return len(active_workers(conn.cursor()))
    finally:
        conn.close()


def _up_superset(layout: StackLayout, say: Callable[[str], None]) -> list[ServiceStatus]:
    """Superset on the running stack: installed on first use, its database provisioned, its
    metadata initialized on its first start; a no-op when it runs."""
    service: Superset = _services(layout)["superset"]
    if service.process.pid() is None:
        port = layout.ports["superset"]
        if not port_is_free(port):
            raise StackError(
                f"port {port} on {HOST}, wanted by superset, is taken by {port_owner(port)}: stop that "
                f"program or choose another port with {PORT_ENV['superset']}=..."
            )
        made = layout.ensure_secrets()
        if made:
            say(f"generated credentials {', '.join(made)} in {layout.secrets_dir} (mode 0600)")
        _services(layout)["postgres"].provision()
        t = time.monotonic()
        home = superset.install()
        if time.monotonic() - t > 1:
            say(f"installed Superset {superset.VERSION} in {time.monotonic() - t:.1f} s: {home}")
        service.setup(home, say)
        t = time.monotonic()
        pid = service.start(home)
        service.process.wait_until(service.ready, READY_TIMEOUT_S["superset"], what="to answer /health")
        say(
            f"superset: pid {pid} on {service.url}, ready {time.monotonic() - t:.1f} s after start "
            f"(log {layout.log('superset')}; login {superset.ADMIN}, password file "
            f"{layout.secret_path('superset-admin-password')}; `mesh superset sync` provisions it)"
        )
    current = status(layout)
    bad = [s for s in current if not s.healthy]
    if bad:
        raise StackError("; ".join(f"{s.name}: {s.detail}" for s in bad))
    return current


def _ensure_identities(layout: StackLayout) -> list[str]:
    """What Trino's TLS and logins need before the access data is built: the CA and server
    certificate, the service accounts (``mesh``, ``domain-<name>``) and Trino's password file.
    Returns what was made (names only)."""
    layout.ensure_dirs()
    made = tls.ensure(layout.tls_dir, HOST)
    made += [
        f"Trino account {name}" for name in accounts.ensure_service_accounts(layout, workspace_domains())
    ]
    return made


def _report_started(say, name: str, started: dict, layout: StackLayout) -> None:
    if name in started:
        pid, at = started[name]
        say(
            f"{name}: pid {pid} on {HOST}:{layout.ports[name]}, ready {time.monotonic() - at:.1f} s "
            f"after start (log {layout.log(name)})"
        )


def _install(say, need: set[str]) -> dict[str, Path]:
    """Binaries of the services to start: found, built or downloaded once (tools cache)."""

    steps = {
        "postgres": ("PostgreSQL server (Debian package)", postgres.bin_dir),
        "s3": (f"versitygw {objectstore.VERSITYGW.version} (go install)", objectstore.binary),
        "opa": (f"OPA {opa.version()} (go install)", opa.binary),
        "trino": (f"Trino {trino.VERSION} server ({', '.join(trino.PLUGINS)} plugins)", trino.install),
        "kafka": (f"Kafka {kafka.VERSION} ({len(kafka.JARS)} jars from Maven Central)", kafka.install),
        "java": ("a Java 24+ runtime", trino.java_home),
    }
    out = {}
    for name, (what, get) in steps.items():
        if name not in need and not (name == "java" and need & {"trino", "kafka"}):
            continue
        t = time.monotonic()
        try:
            out[name] = get()
        except tools.ToolError as exc:
            raise StackError(f"installing {what} failed: {exc}") from None
        if time.monotonic() - t > 1:
            say(f"installed {what} in {time.monotonic() - t:.1f} s: {out[name]}")
    return out


def _ensure_catalog(layout: StackLayout) -> list[str]:
    """The JDBC catalog's tables (pyiceberg creates them; Trino does not) and one namespace
    (= Trino schema) per domain of workspace.yaml."""
    from pyiceberg.catalog.sql import SqlCatalog  # noqa: PLC0415  SQLAlchemy (0.3-0.7 s): only when a catalog opens

    catalog = SqlCatalog(layout.catalog_name, **catalog_properties(layout))
    domains = workspace_domains()
    for domain in domains:
        catalog.create_namespace_if_not_exists(domain)
    catalog.engine.dispose()
    return domains


def down(*, purge: bool = False, say: Callable[[str], None] = print) -> None:
    layout = StackLayout.current()
    with _locked(layout):
        for name in (*reversed(OPTIONAL_SERVICES), *reversed(_core(layout))):
            service = _services(layout)[name]
            pid = service.process.pid()
            if service.stop():
                say(f"{name}: stopped (pid {pid})")
            else:
                say(f"{name}: was not running")
        layout.state_file.unlink(missing_ok=True)
        if purge:
            cluster = _services(layout)["postgres"].data
            if not cluster.is_relative_to(layout.root):  # kept in the postgres user's home
                shutil.rmtree(cluster.parent, ignore_errors=True)
            for sub in ("postgres", "s3", "opa", "trino", "kafka", "superset", "secrets", "logs"):
                shutil.rmtree(layout.root / sub, ignore_errors=True)
            say(f"deleted the stack's data, logs and credentials under {layout.root}")


def catalog_properties(layout: StackLayout | None = None) -> dict[str, str]:
    """pyiceberg SqlCatalog properties for the stack, credentials included (never log them)."""
    layout = layout or StackLayout.current()
    return {
        "uri": layout.catalog_uri(layout.secret("catalog-password")),
        "pool_pre_ping": "true",  # as the settings' (a PostgreSQL restart must not break it)
        "warehouse": layout.warehouse,
        "s3.endpoint": layout.s3_endpoint,
        "s3.path-style-access": "true",
        "s3.region": S3_REGION,
        "s3.access-key-id": layout.secret("s3-access-key"),
        "s3.secret-access-key": layout.secret("s3-secret-key"),
    }


def production_env(layout: StackLayout | None = None, *, resolve_secrets: bool = False) -> dict[str, str]:
    """The environment of production mode on this stack. Credentials are passed by file
    (``*_FILE``); Dagster's ``DAGSTER_PG_PASSWORD`` has no file variant, so it is only included
    with ``resolve_secrets=True`` (for a child process's environment, never for printing)."""
    layout = layout or StackLayout.current()
    secret = layout.secret_path
    env = {
        "MESH_CATALOG_NAME": layout.catalog_name,
        "MESH_CATALOG_URI": layout.catalog_uri(),
        "MESH_CATALOG_PASSWORD_FILE": str(secret("catalog-password")),
        "MESH_WAREHOUSE": layout.warehouse,
        # raw files land in the same bucket, under landing/<domain>/ (mesh_assets.ingest.landing)
        "MESH_LANDING": layout.warehouse.rsplit("/", 1)[0] + "/landing",
        "MESH_S3_ENDPOINT": layout.s3_endpoint,
        "AWS_ACCESS_KEY_ID_FILE": str(secret("s3-access-key")),
        "AWS_SECRET_ACCESS_KEY_FILE": str(secret("s3-secret-key")),
        "AWS_REGION": S3_REGION,
        "MESH_ENGINE": "trino",
        "MESH_TRINO_HOST": HOST,
        # clients connect to the HTTPS port; MESH_TRINO_PORT is the stack's internal HTTP port
        "MESH_TRINO_PORT": str(layout.ports["trino"]),
        "MESH_TRINO_HTTPS_PORT": str(layout.ports["trino-https"]),
        "MESH_TRINO_CA_FILE": str(layout.ca_file),
        "MESH_TRINO_USER": TRINO_USER,
        "MESH_TRINO_PASSWORD_FILE": str(accounts.accounts_dir(layout) / TRINO_USER),
        # each domain's code location logs in as domain-<name>, with the password file of that name
        "MESH_TRINO_ACCOUNTS_DIR": str(accounts.accounts_dir(layout)),
        "MESH_TRINO_CATALOG": TRINO_CATALOG,
        # the policy Trino enforces; the local read path asks it too (unreachable = denied)
        "MESH_OPA_URL": f"http://{HOST}:{layout.ports['opa']}",
        "MESH_OPA_DECISION_LOG": str(layout.log("opa")),  # read by `mesh access audit`
        # the broker of streaming products' topics (mesh_assets.stream)
        "MESH_KAFKA_BOOTSTRAP": kafka.bootstrap_servers(layout),
        "MESH_DAGSTER_STORAGE": "postgres",
        # its own instance folder: an embedded run's dagster.yaml (SQLite) is left alone
        "DAGSTER_HOME": str(layout.root / "dagster"),
        "DAGSTER_PG_HOST": HOST,
        "DAGSTER_PG_PORT": str(layout.ports["postgres"]),
        "DAGSTER_PG_DB": DAGSTER_DB,
        "DAGSTER_PG_USER": DAGSTER_USER,
    }
    if resolve_secrets:
        env["DAGSTER_PG_PASSWORD"] = layout.secret("dagster-password")
    return env


def env_script(layout: StackLayout | None = None) -> str:
    """``export`` lines for a shell: ``eval "$(mesh stack env)"``. No credential appears in
    them; Dagster's password is read from its file when the shell evaluates the line."""

    layout = layout or StackLayout.current()
    lines = [f"export {k}={shlex.quote(v)}" for k, v in production_env(layout).items()]
    password_file = shlex.quote(str(layout.secret_path("dagster-password")))
    lines.append(f'export DAGSTER_PG_PASSWORD="$(cat {password_file})"')
    return "\n".join(lines) + "\n"
