"""Runs whose worker process died are failed, not left ``STARTED`` for ever.

Dagster's run monitoring (the daemon, configured in the dagster.yaml that
:func:`mesh_assets.settings.ensure_dagster_home` writes) finds a dead run worker only through
the run launcher's ``check_run_worker_health``, which the default launcher does not offer; and
a run executed in the process that asked for it (``mesh materialize``: ``execute_in_process``)
is launched by nobody. So the platform records which process executes each run it starts
(:func:`worker_tags`: host, pid, process start time) and :func:`fail_dead_runs` reports the runs
of this machine whose process is gone as failed through the instance, with a message saying
why. ``mesh materialize`` and ``mesh maintain`` call it before they start, each domain's
maintenance job every night, and each domain's ``<domain>_dead_runs`` sensor every minute while
the Dagster daemon runs.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg
from dagster._core.events import JobFailureData, RunFailureReason

WORKER_HOST_TAG = "mesh/worker_host"
WORKER_PID_TAG = "mesh/worker_pid"
WORKER_START_TAG = "mesh/worker_start"  # the process start time (clock ticks after boot)

UNFINISHED = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def _start_ticks(pid: int) -> str:
    """When process ``pid`` started (``/proc/<pid>/stat`` field 22), '' when unknown. A pid the
    system reused for another process has another start time."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def worker_tags() -> dict[str, str]:
    """Run tags naming this process as the run's worker."""
    pid = os.getpid()
    return {
        WORKER_HOST_TAG: socket.gethostname(),
        WORKER_PID_TAG: str(pid),
        WORKER_START_TAG: _start_ticks(pid),
    }


def worker_alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` of this machine, started at ``start``, still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return not start or _start_ticks(pid) in ("", start)


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Report as failed every unfinished run whose worker (per :func:`worker_tags`) ran on this
    machine and is gone; returns their run ids. Runs of other machines are left to theirs."""
    host = socket.gethostname()
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=UNFINISHED, tags={WORKER_HOST_TAG: host})
    )
    failed = []
    for record in records:
        run = record.dagster_run
        pid = int(run.tags[WORKER_PID_TAG])
        if worker_alive(pid, run.tags.get(WORKER_START_TAG, "")):
            continue
        instance.report_run_failed(
            run,
            f"The run's worker process (pid {pid} on {host}) ended while the run was "
            f"{run.status.value}: it was killed or crashed. What it had not published stays off "
            "main; re-execute the run from its failure, or materialize again.",
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            # the pool slots its steps held are freed now (the daemon would only after
            # run_monitoring.free_slots_after_run_end_seconds), so the next run is not blocked
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(run.run_id)
    return failed


def dead_runs_sensor(domain: str) -> dg.SensorDefinition:
    """A sensor of ``domain``'s code location (running by default, at most one tick a minute)
    that calls :func:`fail_dead_runs`: under the daemon a killed in-process run ends within a
    minute, and its pool slots and audit branch are freed with it. It requests no run."""

    @dg.sensor(
        name=f"{domain}_dead_runs",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks failed the runs of this machine whose worker process died (killed or "
        "crashed), so they stop counting as running.",
    )
    def _sensor(context: dg.SensorEvaluationContext):
        failed = fail_dead_runs(context.instance)
        for run_id in failed:
            context.log.warning(f"run {run_id} marked failed: its worker process is gone")
        return dg.SkipReason(f"{len(failed)} dead run(s) marked failed" if failed else "no dead run")

    return _sensor
