"""Running dbt for a Dagster step: the resource, the process and its environment, partition
variables, and the partial-parse state handed from run to run."""

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from mesh_assets.dbt.project import dbt_env, dbt_executable
from mesh_assets.settings import (
    DBT_PROJECT_DIR,
    PARENTS_FILE_ENV,
    PARTITION_END_ENV,
    PARTITION_START_ENV,
    RUN_ID_ENV,
    MeshSettings,
)


class DbtRunError(RuntimeError):
    """A dbt model (or a test's SQL) errored: names the node and dbt's message."""


def run_errors(run_results: Mapping[str, Any]) -> list[str]:
    """Nodes that errored in a dbt run (a test that ran and *failed* is not an error)."""
    return [f"{r['unique_id']}: {(r.get('message') or '').strip()}"
            for r in run_results.get("results", []) if r.get("status") in ("error", "runtime error")]


class DbtCli(dg.ConfigurableResource):
    """How the mesh runs dbt: the project, its profiles and the target of the current mode."""

    project_dir: str
    profiles_dir: str
    target: str

    def command(self, args: Sequence[str], target_path: Path) -> list[str]:
        return [dbt_executable(), *args, "--project-dir", self.project_dir,
                "--profiles-dir", self.profiles_dir, "--target", self.target,
                "--target-path", str(target_path)]


def dbt_resource(settings: MeshSettings) -> DbtCli:
    return DbtCli(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                  target=settings.dbt_target)


NODE_RESULT_EVENTS = ("LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult")


def stream_dbt(cmd: Sequence[str], env: Mapping[str, str], log, warm_up=None) -> Any:
    """Run dbt with a JSON log and yield each node's result as it finishes:
    ``{"unique_id", "status", "failures", "execution_time"}`` (statuses as in run_results)."""
    proc = subprocess.Popen(cmd, env={**env, "DBT_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if warm_up is not None:  # imports and connections the run needs, while dbt works
        threading.Thread(target=warm_up, daemon=True).start()
    tail: list[str] = []
    summary: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            tail = (tail + [line.rstrip()])[-40:]
            continue
        info, data = event.get("info", {}), event.get("data", {})
        message = info.get("msg") or ""
        tail = (tail + [message])[-40:]
        # warnings and errors become Dagster log events (each is an event-log write); a node's
        # result shows as its materialization or check evaluation, and in the summary below
        if message and info.get("level") in ("warn", "error"):
            log.warning(message)
        if info.get("name") in ("StatsLine", "EndOfRunSummary", "FinishedRunningStats") and message:
            summary.append(message)
        if info.get("name") in NODE_RESULT_EVENTS:
            node = data["node_info"]  # node_status: the run_results status of the node
            yield {"unique_id": node["unique_id"], "status": node.get("node_status"),
                   "failures": data.get("num_failures") or 0,
                   "execution_time": data.get("execution_time") or 0}
    code = proc.wait()
    if summary:
        log.info("dbt: " + " ".join(m.strip() for m in summary))
    if code not in (0, 1):  # 1: some node failed or errored (reported per node)
        raise DbtRunError(f"dbt exited with {code}:\n" + "\n".join(tail))


def _dbt_env(settings: MeshSettings, run_id: str, bounds: Mapping[str, str],
             parents_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in (PARTITION_START_ENV, PARTITION_END_ENV)}
    env.update(dbt_env(settings))
    env["DBT_LOG_PATH"] = str(parents_file.parent)  # logs with the run's artifacts, not in the repo
    env[RUN_ID_ENV] = run_id  # recorded in each Iceberg snapshot; sources read its audit branch
    env[PARENTS_FILE_ENV] = str(parents_file)
    if bounds:  # the plugin replaces exactly these rows of the Iceberg table
        env[PARTITION_START_ENV] = bounds["mesh_partition_start"]
        env[PARTITION_END_ENV] = bounds["mesh_partition_end"]
    return env


PARTIAL_PARSE = "partial_parse.msgpack"


def reuse_parse(settings: MeshSettings, name: str, target_path: Path):
    """dbt re-parses the whole project when its target folder has no ``partial_parse.msgpack``
    from an invocation with the same vars; each run has its own target folder, so the file is
    kept per dbt asset under ``$MESH_HOME/dbt/parse/`` and handed from run to run. Returns the
    function that keeps the run's file for the next one."""
    cache = settings.dbt_dir / "parse" / settings.dbt_target / name / PARTIAL_PARSE
    if cache.exists():
        shutil.copyfile(cache, target_path / PARTIAL_PARSE)

    def keep() -> None:
        produced = target_path / PARTIAL_PARSE
        if produced.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            shutil.copyfile(produced, tmp)
            tmp.replace(cache)
    return keep


def partition_vars(selection) -> dict[str, str]:
    """dbt vars (and plugin env) of a partitioned run: the ISO bounds of its time window."""
    if selection is None or selection.values:
        return {}
    return {"mesh_partition_start": selection.start.isoformat(),
            "mesh_partition_end": selection.end.isoformat()}


def dbt_build_args(domain: str, models: Sequence[Mapping[str, Any]],
                   bounds: Mapping[str, str]) -> list[str]:
    """``dbt build`` of exactly these models (and, by dbt's eager indirect selection, their
    tests), with the domain and the partition bounds as vars."""
    return ["build", "--select", *(f"fqn:{'.'.join(m['fqn'])}" for m in models),
            "--vars", json.dumps({"mesh_domain": domain, **bounds})]
