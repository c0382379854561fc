"""PostgreSQL from the Debian packages: the Iceberg JDBC catalog and the Dagster instance storage.

The cluster lives in ``stack/postgres/data``, listens on TCP loopback only (no Unix socket, so
two stacks never collide on a socket file) and authenticates every connection with SCRAM
passwords. PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres``
system user that the Debian package creates.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from contextlib import closing
from pathlib import Path

from mesh_assets import settings
from mesh_assets.stack.layout import (
    CATALOG_DB,
    CATALOG_USER,
    DAGSTER_DB,
    DAGSTER_USER,
    HOST,
    SUPERSET_DB,
    SUPERSET_USER,
    StackError,
    StackLayout,
)
from mesh_assets.stack.processes import ServiceProcess

NAME = "postgres"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin directory; installs the Debian package
    ``postgresql`` when none is (as root)."""
    found = _installed()
    if found:
        return found
    if os.geteuid() != 0:
        raise StackError(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); "
            "install them with `sudo apt-get install -y postgresql`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "postgresql"]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # a stale package list: refresh it once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    found = _installed()
    if not found:
        raise StackError(
            f"`apt-get install -y postgresql` failed (exit {result.returncode}):\n{result.stderr[-1500:]}"
        )
    return found


def _installed() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


def version(bin_path: Path) -> str:
    return subprocess.run(
        [str(bin_path / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()


def _run_as() -> str | None:
    """The OS user that owns and runs the cluster: ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise StackError(
            "running as root, PostgreSQL needs a non-root system user `postgres` "
            "(the Debian package creates it): `apt-get install -y postgresql`"
        ) from None
    return SUPERUSER


class Postgres:
    def __init__(self, layout: StackLayout):
        self.layout = layout
        self.process = ServiceProcess(NAME, layout, marker="postgres")

    @property
    def data(self) -> Path:
        """The cluster's folder, ``$MESH_HOME/stack/postgres/data``. As root the cluster runs as
        ``postgres``, which cannot enter a MESH_HOME inside a private folder (a ``mktemp -d``
        clone, /root): the data then lives in the postgres user's home, one folder per stack,
        and ``$MESH_HOME/stack/postgres/data`` is a link to it."""
        local = self.layout.root / "postgres" / "data"
        if os.geteuid() != 0 or (local.exists() and not local.is_symlink()):
            return local
        try:
            home = Path(pwd.getpwnam(SUPERUSER).pw_dir)
        except KeyError:
            return local
        key = hashlib.sha1(str(self.layout.root.resolve()).encode()).hexdigest()[:12]
        return home / "datamesh" / key / "data"

    def orphaned(self) -> bool:
        """The cluster lives outside MESH_HOME and this MESH_HOME has no link to it: it was made
        for a MESH_HOME at the same path that has since been deleted."""
        local = self.layout.root / "postgres" / "data"
        return local != self.data and not local.is_symlink()

    @property
    def port(self) -> int:
        return self.layout.ports[NAME]

    def initialized(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self, bin_path: Path) -> None:
        """initdb a fresh cluster whose superuser password is the stack's secret."""
        user = _run_as()
        self.data.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data, 0o700)
        local = self.layout.root / "postgres" / "data"
        if local != self.data and not local.is_symlink():
            local.parent.mkdir(parents=True, exist_ok=True)
            local.symlink_to(self.data, target_is_directory=True)
        pwfile = self.data.parent / ".superuser-pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.layout.secret("postgres-superuser") + "\n")
        try:
            if user:
                for path in (self.data, pwfile):
                    shutil.chown(path, user, user)
            result = subprocess.run(
                [
                    str(bin_path / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                cwd=self.data,
                **({"user": user, "group": user, "extra_groups": []} if user else {}),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            hint = ""
            if "Permission denied" in result.stderr and user:
                hint = (
                    f"\nthe `{user}` user must be able to reach {self.data}: every parent folder "
                    "needs o+x (a MESH_HOME inside a private folder such as /root does not work)"
                )
            raise StackError(f"initdb failed (exit {result.returncode}):\n{result.stderr[-1500:]}{hint}")

    def start(self, bin_path: Path) -> int:
        argv = [
            str(bin_path / "postgres"),
            "-D",
            str(self.data),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"port={self.port}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
            "-c",
            "logging_collector=off",
        ]
        return self.process.start(
            argv, cwd=self.data, user=_run_as(), env={"PATH": settings.inherited_path(), "LANG": "C"}
        )

    def connect(self, user: str = SUPERUSER, dbname: str = "postgres", timeout_s: int = 3):
        import psycopg2  # noqa: PLC0415  libpq's driver: only where the stack's PostgreSQL is asked

        password = self.layout.secret(
            {
                SUPERUSER: "postgres-superuser",
                CATALOG_USER: "catalog-password",
                DAGSTER_USER: "dagster-password",
            }[user]
        )
        return psycopg2.connect(
            host=HOST, port=self.port, user=user, password=password, dbname=dbname, connect_timeout=timeout_s
        )

    def accepts_superuser(self) -> bool:
        with closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)

    def provision(self) -> None:
        """The catalog's, Dagster's and Superset's roles and databases, passwords from the secret files
        (re-applied each time, so rotated files take effect at the next ``stack up``)."""
        with closing(self.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for role, db, secret in (
                    (CATALOG_USER, CATALOG_DB, "catalog-password"),
                    (DAGSTER_USER, DAGSTER_DB, "dagster-password"),
                    (SUPERSET_USER, SUPERSET_DB, "superset-db-password"),
                ):
                    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                    verb = "ALTER" if cur.fetchone() else "CREATE"
                    cur.execute(f'{verb} ROLE "{role}" LOGIN PASSWORD %s', (self.layout.secret(secret),))
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if not cur.fetchone():
                        cur.execute(f'CREATE DATABASE "{db}" OWNER "{role}"')

    def health(self) -> str:
        """'ok ...' or raises: the catalog user reaches its database."""
        with closing(self.connect(CATALOG_USER, CATALOG_DB)) as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            server = cur.fetchone()[0]
            cur.execute(
                "SELECT datname FROM pg_database WHERE datname IN (%s, %s) ORDER BY 1",
                (CATALOG_DB, DAGSTER_DB),
            )
            dbs = [r[0] for r in cur.fetchall()]
        return f"PostgreSQL {server}, databases {', '.join(dbs)}"

    def stop(self) -> bool:
        return self.process.stop(signal.SIGINT, timeout_s=30)  # SIGINT = fast shutdown
