"""Open Policy Agent: the policy decision point of Trino's OPA access control and of the local
read path (:mod:`mesh_assets.access`).

Built once with ``go install`` into the tools cache (``tools.GO_TOOLS["opa"]``). It serves the
committed Rego (``mesh_assets/access/policies``, copied into the policy folder) and the data ``mesh access build`` generates from the
contracts (``$MESH_HOME/access/opa/data.json``), and reloads both when they change (``--watch``):
editing a contract and running ``mesh access build`` changes what Trino enforces without a
restart. Decision logs go to its console (``stack/logs/opa.log``), one JSON line per decision
kept by ``system.log.drop`` (``mesh access audit`` reads them).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from mesh_assets import tools
from mesh_assets.stack.layout import HOST, TRINO_USER, StackLayout
from mesh_assets.stack.processes import ServiceProcess, port_accepts

NAME = "opa"
TIMEOUT_S = 3.0

CONFIG = """\
# Written by `mesh stack up`. Decision logs: one JSON line per kept decision on the console
# (the service's log file); system.log.drop (mesh_assets/access/policies/decision_logs.rego) drops the
# allowed bookkeeping calls (listing catalogs, schemas, tables).
decision_logs:
  console: true
  drop_decision: /system/log/drop
"""


def own_messages(log: Path, lines: int) -> str:
    """OPA's own lines of ``log`` since it last started (errors, warnings, a crash's text),
    without the decision log lines around them: those say who was allowed what, not why OPA
    failed. Reads the last 1 MiB of the log."""
    try:
        with log.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - (1 << 20)))
            text = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return "    (no log file)"
    if size > 1 << 20:
        text = text[1:]  # cut by the window
    own = [line for line in text if '"decision_id"' not in line]
    starts = [i for i, line in enumerate(own) if "mesh stack: starting" in line]
    since_start = [line for line in own[starts[-1] if starts else 0 :] if line.strip()]
    return "\n".join("    " + line for line in since_start[-lines:])


def binary() -> Path:
    return tools.go_tool(NAME)


def version() -> str:
    return tools.GO_TOOLS[NAME].version


class Opa:
    def __init__(self, layout: StackLayout):
        self.layout = layout
        self.process = ServiceProcess(NAME, layout, marker="opa run --server", log_excerpt=own_messages)
        self.base = layout.root / "opa"

    @property
    def port(self) -> int:
        return self.layout.ports[NAME]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, opa: Path) -> int:
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "config.yaml"
        config.write_text(CONFIG)
        # the policy folder `mesh access build` writes: the Rego files and data.json
        policy = self.layout.access_dir / "opa"
        argv = [
            str(opa),
            "run",
            "--server",
            "--addr",
            f"{HOST}:{self.port}",
            "--config-file",
            str(config),
            "--watch",
            "--ignore",
            ".*",
            "--log-format",
            "json",
            "--log-level",
            "error",
            str(policy),
        ]
        return self.process.start(argv, env={"PATH": "/usr/bin:/bin", "HOME": str(self.base)}, cwd=self.base)

    def _get(self, path: str, body: dict | None = None):
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
            method="POST" if body is not None else "GET",
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read() or b"{}")

    def ready(self) -> bool:
        if not port_accepts(self.port):
            return False
        self._get("/health")
        return True

    def health(self) -> str:
        """'...' or raises ``ConnectionError`` naming the cause: the port refuses connections,
        ``/health`` answers an HTTP error or nothing in time, or the policy does not allow
        the platform's service user."""

        if not port_accepts(self.port):
            raise ConnectionError(f"port refused: nothing accepts connections on {HOST}:{self.port}")
        try:
            self._get("/health")
        except urllib.error.HTTPError as exc:
            raise ConnectionError(
                f"health endpoint error: GET {self.url}/health answered HTTP {exc.code} "
                f"{exc.reason}: {exc.read()[:300].decode(errors='replace')}"
            ) from None
        except (urllib.error.URLError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionError(
                f"health endpoint error: GET {self.url}/health did not answer within {TIMEOUT_S:.0f} s "
                f"({reason}): the process is stalled or overloaded"
            ) from None
        probe = {
            "input": {
                "context": {
                    "identity": {"user": TRINO_USER, "groups": []},
                    "softwareStack": {"trinoVersion": "health"},
                },
                "action": {"operation": "ExecuteQuery"},
            }
        }
        if self._get("/v1/data/trino/allow", probe).get("result") is not True:
            raise ConnectionError(
                "the policy does not allow the platform's service user: is "
                f"{self.layout.access_dir / 'opa' / 'data.json'} built (`mesh access "
                "build`)?"
            )
        products = self._get("/v1/data/mesh/products").get("result") or {}
        return f"OPA {version()}, policy trino loaded, {len(products)} products"

    def stop(self) -> bool:
        return self.process.stop()
