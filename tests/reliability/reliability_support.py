"""Helpers of the reliability suite: processes to kill, table states to compare, a mesh job.

Kept out of conftest.py (the suite imports them by name: ``from reliability_support import``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mesh_assets.settings import PAUSE_ENV, pause_marker

REPO = Path(__file__).resolve().parents[2]
MESH = str(Path(sys.executable).parent / "mesh")
REFERENCE_TABLES = ("reference.airlines", "reference.airports", "reference.timezones")


# --- processes ---------------------------------------------------------------------------------


def start(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """A process in its own session: killing its group kills everything it started (dbt
    included), as the end of a pod or a killed terminal would. Its output goes to ``log`` (a
    pipe nobody reads would fill up and stop the process)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO, **kwargs
        )
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    return proc.log.read_text(errors="replace")


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(
    predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, interval: float = 0.05
):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds
    (or when ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the process ended ({proc.returncode}) before {what}:\n{output(proc)[-3000:]}"
            )
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pause_env(point: str) -> dict[str, str]:
    """The environment that stops a process at ``point`` (``checkpoint:domain.product``, see
    ``mesh_assets.settings.pause_at``)."""
    return {**os.environ, PAUSE_ENV: point}


def wait_paused(checkpoint: str, proc: subprocess.Popen, timeout: float = 300) -> int:
    """Wait until a process stopped at ``checkpoint`` (its marker holds the pid); returns the pid."""
    marker = pause_marker(checkpoint)
    return int(
        wait_for(lambda: marker.exists() and marker.read_text(), timeout, f"a stop at {checkpoint}", proc)
    )


def failure_message(instance, run_id: str) -> str:
    """The message of the run's failure event ('' when it has none)."""
    import dagster as dg

    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return records[-1].event_log_entry.dagster_event.message if records else ""


def mesh_materialize(domain: str, env: dict | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(
        [MESH, "materialize", domain],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def event_log_text(instance, run_id: str) -> str:
    """Everything a run wrote to the Dagster event log: messages, errors and metadata."""
    return "\n".join(repr(record.event_log_entry) for record in instance.get_records_for_run(run_id).records)


# --- data ----------------------------------------------------------------------------------------


def write_contract(
    folder: Path,
    name: str,
    columns: list[dict],
    *,
    source: dict | None = None,
    domain: str = "bad",
    **custom,
):
    """A contract ``domains/<domain>/products/<name>.yaml`` under ``folder`` for product
    ``domain.name``: ``columns`` are ODCS properties (``name``, ``physicalType`` and anything
    else; ``logicalType`` is filled in), ``source`` adds to ``{format: csv, file: <name>.csv}``,
    ``custom`` are more customProperties. Returns the loaded DataProduct."""
    import yaml

    from mesh_assets.workspace import load_contract

    logical = {"int": "integer", "long": "integer", "double": "number", "float": "number", "date": "date"}
    properties = []
    for column in columns:
        kind = column["physicalType"].split("(")[0]
        properties.append(
            {
                "logicalType": logical.get(kind, "number" if kind == "decimal" else "string")
                if not kind.startswith("timestamp")
                else "timestamp",
                **column,
            }
        )
    doc = {
        "apiVersion": "v3.1.0",
        "kind": "DataContract",
        "id": f"urn:datamesh:{domain}:{name}",
        "version": "1.0.0",
        "status": "active",
        "domain": domain,
        "dataProduct": name,
        "team": {"name": "platform-team"},
        "schema": [{"name": name, "physicalType": "table", "properties": properties}],
        "customProperties": [
            {"property": "source", "value": {"format": "csv", "file": f"{name}.csv", **(source or {})}},
            *({"property": k, "value": v} for k, v in custom.items()),
        ],
    }
    path = folder / "domains" / domain / "products" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_contract(path)


# a contract column: the public, required string key most test products start with
ID_COLUMN = {
    "name": "id",
    "physicalType": "string",
    "required": True,
    "primaryKey": True,
    "classification": "public",
}


def table_state(catalog, identifier: str) -> tuple[int | None, list[tuple]]:
    """(main's snapshot id, its rows sorted): what consumers read. The snapshot's recorded
    row count must match what a scan returns (no half-visible commit)."""
    if not catalog.table_exists(identifier):
        return None, []
    table = catalog.load_table(identifier)
    snap = table.current_snapshot()
    if snap is None:
        return None, []
    data = table.scan().to_arrow()
    recorded = int(snap.summary.additional_properties.get("total-records", -1))
    assert recorded == data.num_rows, (identifier, recorded, data.num_rows)
    rows = sorted(tuple("" if v is None else str(v) for v in r.values()) for r in data.to_pylist())
    return snap.snapshot_id, rows


def contents(catalog, tables=REFERENCE_TABLES) -> dict[str, list[tuple]]:
    return {t: table_state(catalog, t)[1] for t in tables}


# --- a mesh job across domains (for re-execution from failure) ---------------------------------

MESH_JOB_DOMAINS = ("reference", "fleet")


def mesh_defs():
    """The unpartitioned domains' assets and checks as one Definitions, in-process executor
    (one process to kill). Resources are the same for every domain."""
    import dagster as dg

    from mesh_assets.definitions import build_domain
    from mesh_assets.settings import DOMAINS_DIR

    parts = [build_domain(DOMAINS_DIR / d) for d in MESH_JOB_DOMAINS]
    job = dg.define_asset_job(
        "mesh_job", selection=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks()
    )
    return dg.Definitions(
        assets=[a for p in parts for a in p.assets],
        asset_checks=[c for p in parts for c in (p.asset_checks or [])],
        jobs=[job],
        resources=parts[0].resources,
        executor=dg.in_process_executor,
    )


def mesh_job():
    """Job factory for ``dagster.reconstructable``."""
    return mesh_defs().resolve_job_def("mesh_job")


RUN_MESH_JOB = """
import sys
import dagster as dg
from reliability_support import mesh_job
from mesh_assets.runs import worker_tags
with dg.DagsterInstance.get() as instance:
    options = (dg.ReexecutionOptions.from_failure(sys.argv[1], instance) if len(sys.argv) > 1
               else None)
    result = dg.execute_job(dg.reconstructable(mesh_job), instance, reexecution_options=options,
                            tags=worker_tags(), raise_on_error=False)
    print("RUN", result.run_id, result.success, flush=True)
"""
