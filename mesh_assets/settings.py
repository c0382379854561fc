"""Where the platform keeps its state and which services it talks to.

All environment logic lives here. The embedded default needs no services: a SQLite Iceberg
catalog, a local file warehouse and DuckDB, all under ``$MESH_HOME`` (default ``.mesh/`` at the
project root). Production is reached by environment variables only:

============================  ===========================================  =========================
variable                      meaning                                      embedded default
============================  ===========================================  =========================
``MESH_HOME``                 all local state                              ``<project>/.mesh``
``MESH_CATALOG_URI``          SQLAlchemy URI of the Iceberg SQL catalog    SQLite in ``$MESH_HOME``
``MESH_CATALOG_NAME``         catalog name (= Trino jdbc catalog-name)     ``mesh``
``MESH_WAREHOUSE``            warehouse root (``file://`` or ``s3://``)    ``$MESH_HOME/warehouse``
``MESH_S3_ENDPOINT``          S3-compatible endpoint URL                   (unset)
``MESH_ENGINE``               ``duckdb`` or ``trino`` (= dbt target)       ``duckdb``
``MESH_LANDING``              landing zone: a folder or ``s3://b/prefix``   ``$MESH_HOME/landing``
``MESH_DAGSTER_STORAGE``      ``sqlite`` or ``postgres`` (Dagster instance)  ``sqlite``
``MESH_TEST_PAUSE_AT``        reliability tests only: stop at a checkpoint   (unset)
============================  ===========================================  =========================

Credentials are never settings: the catalog URI may reference ``MESH_CATALOG_PASSWORD`` (read
from the environment or from the file named by ``MESH_CATALOG_PASSWORD_FILE``); S3 keys come
from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``. None of them is ever logged.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PROJECT_DIR = Path(os.environ.get("MESH_PROJECT_DIR", Path(__file__).resolve().parent.parent))
DOMAINS_DIR = PROJECT_DIR / "domains"
DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"

# Set by a dbt asset for its dbt process (read by mesh_assets.dbt.plugin):
RUN_ID_ENV = "MESH_DAGSTER_RUN_ID"  # the Dagster run, recorded in each Iceberg snapshot
# JSON file {model table: [tables it reads]}, so each snapshot records exactly its own inputs
PARENTS_FILE_ENV = "MESH_DBT_PARENTS_FILE"
# a partitioned model's output replaces only the rows of this window
PARTITION_START_ENV = "MESH_PARTITION_START"
PARTITION_END_ENV = "MESH_PARTITION_END"


def secret(name: str) -> str | None:
    """A credential from ``NAME`` or from the file named by ``NAME_FILE`` (Kubernetes Secrets);
    never log the result."""
    if os.environ.get(name):
        return os.environ[name]
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return None


# The credential files a deployment mounts, and the Helm value of the Secret behind each.
SECRET_FILES = {
    "MESH_CATALOG_PASSWORD_FILE": "secrets.catalog",
    "MESH_TRINO_PASSWORD_FILE": "secrets.trino",
    "MESH_TRINO_CA_FILE": "secrets.trinoCa",
    "OPENMETADATA_JWT_TOKEN_FILE": "secrets.openmetadata",
    "AWS_ACCESS_KEY_ID_FILE": "secrets.s3",
    "AWS_SECRET_ACCESS_KEY_FILE": "secrets.s3",
}


class MissingSecretError(RuntimeError):
    """A credential the settings refer to is not there (the message names its Secret)."""


def check_secrets() -> None:
    """Refuse to start when a credential is missing: a ``*_FILE`` variable naming a file that is
    not there (its Secret not mounted), or a catalog URI with ``{password}`` and no password.
    Messages name the variable and the Helm value of its Secret, never a value."""
    problems = [
        f"{name}={os.environ[name]}: no such file, or empty; mount the Secret of Helm value {source}"
        for name, source in SECRET_FILES.items()
        if os.environ.get(name)
        and not os.environ.get(name.removesuffix("_FILE"))
        and not (Path(os.environ[name]).is_file() and Path(os.environ[name]).stat().st_size > 0)
    ]
    if "{password}" in os.environ.get("MESH_CATALOG_URI", "") and not (
        os.environ.get("MESH_CATALOG_PASSWORD") or os.environ.get("MESH_CATALOG_PASSWORD_FILE")
    ):
        problems.append(
            "MESH_CATALOG_URI needs {password} but neither MESH_CATALOG_PASSWORD nor "
            "MESH_CATALOG_PASSWORD_FILE is set; set Helm value secrets.catalog.name to the Secret "
            "holding the catalog's password"
        )
    if problems:
        raise MissingSecretError("missing credentials: " + "; ".join(problems))


@dataclass(frozen=True)
class MeshSettings:
    home: Path
    catalog_name: str
    catalog_uri: str
    warehouse: str
    landing_uri: str  # a folder, or s3://bucket/prefix (see mesh_assets.ingest.landing)
    engine: str
    s3_endpoint: str | None

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME", self.home / "dagster"))

    @property
    def landing(self) -> Path:
        """The local landing folder (the download cache when the landing zone is on S3)."""
        if self.landing_uri.startswith("s3://"):
            return self.home / "landing-cache"
        return Path(self.landing_uri)

    @property
    def dbt_target(self) -> str:
        return "local" if self.engine == "duckdb" else "trino"

    @property
    def dbt_dir(self) -> Path:
        return self.home / "dbt"

    def catalog_properties(self) -> dict[str, str]:
        """pyiceberg SqlCatalog properties, credentials included (never log the result).

        The password is percent-encoded into the URI: ``@``, ``/``, ``#`` or ``:`` in it would
        otherwise end the userinfo part and send the rest to SQLAlchemy as host or database."""
        uri = self.catalog_uri
        password = secret("MESH_CATALOG_PASSWORD")
        if password and "{password}" in uri:
            uri = uri.replace("{password}", quote(password, safe=""))
        props = {"uri": uri, "warehouse": self.warehouse}
        if not uri.startswith("sqlite"):
            # a pooled connection outlives a database restart: test it before use, else the
            # next commit of a long-lived process fails on "server closed the connection"
            props["pool_pre_ping"] = "true"
        if self.s3_endpoint:
            props["s3.endpoint"] = self.s3_endpoint
            props["s3.path-style-access"] = "true"
            # without a region pyiceberg asks AWS where the bucket lives: a request to the internet
            # that an S3-compatible endpoint does not need, and that fails where there is no route out
            props["s3.region"] = "us-east-1"
        for key, env in (
            ("s3.access-key-id", "AWS_ACCESS_KEY_ID"),
            ("s3.secret-access-key", "AWS_SECRET_ACCESS_KEY"),
            ("s3.region", "AWS_REGION"),
        ):
            value = secret(env)
            if value:
                props[key] = value
        return props

    def describe(self) -> dict[str, str]:
        """What is safe to show a person: no credentials."""
        return {
            "MESH_HOME": str(self.home),
            "catalog": f"{self.catalog_name} ({self.catalog_uri.split(':', 1)[0]})",
            "warehouse": self.warehouse,
            "engine": self.engine,
        }


def load_settings() -> MeshSettings:
    home = Path(os.environ.get("MESH_HOME", PROJECT_DIR / ".mesh")).resolve()
    engine = os.environ.get("MESH_ENGINE", "duckdb")
    if engine not in ("duckdb", "trino"):
        raise ValueError(f"MESH_ENGINE={engine!r}: expected 'duckdb' (embedded) or 'trino'")
    return MeshSettings(
        home=home,
        catalog_name=os.environ.get("MESH_CATALOG_NAME", "mesh"),
        catalog_uri=os.environ.get("MESH_CATALOG_URI", f"sqlite:///{home / 'catalog.db'}"),
        warehouse=os.environ.get("MESH_WAREHOUSE", (home / "warehouse").as_uri()),
        landing_uri=os.environ.get("MESH_LANDING", str(home / "landing")),
        engine=engine,
        s3_endpoint=os.environ.get("MESH_S3_ENDPOINT"),
    )


def ensure_local_dirs(settings: MeshSettings) -> None:
    """Create the folders the embedded default writes to (no-op for remote stores)."""
    for path in (
        settings.home,
        settings.landing,
        settings.dbt_dir / "external",
        settings.dagster_home,
    ):
        path.mkdir(parents=True, exist_ok=True)
    if settings.warehouse.startswith("file://"):
        Path(settings.warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


# How a dagster.yaml mesh wrote begins (now, and before run monitoring): mesh rewrites those.
DAGSTER_YAML_MARK = "# Written by mesh"
MESH_DAGSTER_YAML_STARTS = (DAGSTER_YAML_MARK, "# Dagster instance: SQLite storage")

# Both storages. Run monitoring and run retries are carried out by the dagster daemon (its
# monitoring and event log consumer daemons); see docs/operations.md.
DAGSTER_RUNS_YAML = """\
run_monitoring:
  enabled: true
  # The default run launcher cannot check a run worker's health (Dagster asks only the
  # Kubernetes launcher): the daemon fails runs that did not start within the timeout, and
  # `mesh materialize` and each domain's maintenance job fail the runs of this machine whose
  # worker process is gone (mesh_assets.runs).
  start_timeout_seconds: 300
  cancel_timeout_seconds: 300
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
  # the concurrency-pool slots of a run that ended are freed (a killed step never frees its own)
  free_slots_after_run_end_seconds: 30
  # no max_runtime_seconds: that launcher cannot stop an in-process run, only mislabel it
run_retries:
  # a failed run launched through the daemon or the UI (sensor, schedule) is re-executed from
  # its failure (Dagster's default strategy FROM_FAILURE; tag dagster/max_retries overrides)
  enabled: true
  max_retries: 2
"""

# Dagster instance storage in PostgreSQL (dagster-postgres). The file names environment
# variables only, so it holds no credential; Dagster resolves them when the instance starts.
DAGSTER_POSTGRES_YAML = """\
storage:
  postgres:
    postgres_db:
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      db_name: {env: DAGSTER_PG_DB}
      username: {env: DAGSTER_PG_USER}
      password: {env: DAGSTER_PG_PASSWORD}
      # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, whose server-side parameters break
      # dagster-postgres' `NOTIFY run_events, %s` (every event write fails): use psycopg2
      scheme: postgresql+psycopg2
"""


# Every concurrency pool admits one step at a time: each product's writing steps carry the pool
# of that product (mesh_assets.asset_specs.writer_pool), so two runs never write it at once.
DAGSTER_CONCURRENCY_YAML = """\
concurrency:
  pools:
    default_limit: 1
"""


def dagster_yaml(storage: str) -> str:
    """The dagster.yaml mesh writes for ``storage`` (``sqlite`` or ``postgres``)."""
    if storage == "postgres":
        head = f"{DAGSTER_YAML_MARK} (MESH_DAGSTER_STORAGE=postgres). Values come from the environment.\n"
        return head + DAGSTER_POSTGRES_YAML + DAGSTER_RUNS_YAML + DAGSTER_CONCURRENCY_YAML
    return (
        f"{DAGSTER_YAML_MARK}: SQLite storage in this folder (the default).\n"
        + DAGSTER_RUNS_YAML
        + DAGSTER_CONCURRENCY_YAML
    )


def ensure_dagster_home(settings: MeshSettings) -> Path:
    """Create DAGSTER_HOME with a dagster.yaml for ``MESH_DAGSTER_STORAGE`` (``sqlite``: runs,
    events and schedules in this folder; ``postgres``: in PostgreSQL), run monitoring and run
    retries on, every concurrency pool limited to one step. A dagster.yaml that mesh did not
    write is left alone; one that an older mesh wrote is brought up to date."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    storage = os.environ.get("MESH_DAGSTER_STORAGE", "sqlite")
    if storage not in ("sqlite", "postgres"):
        raise ValueError(f"MESH_DAGSTER_STORAGE={storage!r}: expected 'sqlite' or 'postgres'")
    config = home / "dagster.yaml"
    wanted = dagster_yaml(storage)
    current = config.read_text() if config.exists() else None
    if current is None or (current.startswith(MESH_DAGSTER_YAML_STARTS) and current != wanted):
        config.write_text(wanted)
    return home


def use_dagster_home(settings: MeshSettings) -> Path:
    """Point this process at the mesh's Dagster instance (``DAGSTER_HOME``, unless already set)."""
    home = ensure_dagster_home(settings)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return home


# --- services and switches beyond the core settings ---------------------------------------------
# Each function reads the environment when called, so tests and `mesh stack env` can change it.


@dataclass(frozen=True)
class TrinoSettings:
    """Where the production engine listens: ``MESH_TRINO_HOST``, the port clients connect to
    (``MESH_TRINO_HTTPS_PORT`` when set: the local stack's HTTPS port, whose
    ``MESH_TRINO_PORT`` is Trino's internal HTTP port; else ``MESH_TRINO_PORT``),
    ``MESH_TRINO_USER``, ``MESH_TRINO_CATALOG`` and ``MESH_TRINO_CA_FILE`` (the CA that signed
    Trino's certificate; default: the system's). Passwords are read by :func:`trino_credentials`.
    With a password the connection is HTTPS: Trino accepts passwords over TLS only."""

    host: str
    port: int
    user: str
    catalog: str
    ca_file: str | None


def trino_settings() -> TrinoSettings:
    return TrinoSettings(
        host=os.environ.get("MESH_TRINO_HOST", "127.0.0.1"),
        port=int(os.environ.get("MESH_TRINO_HTTPS_PORT") or os.environ.get("MESH_TRINO_PORT", "8080")),
        user=os.environ.get("MESH_TRINO_USER", "mesh"),
        catalog=os.environ.get("MESH_TRINO_CATALOG", "iceberg"),
        ca_file=os.environ.get("MESH_TRINO_CA_FILE") or None,
    )


def trino_password() -> str | None:
    return secret("MESH_TRINO_PASSWORD")


def trino_credentials(domain: str | None = None) -> tuple[str, str | None]:
    """``(user, password)`` to log in to Trino with (never log the password).

    For a domain's code location: its service account ``domain-<name>`` when
    ``MESH_TRINO_ACCOUNTS_DIR`` (the local stack's folder of service-account password files)
    holds a file of that name; else, as for everything else, ``MESH_TRINO_USER`` with
    ``MESH_TRINO_PASSWORD`` (or ``_FILE``): a deployment gives each code location its own."""
    accounts = os.environ.get("MESH_TRINO_ACCOUNTS_DIR")
    if domain is not None and accounts:
        account = f"domain-{domain}"
        path = Path(accounts) / account
        if path.exists():
            return account, path.read_text().strip()
    return trino_settings().user, trino_password()


def operator_role() -> bool:
    """``MESH_OPERATOR=1``: this person is an operator of the mesh, who may impersonate a user to
    try the access policy (``mesh query --as-user``, ``read(user=...)``). An explicit admin
    setting: without it, impersonation is refused."""
    return os.environ.get("MESH_OPERATOR", "").strip().lower() in ("1", "true", "yes")


def commit_deadline_s() -> float:
    """``MESH_COMMIT_DEADLINE_S``: how long a commit keeps retrying while concurrent writers win
    (default 300 s; 0 gives up at the first conflict)."""
    text = os.environ.get("MESH_COMMIT_DEADLINE_S", "300")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"MESH_COMMIT_DEADLINE_S={text!r}: expected a number of seconds, 0 or more")
    return value


def mesh_user() -> str:
    """``MESH_USER``: who runs an operator command (``mesh rollback`` records it); default the
    operating-system user (``uid:<n>`` where the uid has no name, as on OpenShift)."""
    if os.environ.get("MESH_USER"):
        return os.environ["MESH_USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def aws_region() -> str:
    return os.environ.get("AWS_REGION", "us-east-1")


def default_engine() -> str:
    return os.environ.get("MESH_ENGINE", "duckdb")


def executor_choice() -> str:
    """``MESH_EXECUTOR``: ``k8s`` (each step its own Kubernetes Job) or ``default``."""
    return os.environ.get("MESH_EXECUTOR", "default")


def openmetadata_host() -> str | None:
    """``OPENMETADATA_HOST``; the bot's JWT comes from ``OPENMETADATA_JWT_TOKEN`` (or ``_FILE``)."""
    return os.environ.get("OPENMETADATA_HOST") or None


def openmetadata_names() -> dict[str, str | None]:
    """The OpenMetadata side's names: ``OPENMETADATA_DATABASE_SERVICE``,
    ``OPENMETADATA_PIPELINE_SERVICE``, ``OPENMETADATA_DAGSTER_URL``."""
    return {
        "database_service": os.environ.get("OPENMETADATA_DATABASE_SERVICE", "mesh"),
        "pipeline_service": os.environ.get("OPENMETADATA_PIPELINE_SERVICE", "dagster"),
        "dagster_url": (os.environ.get("OPENMETADATA_DAGSTER_URL") or "").rstrip("/") or None,
    }


def openmetadata_api_version() -> str:
    """``OPENMETADATA_API_VERSION``: ``2``, ``1`` or ``auto`` (from the server's version)."""
    return os.environ.get("OPENMETADATA_API_VERSION") or "auto"


def access_users_file() -> Path:
    """``MESH_ACCESS_USERS``: users and groups of the access policy (default ``access/users.yaml``)."""
    return Path(os.environ.get("MESH_ACCESS_USERS", PROJECT_DIR / "access" / "users.yaml"))


def access_dir() -> Path:
    """``MESH_ACCESS_DIR``: the generated policy data (default ``$MESH_HOME/access``)."""
    return Path(os.environ.get("MESH_ACCESS_DIR", load_settings().home / "access"))


def asserted_groups() -> list[str] | None:
    """``MESH_ACCESS_GROUPS``: groups asserted for the caller (comma-separated), as an identity
    provider would; None when unset (groups then come from the users file)."""
    explicit = os.environ.get("MESH_ACCESS_GROUPS")
    if explicit is None:
        return None
    return sorted({g.strip() for g in explicit.split(",") if g.strip()})


def opa_url() -> str | None:
    """``MESH_OPA_URL``: the policy server to ask (``eval``: evaluate locally with ``opa eval``)."""
    return os.environ.get("MESH_OPA_URL") or None


def opa_decision_log() -> Path | None:
    """``MESH_OPA_DECISION_LOG``: OPA's decision log file (`mesh stack env` sets it)."""
    value = os.environ.get("MESH_OPA_DECISION_LOG")
    return Path(value) if value else None


def stack_dir(settings: MeshSettings) -> Path:
    """``MESH_STACK_DIR``: where the loopback stack keeps its state (default ``$MESH_HOME/stack``)."""
    return Path(os.environ.get("MESH_STACK_DIR", settings.home / "stack")).resolve()


def stack_port(variable: str, default: int) -> str:
    """A service port of the loopback stack (``MESH_PG_PORT``, ``MESH_S3_PORT``,
    ``MESH_TRINO_PORT``, ``MESH_OPA_PORT``, ``MESH_TRINO_HTTPS_PORT``, ``MESH_KAFKA_PORT``,
    ``MESH_KAFKA_CONTROLLER_PORT``, ``MESH_SUPERSET_PORT``; ``MESH_TRINO_WORKER_PORT``, the first
    Trino worker's, the next ones counting up from it), as text: the stack validates it."""
    return os.environ.get(variable, str(default))


def kafka_bootstrap() -> str:
    """``MESH_KAFKA_BOOTSTRAP``: the Kafka brokers streaming products read (``host:port,...``;
    default the stack's, 127.0.0.1:9092; `mesh stack env` sets it)."""
    return os.environ.get("MESH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def kafka_connect_port() -> int:
    """``MESH_KAFKA_CONNECT_PORT``: the REST port of the Kafka Connect worker that runs the
    Apache Iceberg sink connector beside the stack (benchmarks and tests; default 8083)."""
    return int(os.environ.get("MESH_KAFKA_CONNECT_PORT", "8083"))


def trino_heap() -> str:
    """``MESH_TRINO_HEAP``: the loopback Trino coordinator's JVM heap (default 3G)."""
    return os.environ.get("MESH_TRINO_HEAP", "3G")


def trino_workers() -> str | None:
    """``MESH_TRINO_WORKERS``: how many Trino workers the loopback stack runs besides its
    coordinator, as text (the stack validates it), None when unset (a new stack has none: the
    coordinator does the work; a running one keeps its own)."""
    return os.environ.get("MESH_TRINO_WORKERS") or None


def trino_worker_heap() -> str:
    """``MESH_TRINO_WORKER_HEAP``: each loopback Trino worker's JVM heap (default 2G)."""
    return os.environ.get("MESH_TRINO_WORKER_HEAP", "2G")


def java_home_candidates() -> list[str]:
    """``MESH_JAVA_HOME`` first, ``JAVA_HOME`` last (Temurin from the system in between)."""
    return [os.environ.get("MESH_JAVA_HOME", ""), os.environ.get("JAVA_HOME", "")]


def tools_cache() -> Path:
    """``MESH_TOOLS_CACHE``: downloads and builds, once per machine (default ~/.cache/datamesh)."""
    return Path(os.environ.get("MESH_TOOLS_CACHE", Path.home() / ".cache" / "datamesh"))


def maven_repo() -> str:
    """``MESH_MAVEN_REPO``: the Maven repository tools are fetched from (Maven Central)."""
    return os.environ.get("MESH_MAVEN_REPO", "https://repo1.maven.org/maven2")


def inherited_path() -> str:
    """The ``PATH`` handed to the services and tools the platform starts."""
    return os.environ.get("PATH", "/usr/bin:/bin")


@dataclass(frozen=True)
class DbtRunContext:
    """What a dbt asset hands its dbt process (read by the dbt-duckdb plugin): the Dagster run,
    the file of each model's inputs, and the partition window a model replaces."""

    run_id: str | None
    parents_file: str | None
    partition_start: str | None
    partition_end: str | None


def dbt_run_context() -> DbtRunContext:
    return DbtRunContext(
        run_id=os.environ.get(RUN_ID_ENV) or None,
        parents_file=os.environ.get(PARENTS_FILE_ENV) or None,
        partition_start=os.environ.get(PARTITION_START_ENV) or None,
        partition_end=os.environ.get(PARTITION_END_ENV) or None,
    )


# --- a test hook: stopping a process at a named checkpoint --------------------------------------

PAUSE_ENV = "MESH_TEST_PAUSE_AT"
PAUSE_LIMIT_SECONDS = 900


def pause_marker(checkpoint: str) -> Path:
    """The file a process writes when it stops at ``checkpoint`` (it holds the process id)."""
    return load_settings().home / "paused" / checkpoint


def pause_at(checkpoint: str, product: str | None = None) -> None:
    """Stop here for good when ``MESH_TEST_PAUSE_AT`` names this checkpoint (``checkpoint`` or
    ``checkpoint:domain.product``): the reliability tests kill the process exactly there.

    Only the first process that reaches the checkpoint stops: it writes
    :func:`pause_marker` (its pid) and sleeps; every later process, a rerun or a retry with the
    same environment, passes. After ``PAUSE_LIMIT_SECONDS`` unkilled it fails, so a forgotten
    process ends. Without the variable (production, every other test) this does nothing."""
    wanted = os.environ.get(PAUSE_ENV)
    if wanted not in (checkpoint, f"{checkpoint}:{product}"):
        return
    marker = pause_marker(checkpoint)
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        with marker.open("x") as out:
            out.write(str(os.getpid()))
    except FileExistsError:
        return
    time.sleep(PAUSE_LIMIT_SECONDS)
    raise RuntimeError(f"{PAUSE_ENV}={wanted}: paused {PAUSE_LIMIT_SECONDS} s and nobody killed this process")
