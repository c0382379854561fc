"""Apache Superset on the stack: dashboards and SQL Lab over Trino (``mesh stack up --with superset``).

Superset is not in the project's environment (its dependency set conflicts with the platform's
and is large): :func:`install` makes a virtual environment of its own under
``$MESH_TOOLS_CACHE/superset/<version>-<hash>`` (default ``~/.cache/datamesh``) the first time,
from ``superset-requirements.txt`` beside this module (every version pinned), and every clone
and test run on the machine reuses it (a half-made one is never used).

Superset keeps its metadata in the stack's PostgreSQL (database and login ``superset``, password
``secrets/superset-db-password``). Its configuration (``stack/superset/superset_config.py``)
holds no credential: it reads the metadata password, Flask's ``SECRET_KEY`` and the password of
Trino's ``superset`` service account from the stack's secret files when Superset starts or
connects. The Trino database that ``mesh superset sync`` creates therefore stores no password
either: :data:`CONFIG`'s ``DB_CONNECTION_MUTATOR`` adds the login (basic authentication as the
``superset`` account, a member of the groups in :data:`~.accounts.TOOL_ACCOUNTS`, so the
contracts' policy applies: PII masked) and the stack's CA to every connection to the stack's
Trino. The first start upgrades the metadata database, creates Superset's roles and its
``admin`` login (password ``secrets/superset-admin-password``).

Superset runs under gunicorn (one worker, threads) on ``MESH_SUPERSET_PORT`` (8088), 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import urllib.request
from pathlib import Path

from mesh_assets import settings, tools
from mesh_assets.stack.accounts import SUPERSET_ACCOUNT, accounts_dir
from mesh_assets.stack.layout import HOST, SUPERSET_DB, SUPERSET_USER, StackError, StackLayout
from mesh_assets.stack.processes import ServiceProcess

NAME = "superset"
VERSION = "6.1.0"
REQUIREMENTS = Path(__file__).with_name("superset-requirements.txt")
ADMIN = "admin"
INSTALL_TIMEOUT_S = 1200
SETUP_TIMEOUT_S = 600

CONFIG = '''\
"""Written by `mesh stack up --with superset` (mesh_assets/stack/superset.py). No credential is
in this file: each is read from the stack's secret files."""

from pathlib import Path

SECRETS = Path({secrets!r})


def _secret(name: str) -> str:
    return (SECRETS / name).read_text().strip()


SECRET_KEY = _secret("superset-secret-key")
SQLALCHEMY_DATABASE_URI = (
    f"postgresql+psycopg2://{db_user}:{{_secret('superset-db-password')}}@{host}:{pg_port}/{db}"
)
# a restarted PostgreSQL leaves stale pooled connections: test each before use
SQLALCHEMY_ENGINE_OPTIONS = {{"pool_pre_ping": True}}
# the in-memory rate limiter of the login form (one gunicorn worker)
RATELIMIT_STORAGE_URI = "memory://"
# the columns are typed (timestamps are timestamps); and Superset 6.1.0's detector of date
# formats in text columns passes the schema as the catalog (its queries fail, logged as errors)
DATASET_AUTO_DETECT_DATETIME_FORMATS = False
SQLLAB_TIMEOUT = 120
SUPERSET_WEBSERVER_TIMEOUT = 120


def DB_CONNECTION_MUTATOR(uri, params, username, security_manager, source):
    """Log in to the stack's Trino as its service account {account!r} (password from its file,
    read at each connection) over HTTPS verified with the stack's CA: the database Superset
    stores holds neither."""
    if uri.drivername == "trino" and uri.host == {host!r} and uri.port == {trino_port} and uri.username == {account!r}:
        from trino.auth import BasicAuthentication

        password = Path({account_file!r}).read_text().strip()
        connect_args = params.setdefault("connect_args", {{}})
        connect_args["http_scheme"] = "https"
        connect_args["verify"] = {ca_file!r}
        connect_args["auth"] = BasicAuthentication({account!r}, password)
    return uri, params
'''

# Creates or updates the admin login; the password comes from a file named in the environment.
ADMIN_SCRIPT = """\
import os
from pathlib import Path

from superset.app import create_app

app = create_app()
with app.app_context():
    from superset import db, security_manager

    password = Path(os.environ["MESH_SUPERSET_ADMIN_PASSWORD_FILE"]).read_text().strip()
    user = security_manager.find_user(username="{admin}")
    if user is None:
        security_manager.add_user(
            "{admin}", "Mesh", "Admin", "admin@localhost", security_manager.find_role("Admin"), password=password
        )
    else:
        security_manager.reset_password(user.id, password)
    db.session.commit()
"""


def install() -> Path:
    """Superset's virtual environment, made once per requirements file (:func:`.tools.isolated_env`)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    try:
        python = tools.isolated_env(f"{NAME}/{VERSION}-{digest}", REQUIREMENTS, timeout_s=INSTALL_TIMEOUT_S)
    except tools.ToolError as exc:
        raise StackError(f"installing Superset {VERSION}: {exc}") from None
    return python.parent.parent


class Superset:
    def __init__(self, layout: StackLayout):
        self.layout = layout
        self.process = ServiceProcess(NAME, layout, marker="superset.app:create_app")
        self.base = layout.root / NAME

    @property
    def port(self) -> int:
        return self.layout.ports[NAME]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.base / "superset_config.py"

    def config(self) -> str:
        layout = self.layout
        return CONFIG.format(
            secrets=str(layout.secrets_dir),
            db_user=SUPERSET_USER,
            db=SUPERSET_DB,
            host=HOST,
            pg_port=layout.ports["postgres"],
            trino_port=layout.ports["trino-https"],
            account=SUPERSET_ACCOUNT,
            account_file=str(accounts_dir(layout) / SUPERSET_ACCOUNT),
            ca_file=str(layout.ca_file),
        )

    def _env(self, home: Path) -> dict[str, str]:
        return {
            "PATH": f"{home / 'bin'}:{settings.inherited_path()}",
            "HOME": str(self.base),
            "SUPERSET_HOME": str(self.base / "home"),
            "SUPERSET_CONFIG_PATH": str(self.config_file),
            "FLASK_APP": "superset.app:create_app()",
            "PYTHONUNBUFFERED": "1",
            "LANG": "C.UTF-8",
        }

    def _run(self, home: Path, argv: list[str], what: str, extra_env: dict[str, str] | None = None) -> None:
        with self.process.log.open("ab") as log:
            log.write(f"\n==== mesh stack: {what} ====\n".encode())
            log.flush()
            done = subprocess.run(
                argv,
                env={**self._env(home), **(extra_env or {})},
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=SETUP_TIMEOUT_S,
            )
        if done.returncode != 0:
            raise self.process.died_error(f"{what} failed (exit {done.returncode})")

    def setup(self, home: Path, say) -> None:
        """Write the configuration; on the first start of this version: upgrade the metadata
        database, make Superset's roles and the admin login."""
        (self.base / "home").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config())
        done = self.base / f"initialized-{VERSION}"
        if done.exists():
            return
        t = time.monotonic()
        self._run(home, [str(home / "bin" / "superset"), "db", "upgrade"], "superset db upgrade")
        self._run(home, [str(home / "bin" / "superset"), "init"], "superset init")
        self._run(
            home,
            [str(home / "bin" / "python"), "-c", ADMIN_SCRIPT.format(admin=ADMIN)],
            "the admin login",
            {"MESH_SUPERSET_ADMIN_PASSWORD_FILE": str(self.layout.secret_path("superset-admin-password"))},
        )
        done.write_text(f"Superset {VERSION} metadata initialized\n")
        say(f"superset: metadata database initialized ({time.monotonic() - t:.1f} s)")

    def start(self, home: Path) -> int:
        argv = [
            str(home / "bin" / "gunicorn"),
            "--workers",
            "1",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--timeout",
            "180",
            "--bind",
            f"{HOST}:{self.port}",
            "--limit-request-line",
            "0",
            "--limit-request-field_size",
            "0",
            "superset.app:create_app()",
        ]
        return self.process.start(argv, env=self._env(home), cwd=self.base)

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
            return response.read().strip() == b"OK"

    def health(self) -> str:
        """'...' or raises: Superset's ``/health`` answers OK (its metadata database reachable)."""
        try:
            self.ready()
        except OSError as exc:
            raise ConnectionError(f"{self.url}/health does not answer: {exc}") from None
        return (
            f"Superset {VERSION}, {self.url} (login {ADMIN}, metadata in PostgreSQL database {SUPERSET_DB})"
        )

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)
