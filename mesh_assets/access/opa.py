"""Asking the policy: the running OPA server over HTTP, else the same Rego with ``opa eval``.

There is one policy (``mesh_assets/access/policies/*.rego`` plus the generated ``data.json``) and this
module never decides anything itself: it sends an input document and returns OPA's answer.

Which OPA: ``MESH_OPA_URL`` when set (production: the OPA next to Trino; unreachable is then an
error, never a fallback), else the local stack's OPA (``mesh stack up``; port ``MESH_OPA_PORT``,
8181). When no OPA listens locally, the policy is evaluated by the ``opa`` binary itself
(``opa eval``, built once with ``go install``) over the same files; ``MESH_OPA_URL=eval``
always evaluates that way (no server is asked).
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh_assets import settings, tools
from mesh_assets.access.policy_data import (
    POLICY_DIR,
    POLICY_FILES,
    AccessConfigError,
    data_file,
    ensure_built,
)
from mesh_assets.contract.errors import ContractError
from mesh_assets.stack.layout import HOST, StackLayout

TIMEOUT_S = 10.0


class PolicyUnavailable(RuntimeError):
    """The policy could not be asked (OPA unreachable, or evaluation failed): access is denied."""


@dataclass(frozen=True)
class Answer:
    value: Any
    source: str  # "opa http://127.0.0.1:8181" or "opa eval"


def configured_url() -> str | None:
    return settings.opa_url()


def local_url() -> str:

    return f"http://{HOST}:{StackLayout.current().ports['opa']}"


def ask(rule: str, input_doc: dict) -> Answer:
    """``data.<rule>`` (``trino/allow``, ``trino/local_table_decision``) for ``input_doc``."""
    url = configured_url()
    if url == "eval":
        return evaluate(rule, input_doc)
    if url:
        return _http(url, rule, input_doc)
    _refresh_local_stack_data()
    try:
        return _http(local_url(), rule, input_doc)
    except _NotListening:
        return evaluate(rule, input_doc)


def _refresh_local_stack_data() -> None:
    """The local stack's OPA watches its data file: rebuild it when a contract or the users
    file changed since (a contract being edited leaves the previous data in force)."""

    layout = StackLayout.current()
    if layout.state_file.exists():
        try:
            ensure_built(layout.access_dir)
        except (AccessConfigError, ContractError, OSError):
            pass


class _NotListening(PolicyUnavailable):
    pass


def _http(base: str, rule: str, input_doc: dict) -> Answer:
    request = urllib.request.Request(
        f"{base.rstrip('/')}/v1/data/{rule}",
        data=json.dumps({"input": input_doc}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise PolicyUnavailable(f"OPA at {base} answered {exc.code} for data.{rule}: {detail}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError) and configured_url() is None:
            raise _NotListening(str(reason)) from None
        raise PolicyUnavailable(
            f"OPA at {base} is unreachable ({reason}); access is denied until it answers"
        ) from None
    return Answer(body.get("result"), f"opa {base}")


def evaluate(rule: str, input_doc: dict, *, data_dir: Path | None = None) -> Answer:
    """The policy evaluated by ``opa eval`` over the committed Rego and the generated data."""

    data_dir = ensure_built() if data_dir is None else data_dir
    try:
        opa = tools.go_tool("opa")
    except tools.ToolError as exc:
        raise PolicyUnavailable(
            f"no OPA server is running and the opa binary is unavailable: {exc}"
        ) from None
    argv = [
        str(opa),
        "eval",
        "--format",
        "json",
        "--stdin-input",
        *(arg for name in POLICY_FILES for arg in ("--data", str(POLICY_DIR / name))),
        "--data",
        str(data_file(data_dir)),
        f"data.{rule.replace('/', '.')}",
    ]
    result = subprocess.run(argv, input=json.dumps(input_doc), capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise PolicyUnavailable(f"opa eval of data.{rule} failed: {result.stderr.strip()[-1500:]}")
    out = json.loads(result.stdout or "{}")
    rows = out.get("result") or []
    value = rows[0]["expressions"][0]["value"] if rows else None
    return Answer(value, "opa eval")
