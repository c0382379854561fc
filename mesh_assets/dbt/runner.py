"""How the mesh runs dbt: dagster-dbt's ``DbtCliResource`` (:class:`MeshDbtCli`) and what the
platform adds around each ``dbt.cli([...])`` call: the environment of the dbt-duckdb plugin, the
run's target folder under ``$MESH_HOME/dbt/runs/``, partial-parse reuse across runs and domains,
the partition window, and errors that fail the step.

Imports dagster-dbt (and so dbt-core): only the dbt assets and a dbt step load this module
(see :mod:`mesh_assets.dbt.domain`).
"""

import os
import shutil
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster import get_dagster_logger
from dagster_dbt import DagsterDbtTranslator, DbtCliInvocation, DbtCliResource
from dagster_dbt.asset_utils import (
    DBT_INDIRECT_SELECTION_ENV,
    extract_runtime_selection_from_args,
    get_updated_cli_invocation_params_for_context,
)
from dagster_dbt.dagster_dbt_translator import validate_opt_translator
from dagster_dbt.dbt_manifest import validate_manifest
from dbt.version import __version__ as dbt_version
from packaging import version

from mesh_assets.dbt.inprocess import DbtThread, environment
from mesh_assets.dbt.project import dbt_env, dbt_executable, dbt_trino_env, manifest_path
from mesh_assets.engine import is_transient_catalog_error
from mesh_assets.settings import (
    DBT_PROJECT_DIR,
    PARENTS_FILE_ENV,
    PARTITION_END_ENV,
    PARTITION_START_ENV,
    RUN_ID_ENV,
    MeshSettings,
    load_settings,
)


class MeshDbtCli(DbtCliResource):
    """dagster-dbt's resource without two costs a dbt step pays for nothing here (7-8 s per
    step measured on 2 cores). Both are private hooks of dagster-dbt 0.29 (pinned in pyproject):

    * the dbt adapter it initialises in the Dagster process (``_initialize_dbt_core_adapter``):
      only ``fetch_row_counts()``/``fetch_column_metadata()`` use it, and the platform reads row
      counts and schemas from Iceberg instead;
    * ``dbt --version`` run as a subprocess to learn dbt's version (``_cli_version``): it is the
      installed dbt-core's.
    """

    def _initialize_dbt_core_adapter(self, args):
        return None

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(dbt_version)

    def cli(
        self,
        args: Sequence[str],
        *,
        raise_on_error: bool = True,
        manifest: Any = None,
        dagster_dbt_translator: DagsterDbtTranslator | None = None,
        context: Any = None,
        target_path: Path | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> DbtCliInvocation:
        """dagster-dbt's ``cli()`` with ``env`` (:func:`invocation_env`) added to dbt's
        environment. On the ``local`` target dbt runs in this process
        (:mod:`mesh_assets.dbt.inprocess`) with the arguments, environment and selection
        dagster-dbt 0.29's ``cli()`` gives its subprocess (the lines below are its own, pinned in
        pyproject), and the same ``DbtCliInvocation`` streams its events. On ``trino`` it is
        dagster-dbt's subprocess: ``env`` is this process's environment only while ``cli()``
        starts it (it copies ``os.environ``), so the domain's password never outlives that."""
        env = env or {}
        if self.target != "local":
            with environment(env):
                return super().cli(
                    args,
                    raise_on_error=raise_on_error,
                    manifest=manifest,
                    dagster_dbt_translator=dagster_dbt_translator,
                    context=context,
                    target_path=target_path,
                )
        translator = validate_opt_translator(dagster_dbt_translator) or DagsterDbtTranslator()
        cleaned, selects, excludes = extract_runtime_selection_from_args(args)
        params = get_updated_cli_invocation_params_for_context(
            context=context,
            manifest=validate_manifest(manifest) if manifest else {},
            dagster_dbt_translator=translator,
            runtime_selects=selects,
            runtime_excludes=excludes,
        )
        project_dir = Path(params.dbt_project.project_dir if params.dbt_project else self.project_dir)
        target_path = project_dir / (target_path or self._get_unique_target_path(context=context))
        dbt_environment = {  # what dagster-dbt adds to this process's environment for dbt
            "DAGSTER_DBT_CLI": "true",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_LOG_FORMAT": "json",
            "DBT_TARGET_PATH": os.fspath(target_path),
            "DBT_LOG_PATH": os.fspath(target_path),
            "DBT_PROFILES_DIR": self.profiles_dir,
            "DBT_PROJECT_DIR": os.fspath(project_dir),
            **({DBT_INDIRECT_SELECTION_ENV: params.indirect_selection} if params.indirect_selection else {}),
            **env,
        }
        args = [self.dbt_executable, *self.global_config_flags, *cleaned, "--target", self.target]
        args += params.selection_args
        get_dagster_logger().info(f"Running dbt command: `{' '.join(args)}` (in this process).")
        return DbtCliInvocation(
            process=DbtThread(
                args,
                dbt_environment,
                target_path,
                self.target,
                prepared_dir=manifest_path(self.target).parent,
                parse_dir=load_settings().dbt_dir / "parse" / self.target,
            ),
            manifest=params.manifest,
            dagster_dbt_translator=params.dagster_dbt_translator,
            project_dir=project_dir,
            target_path=target_path,
            raise_on_error=raise_on_error,
            context=context,
            adapter=None,
            cli_version=self._cli_version,
            project=params.dbt_project,
        )


def mesh_dbt_cli(settings: MeshSettings) -> MeshDbtCli:
    """The dbt project, its profiles and the target of the current mode; dbt from this
    interpreter's environment (dagster-dbt's default looks ``dbt`` up on PATH)."""
    return MeshDbtCli(
        project_dir=os.fspath(DBT_PROJECT_DIR),
        profiles_dir=os.fspath(DBT_PROJECT_DIR),
        target=settings.dbt_target,
        dbt_executable=dbt_executable(),
    )


class DbtRunError(RuntimeError):
    """A dbt model (or a test's SQL) errored: names the node and dbt's message."""


def run_errors(run_results: Mapping[str, Any]) -> list[str]:
    """Nodes that errored in a dbt run (a test that ran and *failed* is not an error)."""
    return [
        f"{r['unique_id']}: {(r.get('message') or '').strip()}"
        for r in run_results.get("results", [])
        if r.get("status") in ("error", "runtime error")
    ]


def raise_on_errors(invocation: DbtCliInvocation, what: str) -> None:
    """After the stream: fail the step when dbt itself failed (exit code above 1: no
    run_results) or a node errored. A failed *test* is a failed asset check, not an error."""
    if invocation.process.returncode not in (0, 1):
        raise invocation.get_error() or DbtRunError(
            f"{what}: dbt exited with {invocation.process.returncode}"
        )
    errors = run_errors(invocation.get_artifact("run_results.json"))
    if errors:
        raise DbtRunError(f"{what} failed:\n" + "\n".join(errors))


def catalog_reconnecting(invocation: DbtCliInvocation) -> bool:
    """dbt stopped before running anything (exit 2) because Trino's Iceberg catalog was
    reconnecting to PostgreSQL (:func:`mesh_assets.engine.is_transient_catalog_error`): the
    same build, run again, works."""
    return invocation.process.returncode == 2 and is_transient_catalog_error(str(invocation.get_error()))


def run_dir(settings: MeshSettings, run_id: str, name: str) -> Path:
    """The target folder of one dbt invocation: manifest, run_results, logs of the run."""
    path = settings.dbt_dir / "runs" / run_id / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def invocation_env(
    settings: MeshSettings, domain: str, run_id: str, parents_file: Path, bounds: Mapping[str, str]
) -> dict[str, str | None]:
    """The environment one dbt invocation adds (None: unset): the profile reads MESH_HOME, the
    target and, on Trino, the domain's service account; the plugin the run (audit branch),
    each model's inputs and the partition window it replaces."""
    return {
        **dbt_env(settings),
        **dbt_trino_env(settings, domain),
        RUN_ID_ENV: run_id,
        PARENTS_FILE_ENV: os.fspath(parents_file),
        PARTITION_START_ENV: bounds.get("mesh_partition_start"),
        PARTITION_END_ENV: bounds.get("mesh_partition_end"),
    }


PARTIAL_PARSE = "partial_parse.msgpack"


def reuse_parse(settings: MeshSettings, domain: str, target_path: Path):
    """On the ``trino`` target, where dbt runs as a subprocess per invocation: dbt parses the
    whole project again unless the target folder holds a ``partial_parse.msgpack`` of the same
    project, vars and profile. Each run has its own target folder, so the file is kept under
    ``$MESH_HOME/dbt/parse/trino/<domain>/`` (each domain logs in as its own account, which dbt
    counts as another profile) and handed from invocation to invocation; the first one starts
    from ``mesh dbt prepare``'s parse. Returns the function that keeps the invocation's file for
    the next one. On ``local`` dbt runs in the step's process with the project parsed once
    there (:mod:`mesh_assets.dbt.inprocess`): nothing to hand on."""
    if settings.dbt_target == "local":
        return lambda: None
    cache = settings.dbt_dir / "parse" / settings.dbt_target / domain / PARTIAL_PARSE
    prepared = manifest_path(settings.dbt_target).parent / PARTIAL_PARSE
    for seed in (cache, prepared):
        if seed.exists():
            shutil.copyfile(seed, target_path / PARTIAL_PARSE)
            break

    def keep() -> None:
        produced = target_path / PARTIAL_PARSE
        if produced.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")  # concurrent runs keep theirs apart
            shutil.copyfile(produced, tmp)
            tmp.replace(cache)

    return keep


def partition_bounds(selection) -> dict[str, str]:
    """The ISO bounds of a partitioned run's time window (dbt's macro ``mesh_partition_filter``
    reads them from the environment, :func:`plugin_env`; the plugin replaces those rows)."""
    if selection is None or selection.values:
        return {}
    return {
        "mesh_partition_start": selection.start.isoformat(),
        "mesh_partition_end": selection.end.isoformat(),
    }
