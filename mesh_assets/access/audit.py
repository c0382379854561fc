"""The decision audit log: who asked for what, what the policy decided, when.

Two sources, one view (``mesh access audit [--user U] [--product P]``):

* the local read path's own log, ``$MESH_HOME/access/audit.jsonl``: one JSON line per table
  decision of ``mesh query --as-user`` and ``read(..., user=)`` (allow or deny, masked columns,
  row filter, which OPA answered);
* OPA's decision log (the console plugin, in the stack's ``logs/opa.log``): Trino's questions,
  one JSON line per decision that ``system.log.drop`` keeps (reads, row filters, masks, writes,
  every denial).

Entries carry names and decisions, never data values or credentials.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mesh_assets import settings
from mesh_assets.access.policy_data import access_dir
from mesh_assets.stack.layout import StackLayout


@dataclass(frozen=True)
class Decision:
    time: str  # ISO 8601, UTC
    user: str
    groups: tuple[str, ...]
    source: str  # duckdb | pyiceberg (local read path) | trino (through OPA)
    operation: str  # SelectFromColumns, GetRowFilters, GetColumnMask, CreateTable, ...
    product: str | None  # domain.product (None for operations on no table)
    decision: str  # allow | deny | filter | mask | none
    detail: dict = field(default_factory=dict)

    def line(self) -> str:
        who = f"{self.user}" + (f" [{','.join(self.groups)}]" if self.groups else "")
        extra = "; ".join(f"{k}={v}" for k, v in sorted(self.detail.items()) if v not in (None, [], {}))
        return (
            f"{self.time}  {self.source:9} {who:28} {self.operation:18} "
            f"{self.product or '-':34} {self.decision.upper():6} {extra}"
        ).rstrip()


def local_log() -> Path:

    return access_dir() / "audit.jsonl"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record(decision: Decision, path: Path | None = None) -> None:
    """Append one decision (one ``write`` of a line: concurrent writers do not interleave)."""
    path = path or local_log()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(decision), sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_local(path: Path | None = None) -> Iterator[Decision]:
    path = path or local_log()
    if not path.exists():
        return
    with path.open() as f:
        for text in f:
            try:
                raw = json.loads(text)
                yield Decision(**{**raw, "groups": tuple(raw.get("groups") or ())})
            except (ValueError, TypeError):
                continue  # a torn last line of a crashed writer


def _product_of(resource: dict) -> str | None:
    for key in ("table", "column"):
        item = resource.get(key) or {}
        if item.get("schemaName") and item.get("tableName"):
            return f"{item['schemaName']}.{item['tableName']}"
    schema = resource.get("schema") or {}
    return schema.get("schemaName")


def _trino_decision(entry: dict) -> Decision | None:
    """One OPA console decision-log entry as a :class:`Decision` (None: not Trino's)."""
    inp = entry.get("input") or {}
    context = inp.get("context") or {}
    if not (context.get("softwareStack") or {}).get("trinoVersion"):
        return None  # the local read path logs its own decisions in audit.jsonl
    action = inp.get("action") or {}
    identity = context.get("identity") or {}
    result = entry.get("result")
    resources = action.get("filterResources") or [action.get("resource") or {}]
    operation = action.get("operation") or "?"
    detail: dict = {"decision_id": entry.get("decision_id")}
    if operation == "GetRowFilters":
        decision = "filter" if result else "none"
        detail["rowFilter"] = " AND ".join(r.get("expression", "") for r in result or []) or None
    elif operation == "GetColumnMask":
        masks = (
            result
            if isinstance(result, list)
            else ([{"index": 0, "viewExpression": result}] if result else [])
        )
        decision = "mask" if masks else "none"
        detail["masked"] = sorted(
            (resources[m["index"]].get("column") or {}).get("columnName", "?")
            for m in masks
            if m.get("index", 0) < len(resources)
        )
    elif isinstance(result, list):  # a batch: the indexes allowed
        decision = "allow" if result else "deny"
    else:
        decision = "allow" if result is True else "deny"
    columns = (action.get("resource") or {}).get("table", {}).get("columns")
    if columns:
        detail["columns"] = sorted(columns)
    return Decision(
        time=_millis(str(entry.get("timestamp") or entry.get("time") or "")),
        user=str(identity.get("user") or "?"),
        groups=tuple(sorted(identity.get("groups") or ())),
        source="trino",
        operation=operation,
        product=_product_of(resources[0] or {}),
        decision=decision,
        detail=detail,
    )


def _millis(stamp: str) -> str:
    """OPA's nanosecond UTC timestamps shortened to the local log's milliseconds."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", stamp)
    if not match:
        return stamp
    return f"{match.group(1)}.{(match.group(2) or '').ljust(3, '0')[:3]}Z"


def read_opa_log(path: Path) -> Iterator[Decision]:
    """Trino's decisions from an OPA console decision log (other log lines are skipped)."""
    if not path.exists():
        return
    with path.open(errors="replace") as f:
        for text in f:
            if '"decision_id"' not in text:
                continue
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if entry.get("msg") != "Decision Log":
                continue
            decision = _trino_decision(entry)
            if decision is not None:
                yield decision


def opa_log() -> Path | None:
    """OPA's decision log: ``MESH_OPA_DECISION_LOG`` (``mesh stack env`` sets it), else the
    log of this MESH_HOME's stack."""
    if settings.opa_decision_log() is not None:
        return settings.opa_decision_log()
    try:
        return StackLayout.current().log("opa")
    except Exception:  # noqa: BLE001 - no stack: no Trino decisions to show
        return None


def query(
    *,
    user: str | None = None,
    product: str | None = None,
    source: str | None = None,
    since: str | None = None,
    local_path: Path | None = None,
    opa_path: Path | None = None,
) -> list[Decision]:
    """Decisions of both logs, oldest first, filtered by user, product (``domain.product``;
    ``domain`` alone matches the domain's products) and source (``local`` or ``trino``)."""
    found: list[Decision] = []
    if source in (None, "local"):
        found += read_local(local_path)
    if source in (None, "trino"):
        path = opa_path or opa_log()
        if path is not None:
            found += read_opa_log(path)

    def keep(d: Decision) -> bool:
        if user and d.user != user:
            return False
        if product and not (
            d.product == product
            or (d.product or "").startswith(product + ".")
            or (d.product or "").split("$", 1)[0] == product
        ):
            return False
        return not since or d.time >= since

    return sorted((d for d in found if keep(d)), key=lambda d: d.time)
