"""Where a stack lives on disk, which ports it listens on, and its credentials.

One stack per ``$MESH_HOME``: everything it writes (data, logs, pid files, generated
configuration, secrets) is under ``$MESH_HOME/stack`` (``MESH_STACK_DIR`` overrides). Binaries
and downloads are not: they are cached once per machine by :mod:`mesh_assets.tools`.

Credentials are generated at the first ``mesh stack up`` and kept as files of mode 0600 under
``stack/secrets``; they are handed to processes through files or environment variables, never
through command lines (visible in ``ps``) and never printed.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass
from pathlib import Path

from mesh_assets.settings import load_settings, stack_dir, stack_port, trino_workers

HOST = "127.0.0.1"
BUCKET = "warehouse"
S3_REGION = "us-east-1"
TRINO_CATALOG = "iceberg"
TRINO_USER = "mesh"
CATALOG_DB = CATALOG_USER = "mesh"
DAGSTER_DB = DAGSTER_USER = "dagster"
SUPERSET_DB = SUPERSET_USER = "superset"

# "trino" is Trino's plain-HTTP port, for its internal communication only (clients are refused
# there); "trino-https" the port clients connect to, with TLS and a password
# "kafka" is the broker's client port, "kafka-controller" its KRaft quorum port; "superset" is
# used only when the stack is started with Superset (`mesh stack up --with superset`)
DEFAULT_PORTS = {
    "postgres": 5432,
    "s3": 9000,
    "trino": 8080,
    "opa": 8181,
    "trino-https": 8443,
    "kafka": 9092,
    "kafka-controller": 9093,
    "superset": 8088,
}
PORT_ENV = {
    "postgres": "MESH_PG_PORT",
    "s3": "MESH_S3_PORT",
    "trino": "MESH_TRINO_PORT",
    "opa": "MESH_OPA_PORT",
    "trino-https": "MESH_TRINO_HTTPS_PORT",
    "kafka": "MESH_KAFKA_PORT",
    "kafka-controller": "MESH_KAFKA_CONTROLLER_PORT",
    "superset": "MESH_SUPERSET_PORT",
}
# Trino workers (MESH_TRINO_WORKERS of them): "trino-worker-1" listens on MESH_TRINO_WORKER_PORT,
# each next one on the port after
WORKER = "trino-worker-{}"
WORKER_PORT_ENV = "MESH_TRINO_WORKER_PORT"
DEFAULT_WORKER_PORT = 8090


def port_variable(service: str) -> str:
    """The environment variable that sets ``service``'s port."""
    return PORT_ENV.get(service, WORKER_PORT_ENV)


# name -> (alphabet, length); S3 access keys look like AWS's (upper-case alphanumerics)
SECRETS = {
    "postgres-superuser": (string.ascii_letters + string.digits, 32),
    "catalog-password": (string.ascii_letters + string.digits, 32),
    "dagster-password": (string.ascii_letters + string.digits, 32),
    "s3-access-key": (string.ascii_uppercase + string.digits, 20),
    "s3-secret-key": (string.ascii_letters + string.digits, 40),
    # Trino's internal-communication.shared-secret (required with authentication)
    "trino-shared-secret": (string.ascii_letters + string.digits, 64),
    # Superset (mesh_assets/stack/superset.py): its metadata login, Flask's SECRET_KEY, its admin
    "superset-db-password": (string.ascii_letters + string.digits, 32),
    "superset-secret-key": (string.ascii_letters + string.digits, 64),
    "superset-admin-password": (string.ascii_letters + string.digits, 24),
}


class StackError(RuntimeError):
    """The stack could not be brought to the requested state; the message says why and what to do."""


def _port(variable: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise StackError(f"{variable}={raw!r}: expected a TCP port number")
    return int(raw)


@dataclass(frozen=True)
class StackLayout:
    root: Path  # $MESH_HOME/stack
    ports: dict[str, int]  # service -> TCP port on HOST
    catalog_name: str  # pyiceberg SqlCatalog name = Trino jdbc-catalog.catalog-name

    @classmethod
    def from_env(cls) -> StackLayout:
        """Ports from ``MESH_PG_PORT``/``MESH_S3_PORT``/``MESH_TRINO_PORT``/``MESH_OPA_PORT``/
        ``MESH_TRINO_HTTPS_PORT``/``MESH_KAFKA_PORT``/``MESH_KAFKA_CONTROLLER_PORT``/
        ``MESH_SUPERSET_PORT`` (defaults 5432, 9000, 8080, 8181, 8443, 9092, 9093, 8088), and one
        per Trino worker (``MESH_TRINO_WORKERS``, default none) counting up from
        ``MESH_TRINO_WORKER_PORT`` (8090)."""
        settings = load_settings()
        root = stack_dir(settings)
        ports = {}
        for service, default in DEFAULT_PORTS.items():
            ports[service] = _port(PORT_ENV[service], stack_port(PORT_ENV[service], default))
        workers = trino_workers() or "0"
        if not workers.isdigit():
            raise StackError(f"MESH_TRINO_WORKERS={workers!r}: expected a number of workers (0 or more)")
        if int(workers):
            first = _port(WORKER_PORT_ENV, stack_port(WORKER_PORT_ENV, DEFAULT_WORKER_PORT))
            last = _port(f"{WORKER_PORT_ENV} + MESH_TRINO_WORKERS - 1", str(first + int(workers) - 1))
            ports.update({WORKER.format(n): port for n, port in enumerate(range(first, last + 1), 1)})
        taken = [p for p in ports.values() if list(ports.values()).count(p) > 1]
        if taken:
            owners = ", ".join(f"{s} ({port_variable(s)})" for s, p in ports.items() if p == taken[0])
            raise StackError(f"port {taken[0]} is configured for two services ({owners}): give each its own")
        return cls(root=root, ports=ports, catalog_name=settings.catalog_name)

    @classmethod
    def current(cls) -> StackLayout:
        """The layout of the stack as it was last started (its recorded ports), else from the
        environment: ``status``, ``env`` and ``down`` talk to what is actually running."""
        layout = cls.from_env()
        state = layout.state_file
        if state.exists():
            recorded = json.loads(state.read_text())
            # a service added since the stack was started runs on its configured port; the
            # workers are the ones started
            configured = {k: v for k, v in layout.ports.items() if k in DEFAULT_PORTS}
            ports = {**configured, **{k: int(v) for k, v in recorded["ports"].items()}}
            return cls(
                root=layout.root, ports=ports, catalog_name=recorded.get("catalog_name", layout.catalog_name)
            )
        return layout

    @property
    def trino_workers(self) -> list[str]:
        """The Trino workers' service names (``trino-worker-1``, ...), in order."""
        return [name for name in self.ports if name not in DEFAULT_PORTS]

    # --- paths -------------------------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def access_dir(self) -> Path:
        """The generated policy data and group file the stack's OPA and Trino read
        (``mesh access build``): ``$MESH_HOME/access`` next to ``$MESH_HOME/stack``."""
        return self.root.parent / "access"

    def log(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    def pidfile(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def secret_path(self, name: str) -> Path:
        return self.secrets_dir / name

    @property
    def tls_dir(self) -> Path:
        """The stack's CA and Trino's certificate (:mod:`.tls`)."""
        return self.secrets_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients verify Trino's with (``MESH_TRINO_CA_FILE``)."""
        return self.tls_dir / "ca.pem"

    @property
    def warehouse(self) -> str:
        return f"s3://{BUCKET}/{self.catalog_name}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    def catalog_uri(self, password: str = "{password}") -> str:
        return f"postgresql+psycopg2://{CATALOG_USER}:{password}@{HOST}:{self.ports['postgres']}/{CATALOG_DB}"

    # --- state ---------------------------------------------------------------------------
    def ensure_dirs(self) -> None:
        for path in (self.root, self.logs_dir, self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)

    def write_state(self) -> None:
        self.state_file.write_text(
            json.dumps({"ports": self.ports, "catalog_name": self.catalog_name}, indent=2) + "\n"
        )

    def ensure_secrets(self) -> list[str]:
        """Generate the credentials that do not exist yet; returns the names generated."""
        self.ensure_dirs()
        made = []
        for name, (alphabet, length) in SECRETS.items():
            path = self.secret_path(name)
            if path.exists():
                continue
            value = "".join(secrets.choice(alphabet) for _ in range(length))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
            made.append(name)
        return made

    def secret(self, name: str) -> str:
        path = self.secret_path(name)
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise StackError(
                f"credential file {path} is missing; `mesh stack up` creates it "
                "(if the stack's data exists without it, `mesh stack down --purge` "
                "starts over)"
            ) from None

    def describe(self) -> dict:
        return {**asdict(self), "root": str(self.root)}
